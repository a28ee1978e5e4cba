//! One multiplexed connection to Redis for the requests that wait for their
//! answer (history reads, presence): made when first needed, and again
//! after a failure. A request that fails is tried once more on a new
//! connection (the one kept may predate a Redis restart). For
//! [`QUIET`] after a connection could not be made, requests fail at once
//! instead of each waiting for a connect of its own (a guest's call waits
//! on them: it must not wait out one timeout per caller while Redis is
//! away).

use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long after a failed connect requests fail without trying.
const QUIET: Duration = Duration::from_secs(1);

pub struct Link {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// When a connect last failed.
    failed: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(client: redis::Client) -> Link {
        Link {
            client,
            conn: tokio::sync::Mutex::new(None),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// `op` on the connection; once more on a new one if it fails.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, String>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut failed = String::new();
        for _ in 0..2 {
            let done = match self.conn().await {
                Ok(conn) => op(conn).await,
                Err(why) => Err(why),
            };
            match done {
                Ok(value) => return Ok(value),
                Err(why) => {
                    *self.conn.lock().await = None;
                    failed = why;
                }
            }
        }
        Err(failed)
    }

    async fn conn(&self) -> Result<MultiplexedConnection, String> {
        let failed_lately = || {
            let last_failed = *self.failed.lock().unwrap_or_else(|e| e.into_inner());
            last_failed.is_some_and(|at| at.elapsed() < QUIET)
        };
        if failed_lately() {
            return Err("Redis unreachable a moment ago".into());
        }
        let mut cached = self.conn.lock().await;
        if let Some(conn) = &*cached {
            return Ok(conn.clone());
        }
        // Again with the lock: callers that queued for it behind a connect
        // that failed must not each wait out a connect of their own.
        if failed_lately() {
            return Err("Redis unreachable a moment ago".into());
        }
        let made = super::within(super::connect(&self.client)).await;
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        *failed = made.is_err().then(Instant::now);
        let conn = made?;
        *cached = Some(conn.clone());
        Ok(conn)
    }
}
