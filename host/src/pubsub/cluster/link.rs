//! One multiplexed connection to Redis for the requests that wait for their
//! answer (history reads, presence): made when first needed, and again
//! after a failure. A request that fails is tried once more on a new
//! connection (the one kept may predate a Redis restart).

use redis::aio::MultiplexedConnection;
use std::future::Future;

pub struct Link {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
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
        let mut cached = self.conn.lock().await;
        if let Some(conn) = &*cached {
            return Ok(conn.clone());
        }
        let conn = super::within(super::connect(&self.client)).await?;
        *cached = Some(conn.clone());
        Ok(conn)
    }
}
