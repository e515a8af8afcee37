//! The record of every session change and refusal: an audit log line, an
//! entry for the store's audit trail, and the metric, written in one place
//! whoever caused the change (a request, the admin API, the sweeper).

use super::Access;
use crate::session::{AuditEvent, ClosedSession, Refusal, Session, SessionIdentity};
use crate::telemetry::audit;

impl Access {
    /// Audits and counts a closed session, and whether its seat stays held
    /// for its identity (`linger`, `min_hold`).
    pub fn record_closed(&self, closed: &ClosedSession) {
        let held_until = self.seat_held_until(closed);
        audit::session_closed(closed, held_until);
        let mut event = vec![
            ("event", "session_closed".into()),
            ("session_id", closed.session.id.clone()),
            ("pool", closed.session.pool.clone()),
            ("subject", closed.session.subject.clone()),
            ("reason", closed.reason.as_str().into()),
        ];
        if let Some(until) = held_until {
            event.push(("seat_held_until", crate::clock::rfc3339_ms(until)));
            self.metrics
                .seats_held
                .with_label_values(&[closed.session.pool.as_str()])
                .inc();
        }
        self.trail(event);
        self.metrics
            .sessions_closed
            .with_label_values(&[closed.session.pool.as_str(), closed.reason.as_str()])
            .inc();
    }

    /// Until when the store keeps a closed session's seat for its identity,
    /// by the same rule as the stores: the later of close + linger and open +
    /// min_hold, for a close by the user or by time, if still ahead.
    fn seat_held_until(&self, closed: &ClosedSession) -> Option<crate::clock::UnixMillis> {
        let pool = self.pool(&closed.session.pool)?;
        if !pool.holds_seats() {
            return None;
        }
        let by_time = matches!(
            closed.reason,
            crate::session::CloseReason::Idle | crate::session::CloseReason::Absolute
        );
        let now = self.clock.now_ms();
        let at = if by_time {
            closed.session.expires_ms()
        } else {
            now
        };
        pool.hold_until(closed.session.created_ms, at, closed.reason.keeps_seat())
            .filter(|until| *until > now)
    }

    /// Audits and counts an opened session.
    pub(super) fn record_opened(&self, session: &Session, overdraft: bool) {
        audit::session_opened(session, overdraft);
        let mut event = vec![
            ("event", "session_opened".into()),
            ("session_id", session.id.clone()),
            ("pool", session.pool.clone()),
            ("subject", session.subject.clone()),
        ];
        if overdraft {
            event.push(("overdraft", "true".into()));
            self.metrics
                .overdraft_opened
                .with_label_values(&[session.pool.as_str()])
                .inc();
        }
        self.trail(event);
        self.metrics
            .sessions_opened
            .with_label_values(&[session.pool.as_str()])
            .inc();
    }

    /// Audits and counts a session found used from more clients than its
    /// pool allows (once per instance, when it first counts as shared).
    pub(super) fn record_shared(
        &self,
        seated: &super::Seated,
        policy: &crate::licensing::SharedTokenPolicy,
        counts: crate::session::ClientCounts,
    ) {
        let session = &seated.session;
        let action = policy.on_shared.as_str();
        audit::token_shared(session, counts.addresses, counts.user_agents, action);
        self.trail(vec![
            ("event", "token_shared".into()),
            ("session_id", session.id.clone()),
            ("pool", session.pool.clone()),
            ("subject", session.subject.clone()),
            ("addresses", counts.addresses.to_string()),
            ("user_agents", counts.user_agents.to_string()),
            ("action", action.into()),
        ]);
        self.metrics
            .tokens_shared
            .with_label_values(&[session.pool.as_str(), action])
            .inc();
    }

    /// Audits and counts a session the store refused to open.
    pub(super) fn record_refused(&self, pool: &str, identity: &SessionIdentity, refusal: &Refusal) {
        audit::admission_refused(pool, identity, refusal);
        let reason = refusal.as_str();
        self.trail(vec![
            ("event", "session_refused".into()),
            ("pool", pool.to_string()),
            ("subject", identity.subject.clone()),
            ("reason", reason.into()),
        ]);
        self.metrics
            .license_refusals
            .with_label_values(&[pool, reason])
            .inc();
    }

    /// Audits a call that found no seat and waits in its pool's queue.
    pub(super) fn record_queued(&self, pool: &str, identity: &SessionIdentity, ahead: u32) {
        audit::queued(pool, identity, ahead);
        self.trail(vec![
            ("event", "session_queued".into()),
            ("pool", pool.to_string()),
            ("subject", identity.subject.clone()),
            ("ahead", ahead.to_string()),
        ]);
    }

    /// Audits and counts the end of a wait for a seat (`outcome`:
    /// `admitted`, `timed_out`, `left`, `failed`).
    pub(super) fn record_queue_left(
        &self,
        pool: &str,
        identity: &SessionIdentity,
        outcome: &str,
        waited: std::time::Duration,
    ) {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        audit::queue_left(pool, identity, outcome, waited_ms);
        self.trail(vec![
            ("event", "queue_left".into()),
            ("pool", pool.to_string()),
            ("subject", identity.subject.clone()),
            ("outcome", outcome.into()),
            ("waited_ms", waited_ms.to_string()),
        ]);
        let labels = [pool, outcome];
        self.metrics.queue_exits.with_label_values(&labels).inc();
        self.metrics
            .queue_wait
            .with_label_values(&labels)
            .observe(waited.as_secs_f64());
    }

    /// Queues an audit event for the store's trail (the Redis stream, written
    /// in batches in the background); the log line of the event is written
    /// anyway, by the caller.
    pub(super) fn trail(&self, mut event: AuditEvent) {
        // The instance's clock, named as such: it may be skewed. The stream
        // entry's id is Redis's time when the batch was appended.
        event.push(("at_ms", self.clock.now_ms().to_string()));
        event.push(("at_source", "instance".to_string()));
        self.store.queue_audit(event);
    }
}
