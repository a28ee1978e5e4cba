//! What a handler-world connection's socket task has read for its guest:
//! whole messages, then how the connection ended. The guest's `recv` takes
//! from here, so the socket is read (pings answered, Close frames replied
//! to, keepalive kept) whether or not the guest is calling `recv`.
//!
//! Bounded: the socket task stops reading while the inbox is full, so a
//! guest that does not take its messages slows its peer down (TCP
//! backpressure) instead of growing the host's memory.

use crate::bindings::{CloseInfo, Error};
use crate::reader::Held;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tungstenite::Message;

/// Messages the inbox holds before the socket task stops reading...
const MAX_MESSAGES: usize = 16;
/// ...or bytes (one message of any allowed size is always taken).
const MAX_BYTES: usize = 64 << 10;

/// One thing the guest's `recv` hands out.
#[derive(Debug)]
pub enum Delivery {
    /// A message, with its share of the in-flight budget.
    Message(Message, Held),
    /// A Close frame: the peer's, or the host's own (shutdown 1001,
    /// eviction 1008), handed to the guest as if the peer had sent it.
    Close(Option<CloseInfo>),
    /// The connection failed (the peer broke the protocol; the socket failed).
    Failed(Error),
}

#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<State>,
    /// Wakes the guest: a delivery or the end.
    arrived: Notify,
    /// Wakes the socket task: room again.
    taken: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Delivery>,
    bytes: usize,
    /// The socket task has ended: nothing more will arrive.
    ended: bool,
}

impl Inbox {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the socket task may read another message.
    pub fn has_room(&self) -> bool {
        let state = self.state();
        state.queue.is_empty() || (state.queue.len() < MAX_MESSAGES && state.bytes < MAX_BYTES)
    }

    /// Wait until the socket task may read again. Cancel-safe.
    pub async fn room(&self) {
        loop {
            let taken = self.taken.notified();
            if self.has_room() {
                return;
            }
            taken.await;
        }
    }

    /// Hand `delivery` to the guest.
    pub fn put(&self, delivery: Delivery) {
        let mut state = self.state();
        if let Delivery::Message(msg, _) = &delivery {
            state.bytes += msg.len();
        }
        state.queue.push_back(delivery);
        drop(state);
        self.arrived.notify_one();
    }

    /// The socket task has ended.
    pub fn end(&self) {
        self.state().ended = true;
        self.arrived.notify_one();
    }

    /// The next delivery if one is there; `Some(None)` once the connection
    /// has ended and everything was taken; `None` to wait.
    pub fn take(&self) -> Option<Option<Delivery>> {
        let mut state = self.state();
        match state.queue.pop_front() {
            Some(delivery) => {
                if let Delivery::Message(msg, _) = &delivery {
                    state.bytes -= msg.len();
                }
                if state.queue.is_empty() {
                    // An idle connection keeps no queue memory.
                    state.queue = VecDeque::new();
                }
                drop(state);
                self.taken.notify_one();
                Some(Some(delivery))
            }
            None if state.ended => Some(None),
            None => None,
        }
    }

    /// Wait until [`Inbox::take`] may have something. Cancel-safe.
    pub async fn arrival(&self) {
        loop {
            let arrived = self.arrived.notified();
            {
                let state = self.state();
                if !state.queue.is_empty() || state.ended {
                    return;
                }
            }
            arrived.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_after_many_messages_or_bytes_but_one_always_fits() {
        let inbox = Inbox::default();
        inbox.put(Delivery::Message(
            Message::binary(vec![0u8; 1 << 20]),
            Held::default(),
        ));
        assert!(!inbox.has_room(), "a large message fills it");
        assert!(matches!(inbox.take(), Some(Some(Delivery::Message(..)))));
        assert!(inbox.has_room());
        for _ in 0..MAX_MESSAGES {
            inbox.put(Delivery::Message(Message::text("x"), Held::default()));
        }
        assert!(!inbox.has_room());
        assert_eq!(inbox.take().map(|d| d.is_some()), Some(true));
        assert!(inbox.has_room());
    }

    #[test]
    fn the_end_comes_after_what_was_queued() {
        let inbox = Inbox::default();
        assert!(inbox.take().is_none(), "nothing yet: wait");
        inbox.put(Delivery::Close(None));
        inbox.end();
        assert!(matches!(inbox.take(), Some(Some(Delivery::Close(None)))));
        assert!(matches!(inbox.take(), Some(None)));
    }
}
