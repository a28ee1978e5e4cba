//! Topic history on one process: the last messages of each topic that keeps
//! them (`history.keep`), each with its position (an offset counting up by
//! one per topic, and the epoch of the stream it is in), and recovery from a
//! position (`history.subscribe-from`).
//!
//! Invariant: a kept topic's publish is numbered, kept and queued to the
//! topic's subscribers under its [`Stream`]'s lock ([`Topics`] takes it), and
//! a recovery replays the kept messages and joins the subscribers under the
//! same lock; so every subscriber's queue holds the topic's messages in
//! offset order, and one that subscribed from a position gets every message
//! after it exactly once.
//!
//! The epoch is drawn when a stream is created: a process that restarts has
//! lost its history, and a position of the old epoch is never taken for
//! one of the new.
//!
//! Bounded: at most [`MAX_KEPT_TOPICS`] topics (past it the least recently
//! used goes), [`MAX_MESSAGES`] messages a topic, and the server's
//! `history_memory` bytes all topics together.
//!
//! With `--cluster` the stream of record is in Redis
//! ([`crate::pubsub::cluster`] numbers and keeps every publish there), and a
//! [`Stream`] here is this process's *mirror* of it: the messages it
//! delivered to its subscribers, in offset order, as a cache that answers
//! most recoveries without a round trip. It follows Redis while it has
//! subscribers ([`Stream::arrive`], [`Stream::follow`]): every subscriber
//! of a followed mirror got exactly the offsets up to its `last`, so a
//! recovery answered from it and then joined to the subscribers misses
//! nothing, and a gap on the live stream is filled from Redis before
//! anything after it is delivered.
//!
//! [`Topics`]: crate::pubsub::topics::Topics

use crate::bindings::{ConnectionId, Message};
use crate::ws::frame::{self, Kind};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use wshost_config::HistoryRule;

/// Topics that may keep history, server-wide.
pub const MAX_KEPT_TOPICS: usize = 10_000;
/// Messages one topic may keep (one bound for guests and the config file).
pub use wshost_config::history::MAX_MESSAGES;
/// Messages one `read` returns at most.
pub const MAX_READ: u32 = 1_000;
/// Bytes one `read` from the cluster's store returns, about.
pub const MAX_READ_BYTES: usize = 16 << 20;
/// What a kept message costs beyond its payload: its slot in the queue and
/// its payload's allocation.
const PER_MESSAGE: usize = std::mem::size_of::<Kept>() + 32;

/// How a kept topic's messages reach its subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// As published.
    None,
    /// A text frame holding `{"offset":N,"epoch":"E","text":"..."}`.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub messages: u32,
    pub max_age: Option<Duration>,
    pub envelope: Envelope,
}

/// A place in a topic's stream: offset 0 is before its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Arc<str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("topic {0:?} keeps no history")]
    NotKept(String),
    #[error("a topic keeps 1 to {MAX_MESSAGES} messages, not {0}")]
    Messages(u32),
    #[error("at most {MAX_KEPT_TOPICS} topics keep history")]
    TooManyTopics,
}

impl From<HistoryError> for crate::bindings::Error {
    fn from(e: HistoryError) -> Self {
        crate::bindings::Error::Protocol(e.to_string())
    }
}

/// One kept message: its frame as every subscriber got it (a recovery
/// queues the same bytes, no copy), and its payload for `read`.
#[derive(Debug, Clone)]
pub struct Kept {
    pub offset: u64,
    at: Instant,
    pub text: bool,
    /// Without an envelope, a slice of `frame`.
    pub payload: Bytes,
    frame: Bytes,
    /// What it costs: its frame, its payload unless shared with the frame,
    /// and its slot.
    cost: usize,
}

impl Kept {
    /// The message as a guest reads it.
    pub fn message(&self) -> Message {
        message(self.text, &self.payload)
    }
}

/// A topic's messages as the cluster's store has them, after a position.
#[derive(Debug, Clone)]
pub struct Page {
    /// The epoch of the store's stream (drawn when it was created).
    pub epoch: Arc<str>,
    /// The offset of the store's last message (0: none yet).
    pub top: u64,
    /// Oldest first, consecutive offsets.
    pub entries: Vec<Entry>,
    /// Whether `entries` run up to `top` (a read stops short at its bounds).
    pub complete: bool,
}

/// One message of a [`Page`], or one that came live from another process.
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: u64,
    pub text: bool,
    pub payload: Bytes,
    /// How long ago it was published, by the store's clock.
    pub age: Duration,
    /// The connection it is not delivered to live (its publisher's own,
    /// say).
    pub exclude: Option<ConnectionId>,
}

