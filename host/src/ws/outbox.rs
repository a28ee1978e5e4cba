//! What is queued for one connection's writer (its socket task): framed
//! messages from other parties (hub, topics, an event guest's sends), a
//! handler guest's own pushes, and a request to close.
//!
//! Only the socket task writes the socket; everyone else queues frames here
//! and wakes it. Other parties' frames are bounded (`capacity` messages and
//! `byte_cap` bytes, at least one message whatever its size): a
//! connection that does not keep up is evicted (its writer sees
//! [`Outbox::is_evicted`] and closes it with 1008) instead of holding an unbounded
//! backlog or stalling the sender. A handler guest's own pushes are not
//! evicted but wait ([`Outbox::room`]) while more than `backpressure` bytes
//! are queued; while its fragmented message is under way, other parties'
//! frames are held back so none lands between its fragments (counted
//! toward eviction, not toward the guest's backpressure: only its last
//! part releases them). An empty
//! queue holds no allocation, so an idle connection's outbox costs a few words.

use crate::bindings::ConnectionId;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::task::AtomicWaker;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the queue overflowed; the connection was evicted")]
    Overflowed,
    #[error("the connection was evicted or is closing")]
    Closed,
}

/// Whether a queued frame needs its writer woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The queue stopped being empty (until the writer has taken it,
    /// further frames find it woken already).
    First,
    /// Other parties' frames have just reached a quarter of the frames or
    /// bytes that evict.
    Filling,
    No,
}

/// Where a frame was queued relative to the backpressure limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Below,
    /// Past the backpressure limit: the writer reports when it has drained.
    BackedUp,
}

/// Writers a batch must have queued to for them to wait for the batch's
/// end; fewer are woken at once (a small room's latency stays low).
pub const CORK_AT: usize = 64;

/// Writers to wake later: an event instance queues what one batch of events
/// sends and publishes, then wakes each writer once, so a writer takes all
/// that the batch queued for it in one write (as uWS corks its sockets for
/// one turn of its loop). Uncorks on drop.
#[derive(Debug, Default)]
pub struct Cork {
    writers: Vec<Arc<Outbox>>,
    /// How many of `writers` were there at the last [`Cork::uncork_small`]:
    /// those after were queued to since.
    mark: usize,
}

impl Cork {
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }

    /// Wake the writers queued to since the last call if they are few (an
    /// echo, a small room: waiting for the batch would only add its
    /// latency); a large fan-out's ([`CORK_AT`] writers or more) stay
    /// corked for the batch's end, where each takes all its frames at
    /// once. True when some stay corked.
    pub fn uncork_small(&mut self) -> bool {
        if self.writers.len() - self.mark < CORK_AT {
            wake(&self.writers[self.mark..]);
            self.writers.truncate(self.mark);
        }
        self.mark = self.writers.len();
        !self.writers.is_empty()
    }

    /// Let go of the room a large fan-out left (a cork of its own per
    /// connection, the handler world's, should not keep it).
    pub fn release_room(&mut self) {
        if self.writers.is_empty() && self.writers.capacity() > CORK_AT {
            self.writers = Vec::new();
        }
    }

    /// Wake every writer queued to since the last uncork.
    pub fn uncork(&mut self) {
        self.mark = 0;
        wake(&self.writers);
        self.writers.clear();
    }

    /// [`Cork::uncork`] at the end of a publisher's turn (an event
    /// instance's batch, a handler's or coro instance's publishing turn):
    /// more than `past` writers (the event world's: [`WAKE_SLICE`]) are
    /// woken by a task of their own in [`ROUND_TURNS`] slices at most, one
    /// per turn of the loop ([`Round`]), which is returned. Its [`Fanout`]
    /// waits for it ([`wait_for_round`]) before the turn after next, so the
    /// publisher never runs more than one turn ahead of its writers.
    pub fn uncork_in_slices(&mut self, past: usize) -> Option<tokio::task::JoinHandle<()>> {
        if self.writers.len() > past
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            self.mark = 0;
            let fresh = Vec::with_capacity(self.writers.len());
            let writers = std::mem::replace(&mut self.writers, fresh);
            return Some(runtime.spawn(Round { writers, next: 0 }.run()));
        }
        self.uncork();
        None
    }
}

/// Wait until `round` (from [`Cork::uncork_in_slices`]) has woken all its
/// writers; a panic in it is logged (its writers were woken as it
/// unwound: [`Round`]'s `Drop`).
pub async fn wait_for_round(round: tokio::task::JoinHandle<()>) {
    round_ended(round.await);
}

