//! The event loops connections run on (`--loops`, one per core by default):
//! each a tokio current-thread runtime on a thread of its own, and each
//! accepted connection handed to one loop that owns it for its life. Every
//! task a connection spawns (its guest, its pump) runs on that loop, so the
//! read → guest call → write of a message wakes no other thread and passes
//! through no work-stealing queue: uWebSockets' shape, and Seastar's.
//!
//! Loop 0 is the runtime [`Loops::start`] is called on (the main thread's):
//! with one loop every task of the server runs on one thread. The others
//! are started here and stop when [`Loops`] is dropped, abandoning what
//! still runs on them (the server has waited for its connections by then).
//!
//! A connection goes to the loop with the fewest open: WebSockets live long
//! and unevenly, so taking turns would pile the survivors on a few loops.
//! What is shared between connections (an event-world route's instance,
//! topics, the cluster) stays shared across loops, through `Send` handles.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::{Builder, Handle, Runtime};
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
    handle: Handle,
    /// Connections open on it.
    open: Arc<AtomicUsize>,
}

/// The loop a connection was placed on: held by the connection's task, so
/// the loop counts it open until the task ends.
pub struct Placed {
    open: Arc<AtomicUsize>,
    /// Whether it is the loop that accepted it (no hand-over needed).
    pub here: bool,
    handle: Handle,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Placed {
    /// Run `task` on the connection's loop, counted open until it ends.
    pub fn spawn(self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.handle.clone();
        handle.spawn(async move {
            task.await;
            drop(self);
        });
    }
}

impl Loops {
    /// `n` loops: this runtime's and `n - 1` started on threads of their own.
    /// Must be called within a tokio runtime.
    pub fn start(n: usize) -> io::Result<Loops> {
        let mut loops = vec![Loop {
            handle: Handle::current(),
            open: Arc::default(),
        }];
        let mut stops = Vec::new();
        for i in 1..n.max(1) {
            let runtime = Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("wshost-loop-{i}"))
                .build()?;
            let (stop, stopped) = oneshot::channel();
            loops.push(Loop {
                handle: runtime.handle().clone(),
                open: Arc::default(),
            });
            std::thread::Builder::new()
                .name(format!("wshost-loop-{i}"))
                .spawn(move || run(runtime, stopped))?;
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
            .min_by_key(|(_, l)| l.open.load(Ordering::Relaxed))
            .expect("there is always loop 0");
        chosen.open.fetch_add(1, Ordering::Relaxed);
        Placed {
            open: chosen.open.clone(),
            here: index == 0,
            handle: chosen.handle.clone(),
        }
    }

    /// Connections open on each loop, loop 0 first.
    pub fn open(&self) -> Vec<usize> {
        let open = self.loops.iter().map(|l| l.open.load(Ordering::Relaxed));
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

/// A started loop's thread: serve until told to stop (or until [`Loops`]
/// is gone), then give its tasks [`STOP_TIMEOUT`] to end.
fn run(runtime: Runtime, stopped: oneshot::Receiver<()>) {
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
    }

    #[tokio::test]
    async fn a_placed_task_runs_on_its_loop_and_counts_until_it_ends() {
        let loops = Loops::start(2).unwrap();
        let _first = loops.place();
        let placed = loops.place();
        assert!(!placed.here);
        let (tx, rx) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        placed.spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send(name);
            let _ = released.await;
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