/// A read of a topic's stream in the cluster's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The messages after this offset; `None`: the stream's position alone.
    pub after: Option<u64>,
    pub max_messages: u32,
    /// About: a read stops past it.
    pub max_bytes: usize,
    /// Where this process's mirror is (its epoch, its last offset), if it
    /// follows the stream: a stream found below it went back (Redis
    /// restored older data), and starts over with a new epoch.
    pub floor: Option<(Arc<str>, u64)>,
}

/// A frame for a topic's subscribers, and the one of them it skips.
pub type Delivery = (Bytes, Option<ConnectionId>);

impl Entry {
    /// The message as a guest reads it.
    pub fn message(&self) -> Message {
        message(self.text, &self.payload)
    }
}

fn message(text: bool, payload: &[u8]) -> Message {
    if text {
        // Kept only from checked text.
        Message::Text(String::from_utf8_lossy(payload).into_owned())
    } else {
        Message::Binary(payload.to_vec())
    }
}

/// What a mirror did with a message that came live from the cluster.
#[derive(Debug)]
pub enum Arrival {
    /// Deliver these frames to the topic's subscribers (in this order,
    /// under the stream's lock).
    Deliver(Vec<Delivery>),
    /// Got already (or no one here to deliver to): nothing to do.
    Nothing,
    /// Offsets after this one are missing: read them from the store and
    /// [`Stream::follow`] the page first.
    Gap { after: u64 },
}

/// Every kept topic's stream.
#[derive(Debug)]
pub struct History {
    streams: RwLock<HashMap<Arc<str>, Arc<Mutex<Stream>>>>,
    /// Bytes kept, all streams together...
    bytes: Arc<AtomicUsize>,
    /// ...at most.
    max_bytes: usize,
    /// The config file's `[[history]]`: topics kept without a guest asking,
    /// from the first time one is published to, recovered or read.
    rules: std::sync::OnceLock<Vec<HistoryRule>>,
}

impl Default for History {
    fn default() -> Self {
        History::new(64 << 20)
    }
}

impl History {
    pub fn new(max_bytes: usize) -> Self {
        History {
            streams: RwLock::default(),
            bytes: Arc::default(),
            max_bytes,
            rules: std::sync::OnceLock::new(),
        }
    }

    /// Keep the topics `rules` cover (set once, at start).
    pub fn set_rules(&self, rules: Vec<HistoryRule>) {
        let _ = self.rules.set(rules);
    }

    /// Keep `topic`'s history from now on (or change how).
    pub fn keep(&self, topic: &str, retention: Retention) -> Result<(), HistoryError> {
        if retention.messages == 0 || retention.messages > MAX_MESSAGES {
            return Err(HistoryError::Messages(retention.messages));
        }
        let stream = match self.lookup(topic) {
            Some(stream) => stream,
            None => self
                .start(topic, retention)
                .ok_or(HistoryError::TooManyTopics)?,
        };
        // Also over a stream a `[[history]]` rule started meanwhile: the
        // guest's retention wins.
        let mut stream = lock(&stream);
        stream.retention = retention;
        stream.trim(Instant::now());
        Ok(())
    }

    /// `topic`'s stream, if it keeps history (started now if a
    /// `[[history]]` rule covers it).
    pub fn stream(&self, topic: &str) -> Option<Arc<Mutex<Stream>>> {
        if let Some(stream) = self.lookup(topic) {
            return Some(stream);
        }
        let rule = self.rules.get()?.iter().find(|rule| rule.matches(topic))?;
        let envelope = match rule.json {
            true => Envelope::Json,
            false => Envelope::None,
        };
        let retention = Retention {
            messages: rule.messages,
            max_age: rule.max_age,
            envelope,
        };
        self.start(topic, retention)
    }

    pub fn lookup(&self, topic: &str) -> Option<Arc<Mutex<Stream>>> {
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        streams.get(topic).cloned()
    }

    /// `topic`'s stream: the one there (started meanwhile), else a new one
    /// with `retention`; `None` when there is no room ([`make_room`]).
    fn start(&self, topic: &str, retention: Retention) -> Option<Arc<Mutex<Stream>>> {
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if !streams.contains_key(topic) && !make_room(&mut streams) {
            return None;
        }
        let stream = streams.entry(Arc::from(topic)).or_insert_with(|| {
            let stream = Stream::new(retention, self.bytes.clone(), self.max_bytes);
            Arc::new(Mutex::new(stream))
        });
        Some(stream.clone())
    }

    /// `topic`'s stream, or why there is none.
    pub fn kept(&self, topic: &str) -> Result<Arc<Mutex<Stream>>, HistoryError> {
        self.stream(topic)
            .ok_or_else(|| HistoryError::NotKept(topic.to_string()))
    }

