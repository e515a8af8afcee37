//! Admission: the session identity and pool of a principal, and the store
//! call that reuses its session, opens one, puts it in line (see
//! [`super::queue`]), or refuses.

use std::future::Future;

use super::{Access, Denial};
use crate::auth::{Principal, TokenError};
use crate::licensing::PoolChoice;
use crate::session::{
    Admission, AdmitOutcome, AdmitRequest, IdpSession, PresentedToken, Refusal, Session,
    SessionIdentity, Ticket,
};

/// A request let through on a `session` route.
#[derive(Debug, Clone)]
pub struct Seated {
    /// The session it uses.
    pub session: Session,
    /// Whether the session was opened by this request.
    pub opened: bool,
    /// Whether the session holds a seat beyond the pool's limit (its
    /// overdraft), for its whole life.
    pub overdraft: bool,
}

/// What one admission left a call with.
pub(super) enum Step {
    /// A session to use.
    Seated(Seated),
    /// A place in the pool's line.
    Waiting(Waiting),
}

/// A call in the pool's line, as the store's last answer left it.
pub(super) struct Waiting {
    /// Its ticket.
    pub(super) ticket: Ticket,
    /// Callers ahead of it, fleet-wide.
    pub(super) ahead: u32,
    /// Time until the earliest seat it could use frees by expiry, if any.
    pub(super) retry_after: Option<std::time::Duration>,
}

impl Access {
    /// The session identity and pool of a principal.
    pub fn placement(
        &self,
        principal: &Principal,
    ) -> Result<(SessionIdentity, PoolChoice), Denial> {
        let identity = self
            .identity
            .derive(&principal.claims)
            .map_err(|e| Denial::InvalidToken(e.to_string()))?;
        let choice = self
            .policy
            .load()
            .pools
            .select(&principal.claims)
            .ok_or(Denial::NoPool)?;
        Ok((identity, choice))
    }

    /// Reuses or opens the principal's session, or refuses. A refusal
    /// changes nothing in the store. In a pool with a queue, a call that
    /// finds no seat waits for one (see [`super::queue`]) until it gets one,
    /// the pool's `max_wait` passes, or `gone` resolves: the client went
    /// away. `gone` is only polled while waiting.
    pub async fn admit(
        &self,
        principal: &Principal,
        gone: impl Future<Output = ()>,
    ) -> Result<Seated, Denial> {
        let (identity, choice) = self.placement(principal)?;
        // Back-channel logout finds sessions by the identity provider session
        // their opening token named.
        let sid = match (principal.claims.issuer(), principal.claims.str("sid")) {
            (Some(issuer), Some(sid)) => Some(IdpSession { issuer, sid }),
            _ => None,
        };
        let issued_ms = principal
            .issued_at
            .map(|s| u64::try_from(s).unwrap_or(0).saturating_mul(1000));
        let request = AdmitRequest {
            pool: &choice.pool,
            identity: &identity,
            reserved: choice.reserved,
            sid,
            token: Some(PresentedToken {
                key: &principal.token_key,
                issued_ms,
            }),
            ticket: None,
        };
        match self.admit_once(&request, &choice, &identity).await? {
            Step::Seated(seated) => Ok(seated),
            Step::Waiting(waiting) => {
                self.wait_for_seat(&request, &choice, &identity, waiting, gone)
                    .await
            }
        }
    }

    /// One store admission, recorded: seated, in line, or denied.
    pub(super) async fn admit_once(
        &self,
        request: &AdmitRequest<'_>,
        choice: &PoolChoice,
        identity: &SessionIdentity,
    ) -> Result<Step, Denial> {
        let AdmitOutcome {
            admission,
            expired,
            seats_held,
        } = self
            .timed("admit", self.store.admit(request))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, pool = %choice.pool.name, "store admission failed");
                Denial::StoreUnavailable
            })?;
        for closed in &expired {
            self.record_closed(closed);
        }
        match admission {
            Admission::Reused(session) => Ok(Step::Seated(Seated {
                overdraft: choice.pool.is_overdraft(session.bucket),
                session,
                opened: false,
            })),
            Admission::Opened { session, replaced } => {
                if let Some(replaced) = &replaced {
                    self.record_closed(replaced);
                }
                let overdraft = choice.pool.is_overdraft(session.bucket);
                self.record_opened(&session, overdraft);
                if let Some(held) = seats_held {
                    self.metrics.observe_seats_held(&session.pool, held);
                }
                Ok(Step::Seated(Seated {
                    session,
                    opened: true,
                    overdraft,
                }))
            }
            Admission::Queued {
                ticket,
                ahead,
                retry_after,
            } => Ok(Step::Waiting(Waiting {
                ticket,
                ahead,
                retry_after,
            })),
            // A revocation this instance had not heard of yet: the store
            // refused it inside the admission.
            Admission::Refused(Refusal::Revoked) => {
                self.count_rejection("revoked");
                Err(Denial::InvalidToken(TokenError::Revoked.to_string()))
            }
            Admission::Refused(refusal) => {
                self.record_refused(&choice.pool.name, identity, &refusal);
                Err(Denial::Refused {
                    pool: choice.pool.name.clone(),
                    refusal,
                })
            }
        }
    }

    /// The principal's open session, without opening or sliding one.
    pub async fn current_session(&self, principal: &Principal) -> Result<Option<Session>, Denial> {
        let (identity, choice) = self.placement(principal)?;
        self.timed("find", self.store.find(&choice.pool.name, &identity.key))
            .await
            .map_err(|e| Denial::store("lookup", &e))
    }
}
