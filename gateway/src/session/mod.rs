//! Sessions and the store that holds them.
//!
//! A session is the accounting record one session identity holds in one pool
//! while it uses the ERP: opening it takes a seat, closing it frees the seat.
//! The store traits ([`store`]: [`SessionStore`], [`RevocationStore`],
//! [`LogoutLedger`], [`AuditSink`], together [`Store`]) are the only way the
//! proxy reaches session state, so the memory store (one instance) and the
//! Redis store (a fleet) are interchangeable. Every store runs the same
//! contract suite (the end-to-end crate's `contract` module).
//!
//! Where things are:
//!
//! * [`record`]: a session, how it closes and how it is shown;
//! * [`admission`]: what one admission asks and what it answers;
//! * [`revocation`]: revocations and the news of them;
//! * [`identity`]: session identity, subject and `sid` keys;
//! * [`store`]: the traits; [`memory`] and [`redis`]: the two stores.
//!
//! This module depends on nothing above it (proxy, admin, server), so the
//! rest of the crate can build on it without a cycle.

pub mod admission;
pub mod identity;
pub mod memory;
pub mod record;
pub mod redis;
pub mod revocation;
pub mod store;

pub use admission::{
    Admission, AdmitOutcome, AdmitRequest, IdpSession, PresentedToken, Refusal, Ticket,
};
pub use identity::{IdentityKey, IdentityRule, SessionIdentity, SubjectKey, sid_key};
pub use memory::{MEMORY_AUDIT_CAP, MemoryStore};
pub use record::{CloseReason, ClosedSession, Session, SessionId, SessionView, new_session_id};
pub use redis::RedisStore;
pub use revocation::{
    Revocation, RevocationListener, RevocationNews, SUBJECT_REVOCATION_ID_PREFIX,
    SUBJECT_REVOCATION_TTL_MS, SubjectName,
};
pub use store::{
    AUDIT_SCAN_LIMIT, AuditCursor, AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditSink,
    LogoutLedger, PageBuilder, PoolUsage, RevocationStore, SessionFilter, SessionStore,
    SharedStore, Store, StoreError, UsageLedger,
};
pub use store::{CLIENT_SIGHTINGS_CAP, ClientBound, ClientCounts, ClientLedger, ClientSighting};
pub use store::{QueueExit, SeatListener, SeatNews, SeatQueue};
