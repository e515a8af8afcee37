//! What one admission asks of a store and what it answers: the request of a
//! call on a `session` route ([`AdmitRequest`]), and the decision
//! ([`Admission`], inside an [`AdmitOutcome`]).
//!
//! Kept apart from the store traits so that the proxy, which builds the
//! request and maps the decision to a response, reads them without the
//! store's machinery.

use std::sync::Arc;
use std::time::Duration;

use super::identity::{SessionIdentity, sid_key};
use super::record::{ClosedSession, Session};
use crate::clock::UnixMillis;
use crate::licensing::{Bucket, Pool};

/// What the proxy asks of the store on a call of a `session` route.
#[derive(Debug, Clone)]
pub struct AdmitRequest<'a> {
    /// The pool the token maps to.
    pub pool: &'a Arc<Pool>,
    /// The token's session identity.
    pub identity: &'a SessionIdentity,
    /// The token's reserved group in that pool, if any.
    pub reserved: Option<Bucket>,
    /// The identity provider session (`sid`) the token names, if any. The
    /// session this call opens or reuses is linked to it, in the same store
    /// call, so a back-channel logout naming that `sid` finds the session
    /// even when a token of a later identity provider session (a new login
    /// of the same user and client) reuses it; the link lapses with the
    /// session's absolute lifetime. A refused call links nothing.
    pub sid: Option<IdpSession<'a>>,
    /// The presented token, checked against the fleet's revocations inside
    /// the admission itself, so no instance opens or reuses a session for a
    /// revoked token or identity even while it has missed the revocation
    /// message. `None` skips the check (store tests).
    pub token: Option<PresentedToken<'a>>,
    /// The caller's ticket when it already waits in the pool's queue
    /// (`[[pools]] queue`): the store then weighs it at its place in line.
    /// `None` for a newcomer, which lines up behind every waiting caller.
    pub ticket: Option<&'a Ticket>,
}

impl<'a> AdmitRequest<'a> {
    /// A request of `identity` for a shared seat of `pool` that names no
    /// identity provider session and presents no token to check against
    /// revocations: what the store tests and benchmarks ask.
    pub fn of(pool: &'a Arc<Pool>, identity: &'a SessionIdentity) -> Self {
        Self {
            pool,
            identity,
            reserved: None,
            sid: None,
            token: None,
            ticket: None,
        }
    }
}

/// A caller's place in a pool's queue, as the store handed it out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// Its id, unique in the pool.
    pub id: String,
    /// Its number in the pool's line: a ticket handed out later has a
    /// larger one, fleet-wide.
    pub seq: u64,
}

/// What an admission checks of the presented token against revocations.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken<'a> {
    /// Its revocation key (its `jti`, or the digest of its signed part).
    pub key: &'a str,
    /// When it was issued (`iat`), if it says; a token without one counts
    /// as issued before any subject revocation.
    pub issued_ms: Option<UnixMillis>,
}

/// An identity provider session as a token names it: its issuer and `sid`.
#[derive(Debug, Clone, Copy)]
pub struct IdpSession<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sid`.
    pub sid: &'a str,
}

impl IdpSession<'_> {
    /// The key links are stored and looked up under.
    pub fn key(&self) -> String {
        sid_key(self.issuer, self.sid)
    }
}

/// Why a new session was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every seat the caller may use is held.
    PoolFull {
        /// The pool's limit.
        limit: u32,
        /// Seats held now.
        in_use: u32,
        /// Time until the earliest seat the caller could use frees by expiry.
        retry_after: Duration,
    },
    /// The token, its identity provider session or its subject is revoked
    /// (a revocation this instance may not have heard of yet).
    Revoked,
    /// Every seat is held and the pool's queue already holds as many
    /// waiting callers as it may.
    QueueFull {
        /// The pool's limit.
        limit: u32,
        /// Seats held now.
        in_use: u32,
        /// Callers waiting now.
        waiting: u32,
        /// Time until the earliest seat the caller could use frees by expiry.
        retry_after: Duration,
    },
    /// The caller waited in the queue as long as the pool allows
    /// (`max_wait`) and no seat came its way.
    QueueTimeout {
        /// The pool's limit.
        limit: u32,
        /// Time until the earliest seat the caller could use frees by expiry.
        retry_after: Duration,
    },
    /// The subject already holds its maximum number of sessions (`deny`).
    SubjectLimit {
        /// The per-subject cap.
        limit: u32,
        /// Time until the subject's earliest session expires.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The stable name used in logs, metrics and the audit trail.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::PoolFull { .. } => "pool_full",
            Refusal::QueueFull { .. } => "queue_full",
            Refusal::QueueTimeout { .. } => "queue_timeout",
            Refusal::SubjectLimit { .. } => "subject_limit",
            Refusal::Revoked => "revoked",
        }
    }
}

/// The decision of one admission.
// A short-lived value on the stack of one request; boxing the larger
// variant would cost an allocation on every new session instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The identity's open session was reused and its idle timer slid.
    Reused(Session),
    /// A new session was opened and took a seat.
    Opened {
        /// The new session.
        session: Session,
        /// The session evicted for it under `replace_oldest`, if any.
        replaced: Option<ClosedSession>,
    },
    /// No seat for the caller yet: it waits in the pool's queue (nothing
    /// may be forwarded meanwhile) and asks again with its ticket.
    Queued {
        /// Its place in line.
        ticket: Ticket,
        /// Callers waiting ahead of it, fleet-wide.
        ahead: u32,
        /// Time until the earliest seat it could use frees by expiry, if
        /// any does.
        retry_after: Option<Duration>,
    },
    /// No session: nothing may be forwarded.
    Refused(Refusal),
}

impl Admission {
    /// The session the call may use, if admitted.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Admission::Reused(s) | Admission::Opened { session: s, .. } => Some(s),
            Admission::Refused(_) | Admission::Queued { .. } => None,
        }
    }
}

/// The result of [`SessionStore::admit`](super::SessionStore::admit): the
/// decision plus sessions the store found expired on the way (so they are
/// audited exactly once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitOutcome {
    /// The decision.
    pub admission: Admission,
    /// Sessions closed by time while admitting.
    pub expired: Vec<ClosedSession>,
    /// With a new session: the seats its pool held right after it opened
    /// (the whole fleet's with the Redis store), for the high-water mark.
    pub seats_held: Option<u32>,
}
