//! A server's sockets' rare wake-ups, without a timer in each socket: the
//! keepalive alarm and the server's shutdown. Every open socket enrolls
//! here (its outbox, and when its alarm is due); one thread per server
//! sweeps the enrolled sockets once a tick and nudges, through the outbox's waker,
//! those whose alarm is due, and [`Alarms::shut_down`] nudges them all. A
//! socket's pump so holds neither a `Sleep` (112 bytes) nor a wait for the
//! shutdown (~100 bytes) for its whole life, as uWebSockets' loops keep one
//! timer each and sweep their sockets with it. The sweep has a thread of
//! its own, not a task on an event loop: a loop busy with a guest's call
//! would delay every loop's pings and drops.
//!
//! Invariants: an alarm never rings early, and late by at most one tick
//! (an eighth of the shortest keepalive period enrolled, between
//! [`FINEST`] and [`COARSEST`]); a socket that reads the shutdown flag
//! after enrolling is nudged if it turns true (so none misses it); an
//! enrolled socket leaves when its [`Enrolled`] is dropped, however its
//! pump ended.

use crate::ws::outbox::Outbox;
use slab::Slab;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wshost_config::Keepalive;

/// The shortest tick: keepalive periods below 80 ms ring up to 10 ms late.
pub const FINEST: Duration = Duration::from_millis(10);
/// The longest tick: the default periods (25 s ping, 60 s idle) ring up to
/// a second late (uWebSockets: 4 s).
pub const COARSEST: Duration = Duration::from_secs(1);

/// The enrolled sockets of one server.
#[derive(Debug)]
pub struct Alarms {
    enrolled: Mutex<Slab<Entry>>,
    /// The sweep's period, in nanoseconds: it only shrinks.
    tick: AtomicU64,
    /// The sweep's thread, unparked when its tick shrank (it may be asleep
    /// for a longer one).
    sweeper: std::sync::OnceLock<Thread>,
}

#[derive(Debug)]
struct Entry {
    outbox: Arc<Outbox>,
    /// When to nudge it; `None` once nudged, until re-armed.
    due: Option<Instant>,
}

/// A socket's place among the [`Alarms`]; leaves them when dropped.
#[derive(Debug)]
pub struct Enrolled<'a> {
    alarms: &'a Alarms,
    key: usize,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            enrolled: Mutex::default(),
            tick: AtomicU64::new(COARSEST.as_nanos() as u64),
            sweeper: std::sync::OnceLock::new(),
        }
    }
}

impl Alarms {
    fn enrolled(&self) -> MutexGuard<'_, Slab<Entry>> {
        // Nothing here panics while holding it; a poisoned lock's slab is whole.
        self.enrolled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enroll `outbox`'s socket, its alarm due at `due` (`None`: no alarm,
    /// nudged only at shutdown), with the keepalive it keeps (which may
    /// make the sweep's tick finer).
    pub fn enroll(
        &self,
        outbox: &Arc<Outbox>,
        keepalive: &Keepalive,
        due: Option<Instant>,
    ) -> Enrolled<'_> {
        let shortest = [keepalive.ping_interval, keepalive.idle_timeout]
            .into_iter()
            .flatten()
            .min();
        if let Some(period) = shortest {
            let tick = (period / 8).clamp(FINEST, COARSEST).as_nanos() as u64;
            if tick < self.tick.fetch_min(tick, Ordering::AcqRel)
                && let Some(sweeper) = self.sweeper.get()
            {
                sweeper.unpark();
            }
        }
        let outbox = outbox.clone();
        let key = self.enrolled().insert(Entry { outbox, due });
        Enrolled { alarms: self, key }
    }

    /// Nudge every enrolled socket: the server is shutting down (its flag
    /// is set before this is called).
    pub fn shut_down(&self) {
        self.nudge_where(|_| true);
    }

    /// Sockets enrolled now.
    pub fn len(&self) -> usize {
        self.enrolled().len()
    }

    /// Whether none is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sweep's period now.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick.load(Ordering::Acquire))
    }

    /// Nudge the sockets whose alarm is due at `now`, disarming it.
    fn ring(&self, now: Instant) -> usize {
        self.nudge_where(|entry| {
            let due = entry.due.is_some_and(|at| at <= now);
            if due {
                entry.due = None;
            }
            due
        })
    }

    /// Nudge the sockets `pick` picks (it may change their entry); how many.
    /// The wake-ups are made after the lock is let go: a loop enrolling a
    /// socket does not wait for them.
    fn nudge_where(&self, mut pick: impl FnMut(&mut Entry) -> bool) -> usize {
        let picked: Vec<Arc<Outbox>> = self
            .enrolled()
            .iter_mut()
            .filter_map(|(_, entry)| pick(entry).then(|| entry.outbox.clone()))
            .collect();
        for outbox in &picked {
            outbox.nudge();
        }
        picked.len()
    }

    /// Start the sweep: on a thread of its own, it rings what is due once
    /// a tick until the last strong handle (the server's, its connections')
    /// is gone. Once per server.
    pub fn start_sweep(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        let alarms = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("wshost-alarms".into())
            .spawn(move || sweep(alarms))?;
        let started = self.sweeper.set(thread.thread().clone());
        debug_assert!(started.is_ok(), "one sweep per server");
        // A tick made finer before `set` found no thread to unpark.
        thread.thread().unpark();
        Ok(thread)
    }
}

