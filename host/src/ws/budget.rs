//! The process-wide budget of bytes in flight: what peers have sent of the
//! messages under way (fragments and large frames being assembled) and of
//! whole large messages not yet taken by their guests (`--max-in-flight`).
//!
//! Bytes are charged as they arrive, never as a header announces them: a
//! header that claims 16 MiB costs one read slice (64 KiB) until its
//! payload comes, so idle connections that announce large frames pin
//! little. Charges wait in line (a `tokio` semaphore is FIFO) while a read
//! waits; a read cancelled to write (the socket's task does both) joins
//! the line again. A small message read whole in one chunk is not charged
//! (the per-connection inbox and queue bounds cover it), so chat never
//! waits here.
//!
//! Charging as bytes arrive can leave every connection holding part of a
//! message and waiting for more: none could finish. So a connection that
//! waits while it holds part of its message may take the one *overdraft*:
//! it then charges the rest of its message to a reserve of the size of the
//! largest message, and must finish within [`OVERDRAFT_DEADLINE`] (its
//! socket's task enforces it whatever it is doing: a peer that holds the
//! overdraft and trickles is closed, 1013). Memory in flight is at most the
//! budget plus that reserve (what a compressed message inflates to beyond
//! its compressed bytes is not charged: bounded per connection by the
//! message size limit).

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How long a message that took the overdraft may take to finish.
pub const OVERDRAFT_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Budget {
    /// `--max-in-flight` bytes.
    main: Arc<Semaphore>,
    total: usize,
    /// The reserve for the overdraft: the largest message's bytes.
    reserve: Arc<Semaphore>,
    reserve_total: usize,
    /// One permit: who may charge the reserve.
    overdraft: Arc<Semaphore>,
}

static GLOBAL: OnceLock<Arc<Budget>> = OnceLock::new();

/// Set the process's budget (the first server started sets it): `total`
/// bytes, and a reserve of `largest_message` for the overdraft.
pub fn init(total: usize, largest_message: usize) {
    let _ = GLOBAL.set(Budget::new(total, largest_message));
}

/// The process's budget; unlimited if none was set.
pub fn global() -> &'static Arc<Budget> {
    GLOBAL.get_or_init(|| Budget::new(usize::MAX, usize::MAX))
}

/// Permits a semaphore can hold and take at once.
fn permits(n: usize) -> usize {
    n.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize)
}

impl Budget {
    pub fn new(total: usize, largest_message: usize) -> Arc<Self> {
        let (total, reserve_total) = (permits(total), permits(largest_message));
        Arc::new(Budget {
            main: Arc::new(Semaphore::new(total)),
            total,
            reserve: Arc::new(Semaphore::new(reserve_total)),
            reserve_total,
            overdraft: Arc::new(Semaphore::new(1)),
        })
    }

    /// Bytes not charged.
    pub fn left(&self) -> usize {
        self.main.available_permits()
    }

    /// Bytes charged, of the budget and of the overdraft's reserve.
    pub fn held(&self) -> usize {
        (self.total - self.main.available_permits())
            + (self.reserve_total - self.reserve.available_permits())
    }

    /// `n` bytes now, if the budget has them.
    pub fn try_take(&self, n: usize) -> Option<Charge> {
        let n = permits(n).min(self.total);
        match self.main.clone().try_acquire_many_owned(n as u32) {
            Ok(permit) => Some(Charge::of(permit)),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
        }
    }

    /// `n` bytes, waiting in line for them. Cancel-safe.
    pub async fn take(&self, n: usize) -> Charge {
        let n = permits(n).min(self.total);
        // The semaphore is never closed.
        let permit = self.main.clone().acquire_many_owned(n as u32).await;
        Charge::of(permit.expect("never closed"))
    }

    /// The overdraft, waiting in line for it. Cancel-safe.
    pub async fn overdraft(&self) -> Overdraft {
        let token = self.overdraft.clone().acquire_owned().await;
        Overdraft {
            _token: token.expect("never closed"),
        }
    }

    /// `n` bytes of the reserve, for the holder of the [`Overdraft`] (a
    /// message larger than the reserve takes all of it). Cancel-safe.
    pub async fn take_reserve(&self, _overdraft: &Overdraft, n: usize) -> Charge {
        let n = permits(n).min(self.reserve_total);
        let permit = self.reserve.clone().acquire_many_owned(n as u32).await;
        Charge::of(permit.expect("never closed"))
    }
}

/// The right to charge the reserve; one holder at a time.
#[derive(Debug)]
pub struct Overdraft {
    _token: OwnedSemaphorePermit,
}

/// Bytes taken from a [`Budget`], given back on drop; charges of one
/// message merge into one.
#[derive(Debug, Default)]
pub struct Charge {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Charge {
    fn of(permit: OwnedSemaphorePermit) -> Self {
        Charge {
            permits: vec![permit],
        }
    }

    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.permits
            .iter()
            .map(OwnedSemaphorePermit::num_permits)
            .sum()
    }

    /// Add `other` to this charge.
    pub fn merge(&mut self, other: Charge) {
        for permit in other.permits {
            match self
                .permits
                .iter_mut()
                .find(|p| Arc::ptr_eq(p.semaphore(), permit.semaphore()))
            {
                Some(same) => same.merge(permit),
                None => self.permits.push(permit),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takers_wait_in_line_and_bytes_come_back() {
        let budget = Budget::new(100, 50);
        let first = budget.take(70).await;
        assert!(budget.try_take(50).is_none());
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(50).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // First come, first served: a small charge that would fit waits
        // behind the larger one ahead of it.
        let small = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(10).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!small.is_finished(), "jumped the line");
        drop(first);
        let second = waiting.await.unwrap();
        let third = small.await.unwrap();
        assert_eq!(budget.left(), 40);
        let mut merged = second;
        merged.merge(third);
        assert_eq!(merged.bytes(), 60);
        drop(merged);
        assert_eq!(budget.left(), 100);
        // Larger than the whole budget: takes all of it.
        let all = budget.take(1000).await;
        assert_eq!(budget.left(), 0);
        drop(all);
    }

    #[tokio::test]
    async fn the_overdraft_has_one_holder_and_a_reserve_of_its_own() {
        let budget = Budget::new(10, 50);
        let _spent = budget.take(10).await;
        let overdraft = budget.overdraft().await;
        let other = tokio::spawn({
            let budget = budget.clone();
            async move { budget.overdraft().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!other.is_finished(), "one holder at a time");
        let reserve = budget.take_reserve(&overdraft, 40).await;
        assert_eq!(reserve.bytes(), 40);
        drop(overdraft);
        let _next = other.await.unwrap();
        drop(reserve);
    }
}
