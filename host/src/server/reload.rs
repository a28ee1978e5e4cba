//! What a reload (SIGHUP, `--watch`) may swap: the bytes each route was
//! loaded from, so a component that did not change is not loaded again; and
//! the versions of each route still serving, so a swap never takes the
//! instance pool's room from the requests to come.
//!
//! An event route's old instance serves its open sockets until they close,
//! and a coro route's old instances serve their tasks to the end: each
//! version alive holds instance slots, and the pool has room for a fixed
//! number of versions per route (`component::EVENT_GENERATIONS`; two for a
//! coro route). Reloading every route on every SIGHUP spent a version each
//! time (a certificate renewal too): after three reloads with long-lived
//! sockets, new requests got 500. Now a reload swaps only what changed, and
//! only while the pool has room for one more version; else the route keeps
//! its running component and the log says why.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, Weak};

/// A version of a route, alive while it serves anything.
pub type Version = Weak<dyn Any + Send + Sync>;

#[derive(Default)]
pub struct Versions {
    routes: Mutex<HashMap<String, Loaded>>,
}

struct Loaded {
    fingerprint: u64,
    /// The versions that hold instances (event and coro routes), newest last.
    alive: Vec<Version>,
}

/// A component's bytes, reduced to what tells a change (not a security
/// hash: the operator's own files).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl Versions {
    /// Route `path` now serves a version loaded from bytes of `fingerprint`.
    pub fn loaded(&self, path: &str, fingerprint: u64, version: Option<Version>) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = routes.entry(path.to_string()).or_insert(Loaded {
            fingerprint,
            alive: Vec::new(),
        });
        entry.fingerprint = fingerprint;
        entry.alive.extend(version);
    }

    /// Whether `path` was loaded from these very bytes.
    pub fn unchanged(&self, path: &str, fingerprint: u64) -> bool {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .get(path)
            .is_some_and(|l| l.fingerprint == fingerprint)
    }

    /// Whether `path` may get one more version, at most `room` alive at
    /// once; why not, if not.
    pub fn room(&self, path: &str, room: usize) -> Result<(), String> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = routes.get_mut(path) else {
            return Ok(());
        };
        entry.alive.retain(|version| version.strong_count() > 0);
        let alive = entry.alive.len();
        if alive >= room {
            return Err(format!(
                "{alive} versions of it still serve open connections, and the instance pool has \
                 room for {room}: reload again (SIGHUP, or touch the file under --watch) once \
                 the older ones' connections have closed"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn versions_count_while_alive_and_bytes_tell_a_change() {
        let versions = Versions::default();
        let first: Arc<dyn Any + Send + Sync> = Arc::new(1u8);
        versions.loaded("/e", fingerprint(b"v1"), Some(Arc::downgrade(&first)));
        assert!(versions.unchanged("/e", fingerprint(b"v1")));
        assert!(!versions.unchanged("/e", fingerprint(b"v2")));
        let second: Arc<dyn Any + Send + Sync> = Arc::new(2u8);
        versions.loaded("/e", fingerprint(b"v2"), Some(Arc::downgrade(&second)));
        assert!(versions.room("/e", 2).is_err());
        drop(first);
        assert!(versions.room("/e", 2).is_ok());
        assert!(versions.unchanged("/e", fingerprint(b"v2")));
    }
}
