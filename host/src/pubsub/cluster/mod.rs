//! `--cluster redis://HOST:PORT`: topics and sends by id across wshost
//! processes, through Redis pub/sub (the `redis` crate on tokio).
//!
//! Each process is a *node* with a number of its own (claimed in Redis at
//! start, [`NODE_BITS`] bits), which is the top of every connection id it
//! gives out, so ids are unique across the cluster and name their process.
//!
//! - A topic with local subscribers is one Redis channel subscription
//!   (`wshost:t:TOPIC`), dropped when the last local subscriber leaves.
//! - A local publish is delivered locally at once and published to that
//!   channel as its framed bytes; every other node queues those same bytes
//!   to its subscribers (framed once, for the whole cluster). The node that
//!   published skips its own message when Redis hands it back: each
//!   subscriber gets a message exactly once.
//! - A send to another node's connection id goes to that node's channel
//!   (`wshost:n:NODE`), fire and forget.
//!
//! - A topic that keeps history is kept in Redis Streams ([`streams`]): a
//!   publish is numbered, kept and published there by one script, and comes
//!   back to every node, this one too, with its position; each node's
//!   mirror of the stream ([`crate::pubsub::history`]) delivers it in
//!   offset order, reading back what its channel missed.
//!
//! Redis pub/sub is at-most-once. While Redis is unreachable local delivery
//! goes on; what would have gone to other nodes is dropped and counted, and
//! both tasks reconnect by themselves (the topics are subscribed again).
//! A kept topic's publish is dropped then too, here as well (it cannot be
//! numbered): the stream has no hole, and no subscriber is told of one.
//! Messages reach Redis in the order they were published here (one
//! connection, pipelined in order), so subscribers see each publisher's
//! messages in order.

mod link;
mod members;
mod streams;

use crate::bindings::ConnectionId;
use crate::meters;
use crate::pubsub::history::{Page, Read};
use crate::pubsub::topics::{KeptMessage, MAX_TOPIC, Relay, Topics};
use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use members::Members;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use streams::Streams;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Bits of a connection id that count connections within one node.
pub const LOCAL_BITS: u32 = 40;
/// Bits of a connection id that name its node.
pub const NODE_BITS: u32 = 64 - LOCAL_BITS;
/// Every key and channel of wshost's in Redis starts with this.
const PREFIX: &str = "wshost:";
/// Messages waiting to be published to Redis; past it they are dropped.
const QUEUE: usize = 65_536;
/// Bytes of messages waiting to be published to Redis, or received from it
/// and waiting to be fanned out; past either, messages are dropped and
/// counted (`queue_full`, `incoming_full`): a Redis that stalls, or a flood
/// from other processes, costs this much memory at most, each way.
const QUEUE_BYTES: usize = 64 << 20;
/// What a queued message costs beyond its payload (its channel, its slot).
const PER_MESSAGE: usize = 64;
/// The largest message that crosses to other processes; a larger one is
/// delivered locally only, and counted (`too_large`). Redis itself drops a
/// pub/sub client whose output buffer passes 32 MiB (8 MiB for 60 s) by
/// default: a few messages of 16 MiB would cost every node its subscription.
pub const MAX_CROSSING: usize = 4 << 20;
/// Messages published in one pipeline.
const BATCH: usize = 256;
/// How long one Redis operation may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// First wait after a failure to reach (or use) Redis; it doubles with
/// each failure in a row, up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the subscription connection is pinged: a link that goes silent
/// without FIN or RST (a hung proxy, a partition, a stopped Redis) is
/// noticed within this and [`TIMEOUT`], not never. TCP keepalive alone
/// does not see a peer that is there but does not answer.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A node's claim on its number lasts this long, renewed every third of it.
const CLAIM: Duration = Duration::from_secs(300);
/// Messages a gap on a kept topic's channel is filled with at most (read
/// back from its stream); a larger gap (a link down for long) is a reset
/// for the topic's subscribers here.
const FILL_MESSAGES: u32 = 10_000;
/// Bytes of a gap's fill, about.
const FILL_BYTES: usize = 16 << 20;

/// One message for Redis.
struct Outgoing {
    what: Outbound,
    /// Its bytes of the outgoing queue's bound, given back once it is sent
    /// (or dropped).
    _queued: Queued,
}

