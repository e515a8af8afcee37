//! [`LogoutLedger`] for the Redis store: `sid` links (written by the
//! admission, in the pool's slot) and one-time logout token ids.

use async_trait::async_trait;

use super::RedisStore;
use super::decode::{array, int, text};
use crate::clock::UnixMillis;
use crate::session::{LogoutLedger, SessionId, StoreError};

#[async_trait]
impl LogoutLedger for RedisStore {
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<SessionId>, StoreError> {
        // A link lives in the slot of the pool that opened the session (the
        // admission writes it), so a lookup asks every pool.
        let mut linked = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:sid:{sid_key}", self.tag(&pool.name));
            let value = self.run(&self.scripts.members, &[key], &[]).await?;
            for id in array(&value)? {
                linked.push(text(id)?);
            }
        }
        Ok(linked)
    }

    async fn first_use(&self, key: &str, until_ms: UnixMillis) -> Result<bool, StoreError> {
        let value = self
            .run(
                &self.scripts.first_use,
                &[format!("{{{}}}:used:{key}", self.prefix)],
                &[self.now_arg(), until_ms.to_string()],
            )
            .await?;
        Ok(int(&value)? == 1)
    }

    async fn release_use(&self, key: &str) -> Result<(), StoreError> {
        self.run(
            &self.scripts.release_use,
            &[format!("{{{}}}:used:{key}", self.prefix)],
            &[],
        )
        .await?;
        Ok(())
    }
}
