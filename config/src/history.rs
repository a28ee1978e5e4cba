//! `[[history]]` in the config file: which topics keep their last messages
//! without their guests asking (`history.keep` in `wit/history.wit` does the
//! same from a guest, and wins for the topics it names).
//!
//! ```toml
//! [[history]]
//! topics = "chat*"    # a topic's name, or a prefix ending in `*`
//! messages = 10000    # keep the last 1 to 1,000,000
//! seconds = 3600      # and none older (absent or 0: no age limit)
//! envelope = "json"   # "none" (the default) or "json"
//! ```
//!
//! The first entry whose `topics` matches a topic is the one that counts.

use serde::Deserialize;
use std::time::Duration;

/// The most messages one topic may keep.
pub const MAX_MESSAGES: u32 = 1_000_000;

/// One `[[history]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    pub topics: String,
    pub messages: u32,
    #[serde(default)]
    pub seconds: u32,
    #[serde(default)]
    pub envelope: Option<String>,
}

/// The topics an entry covers, as `[[history]]` and `[[presence]]` write
/// them: a topic's name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    /// The topic's name, or (`prefix*`) the start of the names it covers.
    name: String,
    prefix: bool,
}

impl TopicPattern {
    /// Checked: a name (1 to 256 bytes) or a prefix ending in `*` (a `*`
    /// nowhere else).
    pub fn parse(topics: &str) -> Result<TopicPattern, String> {
        let (name, prefix) = match topics.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (topics, false),
        };
        if name.contains('*') || (name.is_empty() && !prefix) || name.len() > 256 {
            return Err(format!(
                "topics = {topics:?}: a topic's name (1 to 256 bytes) or a prefix ending in `*`"
            ));
        }
        Ok(TopicPattern {
            name: name.to_string(),
            prefix,
        })
    }

    /// Whether it covers `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        match self.prefix {
            true => topic.starts_with(&self.name),
            false => topic == self.name,
        }
    }
}

/// One `[[history]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRule {
    pub topics: TopicPattern,
    pub messages: u32,
    pub max_age: Option<Duration>,
    /// The JSON envelope (`{"offset":N,"epoch":"E","text":"..."}`).
    pub json: bool,
}

impl HistoryRule {
    /// Whether this rule covers `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.topics.matches(topic)
    }
}

impl HistoryFile {
    /// Checked: a name or a prefix ending in `*` (a `*` nowhere else), 1 to
    /// [`MAX_MESSAGES`] messages, a known envelope.
    pub fn rule(&self) -> Result<HistoryRule, String> {
        let topics = TopicPattern::parse(&self.topics)?;
        if self.messages == 0 || self.messages > MAX_MESSAGES {
            return Err(format!("messages = {}: 1 to {MAX_MESSAGES}", self.messages));
        }
        let json = match self.envelope.as_deref() {
            None | Some("none") => false,
            Some("json") => true,
            Some(other) => return Err(format!("envelope = {other:?}: \"none\" or \"json\"")),
        };
        Ok(HistoryRule {
            topics,
            messages: self.messages,
            max_age: (self.seconds > 0).then(|| Duration::from_secs(self.seconds.into())),
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(topics: &str, messages: u32, envelope: Option<&str>) -> HistoryFile {
        HistoryFile {
            topics: topics.into(),
            messages,
            seconds: 0,
            envelope: envelope.map(Into::into),
        }
    }

    #[test]
    fn names_and_prefixes_match_as_written() {
        let exact = file("chat", 10, None).rule().unwrap();
        assert!(exact.matches("chat") && !exact.matches("chat2"));
        let prefix = file("room:*", 10, Some("json")).rule().unwrap();
        assert!(prefix.matches("room:1") && prefix.matches("room:") && !prefix.matches("roo"));
        assert!(prefix.json);
        assert!(file("*", 1, None).rule().unwrap().matches("anything"));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (bad, why) in [
            (file("a*b", 10, None), "prefix ending"),
            (file("", 10, None), "prefix ending"),
            (file("chat", 0, None), "1 to 1000000"),
            (file("chat", 2_000_000, None), "1 to 1000000"),
            (file("chat", 10, Some("xml")), "\"none\" or \"json\""),
        ] {
            let error = bad.rule().unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }
}
