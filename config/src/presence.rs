//! `[[presence]]` in the config file: which topics send their subscribers
//! join and leave notices without their guests asking (`presence.notices`
//! in `wit/presence.wit` does the same from a guest, and wins for the
//! topics it names).
//!
//! ```toml
//! [[presence]]
//! topics = "room:*"   # a topic's name, or a prefix ending in `*`
//! notices = true      # {"join":{...}} and {"leave":{...}} to subscribers
//! ```
//!
//! The first entry whose `topics` matches a topic is the one that counts.

use crate::history::TopicPattern;
use serde::Deserialize;

/// One `[[presence]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceFile {
    pub topics: String,
    pub notices: bool,
}

/// One `[[presence]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRule {
    pub topics: TopicPattern,
    pub notices: bool,
}

impl PresenceFile {
    /// Checked as `[[history]]`'s `topics` is.
    pub fn rule(&self) -> Result<PresenceRule, String> {
        Ok(PresenceRule {
            topics: TopicPattern::parse(&self.topics)?,
            notices: self.notices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_as_history_entries_are() {
        let rule = |topics: &str| {
            PresenceFile {
                topics: topics.into(),
                notices: true,
            }
            .rule()
        };
        assert!(rule("room:*").unwrap().topics.matches("room:1"));
        assert!(rule("a*b").unwrap_err().contains("prefix ending"));
    }
}
