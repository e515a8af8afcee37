//! Revocations as operations: recording one for the fleet, deleting one,
//! listing them, and keeping this instance's mirror ([`super::RevocationList`])
//! in step with the store (news heard on its channel, the periodic sync).

use std::sync::Arc;

use super::Access;
use crate::session::{Revocation, RevocationNews, StoreError};
use crate::telemetry::audit;

/// How long a token revocation outlives the token's `exp`: more than any
/// sensible verification leeway.
pub(crate) const REVOCATION_MARGIN_MS: u64 = 5 * 60 * 1000;

/// The latest end of a revocation or one-time id, in ms: 2^53, the largest
/// integer a Lua number (a double) holds exactly, so the Redis scripts
/// compare and expire it as given. A token valid beyond that (the year
/// 287,396) is valid again afterwards.
pub(crate) const MAX_REVOCATION_END_MS: u64 = 1 << 53;

/// When a revocation of a token expiring at `exp` (seconds, a claim value)
/// may lapse: after `exp`, the leeway and [`REVOCATION_MARGIN_MS`], capped
/// at [`MAX_REVOCATION_END_MS`]. No step can wrap, whatever the claim
/// holds: a negative `exp` gives the margin alone.
pub(crate) fn revocation_end_ms(exp: i64, leeway_secs: i64) -> u64 {
    let secs = u64::try_from(exp.saturating_add(leeway_secs.max(0))).unwrap_or(0);
    secs.saturating_mul(1000)
        .saturating_add(REVOCATION_MARGIN_MS)
        .min(MAX_REVOCATION_END_MS)
}

impl Access {
    /// Records a revocation in the store (for the fleet) and applies it here
    /// at once.
    pub async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        self.timed("revoke", self.store.revoke(&revocation)).await?;
        self.apply_revocation(revocation);
        Ok(())
    }

    /// The revocations the store holds (for the fleet) now.
    pub async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.timed("revocations", self.store.revocations()).await
    }

    /// Deletes the revocations with this [`Revocation::id`] for the fleet,
    /// at once on this instance (others drop them at their next sync), and
    /// returns them; none when nothing matched.
    pub async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError> {
        let deleted = self
            .timed("delete_revocation", self.store.delete_revocation(id))
            .await?;
        // Even when the store had none, this instance may still hold one
        // that another instance deleted since the last sync.
        self.revocations.remove(id);
        if !deleted.is_empty() {
            audit::revocation_deleted(id, deleted.len());
            self.trail(vec![
                ("event", "revocation_deleted".into()),
                ("revocation_id", id.to_string()),
                ("count", deleted.len().to_string()),
            ]);
        }
        Ok(deleted)
    }

    /// Applies a revocation already recorded in the store to this instance
    /// at once (and audits it).
    fn apply_revocation(&self, revocation: Revocation) {
        audit::revoked(&revocation);
        let kind = match &revocation {
            Revocation::Token { .. } => "token_revoked",
            Revocation::Subject { .. } => "subject_revoked",
        };
        self.trail(vec![
            ("event", kind.into()),
            ("until_ms", revocation.until_ms().to_string()),
        ]);
        self.revocations.add(revocation);
    }

    /// Listens to the store's revocation news: revocations of other
    /// instances apply here as soon as they are published, and a new
    /// subscription (messages may have been missed) fetches the list again.
    pub fn listen_to_revocations(self: &Arc<Self>) {
        let access = Arc::downgrade(self);
        self.store.on_revocation_news(Arc::new(move |news| {
            let Some(access) = access.upgrade() else {
                return;
            };
            match news {
                RevocationNews::Revoked(revocation) => {
                    access.revocations.add_heard(revocation);
                }
                RevocationNews::Resubscribed => {
                    // Closes published meanwhile were not heard either.
                    access.waitlists.wake_every_front();
                    tokio::spawn(async move { access.sync_revocations().await });
                }
            }
        }));
    }

    /// Mirrors the store's revocations (the periodic sync), keeping this
    /// instance's own and writing again those the store lost.
    pub async fn sync_revocations(&self) {
        let _one_at_a_time = self.syncing.lock().await;
        let list = match self.revocations().await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "revocation sync failed; keeping the last list");
                return;
            }
        };
        let deleted = match self.store.deleted_revocations().await {
            Ok(deleted) => deleted,
            Err(error) => {
                tracing::warn!(%error, "revocation sync failed; keeping the last list");
                return;
            }
        };
        let missing = self.revocations.sync(list, &deleted, self.clock.now_ms());
        if missing.is_empty() {
            return;
        }
        tracing::warn!(
            count = missing.len(),
            "revocations made here were missing from the store (its data was lost); writing them again"
        );
        for revocation in missing {
            if self
                .timed("revoke", self.store.revoke(&revocation))
                .await
                .is_ok()
            {
                self.metrics.revocations_restored.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn revocation_ends_saturate_at_the_cap_and_never_wrap() {
        let margin = REVOCATION_MARGIN_MS;
        assert_eq!(
            revocation_end_ms(NOW, 30),
            (NOW as u64 + 30) * 1000 + margin
        );
        assert_eq!(revocation_end_ms(NOW, 0), NOW as u64 * 1000 + margin);
        // `exp` = 2e16 s used to wrap to 1970 in release builds.
        for exp in [
            1 << 53,
            10_000_000_000_000_000,
            20_000_000_000_000_000,
            i64::MAX,
        ] {
            assert_eq!(revocation_end_ms(exp, 30), MAX_REVOCATION_END_MS, "{exp}");
            assert_eq!(
                revocation_end_ms(exp, i64::MAX),
                MAX_REVOCATION_END_MS,
                "{exp}"
            );
        }
        for exp in [-31, i64::MIN] {
            assert_eq!(revocation_end_ms(exp, 30), margin, "{exp}");
        }
        assert_eq!(revocation_end_ms(-1, 0), margin);
        assert_eq!(revocation_end_ms(0, i64::MIN), margin);
    }
}
