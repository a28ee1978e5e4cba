//! The live, upgraded connections of one handler-world route, and a way to
//! reach them.
//!
//! A member is its connection's [`Outbox`]: a sender frames its message once
//! and queues it there, so it never waits for another peer's socket. A member
//! whose outbox overflows is evicted (removed from the hub and its
//! connection closed with 1008), so memory never grows without bound and a
//! slow peer never stalls the others.

use crate::bindings::ConnectionId;
use crate::ws::outbox::{Cork, Outbox, Refused};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Why a message could not be queued to a connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("no live connection {0} on this route")]
    UnknownConnection(ConnectionId),
    #[error("connection {0} was not keeping up: its queue overflowed and it was evicted")]
    QueueFull(ConnectionId),
}

/// The members of one route.
#[derive(Debug, Default)]
pub struct Hub {
    members: RwLock<HashMap<ConnectionId, Arc<Outbox>>>,
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
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Add connection `id`, whose writer drains `outbox`.
    pub fn join(self: &Arc<Self>, id: ConnectionId, outbox: Arc<Outbox>) -> Membership {
        self.write().insert(id, outbox);
        Membership {
            hub: self.clone(),
            id,
        }
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

    /// Queue the framed message `frame` to member `id` without waiting.
    pub fn send_to(&self, id: ConnectionId, frame: Bytes) -> Result<(), SendError> {
        let queued = match self.read().get(&id) {
            Some(outbox) => outbox.offer(frame),
            None => return Err(SendError::UnknownConnection(id)),
        };
        match queued {
            Ok(_) => Ok(()),
            Err(Refused::Overflowed) => {
                self.write().remove(&id);
                Err(SendError::QueueFull(id))
            }
            Err(Refused::Closed) => Err(SendError::UnknownConnection(id)),
        }
    }

    /// Queue the framed message `frame` to every member, woken when `cork`
    /// is uncorked; returns how many took it.
    pub fn broadcast(&self, frame: &Bytes, cork: &mut Cork) -> u32 {
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        for (&id, outbox) in self.read().iter() {
            match outbox.offer_corked(frame.clone(), cork) {
                Ok(_) => delivered += 1,
                Err(Refused::Overflowed) => overflowed.push(id),
                Err(Refused::Closed) => {}
            }
        }
        if !overflowed.is_empty() {
            let mut members = self.write();
            for id in overflowed {
                members.remove(&id);
            }
        }
        delivered
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnectionId, Arc<Outbox>>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnectionId, Arc<Outbox>>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox::new(0, capacity, usize::MAX))
    }

    fn taken(outbox: &Outbox) -> Vec<Bytes> {
        outbox.take_all().into_vec()
    }

    #[test]
    fn members_leave_when_membership_drops() {
        let hub = Hub::new();
        let a = hub.join(1, outbox(4));
        let _b = hub.join(2, outbox(4));
        assert_eq!(hub.ids(), vec![1, 2]);
        drop(a);
        assert_eq!(hub.ids(), vec![2]);
        assert_eq!(
            hub.send_to(1, Bytes::from("x")),
            Err(SendError::UnknownConnection(1))
        );
    }

    #[test]
    fn a_member_whose_outbox_overflows_is_evicted() {
        let hub = Hub::new();
        let seven = outbox(2);
        let _m = hub.join(7, seven.clone());
        let _n = hub.join(8, outbox(2));
        assert_eq!(hub.broadcast(&Bytes::from("1"), &mut Cork::default()), 2);
        assert_eq!(hub.send_to(7, Bytes::from("2")), Ok(()));
        assert!(!seven.is_evicted());
        // 7's outbox is full: it misses "3" and is evicted; 8 still gets it.
        assert_eq!(hub.broadcast(&Bytes::from("3"), &mut Cork::default()), 1);
        assert!(seven.is_evicted());
        assert_eq!(hub.ids(), vec![8]);
        assert_eq!(
            hub.send_to(7, Bytes::from("4")),
            Err(SendError::UnknownConnection(7))
        );
        assert_eq!(taken(&seven), vec![Bytes::from("1"), Bytes::from("2")]);
    }

    #[test]
    fn send_to_a_full_outbox_evicts_and_says_so() {
        let hub = Hub::new();
        let three = outbox(1);
        let _m = hub.join(3, three.clone());
        assert_eq!(hub.send_to(3, Bytes::from("a")), Ok(()));
        assert_eq!(
            hub.send_to(3, Bytes::from("b")),
            Err(SendError::QueueFull(3))
        );
        assert!(three.is_evicted());
        assert!(hub.is_empty());
    }
}