enum Outbound {
    /// To other nodes, on `channel`: the origin node, (for a send) the
    /// target id, then the frame.
    Publish { channel: String, payload: Vec<u8> },
    /// A kept topic's message, to its stream and every node.
    Kept(streams::Kept),
    /// A member of a topic left it.
    Leave { topic: String, id: ConnectionId },
}

impl Outbound {
    fn bytes(&self) -> usize {
        match self {
            Outbound::Publish { channel, payload } => channel.len() + payload.len(),
            Outbound::Kept(kept) => kept.bytes(),
            Outbound::Leave { topic, .. } => topic.len(),
        }
    }
}

/// Bytes counted against a queue's bound while alive.
struct Queued {
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl Queued {
    /// `bytes` more in the queue counted by `total`, unless that passes
    /// [`QUEUE_BYTES`].
    fn take(total: &Arc<AtomicUsize>, bytes: usize) -> Option<Queued> {
        total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + bytes <= QUEUE_BYTES).then_some(queued + bytes)
            })
            .ok()?;
        Some(Queued {
            bytes,
            total: total.clone(),
        })
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// This process's membership in a cluster.
#[derive(Debug)]
pub struct Cluster {
    node: u32,
    /// Topics whose local interest changed, for the subscriber task.
    changes: mpsc::UnboundedSender<Arc<str>>,
    outgoing: mpsc::Sender<Outgoing>,
    /// Bytes in `outgoing`.
    outgoing_bytes: Arc<AtomicUsize>,
    /// The kept topics' streams.
    streams: Arc<Streams>,
    /// The members of topics.
    members: Arc<Members>,
}

impl Cluster {
    /// Join the cluster at `url`: claim a node number (a random one when
    /// Redis cannot be reached now), start the tasks that carry messages
    /// both ways, and relay `topics` through them.
    pub async fn join(url: &str, topics: Arc<Topics>) -> Result<Arc<Cluster>> {
        Cluster::check_url(url)?;
        let client = redis::Client::open(url)?;
        let url = redacted(url);
        let node = match within(claim(&client)).await {
            Ok(node) => node,
            Err(why) => {
                let node = random_node();
                tracing::warn!(
                    "cluster: Redis at {url} unreachable ({why}); node {node} unclaimed, local delivery only until it is back"
                );
                node
            }
        };
        let (changes, changed) = mpsc::unbounded_channel();
        let (outgoing, queued) = mpsc::channel(QUEUE);
        let link = Arc::new(link::Link::new(client.clone()));
        let streams = Arc::new(Streams::new(link.clone()));
        let members = Arc::new(Members::new(node, link));
        let cluster = Arc::new(Cluster {
            node,
            changes,
            outgoing,
            outgoing_bytes: Arc::default(),
            streams: streams.clone(),
            members: members.clone(),
        });
        topics.set_relay(cluster.clone());
        tokio::spawn(members::beat(members.clone(), topics.clone()));
        let listening = listen(node, client.clone(), topics, changed, streams.clone());
        tokio::spawn(listening);
        tokio::spawn(publish(node, client, queued, streams, members));
        tracing::info!("cluster: node {node} on {url}");
        Ok(cluster)
    }

    /// Check `url` is a Redis URL (without connecting).
    pub fn check_url(url: &str) -> Result<()> {
        redis::Client::open(url)
            .with_context(|| format!("cluster {}: not a Redis URL", redacted(url)))?;
        Ok(())
    }

    /// The first connection id this node gives out.
    pub fn first_id(&self) -> ConnectionId {
        (u64::from(self.node) << LOCAL_BITS) | 1
    }

    fn queue(&self, what: Outbound) {
        let bytes = what.bytes();
        if bytes > MAX_CROSSING + MAX_TOPIC + 32 {
            tracing::debug!(
                "cluster: a message of {bytes} bytes is not sent to other processes (at most {MAX_CROSSING})"
            );
            meters::cluster_dropped("too_large", 1);
            return;
        }
        let Some(queued) = Queued::take(&self.outgoing_bytes, bytes + PER_MESSAGE) else {
            meters::cluster_dropped("queue_full", 1);
            return;
        };
        let outgoing = Outgoing {
            what,
            _queued: queued,
        };
        if self.outgoing.try_send(outgoing).is_err() {
            meters::cluster_dropped("queue_full", 1);
        }
    }
}

impl Relay for Cluster {
    fn interest_changed(&self, topic: &str) {
        let _ = self.changes.send(Arc::from(topic));
    }

