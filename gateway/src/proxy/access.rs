//! The access decision of one request (docs/design.md §4 steps 2–4), free of
//! Pingora so it can be tested and reused by the gateway endpoints:
//! bearer token → verified principal → scopes → session identity and pool →
//! one store admission. Every refusal comes back as a [`Problem`], and a
//! refused or invalid request never changes session state.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::RevocationList;
use crate::auth::Verified as VerifiedBy;
use crate::auth::revocation::sid_key;
use crate::auth::{BearerError, Principal, TokenError, Verified, Verifier, bearer_token};
use crate::clock::SharedClock;
use crate::licensing::{PoolChoice, Pools};
use crate::session::ClosedSession;
use crate::session::{
    Admission, AdmitOutcome, AdmitRequest, AuditEvent, IdentityRule, IdpSession, Refusal, Session,
    SessionIdentity, SharedStore,
};
use crate::session::{CloseReason, Revocation, SUBJECT_REVOCATION_TTL_MS};
use crate::telemetry::{Metrics, audit};

/// How long a token revocation outlives the token's `exp`: more than any
/// sensible verification leeway.
const REVOCATION_MARGIN_MS: u64 = 5 * 60 * 1000;

/// The event a back-channel logout token carries (OIDC BCL 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a back-channel logout was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackchannelError {
    /// The logout token is invalid (400 `invalid_request`).
    #[error("{0}")]
    Invalid(String),
    /// The store or the issuer's keys are unavailable (503; the identity
    /// provider retries).
    #[error("temporarily unavailable")]
    Unavailable,
}

use super::problem::{ErrorCode, Problem};

/// The parts of the decision a live reload may replace: the issuers and
/// token rules, the pools, and how refusals are worded.
#[derive(Debug)]
pub struct AccessPolicy {
    /// Verifies tokens of the configured issuers.
    pub verifier: Arc<Verifier>,
    /// The license pools, in matching order.
    pub pools: Pools,
    /// The realm of `WWW-Authenticate` challenges.
    pub realm: String,
    /// The status of the `license_unavailable` refusal.
    pub license_unavailable_status: u16,
}

/// Everything the decision needs: the policy in force (swapped by a live
/// reload) and the parts that live as long as the process (store, metrics,
/// this instance's revocations, the identity rule).
pub struct Access {
    policy: ArcSwap<AccessPolicy>,
    identity: IdentityRule,
    store: SharedStore,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    revocations: RevocationList,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("realm", &self.policy.load().realm)
            .finish_non_exhaustive()
    }
}

/// A request let through on a `session` route.
#[derive(Debug, Clone)]
pub struct Seated {
    /// The session it uses.
    pub session: Session,
    /// Whether the session was opened by this request.
    pub opened: bool,
}

