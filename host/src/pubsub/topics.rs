//! Topics (publish/subscribe), server-wide: every route of either world
//! subscribes its connections here and publishes to them.
//!
//! A subscriber is its connection's [`Outbox`]: a publish frames its message
//! once and queues the same bytes to every subscriber without waiting for
//! any socket. A subscriber that overflows its outbox is evicted by it
//! (closed with 1008) and skipped from then on; its subscriptions end with
//! its connection ([`Subscriptions`] is dropped).
//!
//! With a [`Relay`] (`--cluster`, [`crate::pubsub::cluster`]) topics reach the other
//! processes too: the relay hears when this process's first subscriber of a
//! topic comes and its last goes, and gets every framed publish; what other
//! processes publish comes back through [`Topics::publish`]. Connections are
//! then also listed by id, so a send from another process finds them
//! ([`Topics::deliver`]).

use crate::bindings::{ConnectionId, Error, Message};
use crate::pubsub::history::{
    self, Arrival, Delivery, Entry, History, HistoryError, Page, Position, Read, Retention,
};
use crate::pubsub::presence::{self, Presence, PresenceError};
use crate::ws::frame;
use crate::ws::outbox::{Cork, Outbox, RECOVERED_FRAME_COST, Refused};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The longest topic name, in bytes.
pub const MAX_TOPIC: usize = 256;
/// Most topics one connection may be subscribed to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic names are 1 to {MAX_TOPIC} bytes, not {0}")]
    Name(usize),
    #[error("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions")]
    TooMany,
    #[error("already subscribed to {0:?}: a recovery would repeat what it got")]
    AlreadySubscribed(String),
    #[error("a fragmented message is under way: recover after its last fragment")]
    Fragmenting,
    #[error("the connection has closed")]
    Closed,
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Presence(#[from] PresenceError),
}

/// Check a topic's name.
pub fn check_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC {
        return Err(TopicError::Name(topic.len()));
    }
    Ok(())
}

/// Where a subscribe from a position stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Done(Recovery),
    /// With `--cluster`: read the store's stream so, and call again with
    /// the page.
    Read(Read),
}

/// What a subscribe from a position did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// This many messages after the position were queued first.
    Recovered(u32),
    /// The position could not be recovered; the live stream starts after
    /// this one.
    Reset(Position),
}

impl From<TopicError> for Error {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Closed => Error::PeerClosed,
            e => Error::Protocol(e.to_string()),
        }
    }
}

type Subscribers = HashMap<ConnectionId, Arc<Outbox>>;

/// What carries topics and sends by id to the other processes of a cluster.
/// None of it may wait: it may be called under a kept topic's stream lock
/// (so a kept topic's messages leave in offset order), never under the
/// topics' own.
pub trait Relay: Send + Sync + std::fmt::Debug {
    /// The first local subscriber of `topic` came, or its last left: the
    /// relay compares with [`Topics::has`] to know which.
    fn interest_changed(&self, topic: &str);
    /// A local publish of the framed message `frame`.
    fn publish(&self, topic: &str, frame: &Bytes);
    /// Send the framed message `frame` to connection `id` of another
    /// process; false if `id` is not another process's.
    fn send(&self, id: ConnectionId, frame: &Bytes) -> bool;
    /// A local publish to a topic that keeps history: numbered and kept by
    /// the cluster's store, then delivered to every process's subscribers
    /// (this one's too) through [`Topics::arrive`].
    fn publish_kept(&self, topic: &str, message: KeptMessage<'_>);
    /// The largest payload [`Relay::publish_kept`] takes.
    fn max_kept(&self) -> usize;
    /// `topic`'s stream in the store, as `read` says.
    fn read<'a>(&'a self, topic: &'a str, read: &'a Read) -> BoxFuture<'a, Result<Page, String>>;
    /// This process's connection `id` is a member of `topic`, with `info`,
    /// across the cluster once this is done.
    fn join<'a>(
        &'a self,
        topic: &'a str,
        id: ConnectionId,
        info: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// This process's connection `id` left `topic` (queued, not waited for).
    fn leave(&self, topic: &str, id: ConnectionId);
    /// The cluster's members of `topic` after `after`, by id, up to `limit`.
    fn members<'a>(
        &'a self,
        topic: &'a str,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<(ConnectionId, String)>, String>>;
    /// How many members `topic` has across the cluster.
    fn count<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<u32, String>>;
}

