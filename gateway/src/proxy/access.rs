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
    Admission, AdmitOutcome, AdmitRequest, AuditEvent, IdentityRule, IdpSession, PresentedToken,
    Refusal, Session, SessionIdentity, SharedStore,
};
use crate::session::{CloseReason, Revocation, RevocationNews, SUBJECT_REVOCATION_TTL_MS};
use crate::telemetry::{Metrics, audit};

/// How long a token revocation outlives the token's `exp`: more than any
/// sensible verification leeway.
const REVOCATION_MARGIN_MS: u64 = 5 * 60 * 1000;

/// The latest end of a revocation or one-time id, in ms: 2^53, the largest
/// integer a Lua number (a double) holds exactly, so the Redis scripts
/// compare and expire it as given. A token valid beyond that (the year
/// 287,396) is valid again afterwards.
const MAX_REVOCATION_END_MS: u64 = 1 << 53;

/// When a revocation of a token expiring at `exp` (seconds, a claim value)
/// may lapse: after `exp`, the leeway and [`REVOCATION_MARGIN_MS`], capped
/// at [`MAX_REVOCATION_END_MS`]. No step can wrap, whatever the claim
/// holds: a negative `exp` gives the margin alone.
fn revocation_end_ms(exp: i64, leeway_secs: i64) -> u64 {
    let secs = u64::try_from(exp.saturating_add(leeway_secs.max(0))).unwrap_or(0);
    secs.saturating_mul(1000)
        .saturating_add(REVOCATION_MARGIN_MS)
        .min(MAX_REVOCATION_END_MS)
}

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

/// A logout token that passed every check of OIDC BCL 1.0 §2.6 but the
/// replay check (which needs the store).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogoutToken<'a> {
    sid: Option<&'a str>,
    sub: Option<&'a str>,
    jti: &'a str,
    /// Until when its `jti` must be remembered: as long as it verifies.
    remember_until_ms: u64,
}

