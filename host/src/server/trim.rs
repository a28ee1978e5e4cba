//! Giving memory back after a burst of connections has gone.
//!
//! glibc keeps what freed connections used: each worker thread allocates
//! from an arena of its own, and an arena shrinks only from its top, which
//! a few live allocations pin. After 4,000 coro-world connections came and
//! went, the server held 31 MiB more than before (event world 16 MiB);
//! `malloc_trim(0)` hands back the free pages wherever they lie (26 MiB of
//! those 31). Trimming walks every arena under its lock, so it runs only
//! once a burst is over — open connections [`BURST`] below their peak since
//! the last trim — on a blocking thread.
//!
//! (A handler-world burst also keeps the wasm pool's slots' resident pages:
//! see `component::KEEP_RESIDENT`; no trim gives those back.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Connections that must have gone since the peak for a trim.
pub const BURST: usize = 500;

/// How often open connections are looked at.
const EVERY: Duration = Duration::from_secs(2);

/// The peak of open connections since the last trim: noted as each
/// connection opens (a burst may come and go between two looks).
#[derive(Debug, Default)]
pub struct Peak(AtomicUsize);

impl Peak {
    /// `open` connections are open now.
    pub fn saw(&self, open: usize) {
        self.0.fetch_max(open, Ordering::Relaxed);
    }

    /// Whether a burst has gone since the peak, `open` connections left
    /// (then the peak starts again from `open`).
    pub fn burst_gone(&self, open: usize) -> bool {
        let peak = self.0.fetch_max(open, Ordering::Relaxed).max(open);
        if peak >= open + BURST {
            self.0.store(open, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Look at `open` (the connections open now) every few seconds, and trim
/// after each burst that `peak` saw.
pub async fn after_bursts(peak: &Peak, open: impl Fn() -> usize) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if peak.burst_gone(open()) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// Return free heap pages to the kernel; logs what it gave back.
fn trim() {
    let before = resident();
    let started = std::time::Instant::now();
    release();
    let took = started.elapsed();
    let after = resident();
    if let (Some(before), Some(after)) = (before, after) {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        tracing::info!(
            "a burst of connections has gone: gave back {:.1} MiB (resident {:.1} -> {:.1} MiB) in {:.1} ms",
            mib(before.saturating_sub(after)),
            mib(before),
            mib(after),
            took.as_secs_f64() * 1e3
        );
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() {
    // SAFETY: malloc_trim takes no pointers; it locks each arena itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}

/// This process's resident bytes (`/proc/self/statm`), where there is one.
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_once_a_burst_has_gone_not_while_it_grows_or_idles() {
        let peak = Peak::default();
        let seen: Vec<bool> = [0, 300, 2_000, 1_800, 1_500, 1_499, 1_200, 900, 1_400, 899]
            .into_iter()
            .map(|open| peak.burst_gone(open))
            .collect();
        // Due at 1,500 (500 below the peak of 2,000); the peak starts again
        // there: due at 900; then it climbs to 1,400, and 899 is due.
        assert_eq!(
            seen,
            [
                false, false, false, false, true, false, false, true, false, true
            ]
        );
    }
}
