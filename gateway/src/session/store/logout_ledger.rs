//! [`LogoutLedger`]: what a back-channel logout needs the store to remember,
//! shared by the fleet so any instance can act on any logout: which
//! sessions an identity provider session (`sid`) opened or reused, and which
//! logout tokens were already used (replays).

use async_trait::async_trait;

use super::StoreError;
use crate::clock::UnixMillis;
use crate::session::SessionId;

/// The bookkeeping of back-channel logouts.
#[async_trait]
pub trait LogoutLedger: Send + Sync + 'static {
    /// The sessions linked to an identity provider session (`sid` key) by
    /// the admissions that opened or reused them, unless the links lapsed.
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<SessionId>, StoreError>;

    /// Records a one-time token id (a logout token's `jti`) until `until_ms`;
    /// `false` when it was recorded before — a replay.
    async fn first_use(&self, key: &str, until_ms: UnixMillis) -> Result<bool, StoreError>;

    /// Forgets a one-time token id recorded by [`LogoutLedger::first_use`],
    /// so the token counts as unused again: a back-channel logout reserves
    /// the logout token's `jti` before it acts, and releases it when the
    /// store failed half-way, so the identity provider's retry is not a
    /// replay.
    async fn release_use(&self, key: &str) -> Result<(), StoreError>;
}
