//! [`RevocationStore`]: the revocations a fleet shares, kept by the store
//! until they lapse, so every instance refuses the same tokens.

use async_trait::async_trait;

use super::StoreError;
use crate::session::{Revocation, RevocationListener};

/// Where revocations live, for the whole fleet.
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Records a revocation for the whole fleet, until it lapses.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;

    /// The revocations in force now.
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;

    /// Deletes, for the whole fleet, the revocations in force whose
    /// [`Revocation::id`] is `id`, and returns them (none: nothing matched).
    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError>;

    /// Registers who hears revocations the rest of the fleet publishes (and
    /// when the store may have missed some). A store that is not shared
    /// (memory) has nothing to tell.
    fn on_revocation_news(&self, _listener: RevocationListener) {}

    /// The ids of revocations deleted by
    /// [`RevocationStore::delete_revocation`] that would still be in force,
    /// so an instance that keeps its own revocations through a loss of store
    /// data does not bring a deleted one back.
    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError>;
}
