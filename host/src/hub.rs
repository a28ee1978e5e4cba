//! The live, upgraded connections of one route, and a way to reach them.
//!
//! Each member has a bounded mailbox that its own connection task drains into
//! its socket, so a sender never waits for another peer's socket. A member
//! whose mailbox is full misses that message (the sender learns it from the
//! returned count or error); it is never allowed to grow memory without bound.

use crate::bindings::ConnectionId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use tungstenite::Message;

/// Why a message could not be queued to a connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("no live connection {0} on this route")]
    UnknownConnection(ConnectionId),
    #[error("connection {0} is not keeping up: its queue is full")]
    QueueFull(ConnectionId),
}

/// The members of one route.
#[derive(Debug)]
pub struct Hub {
    mailbox_capacity: usize,
    members: RwLock<HashMap<ConnectionId, mpsc::Sender<Message>>>,
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
    pub fn join(self: &Arc<Self>, id: ConnectionId) -> (Membership, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(self.mailbox_capacity);
        self.write().insert(id, tx);
        (
            Membership {
                hub: self.clone(),
                id,
            },
            rx,
        )
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
        let members = self.read();
        let tx = members.get(&id).ok_or(SendError::UnknownConnection(id))?;
        tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull(id),
            mpsc::error::TrySendError::Closed(_) => SendError::UnknownConnection(id),
        })
    }

    /// Queue `msg` to every member; returns how many took it.
    pub fn broadcast(&self, msg: &Message) -> u32 {
        let members = self.read();
        let mut delivered = 0;
        for (id, tx) in members.iter() {
            match tx.try_send(msg.clone()) {
                Ok(()) => delivered += 1,
                Err(e) => tracing::warn!(conn = id, "broadcast not queued: {e}"),
            }
        }
        delivered
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ConnectionId, mpsc::Sender<Message>>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<ConnectionId, mpsc::Sender<Message>>> {
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
    fn full_mailbox_refuses_instead_of_growing() {
        let hub = Hub::new(2);
        let (_m, mut rx) = hub.join(7);
        assert_eq!(hub.broadcast(&Message::text("1")), 1);
        assert_eq!(hub.broadcast(&Message::text("2")), 1);
        assert_eq!(hub.broadcast(&Message::text("3")), 0);
        assert_eq!(
            hub.send_to(7, Message::text("4")),
            Err(SendError::QueueFull(7))
        );
        assert_eq!(rx.try_recv().unwrap(), Message::text("1"));
    }
}
