//! Held seats of the memory store (`linger`, `min_hold`): a session closed
//! by its user or by time leaves its seat counted in its bucket, kept for
//! its identity until the hold ends; the identity gets the session back
//! within it (`PoolState::admit`), and a purge frees it at its end.

use crate::clock::UnixMillis;
use crate::session::{CloseReason, IdentityKey, Session};
use crate::usage::UsageRetention;

use super::pools::PoolState;

/// A seat kept for an identity after its session closed.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    /// When the seat frees.
    pub(super) until: UnixMillis,
    /// The closed session, to give back to its identity.
    pub(super) session: Session,
    /// Why it closed (written into the usage history when the seat frees).
    pub(super) reason: CloseReason,
}

impl PoolState {
    /// Closes a session into a hold: the session leaves, its seat stays
    /// (counted in `per_bucket`) for its identity until `until`.
    pub(super) fn hold_seat(
        &mut self,
        identity: &IdentityKey,
        until: UnixMillis,
        reason: CloseReason,
    ) -> Option<Session> {
        let session = self.sessions.remove(identity)?;
        self.by_expiry
            .remove(&(session.expires_ms(), session.id.clone()));
        self.by_subject.remove(&(session.subject_key, *identity));
        self.hold_ends.insert((until, *identity));
        self.holds.insert(
            *identity,
            Hold {
                until,
                session: session.clone(),
                reason,
            },
        );
        Some(session)
    }

    /// Takes an identity's hold out of the indexes (its seat still counted).
    pub(super) fn end_hold(&mut self, identity: &IdentityKey) -> Option<Hold> {
        let hold = self.holds.remove(identity)?;
        self.hold_ends.remove(&(hold.until, *identity));
        Some(hold)
    }

    /// Frees the seat of an ended hold, which it held until `at`, and
    /// writes the close into the history there.
    pub(super) fn free_held_seat(
        &mut self,
        hold: &Hold,
        at: UnixMillis,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        if let Some(count) = self.per_bucket.get_mut(hold.session.bucket) {
            *count = count.saturating_sub(1);
        }
        self.record_closed(&hold.session, at, hold.reason, now, keep);
    }

    /// Indexes a session given back from its hold (its seat is counted).
    pub(super) fn index(&mut self, session: Session) {
        self.by_expiry
            .insert((session.expires_ms(), session.id.clone()), session.identity);
        self.by_subject
            .insert((session.subject_key, session.identity));
        self.sessions.insert(session.identity, session);
    }
}
