//! What an operator does to sessions and seats through the admin API: look
//! at open sessions, close them (reason `admin`), read each pool's seat use
//! and the audit trail.
//! Every close is recorded like any other ([`super::record`]).

use super::Access;
use crate::session::identity::subject_key;
use crate::session::{
    AuditPage, AuditQuery, CloseReason, ClosedSession, PoolUsage, Session, SessionFilter,
    StoreError,
};

impl Access {
    /// Open sessions matching a filter, oldest first.
    pub async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.timed("list", self.store.list(filter)).await
    }

    /// A page of the store's audit trail.
    pub async fn audit_trail(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.timed("read_audit", self.store.read_audit(query)).await
    }

    /// An open session by id.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.timed("get", self.store.get(id)).await
    }

    /// Closes a session by id and frees its seat; `None` if it was not open.
    pub async fn close_session(&self, id: &str) -> Result<Option<ClosedSession>, StoreError> {
        let closed = self
            .timed("close", self.store.close(id, CloseReason::Admin))
            .await?;
        if let Some(closed) = &closed {
            self.record_closed(closed);
        }
        Ok(closed)
    }

    /// Closes every open session of a subject of an issuer, in every pool.
    pub async fn close_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        let key = subject_key(issuer, subject);
        let closed = self
            .timed(
                "close_subject",
                self.store.close_subject(&key, CloseReason::Admin),
            )
            .await?;
        closed.iter().for_each(|c| self.record_closed(c));
        Ok(closed)
    }

    /// Seat use of every configured pool, in configuration order.
    pub async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        self.timed("usage", self.store.usage()).await
    }
}