/// A round has ended: log its panic, if it had one.
fn round_ended(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!("waking a fan-out's writers panicked: {e}");
    }
}

/// The fan-outs of one publisher, in turns (an event instance's batches, a
/// handler guest's or a coro instance's publishing turns): what its
/// publishes queue during a turn is woken at the turn's end, more than
/// `past` writers by a round ([`Cork::uncork_in_slices`]). The next turn
/// runs while that round wakes its writers (those not yet woken take both
/// turns' frames in one write); the turn after waits for the round to end
/// before it publishes (an event instance: before it takes the batch), so
/// the publisher never runs more than one turn ahead of its writers.
#[derive(Debug, Default)]
pub struct Fanout {
    cork: Cork,
    /// The round the latest turn started...
    latest: Option<tokio::task::JoinHandle<()>>,
    /// ...and the one before it, which the next publish waits for.
    before: Option<tokio::task::JoinHandle<()>>,
}

impl Fanout {
    /// The round a publish must wait for before it queues: the one before
    /// the latest (taken: the turn's first publish waits for it; an event
    /// instance, as its batch ends: [`Fanout::end_batch`]).
    pub fn take_round_to_wait_for(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.before.take()
    }

    /// What a publish queues to, until the turn is over.
    pub fn cork(&mut self) -> &mut Cork {
        &mut self.cork
    }

    /// The turn is over: wake what it queued, more than `past` writers by a
    /// round, and make that round the latest (the one before it is now the
    /// one the next turn waits for; a finished one is not kept).
    pub fn uncork(&mut self, past: usize) {
        // What was owed before was taken by the turn's first publish (an
        // event instance's: as its batch before ended).
        debug_assert!(
            self.before.is_none(),
            "a publishing turn takes what is owed before it ends"
        );
        self.before = self.latest.take().and_then(|round| {
            if !round.is_finished() {
                return Some(round);
            }
            if let Some(ended) = round.now_or_never() {
                round_ended(ended);
            }
            None
        });
        self.latest = self.cork.uncork_in_slices(past);
    }

    /// An event instance's batch is over: [`Fanout::uncork`], then wait
    /// for the round before the latest at once (an event instance takes
    /// what is owed before its next batch, not at its next publish).
    pub async fn end_batch(&mut self, past: usize) {
        self.uncork(past);
        if let Some(before) = self.take_round_to_wait_for() {
            wait_for_round(before).await;
        }
    }
}

/// Wake each of `writers`.
fn wake(writers: &[Arc<Outbox>]) {
    for outbox in writers {
        outbox.wake.wake();
    }
}

/// Writers a large uncork wakes per turn of its loop, at least.
pub const WAKE_SLICE: usize = 256;

/// Writers a publishing turn that is not a batch of events (a coro
/// instance's turn, a handler guest's publish) must have corked for them
/// to be woken in slices; fewer are woken at once. Higher than the event
/// world's [`WAKE_SLICE`]: such turns end whenever the guest waits, often
/// after a publish or two, so rounds start far more often than once per
/// event batch, and each holds the turn after next until it has ended. At
/// 1,000 subscribers, rounds measured 0.90-0.96x waking all at once in the
/// coro world (sustained) and 0.41x in the handler world (burst); at
/// 10,000, 1.20-1.25x in the coro world.
pub const ROUND_PAST: usize = 1024;

/// Turns of the loop a round of wakes takes, at most: a guest that holds
/// the loop's thread delays the round once per turn.
pub const ROUND_TURNS: usize = 8;

/// Writers being woken a slice at a time, letting the loop's other tasks
/// run between slices. Woken all at once, 10,000 writers fill the loop's
/// queue ahead of the publisher's socket and instance, so the next
/// messages, arriving meanwhile, wait until every writer has written the
/// first one alone: a write each. Woken in slices, the writers not yet
/// woken take the next messages too, in the same write. Those not yet
/// woken when a round is dropped (its loop shutting down) are woken then.
struct Round {
    writers: Vec<Arc<Outbox>>,
    /// The first not yet woken.
    next: usize,
}