/// A publish to a kept topic, as [`Relay::publish_kept`] takes it.
#[derive(Debug, Clone)]
pub struct KeptMessage<'a> {
    pub text: bool,
    pub payload: &'a [u8],
    /// Not delivered to this connection (the publisher's own, say).
    pub exclude: Option<ConnectionId>,
    pub retention: Retention,
    /// This process's mirror of the stream, if it follows it
    /// ([`Read::floor`]).
    pub floor: Option<(Arc<str>, u64)>,
}

#[derive(Debug, Default)]
pub struct Topics {
    topics: RwLock<HashMap<Arc<str>, Subscribers>>,
    relay: std::sync::OnceLock<Arc<dyn Relay>>,
    /// Every open connection by id, kept only with a relay.
    directory: RwLock<HashMap<ConnectionId, Arc<Outbox>>>,
    /// The topics that keep their last messages.
    history: History,
    /// Who is in each topic.
    presence: Presence,
}

impl Topics {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Topics whose history keeps at most `history_memory` bytes.
    pub fn with_history_memory(history_memory: usize) -> Arc<Self> {
        Arc::new(Topics {
            history: History::new(history_memory),
            ..Topics::default()
        })
    }

    /// The topics that keep history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Who is in each topic.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// Carry topics and sends through `relay` from now on (set once).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// The cluster's relay, with `--cluster`.
    pub fn relay(&self) -> Option<Arc<dyn Relay>> {
        self.relay.get().cloned()
    }

    /// Whether any local connection is subscribed to `topic`.
    pub fn has(&self, topic: &str) -> bool {
        self.read().contains_key(topic)
    }

