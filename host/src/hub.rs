//! The live, upgraded connections of one route, and a way to reach them.
//!
//! Each member has a bounded mailbox that its own connection task drains into
//! its socket, so a sender never waits for another peer's socket. A member
//! whose mailbox overflows is not keeping up: it is evicted (removed from the
//! hub and told so through [`Mailbox::evicted`]; its connection closes with
//! 1008), so memory never grows without bound and a slow peer never stalls
//! the others.

use crate::bindings::ConnectionId;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
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
    members: RwLock<HashMap<ConnectionId, Arc<Slot>>>,
}

/// What the hub and one member share. An empty queue holds no allocation,
/// so a member that is never sent anything costs a few words (a channel
/// would allocate its first block of slots at once, ~1.5 KiB).
#[derive(Debug, Default)]
struct Slot {
    queue: Mutex<VecDeque<Message>>,
    arrived: Notify,
    evicted: AtomicBool,
    eviction: Notify,
}

impl Slot {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `msg` unless `capacity` messages already wait.
    fn offer(&self, msg: Message, capacity: usize) -> Result<(), Message> {
        let mut queue = self.queue();
        if queue.len() >= capacity {
            return Err(msg);
        }
        queue.push_back(msg);
        drop(queue);
        // One waiter at most (the member's own task); a notification sent
        // while it is not waiting is kept for its next wait.
        self.arrived.notify_one();
        Ok(())
    }
}

/// A member's side: the messages queued to it, and whether it was evicted.
#[derive(Debug)]
pub struct Mailbox {
    slot: Arc<Slot>,
}

impl Mailbox {
    /// The oldest queued message, if any.
    pub fn try_take(&self) -> Option<Message> {
        self.slot.queue().pop_front()
    }

    /// Wait for a message. Cancel-safe: a message is only taken when this
    /// returns it.
    pub async fn take(&self) -> Message {
        loop {
            if let Some(msg) = self.try_take() {
                return msg;
            }
            self.slot.arrived.notified().await;
        }
    }

    /// The hub evicted this member for not keeping up.
    pub fn is_evicted(&self) -> bool {
        self.slot.evicted.load(Ordering::Acquire)
    }

    /// Wait until the hub evicts this member.
    pub async fn evicted(&self) {
        while !self.is_evicted() {
            self.slot.eviction.notified().await;
        }
    }
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
        let slot = Arc::new(Slot::default());
        self.write().insert(id, slot.clone());
        let membership = Membership {
            hub: self.clone(),
            id,
        };
        (membership, Mailbox { slot })
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
            Some(slot) => slot.offer(msg, self.mailbox_capacity),
            None => return Err(SendError::UnknownConnection(id)),
        };
        queued.map_err(|_| {
            self.evict(id);
            SendError::QueueFull(id)
        })
    }

    /// Queue `msg` to every member; returns how many took it.
    pub fn broadcast(&self, msg: &Message) -> u32 {
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        for (&id, slot) in self.read().iter() {
            match slot.offer(msg.clone(), self.mailbox_capacity) {
                Ok(()) => delivered += 1,
                Err(_) => overflowed.push(id),
            }
        }
        for id in overflowed {
            self.evict(id);
        }
        delivered
    }

    /// Drop member `id` for not keeping up and tell its connection.
    fn evict(&self, id: ConnectionId) {
        if let Some(slot) = self.write().remove(&id) {
            tracing::warn!(
                conn = id,
                "evicted from the hub: {} messages queued and not taken",
                self.mailbox_capacity
            );
            slot.evicted.store(true, Ordering::Release);
            slot.eviction.notify_one();
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnectionId, Arc<Slot>>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnectionId, Arc<Slot>>> {
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
        let (_m, mailbox) = hub.join(7);
        let (_n, _other) = hub.join(8);
        assert_eq!(hub.broadcast(&Message::text("1")), 2);
        assert_eq!(hub.send_to(7, Message::text("2")), Ok(()));
        assert!(!mailbox.is_evicted());
        // 7's mailbox is full: it misses "3" and is evicted; 8 still gets it.
        assert_eq!(hub.broadcast(&Message::text("3")), 1);
        assert!(mailbox.is_evicted());
        assert_eq!(hub.ids(), vec![8]);
        assert_eq!(
            hub.send_to(7, Message::text("4")),
            Err(SendError::UnknownConnection(7))
        );
        assert_eq!(mailbox.try_take().unwrap(), Message::text("1"));
        assert_eq!(mailbox.try_take().unwrap(), Message::text("2"));
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
        assert!(mailbox.is_evicted());
        assert!(hub.is_empty());
    }
}