impl Access {
    /// The decision over these parts.
    pub fn new(
        policy: AccessPolicy,
        identity: IdentityRule,
        store: SharedStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            clock: Arc::clone(policy.verifier.clock()),
            policy: ArcSwap::from_pointee(policy),
            identity,
            store,
            metrics,
            revocations: RevocationList::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// Puts a new policy in force for every decision that starts from now
    /// on (live reload). Sessions, seats and revocations are untouched.
    pub fn replace_policy(&self, policy: AccessPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// Records a revocation in the store (for the fleet) and applies it here
    /// at once.
    pub async fn revoke(&self, revocation: Revocation) -> Result<(), Problem> {
        let started = std::time::Instant::now();
        let result = self.store.revoke(&revocation).await;
        self.metrics
            .store_call("revoke", started.elapsed(), &result);
        result.map_err(|e| {
            tracing::error!(error = %e, "store revocation failed");
            store_problem()
        })?;
        self.apply_revocation(revocation);
        Ok(())
    }

    /// Applies a revocation already recorded in the store to this instance
    /// at once (and audits it).
    pub fn apply_revocation(&self, revocation: Revocation) {
        audit::revoked(&revocation);
        let kind = match &revocation {
            Revocation::Token { .. } => "token_revoked",
            Revocation::Subject { .. } => "subject_revoked",
        };
        self.trail(vec![
            ("event", kind.into()),
            ("until_ms", revocation.until_ms().to_string()),
        ]);
        self.revocations.add(revocation);
    }

    /// Applies the deletion of the revocations with this id, already made
    /// in the store, to this instance at once (and audits it). Other
    /// instances drop them at their next sync.
    pub fn apply_revocation_deletion(&self, id: &str, deleted: &[Revocation]) {
        // Even when the store had none, this instance may still hold one
        // that another instance deleted since the last sync.
        self.revocations.remove(id);
        if deleted.is_empty() {
            return;
        }
        audit::revocation_deleted(id, deleted.len());
        self.trail(vec![
            ("event", "revocation_deleted".into()),
            ("revocation_id", id.to_string()),
            ("count", deleted.len().to_string()),
        ]);
    }

    /// Mirrors the store's revocations (the periodic sync), keeping this
    /// instance's own and writing again those the store lost.
    pub async fn sync_revocations(&self) {
        let started = std::time::Instant::now();
        let result = self.store.revocations().await;
        self.metrics
            .store_call("revocations", started.elapsed(), &result);
        let list = match result {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "revocation sync failed; keeping the last list");
                return;
            }
        };
        let deleted = match self.store.deleted_revocations().await {
            Ok(deleted) => deleted,
            Err(error) => {
                tracing::warn!(%error, "revocation sync failed; keeping the last list");
                return;
            }
        };
        let missing = self.revocations.sync(list, &deleted, self.clock.now_ms());
        if missing.is_empty() {
            return;
        }
        tracing::warn!(
            count = missing.len(),
            "revocations made here were missing from the store (its data was lost); writing them again"
        );
        for revocation in missing {
            let result = self.store.revoke(&revocation).await;
            self.metrics
                .store_call("revoke", started.elapsed(), &result);
            if result.is_ok() {
                self.metrics.revocations_restored.inc();
            }
        }
    }

