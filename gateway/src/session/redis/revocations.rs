//! [`RevocationStore`] for the Redis store: revocations in one sorted set,
//! admission markers in every pool's slot (so an instance that missed the
//! message still refuses), and tombstones of deleted ones.

use async_trait::async_trait;

use super::decode::{array, protocol, text};
use super::{LINGER, MAX_LUA_INT, RedisStore, millis};
use crate::session::{Revocation, RevocationListener, RevocationStore, StoreError};

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        // The markers first: once the message is out, an instance that
        // missed it must already find them in its admissions.
        let until = revocation.until_ms().min(MAX_LUA_INT).to_string();
        let (marker, not_before) = match revocation {
            Revocation::Token { key, .. } => (format!("rt:{key}"), String::new()),
            Revocation::Subject {
                subject,
                not_before_ms,
                ..
            } => (
                format!("rs:{}", subject.to_hex()),
                not_before_ms.to_string(),
            ),
        };
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:{marker}", self.tag(&pool.name));
            self.run(
                &self.scripts.mark_revoked,
                &[key],
                &[self.now_arg(), until.clone(), not_before.clone()],
            )
            .await?;
        }
        self.run(
            &self.scripts.revoke,
            &[self.revocations_key()],
            &[
                self.now_arg(),
                revocation.encode(),
                until,
                millis(LINGER).to_string(),
                self.revocations_channel(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let value = self
            .run(
                &self.scripts.revocations,
                &[self.revocations_key()],
                &[self.now_arg()],
            )
            .await?;
        array(&value)?
            .iter()
            .map(|v| Revocation::decode(&text(v)?).ok_or_else(|| protocol("bad revocation")))
            .collect()
    }

    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError> {
        // The admission markers go first, with every revocation of that id
        // (they are per token or per subject, as the id is).
        let marker = match id.strip_prefix(crate::session::SUBJECT_REVOCATION_ID_PREFIX) {
            Some(subject) => format!("rs:{subject}"),
            None => format!("rt:{id}"),
        };
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:{marker}", self.tag(&pool.name));
            self.run(&self.scripts.forget_marker, &[key], &[]).await?;
        }
        let value = self
            .run(
                &self.scripts.delete_revocation,
                &[self.revocations_key(), self.tombstones_key()],
                &[self.now_arg(), id.to_string(), millis(LINGER).to_string()],
            )
            .await?;
        array(&value)?
            .iter()
            .map(|v| Revocation::decode(&text(v)?).ok_or_else(|| protocol("bad revocation")))
            .collect()
    }

    fn on_revocation_news(&self, listener: RevocationListener) {
        *self.revocation_listener.lock() = Some(listener);
    }

    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError> {
        let value = self
            .run(
                &self.scripts.deleted_revocations,
                &[self.tombstones_key()],
                &[self.now_arg()],
            )
            .await?;
        array(&value)?.iter().map(text).collect()
    }
}

impl RedisStore {
    pub(super) fn revocations_key(&self) -> String {
        format!("{{{}}}:revocations", self.prefix)
    }

    /// The ids of deleted revocations (in the revocations' slot).
    pub(super) fn tombstones_key(&self) -> String {
        format!("{{{}}}:revocations:deleted", self.prefix)
    }
}
