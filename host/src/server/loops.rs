//! The event loops connections run on (`--loops`, one per core by default):
//! each a tokio current-thread runtime on a thread of its own, and each
//! accepted connection handed to one loop that owns it for its life. On a
//! handler-world route all of a connection runs there (its guest and its
//! socket's pump, one task): the read → guest call → write of a message
//! wakes no other thread and passes through no work-stealing queue,
//! uWebSockets' shape and Seastar's. A plain event-world socket moves on to
//! the loop of its route's one instance, loop 0 (a TLS socket stays: its
//! session does not move); a coro connection goes to an instance started
//! on its own loop (`world::coro::route`).
//!
//! Loop 0 is the runtime [`Loops::start`] is called on (the main thread's):
//! with one loop every task of the server runs on one thread. The others
//! are started here and stop when [`Loops`] is dropped, abandoning what
//! still runs on them (the server has waited for its connections by then).
//!
//! A connection goes to the loop with the fewest open, counted until it
//! ends ([`Placed`] is held in its slot): WebSockets live long and unevenly,
//! so taking turns would pile the survivors on a few loops. What is shared
//! between connections (an event route's instance, topics, the cluster) is
//! reached across loops through `Send` handles.

use crate::meters;
use metrics::{Gauge, gauge};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::ThreadId;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long a loop's tasks get to end once the server has stopped.
const STOP_TIMEOUT: Duration = Duration::from_millis(100);

/// The server's event loops.
pub struct Loops {
    loops: Vec<Loop>,
    /// Tells each started loop (all but loop 0) to stop.
    stops: Vec<oneshot::Sender<()>>,
}

struct Loop {
    /// The thread it runs on.
    thread: ThreadId,
    shared: Arc<Shared>,
}

/// What a loop's connections hold of it: one word in each ([`Placed`]),
/// where its handle and counters took six.
struct Shared {
    handle: Handle,
    /// Connections open on it.
    open: AtomicUsize,
    /// The same, as `wshost_loop_connections{loop="i"}`.
    gauge: Gauge,
}

impl Loop {
    fn new((handle, thread): (Handle, ThreadId), index: usize) -> Loop {
        let gauge = gauge!(meters::LOOP_CONNECTIONS, "loop" => index.to_string());
        let open = AtomicUsize::new(0);
        Loop {
            thread,
            shared: Arc::new(Shared {
                handle,
                open,
                gauge,
            }),
        }
    }
}

/// A connection's place on a loop: held as long as the connection is open
/// (in its slot, whichever task holds that), so the loop counts it open
/// until it ends.
pub struct Placed {
    on: Arc<Shared>,
    /// Whether it is the loop that accepted it (no hand-over needed).
    pub here: bool,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.on.open.fetch_sub(1, Ordering::Relaxed);
        self.on.gauge.decrement(1.0);
    }
}

impl Placed {
    /// The loop's runtime, to spawn the connection's task on.
    pub fn handle(&self) -> &Handle {
        &self.on.handle
    }
}

impl Loops {
    /// `n` loops: this runtime's and `n - 1` started on threads of their own.
    /// Must be called within a tokio runtime.
    pub fn start(n: usize) -> io::Result<Loops> {
        let here = (Handle::current(), std::thread::current().id());
        let mut loops = vec![Loop::new(here, 0)];
        let mut stops = Vec::new();
        for i in 1..n.max(1) {
            let (stop, stopped) = oneshot::channel();
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            // Built on its own thread: a runtime must not be dropped inside
            // another's `block_on`, as it would be if the thread failed to start.
            std::thread::Builder::new()
                .name(format!("wshost-loop-{i}"))
                .spawn(move || run(started, stopped))?;
            let started = handle
                .recv()
                .map_err(|_| io::Error::other("an event loop's thread ended at start"))??;
            loops.push(Loop::new(started, i));
            stops.push(stop);
        }
        Ok(Loops { loops, stops })
    }