    /// Every topic with a local subscriber.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.read().keys().cloned().collect()
    }

    /// Queue the framed message `frame`, sent from another process, to
    /// local connection `id`; false if there is none (or it overflowed).
    pub fn deliver(&self, id: ConnectionId, frame: Bytes) -> bool {
        let directory = self.directory.read().unwrap_or_else(|e| e.into_inner());
        directory
            .get(&id)
            .is_some_and(|outbox| outbox.offer(frame).is_ok())
    }

    /// Send `frame` to connection `id` of another process, if it is one.
    pub fn send_remote(&self, id: ConnectionId, frame: &Bytes) -> bool {
        self.relay.get().is_some_and(|relay| relay.send(id, frame))
    }

    /// Queue the framed message `frame` to every subscriber of `topic` but
    /// `exclude`, waking them now; returns how many took it.
    pub fn publish(&self, topic: &str, frame: &Bytes, exclude: Option<ConnectionId>) -> u32 {
        self.publish_corked(topic, frame, exclude, &mut Cork::default())
    }

    /// [`Topics::publish`], the subscribers woken when `cork` is uncorked.
    pub fn publish_corked(
        &self,
        topic: &str,
        frame: &Bytes,
        exclude: Option<ConnectionId>,
        cork: &mut Cork,
    ) -> u32 {
        let topics = self.read();
        let Some(subscribers) = topics.get(topic) else {
            return 0;
        };
        let mut delivered = 0;
        for (&id, outbox) in subscribers {
            if Some(id) != exclude && outbox.offer_corked(frame.clone(), cork).is_ok() {
                delivered += 1;
            }
        }
        crate::meters::published(delivered);
        delivered
    }

    /// `topics.publish` as a guest calls it: frame `msg` (refused past
    /// `max` bytes) and publish it, the subscribers woken when `cork` is
    /// uncorked.
    pub fn publish_message(
        &self,
        topic: &str,
        msg: &Message,
        exclude: Option<ConnectionId>,
        max: usize,
        cork: &mut Cork,
    ) -> Result<u32, Error> {
        // Before a `[[history]]` rule can start a stream for it, or the
        // cluster queue its name.
        check_name(topic)?;
        if let Some(stream) = self.history.stream(topic) {
            let (kind, payload) = frame::parts(msg);
            let max = match self.relay.get() {
                Some(relay) => max.min(relay.max_kept()),
                None => max,
            };
            if payload.len() > max {
                return Err(Error::TooLarge);
            }
            let text = kind == frame::Kind::Text;
            return Ok(self.publish_kept(topic, &stream, (text, payload), exclude, cork));
        }
        let frame = frame::message(msg, max)?;
        Ok(self.publish_framed_corked(topic, &frame, exclude, cork))
    }

    /// A whole message (`text` or binary `payload`) held by the host, to
    /// this process's subscribers and, with `--cluster`, the others' (a held
    /// message's `publish`); `framed` is the message framed as it is. The
    /// subscribers are woken when `cork` is uncorked.
    pub fn publish_held(
        &self,
        topic: &str,
        (text, payload): (bool, &[u8]),
        framed: impl FnOnce() -> Bytes,
        exclude: Option<ConnectionId>,
        cork: &mut Cork,
    ) -> u32 {
        match self.history.stream(topic) {
            Some(_)
                if self
                    .relay
                    .get()
                    .is_some_and(|r| payload.len() > r.max_kept()) =>
            {
                // Too large for the cluster's store: not published at all
                // (none took it), as `publish_message` refuses it.
                crate::meters::cluster_dropped("too_large", 1);
                0
            }
            Some(stream) => self.publish_kept(topic, &stream, (text, payload), exclude, cork),
            None => self.publish_framed_corked(topic, &framed(), exclude, cork),
        }
    }

    /// Publish to a topic that keeps history: numbered, kept and queued to
    /// its subscribers under its stream's lock, so every subscriber (and
    /// every recovery, [`Subscriptions::subscribe_from`]) sees the topic's
    /// messages in offset order. With `--cluster` the store numbers and
    /// keeps it, and it comes back through [`Topics::arrive`]; the count is
    /// then of this process's subscribers.
    fn publish_kept(
        &self,
        topic: &str,
        stream: &std::sync::Mutex<history::Stream>,
        (text, payload): (bool, &[u8]),
        exclude: Option<ConnectionId>,
        cork: &mut Cork,
    ) -> u32 {
        let mut stream = history::lock(stream);
        if let Some(relay) = self.relay.get() {
            let (retention, floor) = (stream.retention(), stream.floor());
            drop(stream);
            let message = KeptMessage {
                text,
                payload,
                exclude,
                retention,
                floor,
            };
            relay.publish_kept(topic, message);
            let local = self.read().get(topic).map_or(0, |subscribers| {
                subscribers
                    .keys()
                    .filter(|&&id| Some(id) != exclude)
                    .count()
            });
            return local as u32;
        }
        let frame = stream.publish(text, payload);
        self.publish_framed_corked(topic, &frame, exclude, cork)
    }

    /// With `--cluster`: message `entry` of kept topic `topic`, in the
    /// store's epoch `epoch`, came live from the store. Delivered to this
    /// process's subscribers (but the one it excludes) in offset order;
    /// `Some(after)` when offsets after `after` are missing: read them,
    /// [`Topics::follow`] the page and offer it again (`force`: the gap
    /// could not be filled; the subscribers get the reset notice, then it).
    pub fn arrive(&self, topic: &str, epoch: &str, entry: &Entry, force: bool) -> Option<u64> {
        let Some(stream) = self.history.stream(topic) else {
            // Kept by the publisher's process, not by this one.
            let kind = match entry.text {
                true => frame::Kind::Text,
                false => frame::Kind::Binary,
            };
            let frame = frame::encode(kind, true, &entry.payload);
            self.publish(topic, &frame, entry.exclude);
            return None;
        };
        let mut stream = history::lock(&stream);
        let has_subscribers = self.has(topic);
        match stream.arrive(epoch, entry, has_subscribers, force) {
            Arrival::Deliver(out) => {
                self.deliver_all(topic, &out);
                None
            }
            Arrival::Nothing => None,
            Arrival::Gap { after } => Some(after),
        }
    }

    /// With `--cluster`: take in `page`, read from the store for `topic`
    /// ([`history::Stream::follow`]): what this process's subscribers had
    /// not got is delivered, in order; false if the page stopped short.
    pub fn follow(&self, topic: &str, page: &Page) -> bool {
        let Some(stream) = self.history.stream(topic) else {
            return true;
        };
        let mut stream = history::lock(&stream);
        let out = stream.follow(page, self.has(topic), false);
        self.deliver_all(topic, &out);
        page.complete
    }

    /// With `--cluster`, once this process (re)subscribed to `topic` in the
    /// store: the read that catches its mirror up, if the topic keeps
    /// history here and has subscribers (from the mirror's `last`, or its
    /// position alone if not followed), so what was published before the
    /// subscription took effect is not missed.
    pub fn catch_up(&self, topic: &str, max_messages: u32, max_bytes: usize) -> Option<Read> {
        let stream = self.history.stream(topic)?;
        let stream = history::lock(&stream);
        let after = stream.following();
        self.has(topic)
            .then(|| stream.store_read(after, max_messages, max_bytes))
    }

    /// With `--cluster`: the read that fills a gap after `after` in
    /// `topic`'s mirror.
    pub fn fill(&self, topic: &str, after: u64, max_messages: u32, max_bytes: usize) -> Read {
        let floor = self
            .history
            .stream(topic)
            .and_then(|s| history::lock(&s).floor());
        Read {
            after: Some(after),
            max_messages,
            max_bytes,
            floor,
        }
    }

    /// A presence notice (`frame`) to `topic`'s subscribers but `exclude`,
    /// on this process and, with `--cluster`, the others (not part of a
    /// kept topic's history).
    pub fn publish_notice(&self, topic: &str, frame: &Bytes, exclude: Option<ConnectionId>) {
        if let Some(relay) = self.relay.get() {
            relay.publish(topic, frame);
        }
        self.publish(topic, frame, exclude);
    }

    fn deliver_all(&self, topic: &str, out: &[Delivery]) {
        for (frame, exclude) in out {
            self.publish(topic, frame, *exclude);
        }
    }

    fn publish_framed_corked(
        &self,
        topic: &str,
        frame: &Bytes,
        exclude: Option<ConnectionId>,
        cork: &mut Cork,
    ) -> u32 {
        if let Some(relay) = self.relay.get() {
            relay.publish(topic, frame);
        }
        self.publish_corked(topic, frame, exclude, cork)
    }

    /// How many connections are subscribed to `topic`.
    pub fn subscribers(&self, topic: &str) -> u32 {
        self.read().get(topic).map_or(0, |s| s.len() as u32)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Subscribers>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Subscribers>> {
        self.topics.write().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, topic: &str, id: ConnectionId) {
        // With `--cluster`, a kept topic's mirror stops following the store
        // as its last subscriber goes, under its lock (taken before the
        // topics', as everywhere).
        let stream = match self.relay.get() {
            Some(_) => self.history.lookup(topic),
            None => None,
        };
        let mut stream = stream.as_deref().map(history::lock);
        let mut topics = self.write();
        let mut last = false;
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(topic);
                last = true;
            }
        }
        drop(topics);
        if last {
            if let Some(stream) = stream.as_mut() {
                stream.unfollow();
            }
            drop(stream);
            self.interest_changed(topic);
        }
    }

    fn interest_changed(&self, topic: &str) {
        if let Some(relay) = self.relay.get() {
            relay.interest_changed(topic);
        }
    }
}

