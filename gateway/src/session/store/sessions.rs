//! [`SessionStore`]: sessions and the seats they hold, the store's first
//! job and the one every `session` route calls.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::licensing::Pools;
use crate::session::{
    AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityKey, Session, SubjectKey,
};

/// Seat use of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Seat limit.
    pub limit: u32,
    /// Seats reserved for named groups.
    pub reserved: u32,
    /// Open sessions.
    pub in_use: u32,
    /// Callers waiting for a seat in the pool's queue.
    pub waiting: u32,
}

/// Filters for [`SessionStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions of this pool.
    pub pool: Option<String>,
    /// Only sessions of this subject (`sub`).
    pub subject: Option<String>,
}

/// Where sessions live. All methods are atomic with respect to each other:
/// no interleaving of calls, on one instance or many, can put more sessions
/// in a pool than its limit or give one identity two seats in one pool.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Reuse-and-slide the identity's session in the pool, or open one if a
    /// seat (and the subject's cap) allows, or refuse. Refusal changes nothing.
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError>;

    /// The identity's open session in a pool, without opening or sliding it.
    async fn find(&self, pool: &str, identity: &IdentityKey)
    -> Result<Option<Session>, StoreError>;

    /// An open session by id.
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError>;

    /// Closes a session by id and frees its seat; `None` if it was not open.
    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError>;

    /// Closes every open session of a subject (all pools).
    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError>;

    /// Open sessions matching a filter, oldest first.
    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError>;

    /// Seat use of every configured pool, in configuration order.
    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError>;

    /// Closes every session that has expired by time and returns them.
    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the pools of a reloaded configuration: their limits, matches,
    /// reserved seats, caps and timeouts apply from the next call on; open
    /// sessions stay open and keep their seats. A pool the new configuration
    /// no longer names keeps its open sessions (listed, closable, swept) until
    /// they close, but is no longer reported by [`SessionStore::usage`].
    fn reconfigure(&self, pools: &Pools);
}
