//! OpenID Connect Back-Channel Logout 1.0: a logout token from an issuer
//! closes the sessions it names and revokes the tokens that could reopen
//! them. The HTTP endpoint reading the form is `proxy::endpoints`.

use super::Access;
use super::revocations::revocation_end_ms;
use crate::auth::TokenError;
use crate::session::identity::{Digest32, sid_key, subject_key};
use crate::session::{CloseReason, Revocation, SUBJECT_REVOCATION_TTL_MS, StoreError};

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

impl Access {
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

        let once = Digest32::of_parts(
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
        let unavailable = |e: StoreError| {
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
            .map_err(unavailable)?;
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
            .map_err(unavailable)?;
        let subject = subject_key(issuer, sub);
        let closed = self
            .store
            .close_subject(&subject, CloseReason::Backchannel)
            .await
            .map_err(unavailable)?;
        closed.iter().for_each(|c| self.record_closed(c));
        Ok(closed.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::AccessPolicy;
    use super::super::revocations::MAX_REVOCATION_END_MS;
    use super::*;
    use crate::auth::{Claims, Verifier};
    use crate::config::{IssuerConfig, KeySource};
    use crate::licensing::Pools;
    use crate::session::{AdmitOutcome, AdmitRequest, ClosedSession, IdentityRule, Session};
    use crate::telemetry::Metrics;
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
            min_rsa_bits: 2048,
            ca_pem: None,
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
    impl crate::session::SeatQueue for FlakyStore {
        async fn leave_queue(
            &self,
            pool: &crate::licensing::Pool,
            ticket: &crate::session::Ticket,
            exit: crate::session::QueueExit,
        ) -> Result<bool, crate::session::StoreError> {
            self.inner.leave_queue(pool, ticket, exit).await
        }
        fn on_seat_freed(&self, listener: crate::session::SeatListener) {
            self.inner.on_seat_freed(listener)
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

    #[async_trait::async_trait]
    impl crate::session::ClientLedger for FlakyStore {
        async fn note_client(
            &self,
            pool: &str,
            session_id: &str,
            sighting: &crate::session::ClientSighting,
            window: Duration,
            refuse_beyond: Option<crate::session::ClientBound>,
        ) -> Result<crate::session::ClientCounts, crate::session::StoreError> {
            self.inner
                .note_client(pool, session_id, sighting, window, refuse_beyond)
                .await
        }
    }

    #[async_trait::async_trait]
    impl crate::session::UsageLedger for FlakyStore {
        async fn usage_ledger(
            &self,
            pool: &str,
            bucket: Option<usize>,
            step: crate::usage::Step,
            from: u64,
        ) -> Result<Option<crate::usage::LedgerSnapshot>, crate::session::StoreError> {
            self.inner.usage_ledger(pool, bucket, step, from).await
        }
    }

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
            overdraft: 0,
            shared_token: None,
            linger: Duration::ZERO,
            min_hold: Duration::ZERO,
            queue: None,
        }]);
        let store = Arc::new(FlakyStore {
            inner: crate::session::MemoryStore::new(&pools, Arc::new(clock.clone())),
            failing: false.into(),
        });
        let access = Access::new(
            AccessPolicy {
                verifier: Arc::new(verifier),
                pools,
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
        assert!(
            access
                .admit(&alice, std::future::pending())
                .await
                .unwrap()
                .opened
        );

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
