//! Upgraded connections (WebSocket, or any `Upgrade`) on `session` routes:
//! a tunnel rides on the session of the request that opened it and ends
//! when that session no longer holds its seat, whatever closed it (logout,
//! admin, idle or absolute expiry, eviction, back-channel logout, a close on
//! another instance). This file answers the question and records the end;
//! `proxy::tunnel` asks it while the tunnel carries bytes.

use super::Access;
use crate::session::{Session, StoreError};
use crate::telemetry::audit;

/// Why a tunnel's session no longer carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// The session is closed: its identity holds no session in the pool.
    SessionClosed,
    /// The session closed and its identity opened another since: the
    /// tunnel still belongs to the closed one.
    SessionReplaced,
}

impl TunnelEnd {
    /// The stable name used in logs, metrics and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::SessionClosed => "session_closed",
            TunnelEnd::SessionReplaced => "session_replaced",
        }
    }
}

impl Access {
    /// Whether `session` is still the open session of its identity in its
    /// pool (`None`), or why a tunnel on it must end. The store decides, so
    /// a close anywhere in the fleet counts; the check neither opens nor
    /// slides a session.
    pub async fn tunnel_end(&self, session: &Session) -> Result<Option<TunnelEnd>, StoreError> {
        let found = self
            .timed("find", self.store.find(&session.pool, &session.identity))
            .await?;
        Ok(match found {
            Some(open) if open.id == session.id => None,
            Some(_) => Some(TunnelEnd::SessionReplaced),
            None => Some(TunnelEnd::SessionClosed),
        })
    }

    /// Audits and counts a tunnel the gateway ended because its session
    /// no longer holds its seat.
    pub fn record_tunnel_closed(&self, session: &Session, end: TunnelEnd) {
        audit::tunnel_closed(session, end.as_str());
        self.trail(vec![
            ("event", "tunnel_closed".into()),
            ("session_id", session.id.clone()),
            ("pool", session.pool.clone()),
            ("subject", session.subject.clone()),
            ("reason", end.as_str().into()),
        ]);
        self.metrics
            .tunnels_closed
            .with_label_values(&[session.pool.as_str(), end.as_str()])
            .inc();
    }
}
