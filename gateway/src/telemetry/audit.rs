//! Audit events of session transitions, as structured log lines on the
//! `audit` target. They carry ids, pool and subject, never a token.

use crate::session::{ClosedSession, Refusal, Revocation, Session, SessionIdentity};

/// A session was opened and took a seat.
pub fn session_opened(session: &Session, overdraft: bool) {
    tracing::info!(
        target: "audit",
        event = "session_opened",
        session_id = %session.id,
        pool = %session.pool,
        subject = %session.subject,
        client = session.client.as_deref().unwrap_or(""),
        overdraft,
        "session opened"
    );
}

/// A session closed and freed its seat.
pub fn session_closed(closed: &ClosedSession, seat_held_until: Option<u64>) {
    tracing::info!(
        target: "audit",
        event = "session_closed",
        session_id = %closed.session.id,
        pool = %closed.session.pool,
        subject = %closed.session.subject,
        reason = closed.reason.as_str(),
        seat_held_until = seat_held_until.map(crate::clock::rfc3339_ms),
        "session closed"
    );
}

/// A session was found used from more client addresses or user agents
/// than its pool allows (`action`: `audit` or `deny`).
pub fn token_shared(session: &Session, addresses: u32, user_agents: u32, action: &str) {
    tracing::warn!(
        target: "audit",
        event = "token_shared",
        session_id = %session.id,
        pool = %session.pool,
        subject = %session.subject,
        addresses,
        user_agents,
        action,
        "session used from more clients than its pool allows"
    );
}

/// An upgraded connection (tunnel) was ended because its session no
/// longer holds its seat (`reason`: `session_closed`, `session_replaced`).
pub fn tunnel_closed(session: &Session, reason: &str) {
    tracing::info!(
        target: "audit",
        event = "tunnel_closed",
        session_id = %session.id,
        pool = %session.pool,
        subject = %session.subject,
        reason,
        "tunnel closed"
    );
}

/// A new session was refused.
pub fn admission_refused(pool: &str, identity: &SessionIdentity, refusal: &Refusal) {
    let reason = refusal.as_str();
    tracing::info!(
        target: "audit",
        event = "session_refused",
        pool = %pool,
        subject = %identity.subject,
        reason,
        "session refused"
    );
}

/// Tokens were revoked (a token by id, or a subject's earlier tokens).
pub fn revoked(revocation: &Revocation) {
    match revocation {
        Revocation::Token { until_ms, .. } => tracing::info!(
            target: "audit",
            event = "token_revoked",
            until_ms,
            "token revoked"
        ),
        Revocation::Subject {
            subject,
            named,
            not_before_ms,
            until_ms,
        } => tracing::info!(
            target: "audit",
            event = "subject_revoked",
            subject_key = %subject,
            subject = named.as_ref().map_or("", |n| n.subject.as_str()),
            not_before_ms,
            until_ms,
            "tokens of a subject revoked"
        ),
    }
}

/// An operator deleted the revocations with this id: the tokens they
/// refused are accepted again.
pub fn revocation_deleted(id: &str, count: usize) {
    tracing::info!(
        target: "audit",
        event = "revocation_deleted",
        revocation_id = %id,
        count,
        "revocation deleted"
    );
}

/// A call found no seat and waits in its pool's queue, `ahead` callers
/// before it.
pub fn queued(pool: &str, identity: &SessionIdentity, ahead: u32) {
    tracing::info!(
        target: "audit",
        event = "session_queued",
        pool,
        subject = %identity.subject,
        client = identity.client.as_deref().unwrap_or(""),
        ahead,
        "waiting for a seat"
    );
}

/// A wait for a seat ended (`outcome`: `admitted`, `timed_out`, `left`,
/// `failed`) after `waited_ms`.
pub fn queue_left(pool: &str, identity: &SessionIdentity, outcome: &str, waited_ms: u64) {
    tracing::info!(
        target: "audit",
        event = "queue_left",
        pool,
        subject = %identity.subject,
        client = identity.client.as_deref().unwrap_or(""),
        outcome,
        waited_ms,
        "wait for a seat ended"
    );
}
