//! Presence across the cluster (`--cluster`): every process's members of
//! every topic, in Redis, so a list or a count is the cluster's.
//!
//! A topic's members are a sorted set `wshost:pm:TOPIC` (the connection
//! ids, zero-padded to 20 digits, all of score 0: listed by id in order,
//! counted with `ZCARD`) and a hash `wshost:pi:TOPIC` (id → info). Each node
//! lists what it added in `wshost:pn:NODE` (`ID TOPIC`), and beats
//! ([`beat`]): every [`BEAT`] it sets its deadline in `wshost:nodes` to
//! [`NODE_TTL`] ahead (by Redis's clock). A node past its deadline is dead
//! (killed, or cut off from Redis): the next live node to beat removes its
//! members (and sends the leave notices of the topics that have them on
//! there). So a dead process's members are gone within `NODE_TTL` +
//! `BEAT`, 13 s.
//!
//! A join is written before the guest's call returns (the guest then finds
//! itself in the list); a leave is queued with the node's publishes (a
//! connection's end does not wait). A node whose record in Redis differs
//! from its members at two beats in a row (Redis lost its data, or it was
//! taken for dead while cut off) writes them all again (without join
//! notices). A node whose own deadline had passed at a beat (Redis was
//! away) takes no other for dead at that beat: after an outage every node
//! gets one beat to say it is alive.

use super::link::Link;
use crate::bindings::ConnectionId;
use crate::pubsub::presence;
use crate::pubsub::topics::Topics;
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use std::sync::Arc;
use std::time::Duration;

/// How often a node beats.
pub const BEAT: Duration = Duration::from_secs(3);
/// How long after its last beat a node is taken for dead.
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// Members of a dead node removed per script call.
const CLEAN_BATCH: usize = 1_000;

/// KEYS: the nodes' deadlines, this node's record. ARGV: this node, the TTL
/// in ms. Returns the record's size and up to 16 dead nodes: none when this
/// node's own deadline had passed too (Redis, or this node's link to it,
/// was away: the others may be as alive as this one, and get one beat to
/// say so).
const BEAT_SCRIPT: &str = r"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local before = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
local dead = {}
if before and before >= ms then
  dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms, 'LIMIT', 0, 16)
end
return {redis.call('SCARD', KEYS[2]), dead}
";

/// KEYS: the nodes' deadlines, a dead node's record. ARGV: the node, the
/// key prefix, the batch, this node, the TTL in ms. Removes a batch of the
/// dead node's members if it is still past its deadline (it may have
/// beaten since), returns them; and keeps this node's own deadline ahead
/// while it buries.
const CLEAN_SCRIPT: &str = r"
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[5]), ARGV[4])
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if deadline and deadline > ms then
  return {}
end
local gone = redis.call('SPOP', KEYS[2], ARGV[3])
for _, member in ipairs(gone) do
  local id = string.sub(member, 1, 20)
  local topic = string.sub(member, 22)
  redis.call('ZREM', ARGV[2] .. 'pm:' .. topic, id)
  redis.call('HDEL', ARGV[2] .. 'pi:' .. topic, id)
end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return gone
";

/// KEYS: this node's record. ARGV: the key prefix, then `ID TOPIC` and its
/// info for every member this node has. Replaces what the record says.
const SYNC_SCRIPT: &str = r"
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local id = string.sub(member, 1, 20)
  local topic = string.sub(member, 22)
  redis.call('ZREM', ARGV[1] .. 'pm:' .. topic, id)
  redis.call('HDEL', ARGV[1] .. 'pi:' .. topic, id)
end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do
  local id = string.sub(ARGV[i], 1, 20)
  local topic = string.sub(ARGV[i], 22)
  redis.call('ZADD', ARGV[1] .. 'pm:' .. topic, 0, id)
  redis.call('HSET', ARGV[1] .. 'pi:' .. topic, id, ARGV[i + 1])
  redis.call('SADD', KEYS[1], ARGV[i])
end
return 1
";

/// KEYS: a topic's members, their infos. ARGV: the range's start, the
/// count.
const LIST_SCRIPT: &str = r"
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return {ids, {}}
end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
";

