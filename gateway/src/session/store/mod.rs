//! The store contract, split by concern: one narrow trait per thing a store
//! keeps, so a caller names only what it uses and each concern has its own
//! contract tests (`tests/src/contract/`, run against every store).
//!
//! * [`SessionStore`]: sessions and the seats they hold;
//! * [`RevocationStore`]: revocations shared by the fleet;
//! * [`LogoutLedger`]: back-channel logout bookkeeping (`sid` links and
//!   one-time logout token ids);
//! * [`AuditSink`]: the store's own audit trail, where it has one;
//! * [`UsageLedger`]: the pools' usage history;
//! * [`ClientLedger`]: where sessions were used from (shared-token detection);
//! * [`SeatQueue`]: callers waiting for a seat.
//!
//! [`Store`] is all of them at once: what the memory and the Redis store are,
//! and what the rest of the crate holds as a [`SharedStore`].

mod audit;
mod clients;
mod logout_ledger;
mod queue;
mod revocations;
mod sessions;
mod usage;

use std::sync::Arc;

pub use audit::{
    AUDIT_SCAN_LIMIT, AuditCursor, AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditSink,
    PageBuilder,
};
pub use clients::{CLIENT_SIGHTINGS_CAP, ClientBound, ClientCounts, ClientLedger, ClientSighting};
pub use logout_ledger::LogoutLedger;
pub use queue::{QueueExit, SeatListener, SeatNews, SeatQueue};
pub use revocations::RevocationStore;
pub use sessions::{PoolUsage, SessionFilter, SessionStore};
pub use usage::UsageLedger;

/// Failures of the store itself (never of the caller's input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this version does not understand.
    #[error("session store protocol error: {0}")]
    Protocol(String),
}

/// Everything a gateway store does: every narrow trait at once. Implemented
/// for any type that implements them all, so a store implements the narrow
/// traits and never this one.
///
/// A new capability adds its own narrow trait (in this folder, with its
/// contract tests in `tests/src/contract/`) and one line here.
pub trait Store:
    SessionStore + RevocationStore + LogoutLedger + AuditSink + UsageLedger + ClientLedger + SeatQueue
{
}

impl<T> Store for T where
    T: SessionStore
        + RevocationStore
        + LogoutLedger
        + AuditSink
        + UsageLedger
        + ClientLedger
        + SeatQueue
        + ?Sized
{
}

/// A store shared by the proxy, the sweeper and the admin API.
pub type SharedStore = Arc<dyn Store>;