impl Round {
    async fn run(mut self) {
        let slice = WAKE_SLICE.max(self.writers.len().div_ceil(ROUND_TURNS));
        while self.next < self.writers.len() {
            let end = (self.next + slice).min(self.writers.len());
            wake(&self.writers[self.next..end]);
            self.next = end;
            if self.next < self.writers.len() {
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        wake(&self.writers[self.next..]);
    }
}

impl Drop for Cork {
    fn drop(&mut self) {
        self.uncork();
    }
}

/// How an event guest asked its socket to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Write what is queued, then a Close frame.
    Close { code: u16, reason: String },
    /// Drop TCP at once.
    Terminate,
}

#[derive(Debug)]
pub struct Outbox {
    /// The connection's id, for the log.
    id: ConnectionId,
    state: Mutex<State>,
    /// Wakes the writer: a frame, an ending or an eviction. It keeps one
    /// waker, so only the writer (the socket's pump, in whose future every
    /// write runs) may wait on it; what wakes it is state it checks after
    /// registering. A `Notify` linked and unlinked a waiter per turn.
    wake: AtomicWaker,
    /// Wakes a handler guest waiting for room: frames taken, or the end.
    space: Notify,
    evicted: AtomicBool,
    /// Set by the server's sweep (`ws::alarms`): the keepalive alarm is
    /// due or the server is shutting down; the writer takes it.
    nudged: AtomicBool,
    capacity: usize,
    byte_cap: usize,
    backpressure: usize,
}

/// What a recovered frame counts for beyond its bytes: its handle in the
/// queue (the bytes themselves are the history's, shared).
pub const RECOVERED_FRAME_COST: usize = 64;

/// Frames taken by the writer at once. Most bursts to one connection are a
/// frame or two: they need no allocation.
pub type Batch = SmallVec<[Bytes; 2]>;

#[derive(Debug, Default)]
struct State {
    frames: Batch,
    /// Bytes in `frames` and `held`.
    bytes: usize,
    /// Other parties' frames in `frames` and `held` (the evicting count)...
    others: usize,
    /// ...and their bytes.
    others_bytes: usize,
    /// Other parties' frames held back while a fragmented push is under way
    /// (a `Vec`, 48 bytes smaller than a `Batch` in every socket: rare).
    held: Vec<Bytes>,
    /// A handler guest's fragmented message is under way.
    fragmenting: bool,
    /// The socket task has ended: nothing queued will be written.
    finished: bool,
    /// The Close frame asked for by [`Outbox::end`] has been written.
    close_written: bool,
    /// A sender saw `BackedUp`: report the next time the queue empties.
    drain_owed: bool,
    /// Boxed: once in a connection's life, and 24 bytes smaller in every
    /// idle connection's outbox.
    ending: Option<Box<Ending>>,
}

impl Outbox {
    /// Connection `id`'s outbox of at most `capacity` frames, backed up
    /// past `backpressure` bytes.
    pub fn new(id: ConnectionId, capacity: usize, backpressure: usize) -> Self {
        Outbox {
            id,
            state: Mutex::default(),
            wake: AtomicWaker::new(),
            space: Notify::new(),
            evicted: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
            capacity,
            byte_cap: usize::MAX,
            backpressure,
        }
    }

