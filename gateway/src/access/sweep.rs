//! The periodic sweep: sessions that expired by time are closed in the
//! store (freeing their seats) and recorded once, by whichever instance
//! closed them.

use super::Access;

impl Access {
    /// Closes every session that expired by time and records each; how
    /// many closed. A failed sweep changes nothing and is retried by the
    /// next one.
    pub async fn sweep_expired(&self) -> usize {
        match self.timed("sweep", self.store.sweep()).await {
            Ok(closed) => {
                closed.iter().for_each(|c| self.record_closed(c));
                closed.len()
            }
            Err(error) => {
                tracing::warn!(%error, "session sweep failed");
                0
            }
        }
    }
}
