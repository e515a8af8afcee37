//! The caller's own logout (`POST /.gateway/logout`): its session closes
//! and the presented token is refused until it expires.

use super::revocations::revocation_end_ms;
use super::{Access, Denial};
use crate::auth::Principal;
use crate::session::{CloseReason, Revocation, Session};

impl Access {
    /// Closes the principal's session and refuses the presented token until
    /// it expires. Returns the closed session, if one was open.
    pub async fn logout(&self, principal: &Principal) -> Result<Option<Session>, Denial> {
        let (identity, choice) = self.placement(principal)?;
        // Revoke first: even if closing fails, this token cannot reopen a
        // session. The margin covers the verification leeway.
        let until_ms = revocation_end_ms(principal.expires_at, 0);
        self.revoke(Revocation::Token {
            key: principal.token_key.clone(),
            until_ms,
        })
        .await
        .map_err(|e| Denial::store("revocation", &e))?;
        let found = self
            .timed("find", self.store.find(&choice.pool.name, &identity.key))
            .await
            .map_err(|e| Denial::store("lookup", &e))?;
        let Some(session) = found else {
            return Ok(None);
        };
        let closed = self
            .timed("close", self.store.close(&session.id, CloseReason::Logout))
            .await
            .map_err(|e| Denial::store("close", &e))?;
        Ok(closed.map(|c| {
            self.record_closed(&c);
            c.session
        }))
    }
}