    /// OpenID Connect Back-Channel Logout 1.0: validates a logout token and
    /// closes the sessions it names (`sid`: the sessions linked to that
    /// identity provider session; `sub` alone: every session of the
    /// subject), and revokes the tokens that could reopen them. Returns how
    /// many sessions closed.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, BackchannelError> {
        let invalid = |m: String| BackchannelError::Invalid(m);
        let policy = self.policy();
        let verifier = &policy.verifier;
        let (index, claims) =
            verifier
                .verify_signature(logout_token)
                .await
                .map_err(|e| match e {
                    TokenError::IssuerUnavailable => BackchannelError::Unavailable,
                    other => invalid(other.to_string()),
                })?;
        let issuer = verifier
            .issuer_config(index)
            .ok_or_else(|| invalid("untrusted issuer".into()))?;
        let now = self.clock.now_secs();
        let leeway = verifier.leeway_secs();
        let date = |name: &str| claims.numeric_date(name).map_err(invalid);
        let iat = date("iat")?.ok_or_else(|| invalid("missing claim `iat`".into()))?;
        if iat > now.saturating_add(leeway) {
            return Err(invalid("issued in the future".into()));
        }
        let exp = date("exp")?.ok_or_else(|| invalid("missing claim `exp`".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(invalid("logout token expired".into()));
        }
        let audiences = claims.audiences();
        if !issuer
            .audiences
            .iter()
            .any(|a| audiences.contains(&a.as_str()))
        {
            return Err(invalid("wrong audience".into()));
        }
        let is_logout_event = claims
            .get("events")
            .and_then(|e| e.as_object())
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(|v| v.is_object());
        if !is_logout_event {
            return Err(invalid(format!(
                "`events` must contain `{BACKCHANNEL_LOGOUT_EVENT}`"
            )));
        }
        if claims.has("nonce") {
            return Err(invalid("a logout token must not contain `nonce`".into()));
        }
        let sid = claims.str("sid");
        let sub = claims.str("sub");
        if sid.is_none() && sub.is_none() {
            return Err(invalid("a logout token names `sid` or `sub`".into()));
        }
        let jti = claims
            .token_id()
            .ok_or_else(|| invalid("missing claim `jti`".into()))?;
        let until_ms = u64::try_from(exp.saturating_add(leeway))
            .unwrap_or(0)
            .saturating_mul(1000)
            + REVOCATION_MARGIN_MS;
        let now_ms = self.clock.now_ms();
        let mut closed = Vec::new();
        if let Some(sid) = sid {
            let key = sid_key(&issuer.issuer, sid);
            let ids = self
                .store
                .linked_sessions(&key)
                .await
                .map_err(|_| BackchannelError::Unavailable)?;
            for id in ids {
                if let Some(c) = self
                    .store
                    .close(&id, CloseReason::Backchannel)
                    .await
                    .map_err(|_| BackchannelError::Unavailable)?
                {
                    closed.push(c);
                }
            }
            self.revoke(Revocation::Token {
                key: format!("sid:{key}"),
                until_ms: now_ms + SUBJECT_REVOCATION_TTL_MS,
            })
            .await
            .map_err(|_| BackchannelError::Unavailable)?;
        } else if let Some(sub) = sub {
            let subject = crate::session::identity::subject_key(&issuer.issuer, sub);
            closed = self
                .store
                .close_subject(&subject, CloseReason::Backchannel)
                .await
                .map_err(|_| BackchannelError::Unavailable)?;
            self.revoke(Revocation::of_subject(
                &issuer.issuer,
                sub,
                now_ms,
                now_ms + SUBJECT_REVOCATION_TTL_MS,
            ))
            .await
            .map_err(|_| BackchannelError::Unavailable)?;
        }
        closed.iter().for_each(|c| self.record_closed(c));
        // The jti is spent only once the logout has been carried out, so an
        // identity provider retrying after a 503 is not refused as a replay.
        // Carrying out a logout twice changes nothing.
        let once = crate::session::identity::Digest32::of_parts(
            "logout-jti",
            [issuer.issuer.as_bytes(), jti.as_bytes()],
        );
        let fresh = self
            .store
            .first_use(&once.to_hex(), until_ms)
            .await
            .map_err(|_| BackchannelError::Unavailable)?;
        if !fresh {
            return Err(invalid("logout token replayed".into()));
        }
        Ok(closed.len())
    }

