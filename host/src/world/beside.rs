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
use std::sync::atomic::{AtomicBool, Ordering};
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
/// its publishing turn, to end as the guest's turn does.
#[derive(Default)]
pub struct Side {
    pump: Mutex<Option<Start>>,
    publishing: Mutex<Publishing>,
}

/// A guest's publishing turn: the writers its publishes and broadcasts
/// queued to, woken as the turn ends ([`Side::publish`]).
#[derive(Default)]
struct Publishing {
    fanout: Fanout,
    /// Publishes this turn (past [`TURN_PUBLISHES`] it ends)...
    publishes: usize,
    /// ...yields (epoch ticks) it has gone on through...
    ticks: u8,
    /// ...and whether the guest published since the last.
    fresh: bool,
}

/// Publishes a turn holds corked, at most: as an event batch's 64 events.
/// So a writer is owed at most this many frames by one publisher's turn
/// (and as many by the turn before, whose round may still be waking it),
/// well below `--hub-queue`'s 1,024: a client that floods a room's
/// publisher does not get the room evicted. (Several flooded publishers
/// holding turns at once are bounded by the outbox: a writer with a
/// quarter of its queue waiting is woken whatever holds it.)
const TURN_PUBLISHES: usize = 64;

/// Epoch ticks ([`crate::wasm::sandbox::TICK`] of a guest's running) a
/// turn goes on through while the guest publishes between them, at most:
/// 64 publishes to 10,000 take ~30 ms. A tick with no publish ends the
/// turn, so a guest that computes on after publishing has its writers
/// woken at its second tick at most. Ending the turn at every tick, a
/// fan-out to 10,000 (a few publishes a tick) went out at 2.8 frames a
/// write; at the second, 4.
const HOLD_TICKS: u8 = 8;

impl Publishing {
    /// The turn is over: wake what it queued (a fan-out past [`ROUND_PAST`]
    /// by a round) and start the next. The connection's cork keeps no room
    /// for its largest fan-out (80 KiB at 10,000 writers).
    fn end(&mut self) {
        if self.publishes > 0 {
            self.fanout.uncork(ROUND_PAST);
            self.fanout.cork().release_room();
        }
        self.publishes = 0;
        self.ticks = 0;
        self.fresh = false;
    }
}

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
    /// the cork, once the round before the latest is over ([`Fanout`]).
    /// A small fan-out's writers (fewer than
    /// [`crate::ws::outbox::CORK_AT`]) are woken at
    /// once; a large one's as the guest's turn ends ([`run`]), with those
    /// of the turn's other publishes: a guest that finds several messages
    /// waiting publishes them all in one turn, and a writer takes them in
    /// one write.
    pub async fn publish<R>(&self, queue: impl FnOnce(&mut Cork) -> R) -> R {
        let round = self.publishing().fanout.take_round_to_wait_for();
        if let Some(round) = round {
            wait_for_round(round).await;
        }
        let mut turn = self.publishing();
        // Counted first: should `queue` panic, the turn still wakes what
        // it queued.
        turn.publishes += 1;
        turn.fresh = true;
        let queued = queue(turn.fanout.cork());
        turn.fanout.cork().uncork_small();
        if turn.publishes >= TURN_PUBLISHES {
            turn.end();
        }
        queued
    }

    /// The guest's turn is over (it waits or has returned).
    fn turn_over(&self) {
        self.publishing().end();
    }

    /// The guest yielded mid-turn (its epoch tick): the turn goes on while
    /// it publishes between yields, for [`HOLD_TICKS`] at most.
    fn guest_yielded(&self) {
        let mut turn = self.publishing();
        if turn.publishes == 0 {
            return;
        }
        turn.ticks += 1;
        if !std::mem::take(&mut turn.fresh) || turn.ticks >= HOLD_TICKS {
            turn.end();
        }
    }

    fn publishing(&self) -> std::sync::MutexGuard<'_, Publishing> {
        self.publishing.lock().unwrap_or_else(|e| e.into_inner())
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
                        side.guest_yielded();
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

    /// A room of `CORK_AT` writers (a large fan-out), each waiting as its
    /// pump does, their wakes counted together.
    struct Room {
        outboxes: Vec<Arc<Outbox>>,
        wakes: Arc<Count>,
    }

    impl Room {
        fn new(writers: usize) -> Self {
            let wakes = Arc::new(Count::default());
            let outboxes = (0..writers)
                .map(|_| Arc::new(Outbox::new(1, 1024, 1 << 20)))
                .collect();
            let room = Room { outboxes, wakes };
            room.written();
            room
        }

        /// Every writer has written what it was woken for, and waits again.
        fn written(&self) {
            for outbox in &self.outboxes {
                outbox.take_all();
                watch(outbox, &self.wakes);
            }
        }

        fn woken(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst) / self.outboxes.len()
        }

        async fn publish(&self, side: &Side) {
            let frame = bytes::Bytes::from_static(b"x");
            side.publish(|cork: &mut Cork| {
                for outbox in &self.outboxes {
                    outbox.offer_corked(frame.clone(), cork).unwrap();
                }
            })
            .await
        }
    }

    /// What a guest publishes to many in one turn is woken once, as the
    /// turn ends: it waits, returns, has published `TURN_PUBLISHES`, or
    /// yields (its epoch tick) with no publish since its last yield, or
    /// for the `HOLD_TICKS`th time. A small fan-out is woken at once.
    #[test]
    fn a_turns_publishes_are_woken_as_it_ends() {
        let room = Arc::new(Room::new(crate::ws::outbox::CORK_AT));
        let pair = Arc::new(Room::new(2));
        let side = Arc::new(Side::default());
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let guest = {
            let (side, room, pair) = (side.clone(), room.clone(), pair.clone());
            async move {
                for _ in 0..3 {
                    room.publish(&side).await;
                }
                pair.publish(&side).await;
                assert_eq!(pair.woken(), 1, "a small fan-out at once");
                assert_eq!(room.woken(), 0, "a large one corked mid-turn");
                wait.await.unwrap();
                // Computing on after a publish: two epoch yields.
                room.publish(&side).await;
                YieldOnce(false).await;
                assert_eq!(room.woken(), 1, "held through one tick");
                YieldOnce(false).await;
                assert_eq!(room.woken(), 2, "woken at the second");
                // Publishing on between yields: held for HOLD_TICKS.
                room.written();
                for tick in 1..=HOLD_TICKS {
                    room.publish(&side).await;
                    assert_eq!(room.woken(), 2, "tick {tick}");
                    YieldOnce(false).await;
                }
                assert_eq!(room.woken(), 3, "woken at the last tick");
                // Publishing on without a yield: TURN_PUBLISHES at most.
                room.written();
                for publish in 1..TURN_PUBLISHES {
                    room.publish(&side).await;
                    assert_eq!(room.woken(), 3, "publish {publish}");
                }
                room.publish(&side).await;
                assert_eq!(room.woken(), 4, "woken at the last publish");
                // And returning after a publish.
                room.written();
                room.publish(&side).await;
            }
        };
        let task = Arc::new(Count::default());
        // Kept: a dropped `Side` wakes its cork's writers all the same.
        let kept = side.clone();
        let mut run = std::pin::pin!(run(|| guest, side));
        assert!(poll_once(run.as_mut(), &task).is_pending());
        assert_eq!(room.woken(), 1, "woken once, as it waits");
        assert_eq!(room.outboxes[0].take_all().len(), 3);
        room.written();
        go_on.send(()).unwrap();
        while poll_once(run.as_mut(), &task).is_pending() {}
        assert_eq!(room.woken(), 5, "woken as it returned");
        drop(kept);
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