    /// Evict, too, past `bytes` of other parties' frames queued (one frame
    /// of any size is always taken).
    pub fn with_byte_cap(mut self, bytes: usize) -> Self {
        self.byte_cap = bytes;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `frame` and wake the writer. Past `capacity` the connection is
    /// evicted and the frame refused; a closing or evicted connection
    /// refuses everything.
    pub fn offer(&self, frame: Bytes) -> Result<Queued, Refused> {
        let (queued, wake) = self.queue(frame)?;
        if wake != Wake::No {
            self.wake.wake();
        }
        Ok(queued)
    }

    /// Queue `frame`; the writer is woken when `cork` is uncorked.
    pub fn offer_corked(
        self: &Arc<Self>,
        frame: Bytes,
        cork: &mut Cork,
    ) -> Result<Queued, Refused> {
        let (queued, wake) = self.queue(frame)?;
        match wake {
            Wake::First => cork.writers.push(self.clone()),
            // Woken now, whatever the cork: several publishers each
            // holding a turn's frames for it would otherwise have it
            // evicted before any turn ends.
            Wake::Filling => self.wake.wake(),
            Wake::No => {}
        }
        Ok(queued)
    }

    /// A handler guest's fragmented message is under way.
    pub fn is_fragmenting(&self) -> bool {
        self.state().fragmenting
    }

    /// Bytes of other parties' frames this outbox may still take: the room
    /// for a recovery, each frame counted with [`RECOVERED_FRAME_COST`].
    pub fn recovery_room(&self) -> usize {
        let state = self.state();
        self.byte_cap.saturating_sub(state.others_bytes)
    }

    /// Queue a recovery's frames (a topic's messages a subscriber missed,
    /// [`crate::pubsub::topics::Subscriptions::subscribe_from`]): all of
    /// them, or none when they do not fit `--hub-queue-bytes` with what
    /// waits already (each frame counted with [`RECOVERED_FRAME_COST`]).
    /// Bounded by bytes alone, not by the frame count: a client back from a
    /// minute away in a busy topic gets its thousands of small messages
    /// without being evicted by the next live one. The frames are the ones
    /// the topic's history keeps (shared, not copied).
    pub fn offer_recovered(&self, frames: Vec<Bytes>) -> Result<(), Refused> {
        let raw: usize = frames.iter().map(Bytes::len).sum();
        let bytes = raw + frames.len() * RECOVERED_FRAME_COST;
        let mut state = self.state();
        if self.is_evicted() || state.ending.is_some() || state.finished {
            return Err(Refused::Closed);
        }
        if state.others_bytes + bytes > self.byte_cap {
            return Err(Refused::Overflowed);
        }
        if frames.is_empty() {
            return Ok(());
        }
        // Never after a fragmented push's first part (the caller checks
        // [`Outbox::is_fragmenting`]): held there, they could not drain.
        if state.fragmenting {
            return Err(Refused::Overflowed);
        }
        state.others_bytes += bytes;
        state.bytes += raw;
        let wake = state.frames.is_empty();
        state.frames.extend(frames);
        drop(state);
        if wake {
            self.wake.wake();
        }
        Ok(())
    }

    /// Queue `frame`; whether the writer needs waking ([`Wake`]).
    fn queue(&self, frame: Bytes) -> Result<(Queued, Wake), Refused> {
        let mut state = self.state();
        if self.is_evicted() || state.ending.is_some() || state.finished {
            return Err(Refused::Closed);
        }
        let over_bytes = state.others > 0 && state.others_bytes + frame.len() > self.byte_cap;
        if state.others >= self.capacity || over_bytes {
            drop(state);
            self.evict();
            return Err(Refused::Overflowed);
        }
        let quarter = self.byte_cap / 4;
        let filling = state.others + 1 == (self.capacity / 4).max(1)
            || (state.others_bytes < quarter && state.others_bytes + frame.len() >= quarter);
        state.bytes += frame.len();
        state.others += 1;
        state.others_bytes += frame.len();
        if state.fragmenting {
            state.held.push(frame);
            return Ok((Queued::Below, Wake::No));
        }
        state.frames.push(frame);
        let queued = if state.bytes > self.backpressure {
            state.drain_owed = true;
            Queued::BackedUp
        } else {
            Queued::Below
        };
        // Filling first: a first frame that fills a quarter on its own
        // (a large message, a small `--hub-queue`) must not wait in a cork.
        let wake = if filling {
            Wake::Filling
        } else if state.frames.len() == 1 {
            Wake::First
        } else {
            Wake::No
        };
        Ok((queued, wake))
    }

    /// Queue a handler guest's own frame, in one or more parts written one
    /// after the other; `fragmenting`: a fragmented message is under way
    /// after it (other parties' frames wait until it ends). Never evicts:
    /// the guest waits for [`Outbox::room`] instead.
    pub fn push(&self, parts: Batch, fragmenting: bool) -> Result<(), Refused> {
        let mut state = self.state();
        if self.is_evicted() || state.ending.is_some() || state.finished {
            return Err(Refused::Closed);
        }
        let wake = state.frames.is_empty();
        state.bytes += parts.iter().map(Bytes::len).sum::<usize>();
        state.frames.extend(parts);
        if state.fragmenting && !fragmenting {
            let held = std::mem::take(&mut state.held);
            state.frames.extend(held);
        }
        state.fragmenting = fragmenting;
        drop(state);
        if wake {
            self.wake.wake();
        }
        Ok(())
    }

    /// More than the backpressure limit is queued (and the socket task
    /// goes on): a push waits for [`Outbox::room`].
    pub fn is_backed_up(&self) -> bool {
        let state = self.state();
        // Frames held for a fragmented push wait for the guest's next part:
        // counted here, they would have it wait for itself.
        let held: usize = state.held.iter().map(Bytes::len).sum();
        state.bytes - held > self.backpressure && !state.finished
    }

    /// Wait until at most `backpressure` bytes are queued, or the socket
    /// task has ended. Cancel-safe.
    pub async fn room(&self) {
        loop {
            let space = self.space.notified();
            if !self.is_backed_up() {
                return;
            }
            space.await;
        }
    }

    /// Take every frame that may be written now (the queue's own memory
    /// goes with them: idle connections hold none).
    pub fn take_all(&self) -> Batch {
        let mut state = self.state();
        let held: usize = state.held.iter().map(Bytes::len).sum();
        state.bytes = held;
        state.others = state.held.len();
        state.others_bytes = held;
        let frames = std::mem::take(&mut state.frames);
        drop(state);
        self.space.notify_waiters();
        frames
    }

    /// The socket task has ended: refuse frames from now on and let a guest
    /// waiting for room go on (its pushes fail).
    pub fn finish(&self) {
        self.state().finished = true;
        self.space.notify_waiters();
    }

    pub fn is_finished(&self) -> bool {
        self.state().finished
    }

    /// The writer has written the Close frame asked for.
    pub fn close_was_written(&self) {
        self.state().close_written = true;
        self.space.notify_waiters();
    }

    /// Wait until the Close frame asked for is written, or the socket task
    /// has ended. Cancel-safe.
    pub async fn close_written(&self) {
        loop {
            let space = self.space.notified();
            {
                let state = self.state();
                if state.close_written || state.finished {
                    return;
                }
            }
            space.await;
        }
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn buffered(&self) -> usize {
        self.state().bytes
    }

    /// True once after the queue emptied following a `BackedUp`.
    pub fn take_drain(&self) -> bool {
        let mut state = self.state();
        let owed = state.drain_owed && state.frames.is_empty();
        if owed {
            state.drain_owed = false;
        }
        owed
    }

    /// Ask the writer to end the connection: the first Close request wins,
    /// and a terminate overrides it (dropping TCP at once is always possible).
    pub fn end(&self, ending: Ending) {
        let mut state = self.state();
        if state.ending.is_none() || ending == Ending::Terminate {
            state.ending = Some(Box::new(ending));
            drop(state);
            self.wake.wake();
        }
    }

    pub fn ending(&self) -> Option<Ending> {
        self.state().ending.as_deref().cloned()
    }

    /// Nothing waits to be written (held frames wait for the guest, not
    /// the writer), no ending, no eviction.
    pub fn is_quiet(&self) -> bool {
        let state = self.state();
        state.frames.is_empty() && state.ending.is_none() && !self.is_evicted()
    }

    /// Wait until there is something for the writer: a frame, an ending,
    /// an eviction or a nudge. Cancel-safe; the writer's alone (see `wake`).
    pub(crate) async fn ready(&self) {
        self.wait_until(|outbox| outbox.nudged.load(Ordering::Acquire) || !outbox.is_quiet())
            .await
    }

    /// Wake the writer to look at its keepalive alarm and the shutdown flag.
    pub fn nudge(&self) {
        self.nudged.store(true, Ordering::Release);
        self.wake.wake();
    }

    /// Whether the writer was nudged since it last asked.
    pub fn take_nudge(&self) -> bool {
        // A load first: asked every turn, rarely true.
        self.nudged.load(Ordering::Acquire) && self.nudged.swap(false, Ordering::AcqRel)
    }

    /// Mark the connection as not keeping up and wake its writer.
    pub fn evict(&self) {
        if !self.evicted.swap(true, Ordering::AcqRel) {
            crate::meters::evicted();
            tracing::warn!(
                conn = self.id,
                "connection evicted: {} messages or {} bytes queued and not taken",
                self.capacity,
                self.byte_cap
            );
            self.wake.wake();
        }
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// A write under way must be given up: evicted, or terminated.
    pub fn is_abandoned(&self) -> bool {
        self.is_evicted() || self.state().ending.as_deref() == Some(&Ending::Terminate)
    }

    /// Wait until a write under way must be given up. Cancel-safe; the
    /// writer's alone (see `wake`).
    pub(crate) async fn abandoned(&self) {
        self.wait_until(Outbox::is_abandoned).await
    }

    /// Wait until the writer has work: frames or an ending to write, or,
    /// once `closing`, a write to give up. Cancel-safe; the writer's alone
    /// (see `wake`).
    pub(crate) async fn wanted(&self, closing: bool) {
        match closing {
            false => self.ready().await,
            true => self.abandoned().await,
        }
    }

    /// Wait until `holds` is true of this outbox, checking it again at every
    /// wake-up (the writer's one waker serves frames, endings and
    /// evictions alike).
    async fn wait_until(&self, holds: impl Fn(&Outbox) -> bool) {
        std::future::poll_fn(|cx| {
            // Listening before checking: a wake-up between the two is kept.
            self.wake.register(cx.waker());
            if holds(self) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn overflow_evicts_and_refuses_from_then_on() {
        let outbox = Outbox::new(1, 2, 1 << 20);
        assert_eq!(outbox.offer(frame(1)), Ok(Queued::Below));
        assert_eq!(outbox.offer(frame(1)), Ok(Queued::Below));
        assert_eq!(outbox.offer(frame(1)), Err(Refused::Overflowed));
        assert!(outbox.is_evicted());
        assert_eq!(outbox.take_all().len(), 2);
        assert_eq!(outbox.offer(frame(1)), Err(Refused::Closed));
    }

    #[test]
    fn backpressure_owes_one_drain_once_empty() {
        let outbox = Outbox::new(1, 10, 100);
        assert_eq!(outbox.offer(frame(60)), Ok(Queued::Below));
        assert_eq!(outbox.offer(frame(60)), Ok(Queued::BackedUp));
        assert_eq!(outbox.buffered(), 120);
        assert!(!outbox.take_drain(), "not empty yet");
        outbox.take_all();
        assert_eq!(outbox.buffered(), 0);
        assert!(outbox.take_drain());
        assert!(!outbox.take_drain(), "owed once");
    }

    #[tokio::test]
    async fn a_corked_writer_is_woken_once_at_uncork() {
        let outbox = Arc::new(Outbox::new(1, 10, 100));
        let mut cork = Cork::default();
        for _ in 0..3 {
            outbox.offer_corked(frame(1), &mut cork).unwrap();
        }
        assert_eq!(cork.writers.len(), 1, "one wake-up owed per writer");
        // Frames are there, so the writer finds them even before the wake.
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.ready())
            .await
            .expect("ready with frames queued");
        cork.uncork();
        assert!(cork.writers.is_empty());
        assert_eq!(outbox.take_all().len(), 3);
    }

    /// Counts the wakes of the writers it stands for.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `writers` outboxes, each with a frame corked in `cork` and a
    /// writer waiting, whose wakes `wakes` counts.
    fn corked_writers(writers: usize, cork: &mut Cork) -> Arc<Wakes> {
        let wakes = Arc::new(Wakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        for id in 0..writers {
            let outbox = Arc::new(Outbox::new(id as u64, 10, 100));
            outbox.wake.register(&waker);
            outbox.offer_corked(frame(1), cork).unwrap();
        }
        wakes
    }

    // On tokio's current-thread runtime (`#[tokio::test]`'s): a task that
    // yields runs again after the tasks queued before it, so one
    // `yield_now` here lets the round wake exactly one slice.
    #[tokio::test]
    async fn a_large_fan_out_is_woken_a_slice_per_turn() {
        let mut cork = Cork::default();
        let wakes = corked_writers(WAKE_SLICE * 2 + 10, &mut cork);
        let round = cork.uncork_in_slices(WAKE_SLICE).expect("woken by a task");
        assert!(cork.is_empty());
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            0,
            "not before the task runs"
        );
        // One turn of the loop: the round wakes one slice, then lets the
        // others (this test) run.
        tokio::task::yield_now().await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), WAKE_SLICE);
        round.await.unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), WAKE_SLICE * 2 + 10);
    }

    #[tokio::test]
    async fn a_fan_out_of_a_slice_or_less_is_woken_at_once() {
        let mut cork = Cork::default();
        let wakes = corked_writers(WAKE_SLICE, &mut cork);
        assert!(cork.uncork_in_slices(WAKE_SLICE).is_none());
        assert_eq!(wakes.0.load(Ordering::SeqCst), WAKE_SLICE);
        let wakes = corked_writers(WAKE_SLICE + 1, &mut cork);
        cork.uncork_in_slices(WAKE_SLICE)
            .expect("one more: by a task")
            .await
            .unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), WAKE_SLICE + 1);
    }