    /// Closes the principal's session and refuses the presented token until
    /// it expires (`POST /.gateway/logout`). Returns the closed session.
    pub async fn logout(&self, principal: &Principal) -> Result<Option<Session>, Problem> {
        let (identity, choice) = self.placement(principal)?;
        // Revoke first: even if closing fails, this token cannot reopen a
        // session. The margin covers the verification leeway.
        let until_ms = u64::try_from(principal.expires_at)
            .unwrap_or(0)
            .saturating_mul(1000)
            + REVOCATION_MARGIN_MS;
        self.revoke(Revocation::Token {
            key: principal.token_key.clone(),
            until_ms,
        })
        .await?;
        let found = self
            .store
            .find(&choice.pool.name, &identity.key)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store lookup failed");
                store_problem()
            })?;
        let Some(session) = found else {
            return Ok(None);
        };
        let closed = self
            .store
            .close(&session.id, CloseReason::Logout)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store close failed");
                store_problem()
            })?;
        Ok(closed.map(|c| {
            self.record_closed(&c);
            c.session
        }))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Audits and counts a closed session (whoever closed it).
    pub fn record_closed(&self, closed: &ClosedSession) {
        audit::session_closed(closed);
        self.trail(vec![
            ("event", "session_closed".into()),
            ("session_id", closed.session.id.clone()),
            ("pool", closed.session.pool.clone()),
            ("subject", closed.session.subject.clone()),
            ("reason", closed.reason.as_str().into()),
        ]);
        self.metrics
            .sessions_closed
            .with_label_values(&[closed.session.pool.as_str(), closed.reason.as_str()])
            .inc();
    }

    /// Queues an audit event for the store's trail (the Redis stream, written
    /// in batches in the background); the log line of the event is written
    /// anyway, by the caller.
    fn trail(&self, mut event: AuditEvent) {
        event.push(("at_ms", self.clock.now_ms().to_string()));
        self.store.queue_audit(event);
    }

    fn record_opened(&self, session: &Session) {
        audit::session_opened(session);
        self.trail(vec![
            ("event", "session_opened".into()),
            ("session_id", session.id.clone()),
            ("pool", session.pool.clone()),
            ("subject", session.subject.clone()),
        ]);
        self.metrics
            .sessions_opened
            .with_label_values(&[session.pool.as_str()])
            .inc();
    }

    /// The verifier in force (for readiness and key refresh).
    pub fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.policy.load().verifier)
    }

    /// The clock decisions are made by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The pools in force.
    pub fn pools(&self) -> Pools {
        self.policy.load().pools.clone()
    }

    /// Verifies the bearer token of a request. `authorization` holds every
    /// `Authorization` header of the request.
    pub async fn authenticate(
        &self,
        authorization: &[&[u8]],
    ) -> Result<(Arc<Principal>, Verified), Problem> {
        let policy = self.policy();
        let realm = policy.realm.as_str();
        let header = match authorization {
            [] => return Err(Problem::missing_token(realm)),
            [one] => *one,
            _ => {
                return Err(Problem::invalid_token(
                    realm,
                    "more than one Authorization header",
                ));
            }
        };
        let token = bearer_token(header).map_err(|e| match e {
            BearerError::NotBearer => Problem::missing_token(realm),
            BearerError::Malformed => {
                self.metrics
                    .token_rejections
                    .with_label_values(&["malformed"])
                    .inc();
                Problem::invalid_token(realm, "malformed Authorization header")
            }
        })?;
        match policy.verifier.verify(token).await {
            Ok((principal, _))
                if self.revocations.is_revoked(
                    &principal,
                    &principal.token_key,
                    self.clock.now_ms(),
                ) =>
            {
                self.metrics
                    .token_rejections
                    .with_label_values(&["revoked"])
                    .inc();
                Err(Problem::invalid_token(
                    realm,
                    &TokenError::Revoked.to_string(),
                ))
            }
            Ok((principal, how)) => {
                let source = match how {
                    VerifiedBy::Cached => "cache",
                    VerifiedBy::Checked => "signature",
                };
                self.metrics
                    .tokens_verified
                    .with_label_values(&[source])
                    .inc();
                Ok((principal, how))
            }
            Err(e) => {
                self.metrics
                    .token_rejections
                    .with_label_values(&[e.reason()])
                    .inc();
                Err(token_problem(realm, &e))
            }
        }
    }
}

/// The refusal of a token that did not verify.
fn token_problem(realm: &str, error: &TokenError) -> Problem {
    match error {
        TokenError::IssuerUnavailable => Problem::new(
            ErrorCode::IssuerUnavailable,
            "the signing keys of the token's issuer could not be loaded; try again shortly",
        )
        .retry_after(std::time::Duration::from_secs(5)),
        other => Problem::invalid_token(realm, &other.to_string()),
    }
}

impl Access {
    /// Refuses a principal that lacks any of the route's scopes.
    pub fn check_scopes(&self, principal: &Principal, required: &[String]) -> Result<(), Problem> {
        let granted = principal.claims.scopes();
        if required.iter().all(|s| granted.contains(&s.as_str())) {
            Ok(())
        } else {
            Err(Problem::insufficient_scope(
                &self.policy.load().realm,
                required,
            ))
        }
    }