    /// How many loops there are.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    /// Always false: there is at least loop 0.
    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// Place a new connection on the loop with the fewest open (the first
    /// of those tied, so loop 0 — no hand-over — when all are even).
    pub fn place(&self) -> Placed {
        let (index, chosen) = self
            .loops
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| l.shared.open.load(Ordering::Relaxed))
            .expect("there is always loop 0");
        self.count(index, chosen)
    }

    /// Place a connection on the loop that runs on `thread` (where it is
    /// moved to); `None` if no loop does.
    pub fn place_on(&self, thread: ThreadId) -> Option<Placed> {
        let (index, chosen) = self
            .loops
            .iter()
            .enumerate()
            .find(|(_, l)| l.thread == thread)?;
        Some(self.count(index, chosen))
    }

    fn count(&self, index: usize, chosen: &Loop) -> Placed {
        chosen.shared.open.fetch_add(1, Ordering::Relaxed);
        chosen.shared.gauge.increment(1.0);
        Placed {
            on: chosen.shared.clone(),
            here: index == 0,
        }
    }

    /// Connections open on each loop, loop 0 first.
    pub fn open(&self) -> Vec<usize> {
        let open = self
            .loops
            .iter()
            .map(|l| l.shared.open.load(Ordering::Relaxed));
        open.collect()
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// Serve `tcp` on the loop of `to`: taken off this loop's reactor here and
/// registered with that loop's there, then given to `serve`. A socket that
/// cannot move is dropped, logged with `remote`.
pub fn hand_over<F, Fut>(tcp: TcpStream, to: &Handle, remote: SocketAddr, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => return tracing::warn!(%remote, "dropped: cannot hand over: {e}"),
    };
    to.spawn(async move {
        match TcpStream::from_std(tcp) {
            Ok(tcp) => serve(tcp).await,
            Err(e) => tracing::warn!(%remote, "dropped: cannot hand over: {e}"),
        }
    });
}

/// A started loop's thread: build its runtime and say so through
/// `started`, serve until told to stop (or until [`Loops`] is gone), then
/// give its tasks [`STOP_TIMEOUT`] to end.
fn run(started: SyncSender<io::Result<(Handle, ThreadId)>>, stopped: oneshot::Receiver<()>) {
    let runtime = match Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return drop(started.send(Err(e))),
    };
    let _ = started.send(Ok((runtime.handle().clone(), std::thread::current().id())));
    let _ = runtime.block_on(stopped);
    runtime.shutdown_timeout(STOP_TIMEOUT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_goes_to_the_loop_with_fewest_open() {
        let loops = Loops::start(3).unwrap();
        assert_eq!(loops.len(), 3);
        let a = loops.place();
        assert!(a.here, "all even: loop 0, which needs no hand-over");
        let b = loops.place();
        let c = loops.place();
        assert_eq!(loops.open(), vec![1, 1, 1]);
        assert!(!b.here && !c.here);
        drop(b);
        assert_eq!(loops.open(), vec![1, 0, 1]);
        let d = loops.place();
        assert_eq!(loops.open(), vec![1, 1, 1], "the freed loop is refilled");
        drop((a, c, d));
        assert_eq!(loops.open(), vec![0, 0, 0]);
        let moved = loops.place_on(std::thread::current().id()).unwrap();
        assert_eq!(loops.open(), vec![1, 0, 0], "this thread runs loop 0");
        drop(moved);
        assert_eq!(loops.open(), vec![0, 0, 0]);
    }

    #[tokio::test]
    async fn a_placed_connection_runs_on_its_loop_and_counts_until_its_place_goes() {
        let loops = Loops::start(2).unwrap();
        let _first = loops.place();
        let placed = loops.place();
        assert!(!placed.here);
        let (tx, rx) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        placed.handle().clone().spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send(name);
            let _ = released.await;
            drop(placed);
        });
        assert_eq!(rx.await.unwrap().as_deref(), Some("wshost-loop-1"));
        assert_eq!(loops.open(), vec![1, 1]);
        release.send(()).unwrap();
        for _ in 0..100 {
            if loops.open() == vec![1, 0] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the loop still counts an ended connection: {:?}",
            loops.open()
        );
    }
}
