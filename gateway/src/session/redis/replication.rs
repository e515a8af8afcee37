//! Waiting for replicas (`redis.wait_replicas`): a write that opens or closes
//! a session is confirmed only once enough replicas have it, so a failover
//! cannot silently undo it.

use super::connect::Connection;
use super::{RedisStore, millis};

impl RedisStore {
    /// With `redis.wait_replicas`, waits (`WAIT`, at most
    /// `redis.wait_timeout`) until that many replicas have every write made
    /// so far on the connection; whether they have. Always true without the
    /// setting, and under Cluster (refused by the configuration).
    pub(super) async fn replicated(&self, operation: &str) -> bool {
        if self.wait_replicas == 0 {
            return true;
        }
        let conn = match &self.connection {
            Connection::Standalone { conn, .. } | Connection::Sentinel { conn, .. } => {
                conn.current()
            }
            Connection::Cluster { .. } => return true,
        };
        let Some(mut conn) = conn else {
            return false;
        };
        let wait_ms = millis(self.wait_timeout);
        let mut command = redis::cmd("WAIT");
        command.arg(self.wait_replicas).arg(wait_ms);
        let wait = command.query_async::<i64>(&mut conn);
        match tokio::time::timeout(self.timeout + self.wait_timeout, wait).await {
            Ok(Ok(acked)) if acked >= i64::from(self.wait_replicas) => true,
            Ok(Ok(acked)) => {
                tracing::warn!(
                    operation,
                    acked,
                    wanted = self.wait_replicas,
                    "Redis write not acknowledged by enough replicas in time"
                );
                false
            }
            Ok(Err(error)) => {
                tracing::warn!(operation, %error, "Redis WAIT failed");
                false
            }
            Err(_) => {
                tracing::warn!(operation, "Redis WAIT timed out");
                false
            }
        }
    }
}
