//! The live, upgraded connections of one route, and a way to reach them.
//!
//! Each member has a bounded mailbox that its own connection task drains into
//! its socket, so a sender never waits for another peer's socket. A member
//! whose mailbox overflows is not keeping up: it is evicted (removed from the
//! hub and told so through [`Mailbox::evicted`]; its connection closes with
//! 1008), so memory never grows without bound and a slow peer never stalls
//! the others.

use crate::bindings::ConnectionId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};
use tungstenite::Message;

/// Why a message could not be queued to a connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("no live connection {0} on this route")]
    UnknownConnection(ConnectionId),
    #[error("connection {0} was not keeping up: its queue overflowed and it was evicted")]
    QueueFull(ConnectionId),
}

/// The members of one route.
#[derive(Debug)]
pub struct Hub {
    mailbox_capacity: usize,
    members: RwLock<HashMap<ConnectionId, Member>>,
}

/// The hub's side of a member.
#[derive(Debug)]
struct Member {
    messages: mpsc::Sender<Message>,
    evict: watch::Sender<bool>,
}

/// A member's side: the messages queued to it, and whether it was evicted.
#[derive(Debug)]
pub struct Mailbox {
    pub messages: mpsc::Receiver<Message>,
    /// Turns true when the hub evicts this member for not keeping up.
    pub evicted: watch::Receiver<bool>,
}

/// A connection's place in a hub: it leaves when this is dropped.
#[derive(Debug)]
pub struct Membership {
    hub: Arc<Hub>,
    id: ConnectionId,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.hub.write().remove(&self.id);
    }
}

impl Hub {
    pub fn new(mailbox_capacity: usize) -> Arc<Self> {
        Arc::new(Hub {
            mailbox_capacity,
            members: RwLock::default(),
        })
    }

    /// Add connection `id`; returns its membership and the mailbox it must drain.
    pub fn join(self: &Arc<Self>, id: ConnectionId) -> (Membership, Mailbox) {
        let (messages_tx, messages) = mpsc::channel(self.mailbox_capacity);
        let (evict, evicted) = watch::channel(false);
        let member = Member {
            messages: messages_tx,
            evict,
        };
        self.write().insert(id, member);
        let membership = Membership {
            hub: self.clone(),
            id,
        };
        (membership, Mailbox { messages, evicted })
    }

    /// Ids of the current members, in ascending order.
    pub fn ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<_> = self.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue `msg` to member `id` without waiting.
    pub fn send_to(&self, id: ConnectionId, msg: Message) -> Result<(), SendError> {
        let queued = match self.read().get(&id) {
            Some(member) => member.messages.try_send(msg),
            None => return Err(SendError::UnknownConnection(id)),
        };
        match queued {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evict(id);
                Err(SendError::QueueFull(id))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::UnknownConnection(id)),
        }
    }

    /// Queue `msg` to every member; returns how many took it.
    pub fn broadcast(&self, msg: &Message) -> u32 {
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        for (&id, member) in self.read().iter() {
            match member.messages.try_send(msg.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => overflowed.push(id),
                // The member is leaving; its membership removes it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in overflowed {
            self.evict(id);
        }
        delivered
    }

    /// Drop member `id` for not keeping up and tell its connection.
    fn evict(&self, id: ConnectionId) {
        if let Some(member) = self.write().remove(&id) {
            tracing::warn!(
                conn = id,
                "evicted from the hub: {} messages queued and not taken",
                self.mailbox_capacity
            );
            member.evict.send_replace(true);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnectionId, Member>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnectionId, Member>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_leave_when_membership_drops() {
        let hub = Hub::new(4);
        let (a, _ra) = hub.join(1);
        let (_b, _rb) = hub.join(2);
        assert_eq!(hub.ids(), vec![1, 2]);
        drop(a);
        assert_eq!(hub.ids(), vec![2]);
        assert_eq!(
            hub.send_to(1, Message::text("x")),
            Err(SendError::UnknownConnection(1))
        );
    }

    #[test]
    fn a_member_whose_mailbox_overflows_is_evicted() {
        let hub = Hub::new(2);
        let (_m, mut mailbox) = hub.join(7);
        let (_n, _other) = hub.join(8);
        assert_eq!(hub.broadcast(&Message::text("1")), 2);
        assert_eq!(hub.send_to(7, Message::text("2")), Ok(()));
        assert!(!*mailbox.evicted.borrow());
        // 7's mailbox is full: it misses "3" and is evicted; 8 still gets it.
        assert_eq!(hub.broadcast(&Message::text("3")), 1);
        assert!(*mailbox.evicted.borrow());
        assert_eq!(hub.ids(), vec![8]);
        assert_eq!(
            hub.send_to(7, Message::text("4")),
            Err(SendError::UnknownConnection(7))
        );
        assert_eq!(mailbox.messages.try_recv().unwrap(), Message::text("1"));
        assert_eq!(mailbox.messages.try_recv().unwrap(), Message::text("2"));
    }

    #[test]
    fn send_to_a_full_mailbox_evicts_and_says_so() {
        let hub = Hub::new(1);
        let (_m, mailbox) = hub.join(3);
        assert_eq!(hub.send_to(3, Message::text("a")), Ok(()));
        assert_eq!(
            hub.send_to(3, Message::text("b")),
            Err(SendError::QueueFull(3))
        );
        assert!(*mailbox.evicted.borrow());
        assert!(hub.is_empty());
    }
}