/// The cluster's members, for this node.
pub struct Members {
    node: u32,
    /// The last beat found this node's record in Redis apart from its
    /// members.
    apart: std::sync::atomic::AtomicBool,
    link: Arc<Link>,
    beat: Script,
    clean: Script,
    sync: Script,
    list: Script,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").field("node", &self.node).finish()
    }
}

impl Members {
    pub fn new(node: u32, link: Arc<Link>) -> Members {
        Members {
            node,
            apart: Default::default(),
            link,
            beat: Script::new(BEAT_SCRIPT),
            clean: Script::new(CLEAN_SCRIPT),
            sync: Script::new(SYNC_SCRIPT),
            list: Script::new(LIST_SCRIPT),
        }
    }

    /// Connection `id` (this node's) is in `topic` with `info`.
    pub async fn join(&self, topic: &str, id: ConnectionId, info: &str) -> Result<(), String> {
        self.link
            .run(|mut conn| async move {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .zadd(members_key(topic), padded(id), 0)
                    .ignore()
                    .hset(infos_key(topic), padded(id), info)
                    .ignore()
                    .sadd(self.record_key(), record(id, topic))
                    .ignore();
                super::within(pipe.query_async::<()>(&mut conn)).await
            })
            .await
    }

    /// Connection `id` left `topic`: the commands, for the publishing task.
    pub fn leave(&self, pipe: &mut redis::Pipeline, topic: &str, id: ConnectionId) {
        pipe.zrem(members_key(topic), padded(id))
            .hdel(infos_key(topic), padded(id))
            .srem(self.record_key(), record(id, topic));
    }

    /// Up to `limit` members of `topic` after `after`, by id.
    pub async fn list(
        &self,
        topic: &str,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, String)>, String> {
        let from = after.map_or("-".to_string(), |id| format!("({}", padded(id)));
        let limit = limit.min(presence::MAX_LIST);
        let value: Value = self
            .link
            .run(|mut conn| {
                let mut call = self.list.key(members_key(topic));
                call.key(infos_key(topic)).arg(&from).arg(limit);
                async move { super::within(call.invoke_async(&mut conn)).await }
            })
            .await?;
        parse_list(value).ok_or_else(|| "an unexpected reply".to_string())
    }

    /// How many members `topic` has.
    pub async fn count(&self, topic: &str) -> Result<u32, String> {
        self.link
            .run(|mut conn| async move {
                let zcard = redis::cmd("ZCARD").arg(members_key(topic)).clone();
                super::within(zcard.query_async::<u32>(&mut conn)).await
            })
            .await
    }

    fn record_key(&self) -> String {
        format!("{}pn:{}", super::PREFIX, self.node)
    }

    /// One beat: this node's deadline set, its record written again if it
    /// differs from `topics`' members, and dead nodes' members removed.
    async fn beat_once(&self, topics: &Topics) -> Result<(), String> {
        let local = topics.presence().all();
        let (recorded, dead) = self
            .link
            .run(|mut conn| {
                let mut call = self.beat.key(nodes_key());
                call.key(self.record_key())
                    .arg(self.node)
                    .arg(NODE_TTL.as_millis() as u64);
                async move {
                    let value: Value = super::within(call.invoke_async(&mut conn)).await?;
                    parse_beat(value).ok_or_else(|| "an unexpected reply".to_string())
                }
            })
            .await?;
        // A join or leave under way differs for a moment: written again
        // only when two beats in a row find them apart.
        let apart = recorded != local.len();
        if apart && !self.apart.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return self.bury_all(dead, topics).await;
        }
        self.apart
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if apart {
            tracing::info!(
                "cluster: presence: {} members here, {recorded} recorded in Redis: written again",
                local.len()
            );
            self.link.run(|conn| self.write_all(conn, &local)).await?;
        }
        self.bury_all(dead, topics).await
    }

    async fn bury_all(&self, dead: Vec<u32>, topics: &Topics) -> Result<(), String> {
        for node in dead.into_iter().filter(|&node| node != self.node) {
            self.bury(node, topics).await?;
        }
        Ok(())
    }

    async fn write_all(
        &self,
        mut conn: MultiplexedConnection,
        local: &[(Arc<str>, ConnectionId, Arc<str>)],
    ) -> Result<(), String> {
        let mut call = self.sync.key(self.record_key());
        call.arg(super::PREFIX);
        for (topic, id, info) in local {
            call.arg(record(*id, topic)).arg(&**info);
        }
        super::within(call.invoke_async::<()>(&mut conn)).await
    }

    /// Remove dead `node`'s members; the topics with notices on here hear
    /// of each.
    async fn bury(&self, node: u32, topics: &Topics) -> Result<(), String> {
        let record_key = format!("{}pn:{node}", super::PREFIX);
        loop {
            let gone: Vec<String> = self
                .link
                .run(|mut conn| {
                    let mut call = self.clean.key(nodes_key());
                    call.key(&record_key)
                        .arg(node)
                        .arg(super::PREFIX)
                        .arg(CLEAN_BATCH)
                        .arg(self.node)
                        .arg(NODE_TTL.as_millis() as u64);
                    async move { super::within(call.invoke_async(&mut conn)).await }
                })
                .await?;
            for (id, topic) in gone.iter().filter_map(|r| parse_record(r)) {
                if topics.presence().notices(topic) {
                    topics.publish_notice(topic, &presence::leave_notice(id), None);
                }
            }
            if gone.len() < CLEAN_BATCH {
                if !gone.is_empty() {
                    tracing::info!("cluster: presence: node {node} is gone: its members left");
                }
                return Ok(());
            }
        }
    }
}

