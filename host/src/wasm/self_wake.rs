//! Wakes a future gives itself while it is being polled, taken in place.
//!
//! tokio reads a task that is woken while it runs as a yield: once the poll
//! returns, the task goes to the back of the run queue and a parked worker
//! is woken to take it — a context switch (and the task moving threads) for
//! nothing. wasmtime's component-model event loop (on with
//! `concurrency_support` on the coro routes' engine, which the coro world
//! needs; before the coro routes had an engine of their own, every world's
//! guest calls went through it) does that on every call
//! into a guest: the call's result is sent on a channel that the same poll
//! then reads. Measured echoing over one connection: two context switches
//! per message instead of one; 28k messages/s where the handler world does
//! 50k (event world; coro 26k). Taken in place: 43k (coro 40k).
//!
//! [`run`] polls a task's future with a waker of its own: a wake that
//! arrives during the poll makes it poll again at once (up to `AGAIN`
//! times, then it yields to the runtime for real); one that arrives between
//! polls is passed on to the task. The wasted yields had a use under load,
//! though: they let the other sockets queue more for the instance's next
//! turn. [`run`] keeps that, once per wake and only under load ([`Handled`]).

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Polls in a row before a future that keeps waking itself is left to the
/// runtime's scheduling (so it cannot starve the worker's other tasks).
const AGAIN: usize = 16;

/// Not being polled: a wake goes to the task.
const IDLE: u8 = 0;
/// Being polled, not yet woken.
const POLLING: u8 = 1;
/// Woken while being polled: poll again.
const WOKEN: u8 = 2;

struct Flag {
    state: AtomicU8,
    /// The waker of the task that last polled.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let marked =
            self.state
                .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire);
        if marked == Err(IDLE) {
            self.task.wake();
        }
    }
}

/// Items of work (events, messages) a task handled since it was last woken
/// from outside; the code that handles them counts them.
#[derive(Clone, Default)]
pub struct Handled(Arc<AtomicUsize>);

impl Handled {
    pub fn one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self) -> usize {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// Run `future` (a task's whole life) to its end, polling it again at once
/// when it woke itself. Woken from outside after a turn that handled more
/// than one item, it yields to the runtime once first: the worker's other
/// ready tasks (sockets queuing more for it) run before it, so its next
/// turn takes all they queued (echo at 64 connections, in messages/s: the
/// event world 1.2x, the coro world 1.4x running at once). After a turn of
/// one item (a lone connection's round trip) it runs at once: tokio's
/// yield wakes a parked worker, a second context switch per message.
pub async fn run<F: Future>(future: F, handled: Handled) -> F::Output {
    let mut future = std::pin::pin!(future);
    let rewaker = Rewaker::default();
    loop {
        let mut waited = false;
        let polled = std::future::poll_fn(|cx| {
            if waited {
                return Poll::Ready(None);
            }
            match rewaker.poll(future.as_mut(), cx) {
                Poll::Ready(out) => Poll::Ready(Some(out)),
                Poll::Pending => {
                    waited = true;
                    Poll::Pending
                }
            }
        })
        .await;
        if let Some(out) = polled {
            return out;
        }
        if handled.take() > 1 {
            tokio::task::yield_now().await;
        }
    }
}

/// The waker [`run`] polls its future with.
struct Rewaker {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Default for Rewaker {
    fn default() -> Self {
        let flag = Arc::new(Flag {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(flag.clone());
        Rewaker { flag, waker }
    }
}

impl Rewaker {
    fn poll<F: Future>(&self, mut future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.flag.task.register(cx.waker());
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..AGAIN {
            self.flag.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(out) = future.as_mut().poll(&mut inner) {
                self.flag.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            let ended = self.flag.state.compare_exchange(
                POLLING,
                IDLE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if ended.is_ok() {
                return Poll::Pending;
            }
        }
        // Still waking itself: a real yield to the runtime.
        self.flag.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the wakes its task gets.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Wakes itself `n` times while polled, then is ready.
    struct SelfWaking(usize);

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(future: Pin<&mut F>, count: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(count.clone());
        future.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_self_wake_is_polled_again_without_waking_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let handled = Handled::default();
        let run = std::pin::pin!(run(SelfWaking(3), handled));
        assert!(poll_once(run, &count).is_ready());
        assert_eq!(count.get(), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let handled = Handled::default();
        let mut run = std::pin::pin!(run(SelfWaking(AGAIN + 1), handled));
        assert!(poll_once(run.as_mut(), &count).is_pending());
        assert_eq!(count.get(), 1);
        assert!(poll_once(run, &count).is_ready());
    }

    /// A run waiting on a channel, woken from outside after a turn that
    /// handled `items`: the polls it then takes to end, and the wakes its
    /// task got in all.
    fn woken_after_a_turn_of(items: usize) -> (usize, usize) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let handled = Handled::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut run = std::pin::pin!(run(rx, handled.clone()));
        assert!(poll_once(run.as_mut(), &count).is_pending());
        (0..items).for_each(|_| handled.one());
        tx.send(()).unwrap();
        let mut polls = 1;
        while poll_once(run.as_mut(), &count).is_pending() {
            polls += 1;
            assert!(polls < 10, "never ends");
        }
        (polls, count.get())
    }

    #[test]
    fn after_a_turn_of_one_item_a_wake_from_outside_runs_at_once() {
        assert_eq!(woken_after_a_turn_of(1), (1, 1));
    }

    #[test]
    fn after_a_turn_of_several_items_a_wake_from_outside_yields_once() {
        // Outside a runtime, tokio's yield wakes the task at once.
        assert_eq!(woken_after_a_turn_of(2), (2, 2));
    }
}