    /// Bytes kept, all topics together.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Room for one more stream under [`MAX_KEPT_TOPICS`]: at the bound, the
/// least recently used stream that no one holds now is let go (its topic's
/// history is lost: a later recovery of it is a reset, its next stream of
/// a new epoch). So names that come and go (a prefix rule's rooms) cannot
/// use the bound up for good. False if every stream is in use.
fn make_room(streams: &mut HashMap<Arc<str>, Arc<Mutex<Stream>>>) -> bool {
    if streams.len() < MAX_KEPT_TOPICS {
        return true;
    }
    let idle = streams
        .iter()
        .filter(|(_, stream)| Arc::strong_count(stream) == 1)
        .filter_map(|(name, stream)| {
            let stream = stream.try_lock().ok()?;
            // A mirror that follows the cluster's store has subscribers.
            (!stream.followed).then_some((stream.touched, name))
        })
        .min_by_key(|(touched, _)| *touched)
        .map(|(_, name)| name.clone());
    match idle {
        Some(name) => streams.remove(&name).is_some(),
        None => false,
    }
}

pub fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(|e| e.into_inner())
}

/// One kept topic: its epoch, its last offset and its last messages.
#[derive(Debug)]
pub struct Stream {
    retention: Retention,
    epoch: Arc<str>,
    /// The offset of the last message published (0: none yet).
    last: u64,
    kept: VecDeque<Kept>,
    /// What `kept` costs, counted in `all` too.
    bytes: usize,
    all: Arc<AtomicUsize>,
    max_all: usize,
    /// Last published to, recovered or read (the least recently used goes
    /// first at the bound on kept topics).
    touched: Instant,
    /// With `--cluster`: whether this mirror has followed the store's stream
    /// since this process's subscribers of the topic came (false once the
    /// last one leaves: `last` is then stale, and the next subscriber's
    /// recovery asks the store).
    followed: bool,
}

