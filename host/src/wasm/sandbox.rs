//! What keeps one guest from costing more than its own connection: a cap on
//! the linear memory and tables of its instance, and a bound on how long it
//! may run without calling the host (epoch interruption).
//!
//! A background thread advances the engine's epoch every [`TICK`]. A running
//! guest reaches its deadline at each tick, yields to tokio (so a busy guest
//! cannot starve other connections on the same worker thread) and is
//! interrupted once it has run for its CPU budget since it last *waited*:
//! a handler-world guest for a frame or for its socket (`recv`, `push`,
//! `push-close`, `upgrade`, `respond`), an event-world guest since its event
//! began. Only a wait that was real restarts it: a call that suspended, or
//! one that brought something (a frame, a queued push). One that fails or
//! says "closed" at once does not, so `loop { push() }` after the peer has
//! gone is stopped like `loop {}`; other host calls (`id`, hub, topics,
//! clocks) restart it only if they really waited (a publish to a large room
//! waiting for the round before it, in the handler and coro worlds), so
//! `loop { id() }` is stopped too.

use std::time::Duration;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

/// How often running guests are preempted. A computing guest holds its
/// worker thread for up to a tick per poll, and tokio checks for I/O every 61
/// polls, so with every worker busy computing a socket may wait ~61 ticks: at
/// 2 ms a healthy echo beside 3 spinning guests answers within ~130 ms (at
/// 10 ms it took ~500 ms). Lowering tokio's event interval instead cost a 4x
/// worse p99 echo latency at 64 connections.
pub const TICK: Duration = Duration::from_millis(2);

/// A limit a guest ran into; the handler's call fails with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitExceeded {
    #[error("ran for over {0:?} without calling the host")]
    Cpu(Duration),
    #[error("memory would exceed the {0}-byte cap")]
    Memory(usize),
    #[error("tables would exceed the {0}-element cap")]
    Table(usize),
}

