//! The process-wide budget of bytes in flight: large messages read from
//! peers and not yet taken by their guests. A socket about to read a frame
//! larger than a read chunk first takes its size from the budget and waits
//! while the budget is spent (its peer then waits on TCP, as for a full
//! inbox); the bytes come back when the message's memory is freed. Small
//! frames (chat, control frames) are never held up, so the budget caps the
//! memory a flood of large messages can pin without stalling the rest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Budget {
    total: usize,
    left: AtomicUsize,
    freed: Notify,
}

static GLOBAL: OnceLock<Arc<Budget>> = OnceLock::new();

/// Set the process's budget (the first server started sets it).
pub fn init(total: usize) {
    let _ = GLOBAL.set(Budget::new(total));
}

/// The process's budget; unlimited if none was set.
pub fn global() -> &'static Arc<Budget> {
    GLOBAL.get_or_init(|| Budget::new(usize::MAX))
}

impl Budget {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Budget {
            total,
            left: AtomicUsize::new(total),
            freed: Notify::new(),
        })
    }

    /// Take `n` bytes, waiting until they are free (a message larger than
    /// the whole budget waits for all of it). Cancel-safe.
    pub async fn take(self: &Arc<Self>, n: usize) -> Charge {
        let n = n.min(self.total);
        let mut logged = false;
        loop {
            let freed = self.freed.notified();
            let taken = self
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(n)
                });
            if taken.is_ok() {
                return Charge {
                    budget: self.clone(),
                    n,
                };
            }
            if !logged {
                tracing::debug!("a read of {n} bytes waits for the in-flight budget");
                logged = true;
            }
            freed.await;
        }
    }

    /// Bytes not taken.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

/// Bytes taken from a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.n, Ordering::AcqRel);
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_taker_waits_until_bytes_come_back() {
        let budget = Budget::new(100);
        let first = budget.take(70).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(budget.left(), 50);
        drop(second);
        // Larger than the whole budget: takes all of it.
        let all = budget.take(1000).await;
        assert_eq!(budget.left(), 0);
        drop(all);
        assert_eq!(budget.left(), 100);
    }
}