/// One connection's subscriptions; they all end when this is dropped.
#[derive(Debug)]
pub struct Subscriptions {
    topics: Arc<Topics>,
    id: ConnectionId,
    outbox: Arc<Outbox>,
    /// `None` (no allocation) until the first subscribe: one word, where
    /// the two lists took six in every connection (an event route keeps
    /// one `Subscriptions` per open socket).
    lists: Option<Box<Lists>>,
}

/// A connection's topics, once it has subscribed to one.
#[derive(Debug, Default)]
struct Lists {
    names: Vec<Arc<str>>,
    /// The topics of `names` this connection is a member of.
    present: Vec<Arc<str>>,
}

impl Subscriptions {
    pub fn new(topics: Arc<Topics>, id: ConnectionId, outbox: Arc<Outbox>) -> Self {
        if topics.relay.get().is_some() {
            let mut directory = topics.directory.write().unwrap_or_else(|e| e.into_inner());
            directory.insert(id, outbox.clone());
        }
        Subscriptions {
            topics,
            id,
            outbox,
            lists: None,
        }
    }

    /// The topics subscribed to.
    fn names(&self) -> &[Arc<str>] {
        self.lists.as_deref().map_or(&[], |lists| &lists.names)
    }

    /// The topics of [`Subscriptions::names`] this connection is a member of.
    fn present(&self) -> &[Arc<str>] {
        self.lists.as_deref().map_or(&[], |lists| &lists.present)
    }