/// Advance the epoch of each of `engines` every [`TICK`], from one thread
/// (one wake-up a tick, however many engines), for as long as they live.
pub fn start_epoch_ticker<'a>(engines: impl IntoIterator<Item = &'a Engine>) {
    let weak: Vec<_> = engines.into_iter().map(Engine::weak).collect();
    std::thread::Builder::new()
        .name("wshost-epoch".into())
        .spawn(move || {
            loop {
                let mut alive = false;
                for engine in weak.iter().filter_map(|weak| weak.upgrade()) {
                    engine.increment_epoch();
                    alive = true;
                }
                if !alive {
                    return;
                }
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Per-instance caps on linear memory (all memories together) and table elements.
pub struct GuestLimiter {
    max_memory: usize,
    max_table_elements: usize,
    memory: usize,
    /// Ticks the guest has been running since it last called the host.
    ticks_running: u32,
    max_ticks: u32,
}

impl GuestLimiter {
    pub fn new(max_memory: usize, max_table_elements: usize, cpu: Duration) -> Self {
        let max_ticks = (cpu.as_micros() / TICK.as_micros()).max(1);
        GuestLimiter {
            max_memory,
            max_table_elements,
            memory: 0,
            ticks_running: 0,
            max_ticks: max_ticks.try_into().unwrap_or(u32::MAX),
        }
    }

    /// The guest waited (or a new event began): its CPU budget starts again.
    pub fn restart(&mut self) {
        self.ticks_running = 0;
    }

    fn cpu_limit(&self) -> Duration {
        TICK * self.max_ticks
    }

    /// One epoch tick passed while the guest ran: yield, or stop it.
    fn tick(&mut self) -> Result<UpdateDeadline, LimitExceeded> {
        self.ticks_running += 1;
        if self.ticks_running > self.max_ticks {
            return Err(LimitExceeded::Cpu(self.cpu_limit()));
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory - current.min(self.memory) + desired;
        if total > self.max_memory {
            return Err(LimitExceeded::Memory(self.max_memory).into());
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Err(LimitExceeded::Table(self.max_table_elements).into());
        }
        Ok(true)
    }
}

/// A guest's WASI context: its stdout and stderr, and what `grants` allows.
pub fn wasi(
    grants: &wshost_config::Grants,
    stdout: crate::wasm::guest_log::GuestLog,
    stderr: crate::wasm::guest_log::GuestLog,
) -> wasmtime_wasi::WasiCtx {
    use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(stdout).stderr(stderr).envs(&grants.env);
    for (host, guest) in &grants.dirs {
        if let Err(e) = builder.preopened_dir(host, guest, FsPerms::ReadOnly) {
            tracing::warn!("cannot grant {} as {guest}: {e}", host.display());
        }
    }
    builder.build()
}

/// A store's resource table (WASI streams, pollables, the component-model's
/// tasks), capped: wasmtime's default lets a guest hold a million entries.
/// `per_connection` entries for each connection the store serves at once.
pub fn resource_table(connections: usize) -> wasmtime::component::ResourceTable {
    /// Entries one connection's guest may hold; a handler that echoes holds
    /// a handful.
    const PER_CONNECTION: usize = 1_024;
    let mut table = wasmtime::component::ResourceTable::new();
    table.set_max_capacity(connections.max(1).saturating_mul(PER_CONNECTION));
    table
}

/// Run the future `call` makes, telling whether it suspended (was pending
/// at least once): whether the guest really waited in it. Made here, in
/// place: a future passed in and then pinned took its room twice (see
/// `beside::run`), and a handler blocked in `recv` holds this one all along.
pub async fn suspends<F: Future>(call: impl FnOnce() -> F) -> (F::Output, bool) {
    let mut call = std::pin::pin!(call());
    let mut suspended = false;
    let output = std::future::poll_fn(|cx| {
        let poll = call.as_mut().poll(cx);
        suspended |= poll.is_pending();
        poll
    })
    .await;
    (output, suspended)
}

/// Anything whose store can be sandboxed: it hands out its limiter.
pub trait Sandboxed: Send + 'static {
    fn limiter(&mut self) -> &mut GuestLimiter;

    /// Whether the guest has waited since this was last asked (its CPU
    /// budget then starts again).
    fn take_waited(&mut self) -> bool {
        false
    }
}

/// Apply the memory caps and the CPU budget to a fresh store.
pub fn sandbox<T: Sandboxed>(store: &mut Store<T>) {
    store.limiter(|state| state.limiter());
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if state.take_waited() {
            state.limiter().restart();
        }
        Ok(state.limiter().tick()?)
    });
    store.set_epoch_deadline(1);
}

/// The limit behind a failed guest call, if one was hit.
pub fn limit_hit(err: &wasmtime::Error) -> Option<&LimitExceeded> {
    err.downcast_ref::<LimitExceeded>()
}

/// Log why a guest's call failed; returns the short reason its peer is given.
pub fn failure(err: &wasmtime::Error) -> String {
    if let Some(panic) = err.downcast_ref::<HostPanic>() {
        return panic.to_string();
    }
    crate::meters::guest_failed(match limit_hit(err) {
        Some(LimitExceeded::Cpu(_)) => "cpu",
        Some(LimitExceeded::Memory(_)) => "memory",
        Some(LimitExceeded::Table(_)) => "table",
        None => "trap",
    });
    if let Some(limit) = limit_hit(err) {
        tracing::warn!("handler stopped: {limit}");
        return format!("handler stopped: {limit}");
    }
    tracing::error!("handler trapped: {err:?}");
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("handler trapped: {trap}"),
        None => "handler trapped".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_every_memory_of_the_instance() {
        let mut l = GuestLimiter::new(100, 10, Duration::from_secs(1));
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 40, None).unwrap());
        let err = l.memory_growing(40, 41, None).unwrap_err();
        assert_eq!(limit_hit(&err), Some(&LimitExceeded::Memory(100)));
    }

    #[test]
    fn table_cap_is_per_table() {
        let mut l = GuestLimiter::new(100, 10, Duration::from_secs(1));
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(0, 10, None).unwrap());
        let err = l.table_growing(10, 11, None).unwrap_err();
        assert_eq!(limit_hit(&err), Some(&LimitExceeded::Table(10)));
    }

    #[test]
    fn cpu_budget_restarts_when_the_guest_waits() {
        let mut l = GuestLimiter::new(100, 10, TICK * 3);
        for _ in 0..3 {
            assert!(l.tick().is_ok());
        }
        l.restart();
        for _ in 0..3 {
            assert!(l.tick().is_ok());
        }
        assert_eq!(l.tick().err(), Some(LimitExceeded::Cpu(TICK * 3)));
    }
}

/// A panic of ours in a host function, caught by [`guarded`].
#[derive(Debug, thiserror::Error)]
#[error("the host panicked: {0}")]
pub struct HostPanic(String);

/// A guest call with a panic of ours in a host function (a bug) turned into
/// the call's failure: the instance is discarded as after a trap, and the
/// connection ends as a failed handler's does.
pub async fn guarded<T, F>(call: impl FnOnce() -> F) -> wasmtime::Result<T>
where
    F: Future<Output = wasmtime::Result<T>>,
{
    use futures_util::FutureExt;
    // `call` makes the future in place (see `suspends`).
    match std::panic::AssertUnwindSafe(call()).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let why = crate::meters::panicked("guest_call", &*panic);
            tracing::error!("a host function panicked in a guest call: {why}");
            Err(HostPanic(why).into())
        }
    }
}
