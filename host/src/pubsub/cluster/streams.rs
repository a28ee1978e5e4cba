//! Topic history in Redis Streams (`--cluster`): the stream of record of
//! every topic that keeps history, so any process can recover any topic
//! and offsets count up by one per topic across the cluster.
//!
//! A topic has two keys: `wshost:hm:TOPIC`, a hash with the stream's epoch
//! (`e`) and its last offset (`o`), and `wshost:hs:TOPIC`, a Redis stream
//! whose entry `N-0` is message N (fields `t`: `1` for text; `d`: the
//! payload; `a`: when, in ms by Redis's clock).
//!
//! A publish is one script ([`PUBLISH`]), atomic in Redis: draw the epoch if
//! the hash is gone (Redis lost its data, or the keys expired: a position
//! of the old epoch is never taken for one of the new), count the offset
//! up, `XADD` it (trimmed with `MAXLEN ~`: at least the retention's
//! messages are kept), refresh both keys' TTL, and `PUBLISH` it with its
//! position on the topic's channel. So the channel carries each topic's
//! messages in offset order, and a process that missed some (it subscribed
//! late, its link dropped, its queue overflowed) sees the gap by
//! arithmetic and reads them back ([`Streams::read`]).

use super::link::Link;
use crate::bindings::ConnectionId;
use crate::pubsub::history::{self, Entry, Page, Read};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a topic's epoch and offset outlive its last publish (a stream
/// kept for an age goes after that age; the position stays this long, so
/// a client whose messages all aged out still resumes without a reset).
const META_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Messages one round trip reads at most.
const READ_PAGE: u32 = 1_000;
/// What a read message costs beyond its payload, against a read's bound
/// (as the read script counts it).
const PER_ENTRY: usize = 64;

/// How long the epoch of a stream that was read but never published to
/// lasts (a name read once costs Redis little, for little time; a topic
/// first published to after it is a new epoch: its first subscribers get
/// a reset notice, having missed nothing).
const READ_TTL: Duration = Duration::from_secs(3600);

/// Start the stream over with a new epoch (ARGV[n]) if its hash is gone
/// (Redis lost it, or it expired), or if its offset is below what a
/// process already delivered in this epoch (`floor`: Redis restored older
/// data); the epoch either way. Shared by both scripts.
const EPOCH: &str = r"
local function current_epoch(new, floor_epoch, floor, ttl)
  local epoch = redis.call('HGET', KEYS[1], 'e')
  local top = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
  if (not epoch) or (epoch == floor_epoch and top < tonumber(floor)) then
    epoch = new
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
    redis.call('EXPIRE', KEYS[1], ttl)
  end
  return epoch
end
";

/// KEYS: the hash, the stream. ARGV: the channel, the header of the
/// channel's message, `1` for text, the payload, MAXLEN, the stream's TTL,
/// the hash's TTL, an epoch for a new stream, the floor's epoch and offset,
/// the connection not to deliver to.
const PUBLISH: &str = r"
local epoch = current_epoch(ARGV[8], ARGV[9], ARGV[10], ARGV[7])
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local id = string.format('%d', offset)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], id .. '-0',
  't', ARGV[3], 'd', ARGV[4], 'a', string.format('%d', ms), 'x', ARGV[11])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. id .. ' ' .. epoch .. ' ' .. ARGV[4])
return offset
";

