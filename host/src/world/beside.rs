//! A handler-world connection as one task: the guest's call and, once the
//! guest has upgraded, its socket's pump ([`crate::ws::pump`]) polled beside
//! it, so a message goes read → guest → write without waking another task.
//!
//! The two halves stay apart as futures: the pump answers pings, writes
//! the queue and watches the keepalive while the guest computes (the guest
//! yields at each epoch tick, and the pump runs in that turn), and the guest
//! waits in `recv` or `push` without holding the socket. Each half is polled
//! with a waker of its own, so a turn polls only the half that was woken;
//! a wake one half gives the other while the task runs (the pump filling
//! the inbox, a push filling the outbox) is taken in the same turn, not
//! through the runtime's queue. A half that wakes itself (a guest's epoch
//! yield, tokio's coop budget) ends the turn: it yields for real, as it
//! would in a task of its own.
//!
//! Measured (echo 32 B, 64 connections, server on one core): one task
//! poll per message where the pump in a task of its own took two.
//!
//! Invariant: the task ends only when the guest's call has returned and
//! the pump, if one was started, has ended.

use crate::ws::outbox::{Cork, Fanout, ROUND_PAST, wait_for_round};
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// A pump to be polled beside the guest.
pub type Pump = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes the pump: called on the task's own stack, not the guest's fiber
/// stack (a future of several KiB made there would leave its pages
/// resident in every instance).
type Start = Box<dyn FnOnce() -> Pump + Send>;

/// Turns in a row while the halves keep waking each other, before the
/// task yields to the runtime (its other tasks must run too).
const PASSES: usize = 16;

/// What the guest's connection leaves for its task: its pump, to run, and
/// the writers its publishes queued to, to wake as its turn ends.
#[derive(Default)]
pub struct Side {
    pump: Mutex<Option<Start>>,
    fanout: Mutex<Fanout>,
    /// The guest published this turn: `fanout` has writers to wake...
    corked: AtomicBool,
    /// ...and since it last yielded (its epoch tick)...
    fresh: AtomicBool,
    /// ...through this many yields.
    ticks: AtomicU8,
}

/// Epoch ticks ([`crate::wasm::sandbox::TICK`] of a guest's running) a
/// turn's writers are held corked through while the guest goes on
/// publishing, at most (a turn of 64 events in the event world holds its
/// writers as long as that: 64 publishes to 10,000 take ~30 ms). A guest
/// that computes on after publishing has them woken at its next yield.
const HOLD_TICKS: u8 = 8;

impl Side {
    /// Run the pump `start` makes beside the guest, from the task's next
    /// turn on.
    pub fn put(&self, start: impl FnOnce() -> Pump + Send + 'static) {
        *self.slot() = Some(Box::new(start));
    }