    /// Subscribe to `topic`; true if not subscribed yet.
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, TopicError> {
        check_name(topic)?;
        if self.is_subscribed(topic) {
            return Ok(false);
        }
        self.add_subscriber(topic)?;
        Ok(true)
    }

    /// Whether subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.names().iter().any(|n| &**n == topic)
    }

    /// Subscribe to `topic`, which keeps history, from `since`: the kept
    /// messages after it are queued first (all or, when they are not all
    /// kept or are more than `--hub-queue-bytes`, none: a reset, with the
    /// envelope's notice), then the live ones. Under the stream's lock, so
    /// no publish falls between the two.
    ///
    /// With `--cluster`, a recovery this process's mirror of the stream
    /// cannot answer asks for a read of the store ([`Step::Read`]); called
    /// again with the `page`, the mirror takes it in and answers.
    pub fn subscribe_from(
        &mut self,
        topic: &str,
        since: Option<&Position>,
        page: Option<&Page>,
    ) -> Result<Step, TopicError> {
        check_name(topic)?;
        if self.is_subscribed(topic) {
            return Err(TopicError::AlreadySubscribed(topic.to_string()));
        }
        // Refused before anything is queued (as `add_subscriber` would).
        if self.names().len() >= MAX_SUBSCRIPTIONS {
            return Err(TopicError::TooMany);
        }
        // Recovered frames go after a handler's fragmented message, where
        // the writer cannot drain them until its last fragment.
        if since.is_some() && self.outbox.is_fragmenting() {
            return Err(TopicError::Fragmenting);
        }
        let stream = self.topics.history.kept(topic)?;
        let mut stream = history::lock(&stream);
        let room = self.outbox.recovery_room();
        let clustered = self.topics.relay.get().is_some();
        if clustered {
            match page {
                Some(page) => {
                    let out = stream.follow(page, self.topics.has(topic), true);
                    self.topics.deliver_all(topic, &out);
                }
                None if stream.following().is_none()
                    || since.is_some_and(|since| !stream.covers(since)) =>
                {
                    let (after, messages) = (stream.read_from(since), stream.retention().messages);
                    return Ok(Step::Read(stream.store_read(after, messages, room)));
                }
                None => {}
            }
        }
        let recovery = self.recover(&mut stream, since, room);
        let joined = recovery.and_then(|recovery| {
            self.add_subscriber(topic)?;
            Ok(recovery)
        });
        if joined.is_err() && clustered && !self.topics.has(topic) {
            // Followed for this subscriber, which did not come.
            stream.unfollow();
        }
        drop(stream);
        joined.map(Step::Done)
    }

    /// Queue what this connection missed after `since`, from `stream`'s
    /// kept messages: all of them, or a reset (with the envelope's notice).
    fn recover(
        &self,
        stream: &mut history::Stream,
        since: Option<&Position>,
        room: usize,
    ) -> Result<Recovery, TopicError> {
        let missed = since.map(|since| stream.since(since, room, RECOVERED_FRAME_COST));
        let recovered = match missed {
            None => Some(0),
            Some(Some(frames)) => {
                let count = frames.len() as u32;
                match self.outbox.offer_recovered(frames) {
                    Ok(()) => Some(count),
                    Err(Refused::Overflowed) => None,
                    Err(Refused::Closed) => return Err(TopicError::Closed),
                }
            }
            Some(None) => None,
        };
        Ok(match recovered {
            Some(count) => Recovery::Recovered(count),
            None => {
                if let Some(notice) = stream.reset_notice() {
                    let _ = self.outbox.offer(notice);
                }
                Recovery::Reset(stream.position())
            }
        })
    }

    /// Join `topic`'s subscribers (not one of them yet).
    fn add_subscriber(&mut self, topic: &str) -> Result<(), TopicError> {
        if self.names().len() >= MAX_SUBSCRIPTIONS {
            return Err(TopicError::TooMany);
        }
        let mut topics = self.topics.write();
        let (name, first) = match topics.get_key_value(topic) {
            Some((name, _)) => (name.clone(), false),
            None => (Arc::from(topic), true),
        };
        topics
            .entry(name.clone())
            .or_default()
            .insert(self.id, self.outbox.clone());
        drop(topics);
        self.lists.get_or_insert_default().names.push(name);
        if first {
            self.topics.interest_changed(topic);
        }
        Ok(())
    }

    /// Unsubscribe from `topic`; true if subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(at) = self.names().iter().position(|n| &**n == topic) else {
            return false;
        };
        self.leave(topic);
        if let Some(lists) = self.lists.as_mut() {
            lists.names.swap_remove(at);
        }
        self.topics.remove(topic, self.id);
        true
    }

    /// Join `topic` (subscribed to it first, if not yet) as a member with
    /// `info`; true if not a member yet (then tell its subscribers,
    /// [`Subscriptions::announce`], once the cluster has it too).
    pub fn join(&mut self, topic: &str, info: &str) -> Result<bool, TopicError> {
        self.may_join(topic, info)?;
        self.subscribe(topic)?;
        let name = self
            .names()
            .iter()
            .find(|n| &***n == topic)
            .expect("subscribed above")
            .clone();
        let joined = self.topics.presence.join(&name, self.id, info);
        if joined {
            self.lists.get_or_insert_default().present.push(name);
        }
        Ok(joined)
    }

    /// Whether this connection may join `topic` with `info` (within the
    /// bounds).
    pub fn may_join(&self, topic: &str, info: &str) -> Result<(), TopicError> {
        check_name(topic)?;
        if info.len() > presence::MAX_INFO {
            return Err(PresenceError::Info(info.len()).into());
        }
        let member = self.present().iter().any(|n| &**n == topic);
        if !member && self.present().len() >= presence::MAX_PRESENCES {
            return Err(PresenceError::TooMany.into());
        }
        Ok(())
    }

    /// This connection joined `topic` with `info`: its subscribers with
    /// notices on, but this one, hear of it.
    pub fn announce(&self, topic: &str, info: &str) {
        if self.topics.presence.notices(topic) {
            let notice = presence::join_notice(self.id, info);
            self.topics.publish_notice(topic, &notice, Some(self.id));
        }
    }

    /// No longer a member of `topic` (if it was).
    fn leave(&mut self, topic: &str) {
        if let Some(at) = self.present().iter().position(|n| &**n == topic)
            && let Some(lists) = self.lists.as_mut()
        {
            lists.present.swap_remove(at);
            self.left(topic);
        }
    }

    /// Out of `topic`'s members: the others hear of it.
    fn left(&self, topic: &str) {
        if !self.topics.presence.leave(topic, self.id) {
            return;
        }
        if let Some(relay) = self.topics.relay.get() {
            relay.leave(topic, self.id);
        }
        if self.topics.presence.notices(topic) {
            let notice = presence::leave_notice(self.id);
            self.topics.publish_notice(topic, &notice, Some(self.id));
        }
    }
}

