//! Presence on this process (with `--cluster`, also in Redis:
//! [`crate::pubsub::cluster`]): who is in a topic (the connections that joined
//! it, each with the info its guest gave), how many, and join and leave
//! notices to the topic's subscribers when the topic asks for them.
//!
//! Invariant: a connection is a member of a topic only while subscribed to
//! it: [`crate::pubsub::topics::Subscriptions`] leaves when it unsubscribes
//! and when its connection's host state ends (as its subscriptions do: in
//! the handler and coro worlds when the handler returns, in the event world
//! when its close is handled).

use crate::bindings::ConnectionId;
use crate::ws::frame::{self, Kind};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use wshost_config::PresenceRule;

/// The longest info a member may carry, in bytes.
pub const MAX_INFO: usize = 1024;
/// Topics one connection may be a member of.
pub const MAX_PRESENCES: usize = 64;
/// Members one list returns at most.
pub const MAX_LIST: u32 = 1000;
/// Topics that may have notices on.
pub const MAX_NOTICE_TOPICS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresenceError {
    #[error("a member's info is at most {MAX_INFO} bytes, not {0}")]
    Info(usize),
    #[error("a connection is a member of at most {MAX_PRESENCES} topics")]
    TooMany,
    #[error("at most {MAX_NOTICE_TOPICS} topics have notices on")]
    TooManyNoticeTopics,
}

/// One topic's members, by id, with their info.
type Members = BTreeMap<ConnectionId, Arc<str>>;

/// Every topic's members.
#[derive(Debug, Default)]
pub struct Presence {
    members: Mutex<HashMap<Arc<str>, Members>>,
    /// Topics whose guests turned notices on or off.
    notices: RwLock<HashMap<Arc<str>, bool>>,
    /// The config file's `[[presence]]`: notices for the topics a guest did
    /// not name.
    rules: std::sync::OnceLock<Vec<PresenceRule>>,
}

impl Presence {
    fn members(&self) -> MutexGuard<'_, HashMap<Arc<str>, Members>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `id` is in `topic` with `info`; true if it was not yet.
    pub fn join(&self, topic: &Arc<str>, id: ConnectionId, info: &str) -> bool {
        let mut members = self.members();
        let topic = members.entry(topic.clone()).or_default();
        topic.insert(id, Arc::from(info)).is_none()
    }

    /// `id` has left `topic`; true if it was in it.
    pub fn leave(&self, topic: &str, id: ConnectionId) -> bool {
        let mut members = self.members();
        let Some(list) = members.get_mut(topic) else {
            return false;
        };
        let was = list.remove(&id).is_some();
        if list.is_empty() {
            members.remove(topic);
        }
        was
    }