    fn take(&self) -> Option<Start> {
        self.slot().take()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Start>> {
        self.pump.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of the guest's publishes or broadcasts: `queue` queues it to
    /// the cork, once the round before the latest is over ([`Fanout`]);
    /// its writers are woken as the guest's turn ends ([`run`]), with
    /// those of the turn's other publishes (a guest that finds several
    /// messages waiting publishes them all in one turn, and a writer takes
    /// them in one write).
    pub async fn publish<R>(&self, queue: impl FnOnce(&mut Cork) -> R) -> R {
        let round = self.fanout().round_to_wait_for();
        if let Some(round) = round {
            wait_for_round(round).await;
        }
        let queued = queue(self.fanout().cork());
        self.corked.store(true, Ordering::Relaxed);
        self.fresh.store(true, Ordering::Relaxed);
        queued
    }

    /// The guest's turn is over (it waits or has returned): wake the
    /// writers it published to.
    fn turn_over(&self) {
        self.ticks.store(0, Ordering::Relaxed);
        self.fresh.store(false, Ordering::Relaxed);
        if self.corked.swap(false, Ordering::Relaxed) {
            self.fanout().uncork(ROUND_PAST);
        }
    }

    /// The guest yielded mid-turn (its epoch tick): the turn goes on, its
    /// writers still corked, while it publishes between yields, for
    /// [`HOLD_TICKS`] at most; a tick with no publish ends it. Woken at
    /// every tick, a fan-out to 10,000 (a few publishes a tick) went out at
    /// 2.8 frames a write; at the second tick, 4.
    fn yielded(&self) {
        if !self.corked.load(Ordering::Relaxed) {
            return;
        }
        let fresh = self.fresh.swap(false, Ordering::Relaxed);
        let ticks = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if !fresh || ticks >= HOLD_TICKS {
            self.turn_over();
        }
    }

    fn fanout(&self) -> std::sync::MutexGuard<'_, Fanout> {
        self.fanout.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the two halves' wakers share: whether a turn is under way (a wake
/// then only marks its half), and the task to wake otherwise.
#[derive(Default)]
struct Turn {
    running: AtomicBool,
    task: AtomicWaker,
}

/// One half's waker.
struct Half {
    woken: AtomicBool,
    turn: Arc<Turn>,
}

impl Wake for Half {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst against the turn's end: either it sees this mark, or this
        // sees the turn over and wakes the task.
        self.woken.store(true, Ordering::SeqCst);
        if !self.turn.running.load(Ordering::SeqCst) {
            self.turn.task.wake();
        }
    }
}

impl Half {
    fn new(turn: &Arc<Turn>) -> (Arc<Half>, Waker) {
        let half = Arc::new(Half {
            woken: AtomicBool::new(true),
            turn: turn.clone(),
        });
        let waker = Waker::from(half.clone());
        (half, waker)
    }

    fn take(&self) -> bool {
        self.woken.swap(false, Ordering::SeqCst)
    }

    fn is_woken(&self) -> bool {
        self.woken.load(Ordering::SeqCst)
    }
}

/// Run the future `guest` makes (a connection's whole call) with the pump
/// `side` is given polled beside it; returns what it returned once the
/// pump, too, has ended. `guest` is made here, in place: a future passed
/// in and then pinned took its room twice in this one's state.
pub async fn run<F: Future>(guest: impl FnOnce() -> F, side: Arc<Side>) -> F::Output {
    let mut guest = std::pin::pin!(guest());
    let mut out = None;
    let mut pump: Option<Pump> = None;
    let turn = Arc::new(Turn::default());
    let (guest_half, guest_waker) = Half::new(&turn);
    let (pump_half, pump_waker) = Half::new(&turn);
    std::future::poll_fn(|cx| {
        turn.task.register(cx.waker());
        for _ in 0..PASSES {
            turn.running.store(true, Ordering::SeqCst);
            // A half that woke itself while polled asks for a real yield.
            let mut yielded = false;
            if out.is_none() && guest_half.take() {
                match guest.as_mut().poll(&mut Context::from_waker(&guest_waker)) {
                    Poll::Ready(done) => {
                        out = Some(done);
                        side.turn_over();
                    }
                    Poll::Pending if guest_half.is_woken() => {
                        yielded = true;
                        side.yielded();
                    }
                    Poll::Pending => side.turn_over(),
                }
            }
            if let Some(start) = side.take() {
                pump = Some(start());
                pump_half.woken.store(true, Ordering::SeqCst);
            }
            if let Some(running) = &mut pump
                && pump_half.take()
            {
                match running.as_mut().poll(&mut Context::from_waker(&pump_waker)) {
                    Poll::Ready(()) => pump = None,
                    Poll::Pending => yielded |= pump_half.is_woken(),
                }
            }
            if out.is_some() && pump.is_none() {
                return Poll::Ready(out.take());
            }
            turn.running.store(false, Ordering::SeqCst);
            let again = (out.is_none() && guest_half.is_woken())
                || (pump.is_some() && pump_half.is_woken());
            if !again {
                return Poll::Pending;
            }
            if yielded {
                break;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
    .expect("returned once the guest is done")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::outbox::Outbox;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes its task gets.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll_once<F: Future>(future: Pin<&mut F>, count: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(count.clone());
        future.poll(&mut Context::from_waker(&waker))
    }

    /// An echo's round: the pump hands a message to the guest, which hands
    /// its reply back, both within one turn and without waking the task.
    #[test]
    fn halves_that_wake_each_other_finish_in_one_turn_without_a_task_wake() {
        let (to_guest, from_pump) = tokio::sync::oneshot::channel::<u32>();
        let (to_pump, from_guest) = tokio::sync::oneshot::channel::<u32>();
        let side = Arc::new(Side::default());
        let (pump_ready, pump_wait) = tokio::sync::oneshot::channel::<()>();
        let guest = {
            let side = side.clone();
            async move {
                side.put(move || {
                    Box::pin(async move {
                        pump_wait.await.unwrap();
                        to_guest.send(1).unwrap();
                        assert_eq!(from_guest.await.unwrap(), 2);
                    })
                });
                let got = from_pump.await.unwrap();
                to_pump.send(got + 1).unwrap();
                "done"
            }
        };
        let count = Arc::new(Count::default());
        let mut run = std::pin::pin!(run(|| guest, side));
        assert!(poll_once(run.as_mut(), &count).is_pending());
        // The peer's message arrives: one wake, and the round is done.
        pump_ready.send(()).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(run, &count), Poll::Ready("done"));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    /// Wakes itself once while polled (a guest's epoch yield), then is ready.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn a_half_that_wakes_itself_yields_to_the_runtime() {
        let count = Arc::new(Count::default());
        let mut run = std::pin::pin!(run(|| YieldOnce(false), Arc::new(Side::default())));
        assert!(poll_once(run.as_mut(), &count).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(poll_once(run, &count).is_ready());
    }

    /// Wait as `outbox`'s writer does, its wakes counted by `count`.
    fn watch(outbox: &Outbox, count: &Arc<Count>) {
        let waker = Waker::from(count.clone());
        let wanted = std::pin::pin!(outbox.wanted(false));
        assert!(wanted.poll(&mut Context::from_waker(&waker)).is_pending());
    }

    /// What a guest publishes in one turn is woken once, as the turn ends
    /// (the guest waits); a yield mid-turn holds it through one tick only.
    #[test]
    fn a_turns_publishes_are_woken_as_it_ends() {
        let writer = Arc::new(Count::default());
        let outbox = Arc::new(Outbox::new(1, 64, 1 << 20));
        watch(&outbox, &writer);
        let side = Arc::new(Side::default());
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let guest = {
            let (side, outbox, writer) = (side.clone(), outbox.clone(), writer.clone());
            async move {
                for n in 0..3u8 {
                    let frame = bytes::Bytes::from(vec![n]);
                    let publish = |cork: &mut Cork| outbox.offer_corked(frame, cork).unwrap();
                    side.publish(publish).await;
                }
                assert_eq!(writer.0.load(Ordering::SeqCst), 0, "corked mid-turn");
                wait.await.unwrap();
                // Computing on after a publish: two epoch yields.
                let frame = bytes::Bytes::from_static(b"late");
                side.publish(|cork| outbox.offer_corked(frame, cork).unwrap())
                    .await;
                YieldOnce(false).await;
                assert_eq!(writer.0.load(Ordering::SeqCst), 1, "held through one tick");
                YieldOnce(false).await;
                assert_eq!(writer.0.load(Ordering::SeqCst), 2, "woken at the second");
                // Publishing on between yields: held for HOLD_TICKS.
                outbox.take_all();
                watch(&outbox, &writer);
                for tick in 1..=HOLD_TICKS {
                    let frame = bytes::Bytes::from_static(b"more");
                    side.publish(|cork| outbox.offer_corked(frame, cork).unwrap())
                        .await;
                    assert_eq!(writer.0.load(Ordering::SeqCst), 2, "tick {tick}");
                    YieldOnce(false).await;
                }
                assert_eq!(writer.0.load(Ordering::SeqCst), 3, "woken at the last");
            }
        };
        let task = Arc::new(Count::default());
        let mut run = std::pin::pin!(run(|| guest, side));
        assert!(poll_once(run.as_mut(), &task).is_pending());
        assert_eq!(
            writer.0.load(Ordering::SeqCst),
            1,
            "woken once, as it waits"
        );
        assert_eq!(outbox.take_all().len(), 3);
        watch(&outbox, &writer);
        go_on.send(()).unwrap();
        while poll_once(run.as_mut(), &task).is_pending() {}
    }

    #[test]
    fn the_task_waits_for_the_pump_after_the_guest_returns() {
        let side = Arc::new(Side::default());
        let (end_pump, pump_ends) = tokio::sync::oneshot::channel::<()>();
        side.put(move || Box::pin(async move { pump_ends.await.unwrap() }));
        let count = Arc::new(Count::default());
        let mut run = std::pin::pin!(run(|| async {}, side));
        assert!(poll_once(run.as_mut(), &count).is_pending());
        end_pump.send(()).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(poll_once(run, &count).is_ready());
    }

    /// A handler-world connection's task is mostly its guest's future
    /// (about 4 KB in a release build): `run` holds it once, not twice.
    #[test]
    fn the_guests_future_takes_its_room_once() {
        let guest = || async {
            let kept = [7u8; 4096];
            std::future::pending::<()>().await;
            kept[100]
        };
        let alone = std::mem::size_of_val(&guest());
        let run = run(guest, Arc::new(Side::default()));
        let whole = std::mem::size_of_val(&run);
        assert!(alone >= 4096, "{alone}");
        assert!(
            whole < alone + 512,
            "run is {whole} bytes around a {alone}-byte guest"
        );
    }
}