impl Subscriptions {
    /// Leave every topic.
    pub fn clear(&mut self) {
        let Some(lists) = self.lists.take() else {
            return;
        };
        for name in &lists.present {
            self.left(name);
        }
        for name in &lists.names {
            self.topics.remove(name, self.id);
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        self.clear();
        if self.topics.relay.get().is_some() {
            let topics = &self.topics;
            let mut directory = topics.directory.write().unwrap_or_else(|e| e.into_inner());
            directory.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(topics: &Arc<Topics>, id: ConnectionId) -> (Subscriptions, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(id, 2, usize::MAX));
        (
            Subscriptions::new(topics.clone(), id, outbox.clone()),
            outbox,
        )
    }

    fn count(outbox: &Outbox) -> usize {
        outbox.take_all().len()
    }

    #[test]
    fn publish_reaches_subscribers_but_the_excluded() {
        let topics = Topics::new();
        let (mut a, a_out) = member(&topics, 1);
        let (mut b, b_out) = member(&topics, 2);
        assert_eq!(a.subscribe("room"), Ok(true));
        assert_eq!(a.subscribe("room"), Ok(false));
        assert_eq!(b.subscribe("room"), Ok(true));
        assert_eq!(topics.subscribers("room"), 2);
        assert_eq!(topics.publish("room", &Bytes::from("x"), None), 2);
        assert_eq!(topics.publish("room", &Bytes::from("y"), Some(1)), 1);
        assert_eq!((count(&a_out), count(&b_out)), (1, 2));
        assert!(b.unsubscribe("room"));
        assert!(!b.unsubscribe("room"));
        assert_eq!(topics.publish("room", &Bytes::from("z"), None), 1);
    }

    #[test]
    fn subscriptions_end_with_their_connection() {
        let topics = Topics::new();
        let (mut a, _) = member(&topics, 1);
        a.subscribe("one").unwrap();
        a.subscribe("two").unwrap();
        drop(a);
        assert_eq!(topics.subscribers("one"), 0);
        assert!(topics.read().is_empty(), "empty topics are forgotten");
    }

    #[test]
    fn a_subscriber_that_overflows_is_skipped() {
        let topics = Topics::new();
        let (mut a, a_out) = member(&topics, 1);
        let (mut b, _) = member(&topics, 2);
        a.subscribe("t").unwrap();
        b.subscribe("t").unwrap();
        for _ in 0..2 {
            assert_eq!(topics.publish("t", &Bytes::from("m"), Some(2)), 1);
        }
        assert_eq!(topics.publish("t", &Bytes::from("m"), Some(2)), 0);
        assert!(a_out.is_evicted());
    }

    #[test]
    fn no_recovery_mid_fragment_nor_after_the_end() {
        use crate::pubsub::history::{Envelope, Retention};
        use crate::ws::outbox::Ending;
        let topics = Topics::new();
        let json = Retention {
            messages: 10,
            max_age: None,
            envelope: Envelope::Json,
        };
        topics.history().keep("t", json).unwrap();
        let (mut a, out) = member(&topics, 1);
        let start = history::lock(&topics.history().kept("t").unwrap()).position();
        out.push(smallvec::smallvec![Bytes::from("Hel")], true)
            .unwrap();
        assert_eq!(
            a.subscribe_from("t", Some(&start), None),
            Err(TopicError::Fragmenting)
        );
        out.push(smallvec::smallvec![Bytes::from("lo")], false)
            .unwrap();
        assert_eq!(
            a.subscribe_from("t", None, None),
            Ok(Step::Done(Recovery::Recovered(0)))
        );
        let (mut b, out) = member(&topics, 2);
        let stream = topics.history().kept("t").unwrap();
        let now = history::lock(&stream).position();
        out.end(Ending::Terminate);
        assert_eq!(
            b.subscribe_from("t", Some(&now), None),
            Err(TopicError::Closed)
        );
    }

    #[test]
    fn names_and_counts_are_bounded() {
        let topics = Topics::new();
        let (mut a, _) = member(&topics, 1);
        assert_eq!(a.subscribe(""), Err(TopicError::Name(0)));
        assert_eq!(a.subscribe(&"x".repeat(257)), Err(TopicError::Name(257)));
        for i in 0..MAX_SUBSCRIPTIONS {
            a.subscribe(&i.to_string()).unwrap();
        }
        assert_eq!(a.subscribe("one more"), Err(TopicError::TooMany));
    }

    /// A publish names a topic as a subscribe does: a name no one could
    /// subscribe to is refused before a `[[history]]` rule or the cluster's
    /// queue sees it.
    #[test]
    fn a_publish_to_a_name_past_the_bound_is_refused() {
        let topics = Topics::new();
        let msg = Message::Text("hi".into());
        let mut cork = Cork::default();
        let long = "x".repeat(MAX_TOPIC + 1);
        assert!(matches!(
            topics.publish_message(&long, &msg, None, 1 << 20, &mut cork),
            Err(Error::Protocol(why)) if why.contains("topic names")
        ));
        assert!(matches!(
            topics.publish_message("ok", &msg, None, 1 << 20, &mut cork),
            Ok(0)
        ));
    }
}