/// Beat every [`BEAT`], for as long as the process runs.
pub async fn beat(members: Arc<Members>, topics: Arc<Topics>) {
    let mut every = tokio::time::interval(BEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down = false;
    loop {
        every.tick().await;
        match members.beat_once(&topics).await {
            Ok(()) => down = false,
            Err(why) if !down => {
                down = true;
                tracing::warn!("cluster: presence: beat failed ({why}); retrying");
            }
            Err(_) => {}
        }
    }
}

fn nodes_key() -> String {
    format!("{}nodes", super::PREFIX)
}

fn members_key(topic: &str) -> String {
    format!("{}pm:{topic}", super::PREFIX)
}

fn infos_key(topic: &str) -> String {
    format!("{}pi:{topic}", super::PREFIX)
}

/// An id as the sorted set holds it: 20 digits, so order by bytes is
/// order by number.
fn padded(id: ConnectionId) -> String {
    format!("{id:020}")
}

/// A node's record of one membership: `ID TOPIC`.
fn record(id: ConnectionId, topic: &str) -> String {
    format!("{} {topic}", padded(id))
}

fn parse_record(record: &str) -> Option<(ConnectionId, &str)> {
    let (id, topic) = record.split_once(' ')?;
    Some((id.parse().ok()?, topic))
}

fn parse_beat(value: Value) -> Option<(usize, Vec<u32>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [Value::Int(recorded), Value::Array(dead)] = <[Value; 2]>::try_from(parts).ok()? else {
        return None;
    };
    let dead = dead
        .iter()
        .filter_map(|node| match node {
            Value::BulkString(n) => std::str::from_utf8(n).ok()?.parse().ok(),
            _ => None,
        })
        .collect();
    Some((usize::try_from(recorded).ok()?, dead))
}

fn parse_list(value: Value) -> Option<Vec<(ConnectionId, String)>> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [Value::Array(ids), Value::Array(infos)] = <[Value; 2]>::try_from(parts).ok()? else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    let list = ids
        .iter()
        .zip(infos.iter())
        .filter_map(|(id, info)| Some((text(id)?.parse().ok()?, text(info)?)))
        .collect();
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_numbers_and_records_parse_back() {
        assert!(padded(9) < padded(10));
        assert!(padded(u64::MAX).len() == 20);
        let r = record(42, "room: one");
        assert_eq!(parse_record(&r), Some((42, "room: one")));
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![bulk(&padded(3)), bulk(&padded(5))]),
            Value::Array(vec![bulk("carol"), Value::Nil]),
        ]);
        assert_eq!(parse_list(reply), Some(vec![(3, "carol".to_string())]));
        let beat = Value::Array(vec![Value::Int(2), Value::Array(vec![bulk("77")])]);
        assert_eq!(parse_beat(beat), Some((2, vec![77])));
    }
}