    /// Up to `limit` (at most [`MAX_LIST`]) members of `topic` after
    /// `after`, by id.
    pub fn list(
        &self,
        topic: &str,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Vec<(ConnectionId, Arc<str>)> {
        let members = self.members();
        let Some(list) = members.get(topic) else {
            return Vec::new();
        };
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        list.range((from, std::ops::Bound::Unbounded))
            .take(limit.min(MAX_LIST) as usize)
            .map(|(&id, info)| (id, info.clone()))
            .collect()
    }

    /// Every membership here: topic, connection, info.
    pub fn all(&self) -> Vec<(Arc<str>, ConnectionId, Arc<str>)> {
        let members = self.members();
        let each = members.iter().flat_map(|(topic, list)| {
            list.iter()
                .map(move |(&id, info)| (topic.clone(), id, info.clone()))
        });
        each.collect()
    }

    /// How many members `topic` has.
    pub fn count(&self, topic: &str) -> u32 {
        self.members()
            .get(topic)
            .map_or(0, |list| list.len() as u32)
    }

    /// Notices for the topics `rules` cover (set once, at start).
    pub fn set_rules(&self, rules: Vec<PresenceRule>) {
        let _ = self.rules.set(rules);
    }

    /// Send `topic`'s subscribers notices from now on, or stop (over what
    /// a `[[presence]]` rule says).
    pub fn set_notices(&self, topic: &str, on: bool) -> Result<(), PresenceError> {
        let mut notices = self.notices.write().unwrap_or_else(|e| e.into_inner());
        if on == self.ruled(topic) {
            // What the rules say (off without one): nothing to keep.
            notices.remove(topic);
            return Ok(());
        }
        if !notices.contains_key(topic) && notices.len() >= MAX_NOTICE_TOPICS {
            return Err(PresenceError::TooManyNoticeTopics);
        }
        notices.insert(Arc::from(topic), on);
        Ok(())
    }

    /// Whether `topic`'s subscribers get notices: as its guest said, else
    /// as the first `[[presence]]` rule covering it says.
    pub fn notices(&self, topic: &str) -> bool {
        let notices = self.notices.read().unwrap_or_else(|e| e.into_inner());
        match notices.get(topic) {
            Some(&on) => on,
            None => self.ruled(topic),
        }
    }

    /// What the first `[[presence]]` rule covering `topic` says (off
    /// without one).
    fn ruled(&self, topic: &str) -> bool {
        let rules = self.rules.get().map_or(&[][..], Vec::as_slice);
        rules
            .iter()
            .find(|rule| rule.topics.matches(topic))
            .is_some_and(|rule| rule.notices)
    }
}

/// `{"join":{"conn":N,"info":"..."}}`, framed.
pub fn join_notice(id: ConnectionId, info: &str) -> Bytes {
    let info = serde_json::to_string(info).expect("a string is JSON");
    let json = format!(r#"{{"join":{{"conn":{id},"info":{info}}}}}"#);
    frame::encode(Kind::Text, true, json.as_bytes())
}

/// `{"leave":{"conn":N}}`, framed.
pub fn leave_notice(id: ConnectionId) -> Bytes {
    let json = format!(r#"{{"leave":{{"conn":{id}}}}}"#);
    frame::encode(Kind::Text, true, json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_listed_by_id_and_counted() {
        let presence = Presence::default();
        let topic: Arc<str> = Arc::from("room");
        assert!(presence.join(&topic, 3, "carol"));
        assert!(presence.join(&topic, 1, "alice"));
        assert!(
            !presence.join(&topic, 1, "alice again"),
            "a second join changes the info"
        );
        assert!(presence.join(&topic, 2, "bob"));
        assert_eq!(presence.count("room"), 3);
        let ids = |list: Vec<(ConnectionId, Arc<str>)>| {
            list.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        };
        assert_eq!(ids(presence.list("room", None, 10)), vec![1, 2, 3]);
        assert_eq!(ids(presence.list("room", Some(1), 1)), vec![2]);
        assert_eq!(&*presence.list("room", None, 1)[0].1, "alice again");
        assert!(presence.leave("room", 2));
        assert!(!presence.leave("room", 2));
        assert_eq!(presence.count("room"), 2);
        presence.leave("room", 1);
        presence.leave("room", 3);
        assert!(presence.members().is_empty(), "an empty topic is forgotten");
    }

    #[test]
    fn notices_are_json_with_the_member() {
        let join = join_notice(7, "a \"quoted\" name");
        let json: serde_json::Value = serde_json::from_slice(&join[2..]).unwrap();
        assert_eq!(json["join"]["conn"], 7);
        assert_eq!(json["join"]["info"], "a \"quoted\" name");
        let leave: serde_json::Value = serde_json::from_slice(&leave_notice(7)[2..]).unwrap();
        assert_eq!(leave, serde_json::json!({"leave": {"conn": 7}}));
        let presence = Presence::default();
        assert!(!presence.notices("t"));
        presence.set_notices("t", true).unwrap();
        assert!(presence.notices("t"));
        presence.set_notices("t", false).unwrap();
        assert!(!presence.notices("t"));
        assert!(
            presence.notices.read().unwrap().is_empty(),
            "off takes no slot"
        );
        // The config file's rules, for the topics a guest did not name.
        let rule = |topics: &str, notices| {
            let file = wshost_config::presence::PresenceFile {
                topics: topics.into(),
                notices,
            };
            file.rule().unwrap()
        };
        let presence = Presence::default();
        presence.set_rules(vec![rule("room:*", true), rule("t*", true)]);
        assert!(presence.notices("room:1") && presence.notices("t"));
        assert!(!presence.notices("other"));
        presence.set_notices("t", false).unwrap();
        assert!(!presence.notices("t"), "the guest's word wins");
        presence.set_notices("t", true).unwrap();
        assert!(
            presence.notices.read().unwrap().is_empty(),
            "as the rule says"
        );
    }
}