    fn publish(&self, topic: &str, frame: &Bytes) {
        let mut payload = Vec::with_capacity(4 + frame.len());
        payload.extend_from_slice(&self.node.to_be_bytes());
        payload.extend_from_slice(frame);
        let channel = topic_channel(topic);
        self.queue(Outbound::Publish { channel, payload });
    }

    fn send(&self, id: ConnectionId, frame: &Bytes) -> bool {
        let node = node_of(id);
        if node == 0 || node == self.node {
            return false;
        }
        let mut payload = Vec::with_capacity(12 + frame.len());
        payload.extend_from_slice(&self.node.to_be_bytes());
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(frame);
        let channel = node_channel(node);
        self.queue(Outbound::Publish { channel, payload });
        true
    }

    fn publish_kept(&self, topic: &str, message: KeptMessage<'_>) {
        let kept = streams::Kept::new(self.node, topic, message);
        self.queue(Outbound::Kept(kept));
    }

    fn max_kept(&self) -> usize {
        MAX_CROSSING
    }

    fn read<'a>(&'a self, topic: &'a str, read: &'a Read) -> BoxFuture<'a, Result<Page, String>> {
        Box::pin(self.streams.read(topic, read))
    }

    fn join<'a>(
        &'a self,
        topic: &'a str,
        id: ConnectionId,
        info: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.members.join(topic, id, info))
    }

    fn leave(&self, topic: &str, id: ConnectionId) {
        let topic = topic.to_string();
        self.queue(Outbound::Leave { topic, id });
    }

    fn members<'a>(
        &'a self,
        topic: &'a str,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<(ConnectionId, String)>, String>> {
        Box::pin(self.members.list(topic, after, limit))
    }

    fn count<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<u32, String>> {
        Box::pin(self.members.count(topic))
    }
}

/// The node a connection id belongs to (0: no cluster).
pub fn node_of(id: ConnectionId) -> u32 {
    (id >> LOCAL_BITS) as u32
}

fn topic_channel(topic: &str) -> String {
    format!("{PREFIX}t:{topic}")
}

fn node_channel(node: u32) -> String {
    format!("{PREFIX}n:{node}")
}

fn node_key(node: u32) -> String {
    format!("{PREFIX}node:{node}")
}

/// A node number no live node holds: a random one, claimed with `SET NX`.
async fn claim(client: &redis::Client) -> redis::RedisResult<u32> {
    let mut conn = connect(client).await?;
    loop {
        let node = random_node();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(node_key(node))
            .arg(std::process::id())
            .arg("NX")
            .arg("EX")
            .arg(CLAIM.as_secs())
            .query_async(&mut conn)
            .await?;
        if claimed.is_some() {
            return Ok(node);
        }
    }
}

/// A random node number, never 0 (the id space of a process without a cluster).
fn random_node() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(now.map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    let max = (1u64 << NODE_BITS) - 1;
    (hasher.finish() % max + 1) as u32
}