/// The sweep's thread. Woken early (a finer tick, or spuriously), it rings
/// early: harmless, as only what is due is nudged.
fn sweep(alarms: Weak<Alarms>) {
    while let Some(strong) = alarms.upgrade() {
        let tick = strong.tick();
        drop(strong);
        std::thread::park_timeout(tick);
        match alarms.upgrade() {
            Some(strong) => strong.ring(Instant::now()),
            None => return,
        };
    }
}

impl Enrolled<'_> {
    /// Nudge the socket at `due` (after the nudge before it is handled).
    pub fn rearm(&self, due: Instant) {
        if let Some(entry) = self.alarms.enrolled().get_mut(self.key) {
            entry.due = Some(due);
        }
    }
}

impl Drop for Enrolled<'_> {
    fn drop(&mut self) {
        self.alarms.enrolled().try_remove(self.key);
    }
}

/// What a connection holds of its server's shutdown, from accept to end:
/// the flag (the server waits until every connection has dropped its
/// receiver) and the alarms its socket, once open, enrolls in.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub flag: watch::Receiver<bool>,
    pub alarms: Arc<Alarms>,
}

impl Shutdown {
    /// For a connection of no server (the instantiate benchmark): never set.
    pub fn never() -> Shutdown {
        Shutdown {
            flag: watch::channel(false).1,
            alarms: Arc::default(),
        }
    }

    /// Whether the server is shutting down.
    pub fn is_set(&self) -> bool {
        *self.flag.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive(ping_ms: u64) -> Keepalive {
        Keepalive {
            ping_interval: Some(Duration::from_millis(ping_ms)),
            idle_timeout: None,
        }
    }

    #[test]
    fn a_due_alarm_nudges_once_and_never_early() {
        let alarms = Alarms::default();
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20));
        let now = Instant::now();
        let enrolled = alarms.enroll(&outbox, &keepalive(1000), Some(now + COARSEST));
        assert_eq!(alarms.ring(now), 0, "not due yet");
        assert!(!outbox.take_nudge());
        assert_eq!(alarms.ring(now + COARSEST), 1);
        assert!(outbox.take_nudge());
        assert!(!outbox.take_nudge(), "a nudge is taken once");
        assert_eq!(
            alarms.ring(now + 2 * COARSEST),
            0,
            "disarmed until re-armed"
        );
        enrolled.rearm(now + 3 * COARSEST);
        assert_eq!(alarms.ring(now + 3 * COARSEST), 1);
        drop(enrolled);
        assert!(alarms.is_empty(), "dropped, it left");
    }

    #[test]
    fn shutdown_nudges_every_socket_armed_or_not() {
        let alarms = Alarms::default();
        let never = Keepalive {
            ping_interval: None,
            idle_timeout: None,
        };
        let outboxes: Vec<_> = (0..3)
            .map(|i| Arc::new(Outbox::new(i, 16, 1 << 20)))
            .collect();
        let _enrolled: Vec<_> = outboxes
            .iter()
            .map(|o| alarms.enroll(o, &never, None))
            .collect();
        assert_eq!(alarms.tick(), COARSEST, "no keepalive: the coarsest tick");
        alarms.shut_down();
        assert!(outboxes.iter().all(|o| o.take_nudge()));
    }

    #[test]
    fn the_tick_is_an_eighth_of_the_shortest_period_within_bounds() {
        let alarms = Alarms::default();
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20));
        let _a = alarms.enroll(&outbox, &keepalive(25_000), None);
        assert_eq!(alarms.tick(), COARSEST);
        let _b = alarms.enroll(&outbox, &keepalive(200), None);
        assert_eq!(alarms.tick(), Duration::from_millis(25));
        let _c = alarms.enroll(&outbox, &keepalive(1), None);
        assert_eq!(alarms.tick(), FINEST);
        let _d = alarms.enroll(&outbox, &keepalive(60_000), None);
        assert_eq!(alarms.tick(), FINEST, "it only shrinks");
    }

    #[tokio::test]
    async fn the_sweep_rings_within_a_tick_and_ends_with_the_server() {
        let alarms = Arc::new(Alarms::default());
        let sweep = alarms.start_sweep().unwrap();
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20));
        let start = Instant::now();
        // A finer tick wakes a sweep asleep for the coarsest one.
        let enrolled = alarms.enroll(&outbox, &keepalive(80), Some(start + FINEST));
        tokio::time::timeout(Duration::from_millis(500), outbox.ready())
            .await
            .expect("nudged within the tick, not after the coarsest");
        assert!(outbox.take_nudge());
        assert!(start.elapsed() >= FINEST, "never early");
        drop(enrolled);
        drop(alarms);
        for _ in 0..200 {
            if sweep.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sweep still runs 2 s after the server is gone");
    }
}