    #[tokio::test]
    async fn a_huge_fan_out_takes_a_bounded_number_of_turns() {
        let mut cork = Cork::default();
        let writers = WAKE_SLICE * ROUND_TURNS * 3;
        let wakes = corked_writers(writers, &mut cork);
        let round = cork.uncork_in_slices(WAKE_SLICE).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), writers / ROUND_TURNS);
        round.await.unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), writers);
    }

    /// A handler guest's turns: the next publishes while the latest's round
    /// wakes its writers, the one after waits for that round to end.
    #[tokio::test]
    async fn a_turn_waits_for_the_round_before_the_latest() {
        let mut fanout = Fanout::default();
        assert!(fanout.take_round_to_wait_for().is_none());
        let first = corked_writers(ROUND_PAST + 1, fanout.cork());
        fanout.uncork(ROUND_PAST);
        // The second turn need not wait: the first round is the latest.
        assert!(fanout.take_round_to_wait_for().is_none());
        let second = corked_writers(ROUND_PAST + 1, fanout.cork());
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "no turn of the loop yet");
        fanout.uncork(ROUND_PAST);
        // The third waits for the first round, whole.
        let round = fanout.take_round_to_wait_for().expect("the first round");
        wait_for_round(round).await;
        assert_eq!(first.0.load(Ordering::SeqCst), ROUND_PAST + 1);
        assert!(
            fanout.take_round_to_wait_for().is_none(),
            "one publish waits"
        );
        // A small fan-out is woken as its turn ends.
        let small = corked_writers(2, fanout.cork());
        fanout.uncork(ROUND_PAST);
        assert_eq!(small.0.load(Ordering::SeqCst), 2);
        // The second round ran beside the first: over, it is not kept.
        assert_eq!(second.0.load(Ordering::SeqCst), ROUND_PAST + 1);
        assert!(fanout.take_round_to_wait_for().is_none());
    }

    /// An event instance's batches: the second ends once the first's round
    /// has woken every writer, not the second's own; the third, once the
    /// second's has. (A round wakes a slice per turn of the loop: the
    /// first's takes two, the second's `ROUND_TURNS`.)
    #[tokio::test]
    async fn a_batch_ends_once_the_round_before_the_latest_has() {
        let most = WAKE_SLICE * ROUND_TURNS;
        let mut fanout = Fanout::default();
        let first = corked_writers(WAKE_SLICE + 1, fanout.cork());
        fanout.end_batch(WAKE_SLICE).await;
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "no turn of the loop yet");
        let second = corked_writers(most, fanout.cork());
        fanout.end_batch(WAKE_SLICE).await;
        assert_eq!(first.0.load(Ordering::SeqCst), WAKE_SLICE + 1);
        let woken = second.0.load(Ordering::SeqCst);
        assert!(woken < most, "one batch ahead: {woken} woken");
        let _third = corked_writers(1, fanout.cork());
        fanout.end_batch(WAKE_SLICE).await;
        assert_eq!(second.0.load(Ordering::SeqCst), most);
    }

    /// A corked writer a quarter of the way to eviction is woken at once:
    /// several publishers' turns may each hold frames for it.
    #[test]
    fn a_corked_writer_filling_up_is_woken_at_once() {
        let mut cork = Cork::default();
        let wakes = Arc::new(Wakes(Default::default()));
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20));
        outbox.wake.register(&std::task::Waker::from(wakes.clone()));
        for n in 1..4 {
            outbox.offer_corked(frame(n), &mut cork).unwrap();
        }
        assert_eq!(cork.writers.len(), 1);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "corked");
        outbox.offer_corked(frame(4), &mut cork).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "a quarter full");
    }

    /// The same when the frame that fills a quarter is the first queued:
    /// left in the cork, its writer would sleep through the frames that
    /// evict it.
    #[test]
    fn a_first_frame_that_fills_a_quarter_is_not_corked() {
        let mut cork = Cork::default();
        let wakes = Arc::new(Wakes(Default::default()));
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20).with_byte_cap(1000));
        outbox.wake.register(&std::task::Waker::from(wakes.clone()));
        outbox.offer_corked(frame(300), &mut cork).unwrap();
        assert!(cork.writers.is_empty());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "a quarter full at once");
        let small = Arc::new(Outbox::new(2, 4, 1 << 20));
        small.wake.register(&std::task::Waker::from(wakes.clone()));
        small.offer_corked(frame(1), &mut cork).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "a quarter of 4 frames");
    }

    #[test]
    fn a_dropped_round_wakes_the_rest() {
        let mut cork = Cork::default();
        let wakes = corked_writers(WAKE_SLICE * 2, &mut cork);
        let round = Round {
            writers: std::mem::take(&mut cork.writers),
            next: WAKE_SLICE,
        };
        drop(round);
        assert_eq!(wakes.0.load(Ordering::SeqCst), WAKE_SLICE);
    }

    /// A small fan-out after a large one in the same batch is woken at
    /// once, not at the batch's end behind the large one.
    #[test]
    fn a_small_fan_out_after_a_large_one_is_not_kept_waiting() {
        let mut cork = Cork::default();
        let large = corked_writers(CORK_AT, &mut cork);
        assert!(cork.uncork_small(), "the large one stays corked");
        assert_eq!(large.0.load(Ordering::SeqCst), 0);
        let small = corked_writers(3, &mut cork);
        assert!(cork.uncork_small());
        assert_eq!(small.0.load(Ordering::SeqCst), 3);
        assert_eq!(large.0.load(Ordering::SeqCst), 0);
        cork.uncork();
        assert_eq!(large.0.load(Ordering::SeqCst), CORK_AT);
    }

    #[test]
    fn others_frames_wait_for_a_fragmented_push_to_end() {
        let outbox = Outbox::new(1, 10, 100);
        outbox.push([frame(1)].into_iter().collect(), true).unwrap();
        outbox.offer(frame(2)).unwrap();
        assert_eq!(outbox.take_all().len(), 1, "the hub frame is held back");
        outbox.push([frame(3)].into_iter().collect(), true).unwrap();
        outbox
            .push([frame(4)].into_iter().collect(), false)
            .unwrap();
        let lens: Vec<usize> = outbox.take_all().iter().map(Bytes::len).collect();
        assert_eq!(lens, [3, 4, 2], "released after the last fragment");
    }

    #[test]
    fn frames_held_for_a_fragmented_push_do_not_back_it_up() {
        let outbox = Outbox::new(1, 10, 100);
        outbox.push([frame(1)].into_iter().collect(), true).unwrap();
        for _ in 0..3 {
            outbox.offer(frame(50)).unwrap();
        }
        assert_eq!(outbox.take_all().len(), 1, "the hub frames are held back");
        assert!(
            !outbox.is_backed_up(),
            "only the guest's next part can release them"
        );
        outbox
            .push([frame(200)].into_iter().collect(), true)
            .unwrap();
        assert!(outbox.is_backed_up(), "its own parts count");
    }

    #[test]
    fn a_byte_cap_evicts_but_always_takes_one_frame() {
        let outbox = Outbox::new(1, 100, 1 << 20).with_byte_cap(1000);
        assert_eq!(
            outbox.offer(frame(5000)),
            Ok(Queued::Below),
            "one of any size"
        );
        assert_eq!(outbox.offer(frame(1)), Err(Refused::Overflowed));
        let outbox = Outbox::new(1, 100, 1 << 20).with_byte_cap(1000);
        assert_eq!(outbox.offer(frame(600)), Ok(Queued::Below));
        outbox.take_all();
        assert_eq!(
            outbox.offer(frame(600)),
            Ok(Queued::Below),
            "taken frames free room"
        );
        assert_eq!(outbox.offer(frame(600)), Err(Refused::Overflowed));
    }

    #[test]
    fn own_pushes_never_evict_but_others_count() {
        let outbox = Outbox::new(1, 2, 1 << 20);
        for _ in 0..10 {
            outbox
                .push([frame(1)].into_iter().collect(), false)
                .unwrap();
        }
        assert_eq!(outbox.offer(frame(1)), Ok(Queued::Below));
        assert_eq!(outbox.offer(frame(1)), Ok(Queued::Below));
        assert_eq!(outbox.offer(frame(1)), Err(Refused::Overflowed));
    }

    #[tokio::test]
    async fn room_waits_for_the_writer_or_the_end() {
        let outbox = Arc::new(Outbox::new(1, 10, 100));
        outbox
            .push([frame(150)].into_iter().collect(), false)
            .unwrap();
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "150 bytes queued, 100 allowed");
        outbox.take_all();
        waiting.await.unwrap();
        outbox
            .push([frame(150)].into_iter().collect(), false)
            .unwrap();
        outbox.finish();
        outbox.room().await;
        assert_eq!(
            outbox.push([frame(1)].into_iter().collect(), false),
            Err(Refused::Closed)
        );
    }

    #[test]
    fn a_closing_socket_refuses_frames() {
        let outbox = Outbox::new(1, 10, 100);
        outbox.end(Ending::Terminate);
        outbox.end(Ending::Close {
            code: 1000,
            reason: String::new(),
        });
        assert_eq!(outbox.ending(), Some(Ending::Terminate));
        assert_eq!(outbox.offer(frame(1)), Err(Refused::Closed));
    }
}