    /// The session identity and pool of a principal.
    pub fn placement(
        &self,
        principal: &Principal,
    ) -> Result<(SessionIdentity, PoolChoice), Problem> {
        let policy = self.policy.load();
        let identity = self
            .identity
            .derive(&principal.claims)
            .map_err(|e| Problem::invalid_token(&policy.realm, &e.to_string()))?;
        let choice = policy
            .pools
            .select(&principal.claims)
            .ok_or_else(|| Problem::new(ErrorCode::NoPool, "no license pool accepts this token"))?;
        Ok((identity, choice))
    }

    /// Reuses or opens the principal's session, or refuses.
    pub async fn admit(&self, principal: &Principal) -> Result<Seated, Problem> {
        let (identity, choice) = self.placement(principal)?;
        // Back-channel logout finds sessions by the identity provider session
        // their opening token named.
        let sid = match (principal.claims.issuer(), principal.claims.str("sid")) {
            (Some(issuer), Some(sid)) => Some(IdpSession { issuer, sid }),
            _ => None,
        };
        let request = AdmitRequest {
            pool: &choice.pool,
            identity: &identity,
            reserved: choice.reserved,
            sid,
        };
        let started = std::time::Instant::now();
        let result = self.store.admit(&request).await;
        self.metrics.store_call("admit", started.elapsed(), &result);
        let AdmitOutcome { admission, expired } = result.map_err(|e| {
            tracing::error!(error = %e, pool = %choice.pool.name, "store admission failed");
            store_problem()
        })?;
        for closed in &expired {
            self.record_closed(closed);
        }
        match admission {
            Admission::Reused(session) => Ok(Seated {
                session,
                opened: false,
            }),
            Admission::Opened { session, replaced } => {
                if let Some(replaced) = &replaced {
                    self.record_closed(replaced);
                }
                self.record_opened(&session);
                Ok(Seated {
                    session,
                    opened: true,
                })
            }
            Admission::Refused(refusal) => {
                audit::admission_refused(&choice.pool.name, &identity, &refusal);
                let reason = match refusal {
                    Refusal::PoolFull { .. } => "pool_full",
                    Refusal::SubjectLimit { .. } => "subject_limit",
                };
                self.trail(vec![
                    ("event", "session_refused".into()),
                    ("pool", choice.pool.name.clone()),
                    ("subject", identity.subject.clone()),
                    ("reason", reason.into()),
                ]);
                self.metrics
                    .license_refusals
                    .with_label_values(&[choice.pool.name.as_str(), reason])
                    .inc();
                Err(self.refusal_problem(&choice.pool.name, &refusal))
            }
        }
    }

    fn refusal_problem(&self, pool: &str, refusal: &Refusal) -> Problem {
        match refusal {
            Refusal::PoolFull {
                limit,
                in_use,
                retry_after,
            } => Problem::new(
                ErrorCode::LicenseUnavailable,
                format!(
                    "MaximumLicenseCountExceeded: all {limit} seats of pool `{pool}` are in use"
                ),
            )
            .with_status(self.policy.load().license_unavailable_status)
            .with("pool", pool)
            .with("limit", *limit)
            .with("in_use", *in_use)
            .retry_after(*retry_after),
            Refusal::SubjectLimit { limit, retry_after } => Problem::new(
                ErrorCode::SessionLimit,
                format!("this user already holds {limit} session(s) in pool `{pool}`"),
            )
            .with("pool", pool)
            .with("limit", *limit)
            .retry_after(*retry_after),
        }
    }

    /// The principal's open session, without opening or sliding one.
    pub async fn current_session(&self, principal: &Principal) -> Result<Option<Session>, Problem> {
        let (identity, choice) = self.placement(principal)?;
        let started = std::time::Instant::now();
        let result = self.store.find(&choice.pool.name, &identity.key).await;
        self.metrics.store_call("find", started.elapsed(), &result);
        result.map_err(|e| {
            tracing::error!(error = %e, "store lookup failed");
            store_problem()
        })
    }
}

fn store_problem() -> Problem {
    Problem::new(
        ErrorCode::StoreUnavailable,
        "the session store is unavailable; no new session can be opened",
    )
    .retry_after(std::time::Duration::from_secs(1))
}