impl Drop for Stream {
    /// A stream let go gives back what it kept.
    fn drop(&mut self) {
        self.all.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Stream {
    fn new(retention: Retention, all: Arc<AtomicUsize>, max_all: usize) -> Self {
        Stream {
            retention,
            epoch: new_epoch(),
            last: 0,
            kept: VecDeque::new(),
            bytes: 0,
            all,
            max_all,
            touched: Instant::now(),
            followed: false,
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    pub fn envelope(&self) -> Envelope {
        self.retention.envelope
    }

    /// Where the stream is: after its last message.
    pub fn position(&self) -> Position {
        Position {
            offset: self.last,
            epoch: self.epoch.clone(),
        }
    }

    /// Number, frame and keep a published message; returns its frame, to
    /// be queued to the topic's subscribers before this stream's lock is
    /// let go. Older messages go as the retention and the memory bound say
    /// (this topic's: a message that does not fit at all is numbered and
    /// delivered, not kept).
    pub fn publish(&mut self, text: bool, payload: &[u8]) -> Bytes {
        self.record(self.last + 1, text, payload, Instant::now())
    }

    /// Frame and keep message `offset` (the next one: `last + 1`, or the
    /// first of an empty cache), published at `at`; returns its frame.
    fn record(&mut self, offset: u64, text: bool, payload: &[u8], at: Instant) -> Bytes {
        if self.kept.back().is_some_and(|k| k.offset + 1 != offset) {
            // What is kept is one run of offsets up to `last`, always.
            self.clear();
        }
        self.last = offset;
        self.touched = Instant::now();
        let kept = self.counted(offset, text, payload, at);
        let frame = kept.frame.clone();
        self.kept.push_back(kept);
        self.trim(Instant::now());
        while self.all.load(Ordering::Relaxed) > self.max_all && self.pop() {}
        self.shrink();
        frame
    }

    /// Message `offset` as kept (framed), its cost counted in this
    /// stream's bytes and all streams'.
    fn counted(&mut self, offset: u64, text: bool, payload: &[u8], at: Instant) -> Kept {
        let (frame, payload, cost) = self.framed(offset, text, payload);
        self.bytes += cost;
        self.all.fetch_add(cost, Ordering::Relaxed);
        Kept {
            offset,
            at,
            text,
            payload,
            frame,
            cost,
        }
    }

    /// The offset of the first message kept (`last + 1` when none is).
    fn first(&self) -> u64 {
        self.kept.front().map_or(self.last + 1, |k| k.offset)
    }

    /// Message `offset` as its subscribers get it: its frame, its payload
    /// (a slice of the frame when there is no envelope) and its cost.
    fn framed(&self, offset: u64, text: bool, payload: &[u8]) -> (Bytes, Bytes, usize) {
        match self.retention.envelope {
            Envelope::None => {
                let kind = if text { Kind::Text } else { Kind::Binary };
                let frame = frame::encode(kind, true, payload);
                let body = frame.slice(frame.len() - payload.len()..);
                let cost = frame.len() + PER_MESSAGE;
                (frame, body, cost)
            }
            Envelope::Json => {
                let json = envelope(offset, &self.epoch, text, payload);
                let frame = frame::encode(Kind::Text, true, json.as_bytes());
                let cost = frame.len() + payload.len() + PER_MESSAGE;
                (frame, Bytes::copy_from_slice(payload), cost)
            }
        }
    }

    /// Put older messages (ending just before the first kept one) back in
    /// front, as far as the retention and the memory bound allow.
    fn prepend(&mut self, older: &[Entry]) {
        let first = self.first();
        for entry in older.iter().rev().skip_while(|e| e.offset >= first) {
            if entry.offset + 1 != self.first()
                || self.kept.len() >= self.retention.messages as usize
                || self.too_old(entry)
            {
                break;
            }
            let kept = self.counted(entry.offset, entry.text, &entry.payload, ago(entry.age));
            self.kept.push_front(kept);
            if self.all.load(Ordering::Relaxed) > self.max_all {
                self.pop(); // this one: it does not fit
                break;
            }
        }
    }

    /// The end of `entries` (oldest first) that the retention still keeps.
    pub fn fresh<'e>(&self, entries: &'e [Entry]) -> &'e [Entry] {
        &entries[entries.partition_point(|e| self.too_old(e))..]
    }

    fn too_old(&self, entry: &Entry) -> bool {
        self.retention.max_age.is_some_and(|age| entry.age > age)
    }

    /// Forget what is kept (the cache is no longer one run of offsets up
    /// to `last`).
    fn clear(&mut self) {
        while self.pop() {}
        self.shrink();
    }

    /// With `--cluster`: message `entry` of epoch `epoch` came live from
    /// the store, and this process's topic has subscribers or not.
    /// Delivered when it is the next one; a gap says what to read first;
    /// with `force` (the gap could not be filled), the subscribers are told
    /// with the reset notice and the stream goes on from it.
    pub fn arrive(
        &mut self,
        epoch: &str,
        entry: &Entry,
        has_subscribers: bool,
        force: bool,
    ) -> Arrival {
        if !has_subscribers {
            // Nobody here to deliver to: `last` goes stale (the next
            // subscriber's recovery asks the store).
            self.followed = false;
            return Arrival::Nothing;
        }
        let mut out = Vec::new();
        let before = entry.offset.saturating_sub(1);
        if !self.followed {
            // Subscribers from the live stream on, no position to keep.
            self.rebase(epoch.into(), before);
        } else if *self.epoch != *epoch || entry.offset > self.last.saturating_add(1) {
            if !force {
                // A new epoch: its stream from its start.
                let after = if *self.epoch == *epoch { self.last } else { 0 };
                return Arrival::Gap { after };
            }
            self.rebase(epoch.into(), before);
            out.extend(self.reset_notice().map(|notice| (notice, None)));
        } else if entry.offset <= self.last {
            return Arrival::Nothing;
        }
        out.push((self.take_in(entry), entry.exclude));
        Arrival::Deliver(out)
    }

    /// Record `entry`, published `entry.age` ago; its frame.
    fn take_in(&mut self, entry: &Entry) -> Bytes {
        self.record(entry.offset, entry.text, &entry.payload, ago(entry.age))
    }

    /// Start over at `last` in `epoch`, nothing kept, followed from now on.
    fn rebase(&mut self, epoch: Arc<str>, last: u64) {
        self.clear();
        self.epoch = epoch;
        self.last = last;
        self.followed = true;
    }

    /// With `--cluster`: take in `page`, read from the store, for this
    /// process's subscribers (if it has any, or one is `joining`: else the
    /// mirror stops following, as its subscribers are gone).
    ///
    /// A mirror not followed starts over at the page (nothing delivered: its
    /// subscribers, if any, came for the live stream); a followed one
    /// delivers what it had not (returned, in order), keeps older messages
    /// in front, and starts over on a new epoch (the reset notice, then the
    /// page's messages) or on a hole (the store trimmed what was missed:
    /// the notice, then what follows it). A page that stops short leaves
    /// the rest to the next read.
    pub fn follow(&mut self, page: &Page, has_subscribers: bool, joining: bool) -> Vec<Delivery> {
        self.touched = Instant::now();
        if !has_subscribers && !joining {
            self.followed = false;
            return Vec::new();
        }
        let mut out = Vec::new();
        // (A page older than what came live since is no news: a store that
        // went back is told by a new epoch, drawn by the read, below a
        // `floor`.)
        if !self.followed || self.epoch != page.epoch {
            let told = self.followed && has_subscribers;
            let run = page
                .entries
                .first()
                .map(|first| first.offset.saturating_sub(1));
            let start = match (page.complete, run) {
                (true, Some(before)) => before,
                _ => page.top,
            };
            self.rebase(page.epoch.clone(), start);
            if told {
                out.extend(self.reset_notice().map(|notice| (notice, None)));
            }
            for entry in page.entries.iter().filter(|e| e.offset > start) {
                let frame = self.take_in(entry);
                // Subscribers that followed the old epoch get the new one's
                // messages after the notice.
                if told {
                    out.push((frame, entry.exclude));
                }
            }
            return out;
        }
        let older = page.entries.partition_point(|e| e.offset <= self.last);
        self.prepend(&page.entries[..older]);
        for entry in &page.entries[older..] {
            if entry.offset != self.last + 1 {
                // Trimmed in the store before this process got them.
                self.rebase(page.epoch.clone(), entry.offset.saturating_sub(1));
                if has_subscribers {
                    out.extend(self.reset_notice().map(|notice| (notice, None)));
                }
            }
            out.push((self.take_in(entry), entry.exclude));
        }
        out
    }

    /// With `--cluster`: whether a recovery from `since` can be answered
    /// here, without the store (a followed mirror that keeps every message
    /// after it).
    pub fn covers(&self, since: &Position) -> bool {
        let first = self.first();
        self.followed
            && since.epoch == self.epoch
            && since.offset <= self.last
            && since.offset + 1 >= first
    }

    /// With `--cluster`: where to read the store from for a recovery from
    /// `since` that this mirror cannot answer: the client's position, or
    /// this mirror's `last` if that is older (its subscribers get what lies
    /// between first, and the recovery then comes from here). `None`: read
    /// the store's position alone (no position, from the live stream on; or
    /// one of an epoch other than the one followed).
    pub fn read_from(&self, since: Option<&Position>) -> Option<u64> {
        let since = since?;
        match (self.followed, since.epoch == self.epoch) {
            (true, true) => Some(since.offset.min(self.last)),
            // Another epoch than the one followed: a reset, unless the
            // store moved on to it (then the page says so).
            (true, false) => None,
            (false, _) => Some(since.offset),
        }
    }

    /// With `--cluster`: `Some(last)` while this mirror follows the store.
    pub fn following(&self) -> Option<u64> {
        self.followed.then_some(self.last)
    }

    /// With `--cluster`: the epoch and last offset this mirror delivered,
    /// while it follows the store ([`Read::floor`]).
    pub fn floor(&self) -> Option<(Arc<str>, u64)> {
        self.followed.then(|| (self.epoch.clone(), self.last))
    }

    /// With `--cluster`: a read of the store's stream after `after`, with
    /// this mirror's floor.
    pub fn store_read(&self, after: Option<u64>, max_messages: u32, max_bytes: usize) -> Read {
        Read {
            after,
            max_messages,
            max_bytes,
            floor: self.floor(),
        }
    }

    /// The store was left (its last local subscriber went): `last` goes
    /// stale from now on.
    pub fn unfollow(&mut self) {
        self.followed = false;
    }

    /// Let go of what the retention no longer keeps.
    fn trim(&mut self, now: Instant) {
        while self.kept.len() > self.retention.messages as usize && self.pop() {}
        if let Some(age) = self.retention.max_age {
            while self.kept.front().is_some_and(|k| now - k.at > age) && self.pop() {}
        }
    }

    fn pop(&mut self) -> bool {
        let Some(kept) = self.kept.pop_front() else {
            return false;
        };
        self.bytes -= kept.cost;
        self.all.fetch_sub(kept.cost, Ordering::Relaxed);
        true
    }

    /// Give back the queue's room once it is mostly empty (a topic that
    /// once kept a million messages and now keeps ten holds no million
    /// slots).
    fn shrink(&mut self) {
        if self.kept.capacity() > 64 && self.kept.len() < self.kept.capacity() / 4 {
            self.kept.shrink_to(self.kept.len() * 2);
        }
    }

    /// The frames of the kept messages after `since` (the bytes its
    /// subscribers got), oldest first, if all of them are kept (and `since`
    /// is of this epoch, and not ahead of the stream) and they come to at
    /// most `max_bytes`, each counted with `per_frame` more.
    pub fn since(
        &mut self,
        since: &Position,
        max_bytes: usize,
        per_frame: usize,
    ) -> Option<Vec<Bytes>> {
        self.trim(Instant::now());
        self.touched = Instant::now();
        self.shrink();
        if since.epoch != self.epoch || since.offset > self.last {
            return None;
        }
        let first = self.first();
        if since.offset + 1 < first {
            return None;
        }
        let skip = usize::try_from(since.offset + 1 - first).ok()?;
        let missed = self.kept.range(skip..);
        let bytes: usize = missed.clone().map(|k| k.frame.len() + per_frame).sum();
        (bytes <= max_bytes).then(|| missed.map(|k| k.frame.clone()).collect())
    }

    /// Up to `limit` (at most [`MAX_READ`]) kept messages after offset `after`.
    pub fn read(&mut self, after: u64, limit: u32) -> Vec<Kept> {
        self.trim(Instant::now());
        self.touched = Instant::now();
        let first = self.first();
        let skip = after.saturating_add(1).saturating_sub(first);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let limit = limit.min(MAX_READ) as usize;
        self.kept.iter().skip(skip).take(limit).cloned().collect()
    }

    /// The frame that tells a subscriber its position could not be
    /// recovered, in the stream's envelope (none without one).
    pub fn reset_notice(&self) -> Option<Bytes> {
        match self.retention.envelope {
            Envelope::None => None,
            Envelope::Json => {
                let json = format!(r#"{{"reset":true,"epoch":{}}}"#, quoted(&self.epoch));
                Some(frame::encode(Kind::Text, true, json.as_bytes()))
            }
        }
    }
}

/// The instant `age` ago (now, if the clock does not reach that far back).
fn ago(age: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

/// `{"offset":N,"epoch":"E","text":"..."}`, or `"binary":"<base64>"`.
fn envelope(offset: u64, epoch: &str, text: bool, payload: &[u8]) -> String {
    let body = if text {
        format!(r#""text":{}"#, quoted(&String::from_utf8_lossy(payload)))
    } else {
        format!(r#""binary":"{}""#, data_encoding::BASE64.encode(payload))
    };
    format!(r#"{{"offset":{offset},"epoch":{},{body}}}"#, quoted(epoch))
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string is JSON")
}

/// A fresh epoch: 16 hex digits from the process's random hash keys and the
/// clock, so two streams (or two runs) do not share one.
pub fn new_epoch() -> Arc<str> {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    Arc::from(format!("{:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(messages: u32) -> Retention {
        Retention {
            messages,
            max_age: None,
            envelope: Envelope::Json,
        }
    }

    /// The offsets in the envelopes of `frames`.
    fn offsets(frames: Option<Vec<Bytes>>) -> Option<Vec<u64>> {
        let offset = |frame: Bytes| {
            let json: serde_json::Value = serde_json::from_slice(&frame[2..]).unwrap();
            json["offset"].as_u64().unwrap()
        };
        Some(frames?.into_iter().map(offset).collect())
    }

    #[test]
    fn offsets_count_up_by_one_and_recovery_gives_what_came_after() {
        let history = History::default();
        history.keep("t", retention(3)).unwrap();
        let stream = history.kept("t").unwrap();
        let mut stream = lock(&stream);
        let start = stream.position();
        assert_eq!(start.offset, 0);
        for i in 1..=5 {
            stream.publish(true, format!("m{i}").as_bytes());
            assert_eq!(stream.position().offset, i);
        }
        let at = |offset| Position {
            offset,
            epoch: start.epoch.clone(),
        };
        let mut since = |offset| stream.since(&at(offset), usize::MAX, 0);
        assert_eq!(offsets(since(3)), Some(vec![4, 5]));
        assert_eq!(offsets(since(2)), Some(vec![3, 4, 5]));
        assert_eq!(offsets(since(5)), Some(vec![]));
        assert_eq!(offsets(since(1)), None, "2 is no longer kept");
        assert_eq!(offsets(since(6)), None, "ahead of the stream");
        let stale = Position {
            offset: 4,
            epoch: "another".into(),
        };
        assert_eq!(offsets(stream.since(&stale, usize::MAX, 0)), None);
        let read: Vec<_> = stream.read(0, 2).iter().map(|k| k.offset).collect();
        assert_eq!(read, vec![3, 4]);
        // More than the socket's queue takes: none.
        let two = stream.since(&at(3), usize::MAX, 0).unwrap();
        let bytes: usize = two.iter().map(Bytes::len).sum();
        assert!(stream.since(&at(3), bytes, 0).is_some());
        assert!(stream.since(&at(3), bytes - 1, 0).is_none());
        assert!(stream.since(&at(3), bytes, 1).is_none());
    }

    #[test]
    fn the_envelope_is_json_with_the_position_and_framed_once() {
        let history = History::default();
        history.keep("t", retention(10)).unwrap();
        let stream = history.kept("t").unwrap();
        let mut stream = lock(&stream);
        let sent = stream.publish(true, b"say \"hi\"\n");
        stream.publish(false, &[0, 255]);
        let epoch = stream.position().epoch;
        let before = Position {
            offset: 0,
            epoch: epoch.clone(),
        };
        let frames = stream.since(&before, usize::MAX, 0).unwrap();
        assert_eq!(
            frames[0].as_ptr(),
            sent.as_ptr(),
            "the same bytes, not a copy"
        );
        let parse = |frame: &Bytes| serde_json::from_slice::<serde_json::Value>(&frame[2..]);
        let first = parse(&frames[0]).unwrap();
        assert_eq!(first["offset"], 1);
        assert_eq!(first["epoch"], &*epoch);
        assert_eq!(first["text"], "say \"hi\"\n");
        assert_eq!(parse(&frames[1]).unwrap()["binary"], "AP8=");
        let read = stream.read(0, 10);
        assert!(matches!(read[1].message(), Message::Binary(b) if b == [0, 255]));
    }

    #[test]
    fn memory_and_counts_are_bounded() {
        // A 100-byte binary message's frame is 102 bytes.
        let one = 102 + PER_MESSAGE;
        let history = History::new(10 * one);
        let raw = Retention {
            envelope: Envelope::None,
            ..retention(1000)
        };
        history.keep("a", raw).unwrap();
        let stream = history.kept("a").unwrap();
        for _ in 0..50 {
            lock(&stream).publish(false, &[0; 100]);
        }
        assert_eq!(history.bytes(), 10 * one);
        assert_eq!(lock(&stream).position().offset, 50, "numbered all the same");
        assert_eq!(lock(&stream).read(0, 100).len(), 10);
        drop(stream);
        assert_eq!(
            history.keep("b", retention(0)),
            Err(HistoryError::Messages(0))
        );
        let huge = retention(MAX_MESSAGES + 1);
        assert!(history.keep("b", huge).is_err());
        for i in 1..MAX_KEPT_TOPICS {
            history.keep(&i.to_string(), retention(1)).unwrap();
        }
        // At the bound, the least recently used stream no one holds goes.
        let held = history.kept("a").unwrap();
        let before = history.streams.read().unwrap().len();
        assert_eq!(before, MAX_KEPT_TOPICS);
        history.keep("one more", retention(1)).unwrap();
        assert_eq!(history.streams.read().unwrap().len(), MAX_KEPT_TOPICS);
        assert!(history.stream("1").is_none(), "the oldest idle one went");
        assert!(history.stream("one more").is_some());
        drop(held);
        assert!(
            history.keep("a", retention(5)).is_ok(),
            "a kept topic changes"
        );
    }

    #[test]
    fn a_topic_that_keeps_fewer_gives_its_room_back() {
        let history = History::default();
        history.keep("t", retention(10_000)).unwrap();
        let stream = history.kept("t").unwrap();
        for _ in 0..10_000 {
            lock(&stream).publish(true, b"x");
        }
        let before = history.bytes();
        history.keep("t", retention(10)).unwrap();
        lock(&stream).publish(true, b"x");
        assert!(history.bytes() < before / 100);
        assert!(lock(&stream).kept.capacity() <= 64, "the slots went too");
    }

    #[test]
    fn config_rules_keep_the_topics_they_cover() {
        let history = History::default();
        let rule = |topics: &str, envelope: Option<&str>| {
            wshost_config::history::HistoryFile {
                topics: topics.into(),
                messages: 2,
                seconds: 0,
                envelope: envelope.map(Into::into),
            }
            .rule()
            .unwrap()
        };
        history.set_rules(vec![rule("room:*", Some("json")), rule("news", None)]);
        assert!(history.stream("other").is_none());
        let room = history.stream("room:1").expect("covered by room:*");
        assert_eq!(lock(&room).envelope(), Envelope::Json);
        assert_eq!(
            lock(&history.kept("news").unwrap()).envelope(),
            Envelope::None
        );
        for _ in 0..5 {
            lock(&room).publish(true, b"x");
        }
        assert_eq!(lock(&room).read(0, 10).len(), 2, "as the rule says");
        // A guest's keep wins for the topic it names.
        history.keep("room:1", retention(4)).unwrap();
        for _ in 0..5 {
            lock(&room).publish(true, b"x");
        }
        assert_eq!(lock(&room).read(0, 10).len(), 4);
    }

    #[test]
    fn a_mirror_delivers_in_offset_order_and_reads_back_what_it_missed() {
        let history = History::default();
        history.keep("t", retention(100)).unwrap();
        let stream = history.kept("t").unwrap();
        let mut s = lock(&stream);
        let entry = |offset| Entry {
            offset,
            text: true,
            payload: Bytes::from(format!("m{offset}")),
            age: Duration::ZERO,
            exclude: (offset == 8).then_some(42),
        };
        let page = |epoch: &str, top, entries: std::ops::Range<u64>| Page {
            epoch: epoch.into(),
            top,
            complete: entries.end == top + 1 || entries.is_empty(),
            entries: entries.map(entry).collect(),
        };
        let at = |offset| Position {
            offset,
            epoch: "e1".into(),
        };
        let json =
            |frame: &Delivery| serde_json::from_slice::<serde_json::Value>(&frame.0[2..]).unwrap();
        let frames = |out: Vec<Delivery>| Some(out.into_iter().map(|(f, _)| f).collect());
        // No subscriber here, none joining: not followed.
        assert!(s.follow(&page("e1", 5, 0..0), false, false).is_empty());
        assert_eq!(s.following(), None);
        // The first subscriber came for the live stream: no history sent.
        assert!(s.follow(&page("e1", 5, 0..0), false, true).is_empty());
        assert_eq!(s.following(), Some(5));
        assert!(
            matches!(s.arrive("e1", &entry(6), true, false), Arrival::Deliver(f) if f.len() == 1)
        );
        assert!(
            matches!(s.arrive("e1", &entry(6), true, false), Arrival::Nothing),
            "a repeat"
        );
        assert!(matches!(
            s.arrive("e1", &entry(9), true, false),
            Arrival::Gap { after: 6 }
        ));
        let filled = s.follow(&page("e1", 9, 7..10), true, false);
        assert_eq!(filled[1].1, Some(42), "still not to the publisher");
        assert_eq!(offsets(frames(filled)), Some(vec![7, 8, 9]));
        assert!(matches!(
            s.arrive("e1", &entry(9), true, false),
            Arrival::Nothing
        ));
        // Recoveries it can answer, and where to read for those it cannot.
        assert!(s.covers(&at(5)) && s.covers(&at(9)));
        assert!(!s.covers(&at(4)) && !s.covers(&at(10)));
        assert_eq!(s.read_from(Some(&at(4))), Some(4));
        assert_eq!(
            s.read_from(Some(&at(12))),
            Some(9),
            "its own subscribers first"
        );
        assert_eq!(s.read_from(None), None);
        let other = Position {
            offset: 3,
            epoch: "old".into(),
        };
        assert_eq!(s.read_from(Some(&other)), None, "the position alone");
        // Older messages read back go in front, delivered to no one.
        assert!(s.follow(&page("e1", 9, 3..10), true, false).is_empty());
        assert!(s.covers(&at(2)));
        // A gap that cannot be filled: the reset notice, then the message.
        let Arrival::Deliver(out) = s.arrive("e1", &entry(20), true, true) else {
            panic!("delivered");
        };
        assert_eq!(json(&out[0])["reset"], true);
        assert_eq!(json(&out[1])["offset"], 20);
        assert!(
            !s.covers(&at(9)),
            "what came before the gap is not a run with it"
        );
        // A page read before what came live since: no news.
        assert!(s.follow(&page("e1", 12, 0..0), true, false).is_empty());
        assert_eq!(s.following(), Some(20));
        // Redis lost its data: a new epoch; the subscribers are told, then
        // get the new epoch's messages.
        assert!(matches!(
            s.arrive("e2", &entry(2), true, false),
            Arrival::Gap { after: 0 }
        ));
        let out = s.follow(&page("e2", 2, 1..3), true, false);
        assert_eq!(
            json(&out[0]),
            serde_json::json!({"reset": true, "epoch": "e2"})
        );
        assert_eq!(offsets(frames(out[1..].to_vec())), Some(vec![1, 2]));
        assert_eq!(s.following(), Some(2));
        // The last subscriber here went: no longer followed.
        assert!(matches!(
            s.arrive("e2", &entry(3), false, false),
            Arrival::Nothing
        ));
        assert_eq!(s.following(), None);
        // Followed again from a page, which is kept but sent to no one.
        assert!(s.follow(&page("e2", 4, 1..5), false, true).is_empty());
        assert_eq!(s.read(0, 10).len(), 4);
        // A page with a hole (trimmed between two reads) keeps one run.
        let mut holed = page("e2", 9, 5..10);
        holed.entries.remove(2);
        s.follow(&holed, true, false);
        assert_eq!(
            s.read(0, 10).iter().map(|k| k.offset).collect::<Vec<_>>(),
            [8, 9]
        );
    }

    #[test]
    fn a_new_stream_has_a_new_epoch() {
        let (a, b) = (History::default(), History::default());
        a.keep("t", retention(1)).unwrap();
        b.keep("t", retention(1)).unwrap();
        let epoch = |h: &History| lock(&h.kept("t").unwrap()).position().epoch;
        assert_ne!(epoch(&a), epoch(&b));
    }
}