/// KEYS: the hash, the stream. ARGV: the offset to read after, how many
/// (0: the position alone), the TTL of a hash made here, an epoch for a
/// new stream, about how many bytes, the floor's epoch and offset. Reads
/// 16 entries at a time until the count or the bytes are reached (the
/// reply holds at most one entry past the bytes). Returns the epoch, the
/// last offset, Redis's clock (s, µs) and the entries.
const READ: &str = r"
local epoch = current_epoch(ARGV[4], ARGV[6], ARGV[7], ARGV[3])
local top = redis.call('HGET', KEYS[1], 'o') or '0'
local now = redis.call('TIME')
local entries = {}
local want = tonumber(ARGV[2])
local budget = tonumber(ARGV[5])
local from = '(' .. ARGV[1] .. '-0'
while want > 0 and budget > 0 do
  local chunk = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', math.min(want, 16))
  if #chunk == 0 then break end
  for _, entry in ipairs(chunk) do
    if want <= 0 or budget <= 0 then break end
    entries[#entries + 1] = entry
    want = want - 1
    budget = budget - #entry[2][4] - 64
    from = '(' .. entry[1]
  end
end
return {epoch, top, now[1], now[2], entries}
";

/// The largest offset taken from Redis: far beyond any real stream, and
/// room to count up without overflow.
const MAX_OFFSET: u64 = 1 << 53;

/// The kept topics' streams in one Redis.
pub struct Streams {
    /// For reads.
    link: Arc<Link>,
    read: Script,
    publish: Script,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

/// A publish to a kept topic, waiting for the publishing task.
pub struct Kept {
    pub topic: String,
    /// The header of the channel's message: the origin node, `K`, `1` for
    /// text, the connection not to deliver to (0: none).
    pub header: Vec<u8>,
    pub text: bool,
    pub payload: Vec<u8>,
    pub max_messages: u32,
    pub max_age: Option<Duration>,
    /// Where this process's mirror is (its epoch, its last offset), if it
    /// follows the stream: a stream below it went back.
    pub floor: Option<(Arc<str>, u64)>,
    pub exclude: Option<ConnectionId>,
}

impl Kept {
    pub fn new(node: u32, topic: &str, message: crate::pubsub::topics::KeptMessage<'_>) -> Kept {
        let mut header = Vec::with_capacity(14);
        header.extend_from_slice(&node.to_be_bytes());
        header.push(b'K');
        header.push(if message.text { b'1' } else { b'0' });
        header.extend_from_slice(&message.exclude.unwrap_or(0).to_be_bytes());
        Kept {
            topic: topic.to_string(),
            header,
            text: message.text,
            payload: message.payload.to_vec(),
            max_messages: message.retention.messages,
            max_age: message.retention.max_age,
            floor: message.floor,
            exclude: message.exclude,
        }
    }

    /// Bytes it holds while queued.
    pub fn bytes(&self) -> usize {
        self.topic.len() + self.header.len() + self.payload.len()
    }

    /// Its script call, added to `pipe` (the script loaded on the
    /// connection already: a connection that lost it fails the pipeline,
    /// and the next one loads it again).
    pub fn add_to(&self, pipe: &mut redis::Pipeline, streams: &Streams) {
        let ttl = self.max_age.map_or(META_TTL, |age| age.min(META_TTL));
        let (floor_epoch, floor) = floor_args(self.floor.as_ref());
        pipe.cmd("EVALSHA")
            .arg(streams.publish.get_hash())
            .arg(2)
            .arg(meta_key(&self.topic))
            .arg(stream_key(&self.topic))
            .arg(super::topic_channel(&self.topic))
            .arg(&self.header)
            .arg(if self.text { "1" } else { "0" })
            .arg(&self.payload)
            .arg(self.max_messages)
            .arg(ttl.as_secs().max(1))
            .arg(META_TTL.as_secs())
            .arg(&*history::new_epoch())
            .arg(floor_epoch)
            .arg(floor)
            .arg(self.exclude.unwrap_or(0));
    }
}

/// A kept topic's message as it came on its channel.
pub struct Live {
    pub epoch: Arc<str>,
    pub entry: Entry,
}

/// The message after its origin node (`K`, then the rest of its header,
/// then `OFFSET EPOCH PAYLOAD`), if it is a kept topic's.
pub fn live(rest: &[u8]) -> Option<Live> {
    let (&[b'K', text], rest) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    let (exclude, rest) = rest.split_first_chunk::<8>()?;
    let space = |bytes: &[u8]| bytes.iter().position(|&b| b == b' ');
    let at = space(rest)?;
    let offset: u64 = std::str::from_utf8(&rest[..at]).ok()?.parse().ok()?;
    let rest = &rest[at + 1..];
    let at = space(rest)?;
    let epoch = std::str::from_utf8(&rest[..at]).ok()?;
    let payload = &rest[at + 1..];
    let text = text == b'1';
    if offset == 0 || offset > MAX_OFFSET || (text && std::str::from_utf8(payload).is_err()) {
        return None;
    }
    let exclude = u64::from_be_bytes(*exclude);
    Some(Live {
        epoch: Arc::from(epoch),
        entry: Entry {
            offset,
            text,
            payload: Bytes::copy_from_slice(payload),
            age: Duration::ZERO,
            exclude: (exclude != 0).then_some(exclude),
        },
    })
}

impl Streams {
    pub fn new(link: Arc<Link>) -> Streams {
        Streams {
            link,
            read: Script::new(&format!("{EPOCH}{READ}")),
            publish: Script::new(&format!("{EPOCH}{PUBLISH}")),
        }
    }

    /// Load the publish script on `conn` (Redis forgets scripts when it
    /// restarts).
    pub async fn prepare(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        self.publish.load_async(conn).await.map(drop)
    }

    /// `topic`'s stream as `read` says: page after page, until its last
    /// message, `max_messages` or past `max_bytes`; one run of offsets (a
    /// read that finds a hole, trimmed between two pages, stops short
    /// before it).
    pub async fn read(&self, topic: &str, read: &Read) -> Result<Page, String> {
        let read = |conn| self.read_pages(conn, topic, read);
        self.link.run(read).await
    }

    async fn read_pages(
        &self,
        mut conn: MultiplexedConnection,
        topic: &str,
        read: &Read,
    ) -> Result<Page, String> {
        let (floor_epoch, floor) = floor_args(read.floor.as_ref());
        let (after, max_messages, max_bytes) = (read.after, read.max_messages, read.max_bytes);
        let mut so_far: Option<Page> = None;
        let mut cursor = after.unwrap_or(0);
        let mut bytes = 0;
        loop {
            let got = so_far.as_ref().map_or(0, |p| p.entries.len() as u32);
            let count = match after {
                Some(_) => max_messages.saturating_sub(got).min(READ_PAGE),
                None => 0,
            };
            let mut call = self.read.key(meta_key(topic));
            call.key(stream_key(topic))
                .arg(cursor)
                .arg(count)
                .arg(READ_TTL.as_secs())
                .arg(&*history::new_epoch())
                .arg(max_bytes.saturating_sub(bytes).max(1))
                .arg(floor_epoch)
                .arg(floor);
            let value: Value = super::within(call.invoke_async(&mut conn)).await?;
            let (epoch, top, entries) = parse_read(value).ok_or("an unexpected reply")?;
            let page = so_far.get_or_insert_with(|| Page {
                epoch: epoch.clone(),
                top,
                entries: Vec::new(),
                complete: false,
            });
            if page.epoch != epoch {
                return Err("the stream started over while read".into());
            }
            page.top = top;
            let read = entries.len();
            let mut holed = false;
            for entry in entries {
                if !page.entries.is_empty() && entry.offset != cursor + 1 {
                    holed = true;
                    break;
                }
                bytes += entry.payload.len() + PER_ENTRY;
                cursor = entry.offset;
                page.entries.push(entry);
            }
            page.complete = cursor >= top && !holed;
            let full = page.entries.len() as u32 >= max_messages || bytes > max_bytes;
            if count == 0 || read == 0 || page.complete || full || holed {
                return Ok(so_far.expect("read once"));
            }
        }
    }
}

/// The floor's arguments: its epoch (empty: none) and offset.
fn floor_args(floor: Option<&(Arc<str>, u64)>) -> (&str, u64) {
    floor.map_or(("", 0), |(epoch, last)| (&**epoch, *last))
}

fn meta_key(topic: &str) -> String {
    format!("{}hm:{topic}", super::PREFIX)
}

fn stream_key(topic: &str) -> String {
    format!("{}hs:{topic}", super::PREFIX)
}

/// `[epoch, top, seconds, microseconds, [[id, [field, value, ...]], ...]]`.
fn parse_read(value: Value) -> Option<(Arc<str>, u64, Vec<Entry>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, top, secs, micros, Value::Array(raw)] = <[Value; 5]>::try_from(parts).ok()? else {
        return None;
    };
    let epoch: Arc<str> = Arc::from(string(&epoch)?);
    let number = |v: &Value| string(v)?.parse::<u64>().ok();
    let top = number(&top)?;
    let now_ms = number(&secs)?
        .saturating_mul(1000)
        .saturating_add(number(&micros)? / 1000);
    // An entry that does not parse (not written by wshost) ends the run.
    let entries = raw
        .into_iter()
        .map_while(|entry| parse_entry(entry, now_ms))
        .collect();
    Some((epoch, top.min(MAX_OFFSET), entries))
}

fn parse_entry(entry: Value, now_ms: u64) -> Option<Entry> {
    let Value::Array(entry) = entry else {
        return None;
    };
    let [id, Value::Array(fields)] = <[Value; 2]>::try_from(entry).ok()? else {
        return None;
    };
    let offset = string(&id)?.strip_suffix("-0")?.parse().ok()?;
    if offset == 0 || offset > MAX_OFFSET {
        return None;
    }
    let (mut text, mut payload, mut at, mut exclude) = (false, None, now_ms, 0);
    for pair in fields.chunks_exact(2) {
        match (string(&pair[0])?.as_str(), &pair[1]) {
            ("t", value) => text = string(value)? == "1",
            ("d", Value::BulkString(data)) => payload = Some(Bytes::copy_from_slice(data)),
            ("a", value) => at = string(value)?.parse().ok()?,
            ("x", value) => exclude = string(value)?.parse().ok()?,
            _ => {}
        }
    }
    let payload = payload?;
    if text && std::str::from_utf8(&payload).is_err() {
        return None;
    }
    Some(Entry {
        offset,
        text,
        payload,
        age: Duration::from_millis(now_ms.saturating_sub(at)),
        exclude: (exclude != 0).then_some(exclude),
    })
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::history::{Envelope, Retention};
    use crate::pubsub::topics::KeptMessage;

    #[test]
    fn a_live_message_carries_its_position() {
        let retention = Retention {
            messages: 10,
            max_age: None,
            envelope: Envelope::Json,
        };
        let message = KeptMessage {
            text: true,
            payload: b"hi there",
            exclude: Some(42),
            retention,
            floor: None,
        };
        let kept = Kept::new(7, "t", message);
        let mut wire = kept.header[4..].to_vec();
        wire.extend_from_slice(b"12 00ff00ff00ff00ff hi there");
        let live = live(&wire).unwrap();
        assert_eq!(&*live.epoch, "00ff00ff00ff00ff");
        assert_eq!(live.entry.offset, 12);
        assert!(live.entry.text);
        assert_eq!(&live.entry.payload[..], b"hi there");
        assert_eq!(live.entry.exclude, Some(42));
        assert!(
            super::live(b"K1\0\0\0\0\0\0\0\0x 1 a").is_none(),
            "no offset"
        );
        assert!(
            super::live(b"K1\0\0\0\0\0\0\0\x001 e\xff").is_none(),
            "bad text"
        );
        assert!(super::live(b"\x81\x02hi").is_none(), "a plain frame");
    }

    #[test]
    fn a_read_reply_is_parsed() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, text: &str, data: &str, at: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![
                    bulk("t"),
                    bulk(text),
                    bulk("d"),
                    bulk(data),
                    bulk("a"),
                    bulk(at),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            bulk("abc"),
            bulk("9"),
            bulk("100"),
            bulk("500000"),
            Value::Array(vec![
                entry("8-0", "1", "x", "99000"),
                entry("9-0", "0", "\u{1}", "100500"),
            ]),
        ]);
        let (epoch, top, entries) = parse_read(reply).unwrap();
        assert_eq!((&*epoch, top), ("abc", 9));
        assert_eq!(entries[0].offset, 8);
        assert_eq!(entries[0].age, Duration::from_millis(1500));
        assert!(!entries[1].text);
        assert_eq!(entries[1].age, Duration::ZERO);
    }
}