/// A connection whose requests may take [`TIMEOUT`] (the crate's default
/// is 0.5 s: a large read, or a batch Redis already ran, would count as
/// failed and be run again).
pub(crate) async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `op`, within [`TIMEOUT`]; why it failed.
async fn within<T>(op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match timeout(TIMEOUT, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

/// `url` as it may be logged or printed: a password (or whole user info)
/// in it becomes `***`, so `redis://:secret@host` is `redis://***@host`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Logs an outage once, and the reconnection after it; paces the attempts
/// (every failure path waits, the wait doubling: a Redis that refuses
/// SUBSCRIBE or PUBLISH, say by its ACLs, is not hammered).
struct Outage {
    what: &'static str,
    since: Option<Instant>,
    backoff: Duration,
}

impl Outage {
    fn new(what: &'static str) -> Self {
        Outage {
            what,
            since: None,
            backoff: BACKOFF,
        }
    }

    /// A failure: logged if it starts an outage; wait before trying again.
    async fn failed(&mut self, why: &str) {
        self.down(why);
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn down(&mut self, why: &str) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                "cluster: {}: Redis unreachable ({why}); local delivery goes on, retrying",
                self.what
            );
        }
    }

    fn up(&mut self) {
        self.backoff = BACKOFF;
        if let Some(since) = self.since.take() {
            meters::cluster_reconnected();
            tracing::info!(
                "cluster: {}: Redis reachable again after {:.1} s",
                self.what,
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// Subscribe to this node's channel and every topic with local subscribers;
/// deliver what other nodes send. Forever, reconnecting.
async fn listen(
    node: u32,
    client: redis::Client,
    topics: Arc<Topics>,
    mut changed: mpsc::UnboundedReceiver<Arc<str>>,
    streams: Arc<Streams>,
) {
    let mut outage = Outage::new("subscriptions");
    // Fanned out by a task of its own: a fan-out to many sockets must not
    // keep this task from reading (redis-rs would buffer without bound).
    let (incoming, arrived) = mpsc::unbounded_channel();
    let incoming_bytes = Arc::new(AtomicUsize::new(0));
    tokio::spawn(fan_out(node, topics.clone(), arrived, streams));
    loop {
        let pubsub = match within(client.get_async_pubsub()).await {
            Ok(pubsub) => pubsub,
            Err(why) => {
                outage.failed(&why).await;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // What changed so far is covered by subscribing to what is wanted now.
        while changed.try_recv().is_ok() {}
        let names = topics.names();
        let mut channels = vec![node_channel(node)];
        channels.extend(names.iter().map(|t| topic_channel(t)));
        let count = channels.len() - 1;
        if let Err(why) = within(sink.subscribe(channels)).await {
            outage.failed(&why).await;
            continue;
        }
        // What was published while this link was down or not yet there.
        for topic in names {
            let _ = incoming.send(Incoming::CatchUp(topic));
        }
        outage.up();
        meters::cluster_connected(true);
        tracing::info!("cluster: subscribed to this node's channel and {count} topics");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let bytes = msg.get_payload_bytes().len() + PER_MESSAGE;
                        match Queued::take(&incoming_bytes, bytes) {
                            Some(queued) => {
                                let _ = incoming.send(Incoming::Message(msg, queued));
                            }
                            None => meters::cluster_dropped("incoming_full", 1),
                        }
                    }
                    None => break "the subscription connection closed".to_string(),
                },
                _ = ping.tick() => {
                    if let Err(why) = within(sink.ping::<redis::Value>()).await {
                        break format!("no answer to PING on the subscription ({why})");
                    }
                }
                Some(topic) = changed.recv() => {
                    let channel = topic_channel(&topic);
                    let done = if topics.has(&topic) {
                        let done = within(sink.subscribe(channel)).await;
                        let _ = incoming.send(Incoming::CatchUp(topic));
                        done
                    } else {
                        within(sink.unsubscribe(channel)).await
                    };
                    if let Err(why) = done {
                        break why;
                    }
                }
            }
        };
        meters::cluster_connected(false);
        outage.failed(&why).await;
    }
}

/// What the subscription task hands the fan-out task, in order.
enum Incoming {
    /// A message on one of this node's channels.
    Message(redis::Msg, Queued),
    /// This node (re)subscribed to a topic's channel: a kept topic's mirror
    /// reads what it missed before the subscription took effect.
    CatchUp(Arc<str>),
}

/// Deliver what other nodes send, as the subscription task hands it over.
async fn fan_out(
    node: u32,
    topics: Arc<Topics>,
    mut arrived: mpsc::UnboundedReceiver<Incoming>,
    streams: Arc<Streams>,
) {
    let topic_prefix = format!("{PREFIX}t:");
    // Topics whose catch-up is under way: one at a time each, off this task
    // (a client that subscribes and leaves over and over must not hold up
    // every other topic's delivery); one asked for meanwhile runs after it.
    let catching_up: Arc<std::sync::Mutex<HashMap<Arc<str>, bool>>> = Arc::default();
    while let Some(incoming) = arrived.recv().await {
        match incoming {
            Incoming::Message(msg, _queued) => {
                if let Some((topic, live)) = received(node, &topic_prefix, &topics, &msg) {
                    deliver_kept(&topics, &streams, topic, &live).await;
                }
            }
            Incoming::CatchUp(topic) => {
                let pending = catching_up.clone();
                if let Some(again) = lock_set(&pending).get_mut(&topic) {
                    *again = true;
                    continue;
                }
                lock_set(&pending).insert(topic.clone(), false);
                let (topics, streams) = (topics.clone(), streams.clone());
                tokio::spawn(async move {
                    loop {
                        catch_up(&topics, &streams, &topic).await;
                        let mut pending = lock_set(&pending);
                        match pending.get_mut(&topic) {
                            Some(again) if *again => *again = false,
                            _ => {
                                pending.remove(&topic);
                                break;
                            }
                        }
                    }
                });
            }
        }
    }
}

fn lock_set<T>(set: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read what `topic`'s mirror missed before this node's subscription took
/// effect, page by page until it has it all (a few pages at most: what is
/// left after them comes with the next message, as a gap).
async fn catch_up(topics: &Topics, streams: &Streams, topic: &str) {
    for _ in 0..4 {
        let Some(read) = topics.catch_up(topic, FILL_MESSAGES, FILL_BYTES) else {
            return;
        };
        match streams.read(topic, &read).await {
            Ok(page) if topics.follow(topic, &page) => return,
            Ok(_) => {}
            Err(why) => {
                tracing::warn!(
                    "cluster: topic {topic:?}: reading its history after subscribing: {why}"
                );
                return;
            }
        }
    }
}

/// Deliver a kept topic's message in offset order: a gap before it is
/// read back from the topic's stream first, and one that cannot be (Redis
/// trimmed it, or cannot be reached) is a reset for the subscribers here.
async fn deliver_kept(topics: &Topics, streams: &Streams, topic: &str, live: &streams::Live) {
    let arrive = |force| topics.arrive(topic, &live.epoch, &live.entry, force);
    let Some(after) = arrive(false) else {
        return;
    };
    let read = topics.fill(topic, after, FILL_MESSAGES, FILL_BYTES);
    match streams.read(topic, &read).await {
        // Read after it came: a stream started over since outdates it.
        Ok(page) if page.epoch != live.epoch => {
            topics.follow(topic, &page);
            return;
        }
        Ok(page) => {
            topics.follow(topic, &page);
        }
        Err(why) => {
            tracing::warn!("cluster: topic {topic:?}: reading what its channel missed: {why}")
        }
    }
    if arrive(false).is_some() {
        meters::cluster_dropped("history_gap", 1);
        arrive(true);
    }
}

/// Deliver one message from another node; a kept topic's (from any node,
/// this one too) is returned, to be delivered in offset order.
fn received<'m>(
    node: u32,
    topic_prefix: &str,
    topics: &Topics,
    msg: &'m redis::Msg,
) -> Option<(&'m str, streams::Live)> {
    let payload = msg.get_payload_bytes();
    let (origin, rest) = payload.split_first_chunk::<4>()?;
    let channel = msg.get_channel_name();
    if let Some(topic) = channel.strip_prefix(topic_prefix)
        && let Some(live) = streams::live(rest)
    {
        meters::cluster_received("publish");
        return Some((topic, live));
    }
    if u32::from_be_bytes(*origin) == node {
        return None; // our own publish, delivered here already
    }
    if let Some(topic) = channel.strip_prefix(topic_prefix) {
        if whole_frame(rest) {
            meters::cluster_received("publish");
            topics.publish(topic, &Bytes::copy_from_slice(rest), None);
        }
    } else if let Some((id, frame)) = rest.split_first_chunk::<8>()
        && whole_frame(frame)
    {
        meters::cluster_received("send");
        topics.deliver(u64::from_be_bytes(*id), Bytes::copy_from_slice(frame));
    }
    None
}

/// Whether `bytes` is one whole unmasked text or binary server frame, as
/// nodes publish: anything else would corrupt the sockets it is queued to.
fn whole_frame(bytes: &[u8]) -> bool {
    let [first, second, rest @ ..] = bytes else {
        return false;
    };
    if !matches!(first, 0x81 | 0x82) || second & 0x80 != 0 {
        return false;
    }
    let (len, payload) = match second & 0x7f {
        126 => match rest.split_first_chunk::<2>() {
            Some((len, payload)) => (u64::from(u16::from_be_bytes(*len)), payload),
            None => return false,
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((len, payload)) => (u64::from_be_bytes(*len), payload),
            None => return false,
        },
        n => (u64::from(n), rest),
    };
    payload.len() as u64 == len
}

/// Publish what is queued for other nodes, in order, pipelined; keep this
/// node's claim on its number. Forever, reconnecting; while Redis is
/// unreachable what is queued is dropped (at-most-once).
async fn publish(
    node: u32,
    client: redis::Client,
    mut queued: mpsc::Receiver<Outgoing>,
    streams: Arc<Streams>,
    members: Arc<Members>,
) {
    let mut outage = Outage::new("publishing");
    loop {
        let connected = async {
            let mut conn = connect(&client).await?;
            streams.prepare(&mut conn).await?;
            Ok(conn)
        };
        let mut conn = match within(connected).await {
            Ok(conn) => conn,
            Err(why) => {
                let mut dropped = 0;
                while queued.try_recv().is_ok() {
                    dropped += 1;
                }
                meters::cluster_dropped("redis_down", dropped);
                outage.failed(&why).await;
                continue;
            }
        };
        // Reachable again once something succeeds on it (a connection that
        // Redis then refuses to publish on is no recovery).
        let mut renewal = tokio::time::interval(CLAIM / 3);
        loop {
            let first = tokio::select! {
                first = queued.recv() => first,
                _ = renewal.tick() => {
                    // Again after Redis restarted without its data, too.
                    let mut renew = redis::cmd("SET");
                    renew.arg(node_key(node)).arg(std::process::id()).arg("EX").arg(CLAIM.as_secs());
                    if let Err(why) = within(renew.query_async::<()>(&mut conn)).await {
                        outage.failed(&why).await;
                        break;
                    }
                    outage.up();
                    continue;
                }
            };
            let Some(first) = first else {
                return; // the cluster handle is gone
            };
            let mut pipe = redis::pipe();
            // Counted against the bound until the pipeline is sent.
            let mut held = Vec::with_capacity(BATCH);
            let mut add = |outgoing: Outgoing| {
                let Outgoing { what, _queued } = outgoing;
                match what {
                    // Not `ignore`d: under `ignore_errors` an ignored
                    // command's error would go unseen.
                    Outbound::Publish { channel, payload } => {
                        pipe.publish(channel, payload);
                    }
                    Outbound::Kept(kept) => kept.add_to(&mut pipe, &streams),
                    Outbound::Leave { topic, id } => members.leave(&mut pipe, &topic, id),
                }
                held.push(_queued);
            };
            add(first);
            let mut count = 1;
            while count < BATCH
                && let Ok(next) = queued.try_recv()
            {
                add(next);
                count += 1;
            }
            // A command Redis refuses (a kept topic's script, say, under
            // `maxmemory` with `noeviction`) fails alone, not the batch.
            pipe.ignore_errors();
            let sent = within(pipe.query_async::<Vec<redis::Value>>(&mut conn)).await;
            drop(held);
            match sent {
                Ok(replies) => {
                    outage.up();
                    let refused = refused(&replies);
                    meters::cluster_sent(count.saturating_sub(refused.len()));
                    if !refused.is_empty() {
                        meters::cluster_dropped("redis_error", refused.len());
                        tracing::warn!(
                            "cluster: Redis refused {} of {count} messages: {}",
                            refused.len(),
                            refused[0]
                        );
                    }
                    // Redis forgot the script (it restarted, or failed over).
                    if refused.iter().any(|e| e.starts_with("NOSCRIPT"))
                        && let Err(why) = within(streams.prepare(&mut conn)).await
                    {
                        outage.failed(&why).await;
                        break;
                    }
                }
                Err(why) => {
                    meters::cluster_dropped("redis_down", count);
                    outage.failed(&why).await;
                    break;
                }
            }
        }
    }
}

/// The errors among a pipeline's replies, as Redis gave them.
fn refused(replies: &[redis::Value]) -> Vec<String> {
    replies
        .iter()
        .filter_map(|reply| match reply {
            redis::Value::ServerError(e) => {
                Some(format!("{} {}", e.code(), e.details().unwrap_or("")))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_logged_without_its_user_info() {
        assert_eq!(
            redacted("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redacted("rediss://app:p@ss@db"), "rediss://***@db");
        assert_eq!(redacted("redis://db:6379"), "redis://db:6379");
        assert_eq!(redacted("redis://db/0?x=a@b"), "redis://db/0?x=a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }
    use crate::ws::frame::{self, Kind};

    #[test]
    fn only_whole_server_frames_pass() {
        for len in [0, 5, 125, 126, 70_000] {
            let frame = frame::encode(Kind::Text, true, &vec![b'x'; len]);
            assert!(whole_frame(&frame), "{len}");
            assert!(!whole_frame(&frame[..frame.len() - 1]), "{len}");
        }
        assert!(!whole_frame(&frame::encode(Kind::Text, false, b"part")));
        assert!(!whole_frame(&frame::close(1000, "")));
        assert!(!whole_frame(b""));
    }

    #[test]
    fn ids_carry_their_node() {
        let node = random_node();
        assert!(node > 0 && u64::from(node) < 1 << NODE_BITS);
        let id = (u64::from(node) << LOCAL_BITS) | 12345;
        assert_eq!(node_of(id), node);
        assert_eq!(node_of(7), 0);
    }
}