impl<'a> LogoutToken<'a> {
    /// Checks a signature-verified token of `issuer` as a logout token;
    /// `Err` says why it is not one (400 `invalid_request`).
    fn check(
        issuer: &crate::config::IssuerConfig,
        typ: Option<&str>,
        claims: &'a crate::auth::Claims,
        now: i64,
        leeway: i64,
    ) -> Result<Self, String> {
        // RFC 8725 §3.11 and BCL §2.4: `logout+jwt`, or no `typ` where the
        // provider does not type its logout tokens; never another type
        // (an access or ID token signed by the same keys).
        match crate::config::token_type(typ).as_str() {
            "logout+jwt" => {}
            "" if !issuer.require_logout_typ => {}
            "" => return Err("a logout token must carry `typ: logout+jwt`".into()),
            other => return Err(format!("a token of type `{other}` is not a logout token")),
        }
        let date = |name: &str| claims.numeric_date(name);
        let iat = date("iat")?.ok_or("missing claim `iat`")?;
        if iat > now.saturating_add(leeway) {
            return Err("issued in the future".into());
        }
        let exp = date("exp")?.ok_or("missing claim `exp`")?;
        if now > exp.saturating_add(leeway) {
            return Err("logout token expired".into());
        }
        // §2.4: the audience of a logout token is the relying party's
        // client id, not the resource the access tokens are for.
        let audiences = claims.audiences();
        if !issuer
            .logout_audiences
            .iter()
            .any(|a| audiences.contains(&a.as_str()))
        {
            return Err("wrong audience".into());
        }
        let is_logout_event = claims
            .get("events")
            .and_then(|e| e.as_object())
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(|v| v.is_object());
        if !is_logout_event {
            return Err(format!(
                "`events` must contain `{BACKCHANNEL_LOGOUT_EVENT}`"
            ));
        }
        if claims.has("nonce") {
            return Err("a logout token must not contain `nonce`".into());
        }
        let sid = claims.str("sid");
        let sub = claims.str("sub");
        if sid.is_none() && sub.is_none() {
            return Err("a logout token names `sid` or `sub`".into());
        }
        let jti = claims.token_id().ok_or("missing claim `jti`")?;
        Ok(Self {
            sid,
            sub,
            jti,
            remember_until_ms: revocation_end_ms(exp, leeway),
        })
    }
}

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
    /// One revocation sync at a time: the periodic one and one triggered by
    /// a new subscription must not both write back the same lost revocation.
    syncing: tokio::sync::Mutex<()>,
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
            syncing: tokio::sync::Mutex::new(()),
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

    /// Listens to the store's revocation news: revocations of other
    /// instances apply here as soon as they are published, and a new
    /// subscription (messages may have been missed) fetches the list again.
    pub fn listen_to_revocations(self: &Arc<Self>) {
        let access = Arc::downgrade(self);
        self.store.on_revocation_news(Arc::new(move |news| {
            let Some(access) = access.upgrade() else {
                return;
            };
            match news {
                RevocationNews::Revoked(revocation) => {
                    access.revocations.add_heard(revocation);
                }
                RevocationNews::Resubscribed => {
                    tokio::spawn(async move { access.sync_revocations().await });
                }
            }
        }));
    }

    /// Mirrors the store's revocations (the periodic sync), keeping this
    /// instance's own and writing again those the store lost.
    pub async fn sync_revocations(&self) {
        let _one_at_a_time = self.syncing.lock().await;
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
    /// closes the sessions it names, and revokes the tokens that could
    /// reopen them (§2.7: sessions by `iss` and `sub` and/or `sid`):
    ///
    /// * `sid`: the sessions linked to that identity provider session (every
    ///   session a token naming it opened or reused) and every token naming
    ///   it; when no session is linked to it and the token names `sub` too,
    ///   the subject's sessions instead (access tokens without `sid`).
    /// * `sub` alone: every session of the subject, and its tokens issued
    ///   until now.
    ///
    /// Every check, the replay check included, comes before any effect. The
    /// `jti` is reserved first (a replay, even a concurrent one, closes
    /// nothing) and released when the store fails later on, so the identity
    /// provider's retry after the 503 is carried out rather than refused as
    /// a replay; carrying out a logout twice changes nothing. Returns how
    /// many sessions closed.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, BackchannelError> {
        let policy = self.policy();
        let verifier = &policy.verifier;
        let signed = verifier
            .verify_signature(logout_token)
            .await
            .map_err(|e| match e {
                TokenError::IssuerUnavailable => BackchannelError::Unavailable,
                other => BackchannelError::Invalid(other.to_string()),
            })?;
        let issuer = verifier
            .issuer_config(signed.issuer)
            .ok_or_else(|| BackchannelError::Invalid("untrusted issuer".into()))?;
        let logout = LogoutToken::check(
            issuer,
            signed.typ.as_deref(),
            &signed.claims,
            self.clock.now_secs(),
            verifier.leeway_secs(),
        )
        .map_err(BackchannelError::Invalid)?;

        let once = crate::session::identity::Digest32::of_parts(
            "logout-jti",
            [issuer.issuer.as_bytes(), logout.jti.as_bytes()],
        )
        .to_hex();
        let fresh = self
            .store
            .first_use(&once, logout.remember_until_ms)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "store one-time id check failed");
                BackchannelError::Unavailable
            })?;
        if !fresh {
            return Err(BackchannelError::Invalid("logout token replayed".into()));
        }
        match self.carry_out_logout(&issuer.issuer, &logout).await {
            Ok(closed) => Ok(closed),
            Err(e) => {
                // Let the identity provider's retry through. If even this
                // fails the retry is refused as a replay until the id
                // lapses: the sessions then end by their timeouts.
                if let Err(error) = self.store.release_use(&once).await {
                    tracing::error!(%error, "releasing a logout token id failed");
                }
                Err(e)
            }
        }
    }

    /// The effect of a validated logout token. Revocations come before the
    /// closes, so no request can reopen a session in between.
    async fn carry_out_logout(
        &self,
        issuer: &str,
        logout: &LogoutToken<'_>,
    ) -> Result<usize, BackchannelError> {
        let unavailable = |e: crate::session::StoreError| {
            tracing::error!(error = %e, "store call of a back-channel logout failed");
            BackchannelError::Unavailable
        };
        let now_ms = self.clock.now_ms();
        let until_ms = now_ms.saturating_add(SUBJECT_REVOCATION_TTL_MS);
        let mut by_subject = logout.sid.is_none();
        if let Some(sid) = logout.sid {
            let key = sid_key(issuer, sid);
            self.revoke(Revocation::Token {
                key: format!("sid:{key}"),
                until_ms,
            })
            .await
            .map_err(|_| BackchannelError::Unavailable)?;
            let ids = self
                .store
                .linked_sessions(&key)
                .await
                .map_err(unavailable)?;
            // A session whose tokens carry no `sid` is linked to none: the
            // subject is what the provider and the gateway share then.
            by_subject = ids.is_empty() && logout.sub.is_some();
            let mut closed = Vec::new();
            for id in ids {
                if let Some(c) = self
                    .store
                    .close(&id, CloseReason::Backchannel)
                    .await
                    .map_err(unavailable)?
                {
                    closed.push(c);
                }
            }
            closed.iter().for_each(|c| self.record_closed(c));
            if !by_subject {
                return Ok(closed.len());
            }
        }
        let Some(sub) = logout.sub.filter(|_| by_subject) else {
            return Ok(0);
        };
        self.revoke(Revocation::of_subject(issuer, sub, now_ms, until_ms))
            .await
            .map_err(|_| BackchannelError::Unavailable)?;
        let subject = crate::session::identity::subject_key(issuer, sub);
        let closed = self
            .store
            .close_subject(&subject, CloseReason::Backchannel)
            .await
            .map_err(unavailable)?;
        closed.iter().for_each(|c| self.record_closed(c));
        Ok(closed.len())
    }

    /// Closes the principal's session and refuses the presented token until
    /// it expires (`POST /.gateway/logout`). Returns the closed session.
    pub async fn logout(&self, principal: &Principal) -> Result<Option<Session>, Problem> {
        let (identity, choice) = self.placement(principal)?;
        // Revoke first: even if closing fails, this token cannot reopen a
        // session. The margin covers the verification leeway.
        let until_ms = revocation_end_ms(principal.expires_at, 0);
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
        // The instance's clock, named as such: it may be skewed. The stream
        // entry's id is Redis's time when the batch was appended.
        event.push(("at_ms", self.clock.now_ms().to_string()));
        event.push(("at_source", "instance".to_string()));
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
            // A revocation this instance had not heard of yet: the store
            // refused it inside the admission.
            Admission::Refused(Refusal::Revoked) => {
                self.metrics
                    .token_rejections
                    .with_label_values(&["revoked"])
                    .inc();
                Err(self.refusal_problem(&choice.pool.name, &Refusal::Revoked))
            }
            Admission::Refused(refusal) => {
                audit::admission_refused(&choice.pool.name, &identity, &refusal);
                let reason = match refusal {
                    Refusal::PoolFull { .. } => "pool_full",
                    Refusal::SubjectLimit { .. } => "subject_limit",
                    Refusal::Revoked => "revoked",
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
            Refusal::Revoked => {
                Problem::invalid_token(&self.policy.load().realm, &TokenError::Revoked.to_string())
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use crate::config::{IssuerConfig, KeySource};
    use serde_json::json;
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000;

    fn issuer(logout_audiences: &[&str], require_logout_typ: bool) -> IssuerConfig {
        IssuerConfig {
            issuer: "https://idp".into(),
            audiences: vec!["erp-api".into()],
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            keys: KeySource::JwksFile("jwks.json".into()),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
            logout_audiences: logout_audiences.iter().map(|a| a.to_string()).collect(),
            require_logout_typ,
            access_token_types: vec!["at+jwt".into(), "jwt".into(), "".into()],
        }
    }

    fn claims(extra: serde_json::Value) -> Claims {
        let mut base = json!({
            "iss": "https://idp", "aud": "erp-web", "iat": NOW, "exp": NOW + 120,
            "jti": "lt-1", "sid": "s-1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(k);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        Claims::from_map(base.as_object().cloned().unwrap_or_default())
    }

    fn check(config: &IssuerConfig, typ: Option<&str>, claims: &Claims) -> Result<(), String> {
        LogoutToken::check(config, typ, claims, NOW, 30).map(|_| ())
    }

    #[test]
    fn revocation_ends_saturate_at_the_cap_and_never_wrap() {
        let margin = REVOCATION_MARGIN_MS;
        assert_eq!(
            revocation_end_ms(NOW, 30),
            (NOW as u64 + 30) * 1000 + margin
        );
        assert_eq!(revocation_end_ms(NOW, 0), NOW as u64 * 1000 + margin);
        // `exp` = 2e16 s used to wrap to 1970 in release builds.
        for exp in [
            1 << 53,
            10_000_000_000_000_000,
            20_000_000_000_000_000,
            i64::MAX,
        ] {
            assert_eq!(revocation_end_ms(exp, 30), MAX_REVOCATION_END_MS, "{exp}");
            assert_eq!(
                revocation_end_ms(exp, i64::MAX),
                MAX_REVOCATION_END_MS,
                "{exp}"
            );
        }
        for exp in [-31, i64::MIN] {
            assert_eq!(revocation_end_ms(exp, 30), margin, "{exp}");
        }
        assert_eq!(revocation_end_ms(-1, 0), margin);
        assert_eq!(revocation_end_ms(0, i64::MIN), margin);
    }

    #[test]
    fn a_logout_token_is_checked_against_the_logout_audiences() {
        let config = issuer(&["erp-web", "erp-desktop"], false);
        assert_eq!(
            check(&config, Some("logout+jwt"), &claims(json!({}))),
            Ok(())
        );
        let desktop = claims(json!({"aud": ["other", "erp-desktop"]}));
        assert_eq!(check(&config, Some("logout+jwt"), &desktop), Ok(()));
        // The access tokens' audience is not a logout audience once these are set.
        let api = claims(json!({"aud": "erp-api"}));
        assert_eq!(
            check(&config, Some("logout+jwt"), &api),
            Err("wrong audience".into())
        );
    }

    #[test]
    fn a_logout_token_is_typed_logout_jwt_or_untyped() {
        let lax = issuer(&["erp-web"], false);
        let strict = issuer(&["erp-web"], true);
        let token = claims(json!({}));
        for typ in ["logout+jwt", "application/logout+jwt", "Logout+JWT"] {
            assert_eq!(check(&lax, Some(typ), &token), Ok(()), "{typ}");
            assert_eq!(check(&strict, Some(typ), &token), Ok(()), "{typ}");
        }
        assert_eq!(check(&lax, None, &token), Ok(()));
        assert!(check(&strict, None, &token).is_err());
        for typ in ["JWT", "at+jwt", "id+jwt", "Bearer"] {
            assert!(check(&lax, Some(typ), &token).is_err(), "{typ}");
            assert!(check(&strict, Some(typ), &token).is_err(), "{typ}");
        }
    }

    #[test]
    fn logout_token_times_at_the_extremes_are_judged_without_wrapping() {
        let config = issuer(&["erp-web"], false);
        for exp in [json!(1u64 << 53), json!(1e16), json!(2e16), json!(1e300)] {
            let token = claims(json!({"exp": exp}));
            let checked = LogoutToken::check(&config, None, &token, NOW, 30);
            assert_eq!(
                checked.map(|t| t.remember_until_ms),
                Ok(MAX_REVOCATION_END_MS),
                "{exp}"
            );
        }
        for exp in [json!(-1), json!(-1e300), json!(NOW as f64 - 31.0)] {
            let token = claims(json!({"exp": exp}));
            assert_eq!(
                check(&config, None, &token),
                Err("logout token expired".into()),
                "{exp}"
            );
        }
        for iat in [json!(1u64 << 53), json!(1e16), json!(1e300)] {
            let token = claims(json!({"iat": iat}));
            assert_eq!(
                check(&config, None, &token),
                Err("issued in the future".into()),
                "{iat}"
            );
        }
        for iat in [json!(-1), json!(-1e300), json!(NOW as f64 + 0.5)] {
            assert_eq!(check(&config, None, &claims(json!({"iat": iat}))), Ok(()));
        }
        assert!(check(&config, None, &claims(json!({"exp": "soon"}))).is_err());
    }

    /// A memory store whose closes fail while `failing` is set: the store
    /// going away half-way through a back-channel logout.
    struct FlakyStore {
        inner: crate::session::MemoryStore,
        failing: std::sync::atomic::AtomicBool,
    }

    impl FlakyStore {
        fn check(&self) -> Result<(), crate::session::StoreError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                Err(crate::session::StoreError::Protocol("store down".into()))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait::async_trait]
    impl crate::session::SessionStore for FlakyStore {
        async fn admit(
            &self,
            request: &AdmitRequest<'_>,
        ) -> Result<AdmitOutcome, crate::session::StoreError> {
            self.inner.admit(request).await
        }
        async fn find(
            &self,
            pool: &str,
            identity: &crate::session::IdentityKey,
        ) -> Result<Option<Session>, crate::session::StoreError> {
            self.inner.find(pool, identity).await
        }
        async fn get(&self, id: &str) -> Result<Option<Session>, crate::session::StoreError> {
            self.inner.get(id).await
        }
        async fn close(
            &self,
            id: &str,
            reason: CloseReason,
        ) -> Result<Option<ClosedSession>, crate::session::StoreError> {
            self.check()?;
            self.inner.close(id, reason).await
        }
        async fn close_subject(
            &self,
            subject: &crate::session::SubjectKey,
            reason: CloseReason,
        ) -> Result<Vec<ClosedSession>, crate::session::StoreError> {
            self.check()?;
            self.inner.close_subject(subject, reason).await
        }
        async fn list(
            &self,
            filter: &crate::session::SessionFilter,
        ) -> Result<Vec<Session>, crate::session::StoreError> {
            self.inner.list(filter).await
        }
        async fn usage(
            &self,
        ) -> Result<Vec<crate::session::PoolUsage>, crate::session::StoreError> {
            self.inner.usage().await
        }
        async fn sweep(&self) -> Result<Vec<ClosedSession>, crate::session::StoreError> {
            self.inner.sweep().await
        }
        async fn ping(&self) -> Result<(), crate::session::StoreError> {
            self.inner.ping().await
        }
        fn reconfigure(&self, pools: &Pools) {
            self.inner.reconfigure(pools)
        }
    }

    #[async_trait::async_trait]
    impl crate::session::RevocationStore for FlakyStore {
        async fn revoke(&self, revocation: &Revocation) -> Result<(), crate::session::StoreError> {
            self.inner.revoke(revocation).await
        }
        async fn revocations(&self) -> Result<Vec<Revocation>, crate::session::StoreError> {
            self.inner.revocations().await
        }
        async fn delete_revocation(
            &self,
            id: &str,
        ) -> Result<Vec<Revocation>, crate::session::StoreError> {
            self.inner.delete_revocation(id).await
        }
        async fn deleted_revocations(&self) -> Result<Vec<String>, crate::session::StoreError> {
            self.inner.deleted_revocations().await
        }
    }

    #[async_trait::async_trait]
    impl crate::session::LogoutLedger for FlakyStore {
        async fn linked_sessions(
            &self,
            sid_key: &str,
        ) -> Result<Vec<crate::session::SessionId>, crate::session::StoreError> {
            self.inner.linked_sessions(sid_key).await
        }
        async fn first_use(
            &self,
            key: &str,
            until_ms: u64,
        ) -> Result<bool, crate::session::StoreError> {
            self.inner.first_use(key, until_ms).await
        }
        async fn release_use(&self, key: &str) -> Result<(), crate::session::StoreError> {
            self.inner.release_use(key).await
        }
    }

    impl crate::session::AuditSink for FlakyStore {}

    #[tokio::test]
    async fn a_logout_the_store_failed_is_carried_out_on_retry_and_only_once() {
        use crate::clock::{Clock, ManualClock, SystemClock};
        use crate::devkit::{Issuer, TokenRequest};
        use crate::licensing::Pool;
        use std::sync::atomic::Ordering;

        let idp = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let mut config = issuer(&["erp-web"], false);
        config.issuer = idp.issuer_url().to_string();
        config.keys = KeySource::JwksUri(url::Url::parse(&idp.jwks_url()).unwrap());
        let policy = crate::config::TokenPolicy {
            leeway: Duration::from_secs(30),
            max_lifetime: None,
            max_auth_age: None,
            required_claims: vec![],
            cache_size: 0,
            max_token_bytes: 8192,
        };
        let verifier = Verifier::new(&[config], policy, Arc::new(clock.clone())).unwrap();
        verifier.issuers()[0].refresh().await.unwrap();
        let pools = Pools::new(vec![Pool {
            name: "default".into(),
            limit: 10,
            rule: None,
            subject_limit: None,
            reserved: vec![],
            idle_timeout: Duration::from_secs(1200),
            absolute_timeout: Duration::from_secs(28_800),
        }]);
        let store = Arc::new(FlakyStore {
            inner: crate::session::MemoryStore::new(&pools, Arc::new(clock.clone())),
            failing: false.into(),
        });
        let access = Access::new(
            AccessPolicy {
                verifier: Arc::new(verifier),
                pools,
                realm: "erp".into(),
                license_unavailable_status: 429,
            },
            IdentityRule::new(vec![
                vec!["iss".into()],
                vec!["sub".into()],
                vec!["client_id".into(), "azp".into()],
            ]),
            store.clone(),
            Arc::new(Metrics::new()),
        );
        let token = idp.mint(&TokenRequest::new("alice").claim("iat", clock.now_secs() - 30));
        let (alice, _) = access.verifier().verify(&token).await.unwrap();
        assert!(access.admit(&alice).await.unwrap().opened);

        let now = clock.now_secs();
        let mut header = idp.header(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("logout+jwt".into());
        let logout = idp.sign_raw(
            &header,
            &json!({
                "iss": idp.issuer_url(), "aud": "erp-web", "iat": now, "exp": now + 120,
                "jti": "lt-retry", "sub": "alice",
                "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
            }),
        );
        store.failing.store(true, Ordering::SeqCst);
        assert_eq!(
            access.backchannel_logout(&logout).await,
            Err(BackchannelError::Unavailable)
        );
        assert!(access.current_session(&alice).await.unwrap().is_some());

        // The identity provider retries: carried out, not refused as a replay.
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(access.backchannel_logout(&logout).await, Ok(1));
        assert!(access.current_session(&alice).await.unwrap().is_none());
        assert_eq!(
            access.backchannel_logout(&logout).await,
            Err(BackchannelError::Invalid("logout token replayed".into()))
        );
    }
}
