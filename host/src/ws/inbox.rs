//! What a handler-world connection's socket task has read for its guest:
//! whole messages, then how the connection ended. The guest's `recv` takes
//! from here, so the socket is read (pings answered, Close frames replied
//! to, keepalive kept) whether or not the guest is calling `recv`.
//!
//! Bounded: the socket task stops reading while the inbox is full, so a
//! guest that does not take its messages slows its peer down (TCP
//! backpressure) instead of growing the host's memory. (Once it has sent
//! its Close it reads on, for the peer's reply, and drops the messages.)

use crate::bindings::{CloseInfo, Error};
use crate::ws::reader::Held;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tungstenite::Message;

/// Messages the inbox holds before the socket task stops reading... A
/// burst read at once is taken by a guest in one go: a coroutine takes all
/// its inbox holds in one turn of its instance, and what it publishes to
/// many goes out in one write per subscriber. With 16 a publisher's burst
/// was cut into turns of 16: a fan-out to 1,000 went out at 29 frames a
/// write instead of 48, 0.8x the event world's deliveries a second
/// (0.85-0.97x with 256, and 48 frames a write).
const MAX_MESSAGES: usize = 256;
/// ...or bytes, each message counted with [`PER_MESSAGE`] more for its
/// place in the queue (one message of any allowed size is always taken).
const MAX_BYTES: usize = 64 << 10;
/// What a queued message costs beyond its payload: its slot in the queue
/// and its payload's allocation. So the byte cap bounds the memory of many
/// tiny messages too.
const PER_MESSAGE: usize = std::mem::size_of::<Delivery>() + 32;

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

/// The bytes a queued message counts for.
fn cost(msg: &Message) -> usize {
    msg.len() + PER_MESSAGE
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
            state.bytes += cost(msg);
        }
        state.queue.push_back(delivery);
        drop(state);
        self.arrived.notify_one();
    }

    /// The socket task has ended.
    pub fn end(&self) {
        self.state().ended = true;
        // Every waiter hears it (a coro guest may have two tasks in `recv`
        // on one connection), and one that comes later finds the permit.
        self.arrived.notify_waiters();
        self.arrived.notify_one();
    }

    /// The next delivery if one is there; `Some(None)` once the connection
    /// has ended and everything was taken; `None` to wait.
    pub fn take(&self) -> Option<Option<Delivery>> {
        let mut state = self.state();
        match state.queue.pop_front() {
            Some(delivery) => {
                if let Delivery::Message(msg, _) = &delivery {
                    state.bytes -= cost(msg);
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
    fn many_small_messages_fill_it_by_bytes_counted_with_their_slots() {
        let inbox = Inbox::default();
        let kib = || Delivery::Message(Message::binary(vec![0u8; 1024]), Held::default());
        let mut taken = 0;
        while inbox.has_room() {
            inbox.put(kib());
            taken += 1;
        }
        // Room while under the cap: one more than fit in it whole.
        assert_eq!(taken, MAX_BYTES.div_ceil(1024 + PER_MESSAGE));
        assert!(
            taken < 64,
            "the bytes, counted with their slots, bound these"
        );
        assert!(matches!(inbox.take(), Some(Some(Delivery::Message(..)))));
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
