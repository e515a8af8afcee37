//! Access-token verification (docs/design.md §4 step 2).
//!
//! The order of checks is chosen so that nothing an attacker controls is
//! trusted before the signature is checked, except what is needed to find the
//! key: the header (`alg`, `kid`) and the unverified `iss`, which only selects
//! among configured issuers. `alg` must be on that issuer's allow-list (which
//! validation keeps free of `none` and HMAC) and must fit the key's family and
//! curve, so neither `none` nor HMAC-with-a-public-key can ever verify.
//! Headers that point elsewhere for keys (`jku`, `x5u`, `jwk`, `x5c`) are
//! ignored: keys come only from the configured JWKS.
//!
//! Verified tokens are cached by the SHA-256 of the token until they expire,
//! so steady traffic pays one hash per request instead of a signature check.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Header};
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::jwks::{IssuerKeys, KeySet, algorithm_name};
use crate::clock::SharedClock;
use crate::config::{IssuerConfig, TokenPolicy};
use crate::session::identity::Digest32;

/// Why a token was refused. Every variant but [`TokenError::IssuerUnavailable`]
/// is the client's fault (401 `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, duplicate claims, …
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Longer than `tokens.max_token_bytes`.
    #[error("token too large")]
    TooLarge,
    /// `iss` names no configured issuer.
    #[error("untrusted issuer")]
    UntrustedIssuer,
    /// `alg` is not on the issuer's allow-list.
    #[error("algorithm {0} not allowed")]
    AlgorithmNotAllowed(String),
    /// No key of the issuer fits the token's `kid` and `alg`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` exceeds `tokens.max_lifetime`.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// `auth_time` is older than `tokens.max_auth_age`.
    #[error("authentication too old")]
    AuthenticationTooOld,
    /// No accepted audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A logout token, an ID token or another token that is not an access
    /// token (RFC 8725 §3.11), or a `typ` not in `access_token_types`.
    #[error("not an access token: {0}")]
    NotAnAccessToken(String),
    /// A required claim is absent, or a time claim is not a number.
    #[error("{0}")]
    BadClaim(String),
    /// The token was revoked (logout, operator).
    #[error("token revoked")]
    Revoked,
    /// The issuer's keys were never loaded: the gateway cannot judge the
    /// token at all (503 `issuer_unavailable`, not the client's fault).
    #[error("keys of issuer not available")]
    IssuerUnavailable,
}

impl TokenError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::TooLarge => "too_large",
            TokenError::UntrustedIssuer => "untrusted_issuer",
            TokenError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::LifetimeTooLong => "lifetime_too_long",
            TokenError::AuthenticationTooOld => "authentication_too_old",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::NotAnAccessToken(_) => "not_an_access_token",
            TokenError::BadClaim(_) => "bad_claim",
            TokenError::Revoked => "revoked",
            TokenError::IssuerUnavailable => "issuer_unavailable",
        }
    }
}

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Its claims. A gateway's verifier keeps only those named by
    /// [`Config::claims_in_use`](crate::config::Config::claims_in_use): a new
    /// reader of a claim must name it there, or read a typed field below.
    pub claims: Claims,
    /// Index of its issuer in the configuration.
    pub issuer: usize,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// `nbf`, seconds since the epoch, if set.
    pub not_before: Option<i64>,
    /// `iat`, seconds since the epoch, if set.
    pub issued_at: Option<i64>,
    /// What revocations name the token by: its `jti`, or the hex SHA-256 of
    /// the token when it has none.
    pub token_key: String,
}

/// Verifies tokens against the configured issuers.
pub struct Verifier {
    issuers: Vec<Arc<IssuerKeys>>,
    by_name: HashMap<String, usize>,
    policy: TokenPolicy,
    clock: SharedClock,
    cache: Option<quick_cache::sync::Cache<[u8; 32], Arc<Principal>>>,
    /// Claims a verified principal keeps; all when `None`.
    retained: Option<BTreeSet<String>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

/// Where a verification was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The verified-token cache.
    Cached,
    /// A full signature check.
    Checked,
}

impl Verifier {
    /// A verifier for these issuers (keys not loaded yet: see [`IssuerKeys`]).
    pub fn new(
        issuers: &[IssuerConfig],
        policy: TokenPolicy,
        clock: SharedClock,
    ) -> Result<Self, super::jwks::JwksError> {
        let mut keys = Vec::with_capacity(issuers.len());
        let mut by_name = HashMap::new();
        for (i, issuer) in issuers.iter().enumerate() {
            keys.push(Arc::new(IssuerKeys::new(
                Arc::new(issuer.clone()),
                Arc::clone(&clock),
            )?));
            by_name.insert(issuer.issuer.clone(), i);
        }
        let cache =
            (policy.cache_size > 0).then(|| quick_cache::sync::Cache::new(policy.cache_size));
        Ok(Self {
            issuers: keys,
            by_name,
            policy,
            clock,
            cache,
            retained: None,
        })
    }

    /// Keeps only these claims in verified principals (and so in the cache);
    /// the others are dropped once the token has passed every check. A large
    /// token from a real identity provider carries dozens of claims the
    /// gateway never reads again.
    pub fn retaining(mut self, claims: BTreeSet<String>) -> Self {
        self.retained = Some(claims);
        self
    }

    /// A verifier for a reloaded configuration, keeping the key holders
    /// (loaded keys, refresh schedule) of issuers whose settings did not
    /// change, so a reload never makes known keys unavailable. The
    /// verified-token cache starts empty: the rules tokens were judged by
    /// may have changed.
    pub fn reconfigured(
        &self,
        issuers: &[IssuerConfig],
        policy: TokenPolicy,
    ) -> Result<Self, super::jwks::JwksError> {
        let mut next = Self::new(&[], policy, Arc::clone(&self.clock))?;
        for (i, issuer) in issuers.iter().enumerate() {
            let kept = self.issuers.iter().find(|k| k.config() == issuer);
            let keys = match kept {
                Some(keys) => Arc::clone(keys),
                None => Arc::new(IssuerKeys::new(
                    Arc::new(issuer.clone()),
                    Arc::clone(&self.clock),
                )?),
            };
            next.issuers.push(keys);
            next.by_name.insert(issuer.issuer.clone(), i);
        }
        next.retained = self.retained.clone();
        Ok(next)
    }

    /// The token rules in force.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// The clock tokens are judged by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The issuers' key holders (for the refresh service and readiness).
    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.issuers
    }

    /// Verifies a token, from the cache when it was verified before.
    pub async fn verify(&self, token: &str) -> Result<(Arc<Principal>, Verified), TokenError> {
        if token.len() > self.policy.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.cache.as_ref().and_then(|c| c.get(&digest)) {
            // Only time can invalidate a cached verification.
            self.check_still_valid(&principal)?;
            return Ok((principal, Verified::Cached));
        }
        let mut principal = self.verify_uncached(token).await?;
        principal.token_key = match principal.claims.token_id() {
            Some(jti) => jti.to_string(),
            // The signed part only: an ECDSA signature can be rewritten into
            // another valid one, which must not make a revoked token new.
            None => {
                let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
                Digest32(Sha256::digest(signed.as_bytes()).into()).to_hex()
            }
        };
        if let Some(retained) = &self.retained {
            principal.claims.retain(|name| retained.contains(name));
        }
        let principal = Arc::new(principal);
        if let Some(cache) = &self.cache {
            cache.insert(digest, Arc::clone(&principal));
        }
        Ok((principal, Verified::Checked))
    }

    fn check_still_valid(&self, p: &Principal) -> Result<(), TokenError> {
        let now = self.clock.now_secs();
        let leeway = secs_i64(self.policy.leeway);
        if now > p.expires_at.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = p.not_before
            && now.saturating_add(leeway) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    async fn verify_uncached(&self, token: &str) -> Result<Principal, TokenError> {
        let signed = self.verify_signature(token).await?;
        let config = self.issuers[signed.issuer].config();
        check_access_token_type(config, signed.typ.as_deref(), &signed.claims)?;
        self.check_claims(config, signed.issuer, signed.claims)
    }

    /// Checks a token's signature against its issuer's keys and allow-list,
    /// and returns the issuer's index, the `typ` header and the claims —
    /// nothing about the claims or the type is checked yet. Shared by access
    /// tokens and back-channel logout tokens, which each check their type.
    pub async fn verify_signature(&self, token: &str) -> Result<SignedToken, TokenError> {
        if token.len() > self.policy.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let parts = CompactJws::split(token)?;
        let header = parts.header()?;
        let claims = parts.claims()?;

        let issuer_name = claims.issuer().ok_or(TokenError::UntrustedIssuer)?;
        let index = *self
            .by_name
            .get(issuer_name)
            .ok_or(TokenError::UntrustedIssuer)?;
        let issuer = &self.issuers[index];
        let config = issuer.config();

        let alg = header.alg;
        if alg.family() == AlgorithmFamily::Hmac || !config.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed(
                algorithm_name(alg).to_string(),
            ));
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must fail.
            return Err(TokenError::Malformed("unsupported `crit` header".into()));
        }

        let keys = match issuer.keys() {
            Some(keys) => keys,
            None => issuer
                .refetch_for_unknown_key()
                .await
                .ok_or(TokenError::IssuerUnavailable)?,
        };
        let kid = header.kid.as_deref();
        let verified = match check_signature(&keys, &parts, kid, alg) {
            SignatureCheck::NoKey => match issuer.refetch_for_unknown_key().await {
                Some(fresh) => check_signature(&fresh, &parts, kid, alg),
                None => SignatureCheck::NoKey,
            },
            other => other,
        };
        match verified {
            SignatureCheck::Valid => {}
            SignatureCheck::Invalid => return Err(TokenError::BadSignature),
            SignatureCheck::NoKey => return Err(TokenError::UnknownKey),
        }
        Ok(SignedToken {
            issuer: index,
            typ: header.typ,
            claims,
        })
    }

    /// The verification leeway, in seconds.
    pub fn leeway_secs(&self) -> i64 {
        secs_i64(self.policy.leeway)
    }

    /// The configuration of the issuer at `index`.
    pub fn issuer_config(&self, index: usize) -> Option<&IssuerConfig> {
        self.issuers.get(index).map(|i| i.config())
    }

    fn check_claims(
        &self,
        config: &IssuerConfig,
        index: usize,
        claims: Claims,
    ) -> Result<Principal, TokenError> {
        let now = self.clock.now_secs();
        let leeway = secs_i64(self.policy.leeway);
        let date = |name: &str| claims.numeric_date(name).map_err(TokenError::BadClaim);

        let expires_at =
            date("exp")?.ok_or_else(|| TokenError::BadClaim("missing claim `exp`".into()))?;
        let not_before = date("nbf")?;
        let issued_at = date("iat")?;
        let principal = Principal {
            issuer: index,
            expires_at,
            not_before,
            issued_at,
            claims: Claims::default(),
            token_key: String::new(),
        };
        self.check_still_valid(&principal)?;
        if let Some(iat) = issued_at
            && iat > now.saturating_add(leeway)
        {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(max) = self.policy.max_lifetime {
            let iat =
                issued_at.ok_or_else(|| TokenError::BadClaim("missing claim `iat`".into()))?;
            if expires_at.saturating_sub(iat) > secs_i64(max) {
                return Err(TokenError::LifetimeTooLong);
            }
        }
        if let Some(max) = self.policy.max_auth_age {
            let auth_time = date("auth_time")?
                .ok_or_else(|| TokenError::BadClaim("missing claim `auth_time`".into()))?;
            if now.saturating_sub(auth_time) > secs_i64(max).saturating_add(leeway) {
                return Err(TokenError::AuthenticationTooOld);
            }
        }
        let audiences = claims.audiences();
        if !config
            .audiences
            .iter()
            .any(|a| audiences.contains(&a.as_str()))
        {
            return Err(TokenError::WrongAudience);
        }
        if let Some(missing) = self.policy.required_claims.iter().find(|c| !claims.has(c)) {
            return Err(TokenError::BadClaim(format!("missing claim `{missing}`")));
        }
        Ok(Principal {
            claims,
            ..principal
        })
    }
}

/// A token whose signature verified, nothing else checked yet.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// Index of its issuer in the configuration.
    pub issuer: usize,
    /// Its `typ` header, as sent.
    pub typ: Option<String>,
    /// Its claims.
    pub claims: Claims,
}

/// A configured duration in whole seconds as a signed claim offset; a value
/// beyond `i64` (never sensible) saturates instead of turning negative.
fn secs_i64(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Claims only ID tokens carry (OpenID Connect Core §2, §3.1.3.6, §3.3.2.11):
/// an ID token typed plain `JWT` is recognised by them.
const ID_TOKEN_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash"];

/// Values of Keycloak's `typ` claim for tokens that are not access tokens:
/// ID, logout, refresh and offline tokens.
const KEYCLOAK_OTHER_KINDS: &[&str] = &["ID", "Logout", "Refresh", "Offline"];

/// Refuses a token that is not an access token of this issuer: typed as a
/// logout, ID or security event token, carrying the claims of one (`events`,
/// `nonce`, …) whatever the audiences say — a provider's ID token has the
/// client id as audience, which may well be configured — or with a `typ`
/// not in `access_token_types` (RFC 8725 §3.11, RFC 9068 §4).
pub fn check_access_token_type(
    config: &IssuerConfig,
    typ: Option<&str>,
    claims: &Claims,
) -> Result<(), TokenError> {
    let typ = crate::config::token_type(typ);
    let refuse = |why: String| Err(TokenError::NotAnAccessToken(why));
    if crate::config::NEVER_ACCESS_TOKEN_TYPES.contains(&typ.as_str()) {
        return refuse(format!("a token of type `{typ}`"));
    }
    if claims.has("events") {
        return refuse("a security event token (claim `events`), such as a logout token".into());
    }
    if let Some(claim) = ID_TOKEN_CLAIMS.iter().find(|c| claims.has(c)) {
        return refuse(format!("an ID token (claim `{claim}`)"));
    }
    // Keycloak names the kind of its tokens in a `typ` claim (`Bearer` for
    // access tokens) while its header says plain `JWT`.
    if let Some(kind) = claims.str("typ").filter(|k| {
        KEYCLOAK_OTHER_KINDS
            .iter()
            .any(|o| k.eq_ignore_ascii_case(o))
    }) {
        return refuse(format!("a token of kind `{kind}` (claim `typ`)"));
    }
    if !config.access_token_types.contains(&typ) {
        return refuse(if typ.is_empty() {
            "a token without `typ` is not accepted from this issuer".into()
        } else {
            format!("type `{typ}` is not accepted from this issuer")
        });
    }
    Ok(())
}

enum SignatureCheck {
    Valid,
    Invalid,
    NoKey,
}

fn check_signature(
    keys: &KeySet,
    parts: &CompactJws<'_>,
    kid: Option<&str>,
    alg: Algorithm,
) -> SignatureCheck {
    let mut tried = false;
    let signature = URL_SAFE_NO_PAD.decode(parts.signature).ok();
    for key in keys.candidates(kid, alg) {
        tried = true;
        if let Some(signature) = &signature
            && key.verifies(alg, parts.message.as_bytes(), signature)
        {
            return SignatureCheck::Valid;
        }
    }
    if tried {
        SignatureCheck::Invalid
    } else {
        SignatureCheck::NoKey
    }
}

/// The three parts of a compact JWS.
struct CompactJws<'a> {
    /// `header.payload`, the signed bytes.
    message: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> CompactJws<'a> {
    fn split(token: &'a str) -> Result<Self, TokenError> {
        let malformed = |m: &str| TokenError::Malformed(m.to_string());
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| malformed("not a JWT"))?;
        let (header, payload) = message
            .split_once('.')
            .ok_or_else(|| malformed("not a JWT"))?;
        if payload.contains('.') {
            return Err(malformed("not a JWS compact serialization (JWE?)"));
        }
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if [header, payload, signature]
            .iter()
            .any(|p| p.is_empty() || !base64url(p))
        {
            return Err(malformed("parts must be non-empty base64url"));
        }
        Ok(Self {
            message,
            header,
            payload,
            signature,
        })
    }

    fn header(&self) -> Result<Header, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.header)
            .map_err(|_| TokenError::Malformed("header is not base64url".into()))?;
        serde_json::from_slice::<Header>(&bytes).map_err(|e| {
            if e.to_string().contains("unknown variant") {
                TokenError::Malformed("unsupported algorithm".into())
            } else {
                TokenError::Malformed("header is not a JOSE header".into())
            }
        })
    }

    fn claims(&self) -> Result<Claims, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url".into()))?;
        serde_json::from_slice::<Claims>(&bytes)
            .map_err(|e| TokenError::Malformed(format!("claims: {}", first_line(&e.to_string()))))
    }
}

fn first_line(s: &str) -> &str {
    // serde_json appends " at line 1 column N"; keep it short and free of
    // token content.
    s.split(" at line").next().unwrap_or(s)
}

/// Reads the token of an `Authorization` header: the `Bearer` scheme,
/// case-insensitive (RFC 7235 §2.1), exactly one space-separated token.
pub fn bearer_token(authorization: &[u8]) -> Result<&str, BearerError> {
    let text = std::str::from_utf8(authorization).map_err(|_| BearerError::Malformed)?;
    let (scheme, rest) = text.split_once(' ').ok_or(BearerError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// A problem with the `Authorization` header itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Another scheme (Basic, …) or no scheme: no bearer token was presented.
    #[error("no bearer token")]
    NotBearer,
    /// `Bearer` with an empty or malformed credential.
    #[error("malformed Authorization header")]
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, SystemClock};
    use crate::devkit::{Issuer, TokenRequest};
    use std::time::Duration;

    fn policy(cache_size: usize) -> TokenPolicy {
        TokenPolicy {
            leeway: Duration::from_secs(30),
            max_lifetime: None,
            max_auth_age: None,
            required_claims: vec![],
            cache_size,
            max_token_bytes: 8192,
        }
    }

    async fn verifier_for(
        issuer: &crate::devkit::IssuerHandle,
        clock: ManualClock,
        cache_size: usize,
    ) -> Verifier {
        let config = IssuerConfig {
            issuer: issuer.issuer_url().to_string(),
            audiences: vec!["erp-api".into()],
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            keys: crate::config::KeySource::JwksUri(url::Url::parse(&issuer.jwks_url()).unwrap()),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(60),
            http_timeout: Duration::from_secs(5),
            logout_audiences: vec!["erp-web".into()],
            require_logout_typ: false,
            access_token_types: vec!["at+jwt".into(), "jwt".into(), "".into()],
        };
        let verifier = Verifier::new(&[config], policy(cache_size), Arc::new(clock)).unwrap();
        verifier.issuers()[0].refresh().await.unwrap();
        verifier
    }

    #[tokio::test]
    async fn verified_tokens_are_cached_until_they_expire() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let verifier = verifier_for(&issuer, clock.clone(), 100).await;
        let token = issuer.mint(&TokenRequest::new("alice").expires_in(60));

        let (first, how) = verifier.verify(&token).await.unwrap();
        assert_eq!(how, Verified::Checked);
        assert_eq!(first.claims.subject(), Some("alice"));
        let (second, how) = verifier.verify(&token).await.unwrap();
        assert_eq!(how, Verified::Cached);
        assert_eq!(first, second);

        // Past exp + leeway the cached verification no longer counts.
        clock.advance(Duration::from_secs(60 + 31));
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            TokenError::Expired
        );
    }

    #[tokio::test]
    async fn a_zero_cache_checks_every_time_and_es256_verifies() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let verifier = verifier_for(&issuer, clock, 0).await;
        let token = issuer.mint(&TokenRequest::new("erin").alg(Algorithm::ES256));
        for _ in 0..2 {
            assert_eq!(verifier.verify(&token).await.unwrap().1, Verified::Checked);
        }
        let oversized = "a".repeat(9000);
        assert_eq!(
            verifier.verify(&oversized).await.unwrap_err(),
            TokenError::TooLarge
        );
    }

    #[tokio::test]
    async fn a_retaining_verifier_checks_every_claim_and_keeps_only_the_named() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let verifier = verifier_for(&issuer, clock, 100)
            .await
            .retaining(["sub".to_string(), "email".to_string()].into());
        let token = issuer.mint(&TokenRequest::new("alice").claim("email", "a@example.com"));
        let (principal, _) = verifier.verify(&token).await.unwrap();
        assert_eq!(
            principal.claims.names().collect::<Vec<_>>(),
            ["email", "sub"]
        );
        // The jti was read before the other claims were dropped.
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(Some(principal.token_key.as_str()), payload["jti"].as_str());
        // Dropping happens after the checks: a wrong audience still fails.
        let other = issuer.mint(&TokenRequest::new("alice").audience("elsewhere"));
        assert_eq!(
            verifier.verify(&other).await.unwrap_err(),
            TokenError::WrongAudience
        );
    }

    #[tokio::test]
    async fn only_access_tokens_are_accepted_whatever_their_audience() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let verifier = verifier_for(&issuer, clock, 100).await;
        let event = serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} });
        let not_access_tokens = [
            (
                "a Keycloak ID token",
                TokenRequest::new("alice").claim("typ", "ID"),
            ),
            (
                "a Keycloak logout token",
                TokenRequest::new("alice").claim("typ", "Logout"),
            ),
            (
                "logout+jwt typed",
                TokenRequest::new("alice").typ(Some("logout+jwt")),
            ),
            (
                "logout+jwt with the prefix",
                TokenRequest::new("alice").typ(Some("Application/Logout+JWT")),
            ),
            (
                "id+jwt typed",
                TokenRequest::new("alice").typ(Some("id+jwt")),
            ),
            (
                "events, no typ",
                TokenRequest::new("alice").typ(None).claim("events", event),
            ),
            (
                "an ID token typed JWT",
                TokenRequest::new("alice").claim("nonce", "n-1"),
            ),
            (
                "at_hash typed JWT",
                TokenRequest::new("alice").claim("at_hash", "x"),
            ),
            // Keycloak's `Bearer` is not in the default list.
            ("typ Bearer", TokenRequest::new("alice").typ(Some("Bearer"))),
            ("typ JOSE", TokenRequest::new("alice").typ(Some("JOSE"))),
        ];
        for (what, request) in not_access_tokens {
            let error = verifier.verify(&issuer.mint(&request)).await.unwrap_err();
            assert!(
                matches!(error, TokenError::NotAnAccessToken(_)),
                "{what}: {error:?}"
            );
            assert!(
                error.to_string().starts_with("not an access token"),
                "{what}"
            );
        }
        let keycloak = TokenRequest::new("alice").claim("typ", "Bearer");
        assert!(verifier.verify(&issuer.mint(&keycloak)).await.is_ok());
        for typ in [
            Some("at+jwt"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
            Some("JWT"),
            None,
        ] {
            let token = issuer.mint(&TokenRequest::new("alice").typ(typ));
            assert!(verifier.verify(&token).await.is_ok(), "{typ:?} refused");
        }
    }

    #[tokio::test]
    async fn access_token_types_are_configurable_but_never_admit_logout_tokens() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let mut config = verifier_for(&issuer, clock.clone(), 0).await.issuers()[0]
            .config()
            .clone();
        config.access_token_types = vec!["bearer".into()];
        let verifier = Verifier::new(&[config], policy(0), Arc::new(clock)).unwrap();
        verifier.issuers()[0].refresh().await.unwrap();
        let bearer = issuer.mint(&TokenRequest::new("alice").typ(Some("Bearer")));
        assert!(verifier.verify(&bearer).await.is_ok());
        for typ in [Some("JWT"), None] {
            let token = issuer.mint(&TokenRequest::new("alice").typ(typ));
            assert!(
                matches!(
                    verifier.verify(&token).await,
                    Err(TokenError::NotAnAccessToken(_))
                ),
                "{typ:?} accepted"
            );
        }
        let id_token = issuer.mint(
            &TokenRequest::new("alice")
                .typ(Some("Bearer"))
                .claim("nonce", "n"),
        );
        assert!(matches!(
            verifier.verify(&id_token).await,
            Err(TokenError::NotAnAccessToken(_))
        ));
    }

    #[tokio::test]
    async fn time_claims_at_the_extremes_never_wrap() {
        let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let clock = ManualClock::starting_at(SystemClock.now_ms());
        let now = clock.now_secs();
        let verifier = verifier_for(&issuer, clock, 0).await;
        let with = |name: &str, value: serde_json::Value| {
            issuer.mint(&TokenRequest::new("alice").claim(name, value))
        };
        // Far-future expiries are valid (no lifetime cap configured here).
        for exp in [
            serde_json::json!(1u64 << 53),
            serde_json::json!(1e16),
            serde_json::json!(2e16),
            serde_json::json!(1e300),
            serde_json::json!(i64::MAX),
            serde_json::json!(u64::MAX),
        ] {
            let (principal, _) = verifier.verify(&with("exp", exp.clone())).await.unwrap();
            assert!(principal.expires_at > now, "{exp}");
        }
        for exp in [
            serde_json::json!(-1),
            serde_json::json!(i64::MIN),
            serde_json::json!(-1e300),
        ] {
            assert_eq!(
                verifier
                    .verify(&with("exp", exp.clone()))
                    .await
                    .unwrap_err(),
                TokenError::Expired,
                "{exp}"
            );
        }
        for iat in [
            serde_json::json!(1u64 << 53),
            serde_json::json!(1e16),
            serde_json::json!(1e300),
        ] {
            assert_eq!(
                verifier
                    .verify(&with("iat", iat.clone()))
                    .await
                    .unwrap_err(),
                TokenError::IssuedInFuture,
                "{iat}"
            );
        }
        for iat in [
            serde_json::json!(-1),
            serde_json::json!(-1e300),
            serde_json::json!(0.5),
        ] {
            assert!(
                verifier.verify(&with("iat", iat.clone())).await.is_ok(),
                "{iat}"
            );
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(b"bearer abc"), Ok("abc"));
        assert_eq!(bearer_token(b"BEARER abc"), Ok("abc"));
        assert_eq!(
            bearer_token(b"Basic dXNlcjpwdw=="),
            Err(BearerError::NotBearer)
        );
        assert_eq!(bearer_token(b"Bearer"), Err(BearerError::NotBearer));
        assert_eq!(bearer_token(b"Bearer "), Err(BearerError::Malformed));
        assert_eq!(bearer_token(b"Bearer a b"), Err(BearerError::Malformed));
        assert_eq!(bearer_token(b"Bearer \xff"), Err(BearerError::Malformed));
    }

    #[test]
    fn compact_jws_shape_is_checked() {
        assert!(CompactJws::split("a.b.c").is_ok());
        for bad in [
            "",
            "a.b",
            "a..c",
            "a.b.",
            ".b.c",
            "a.b.c.d.e",
            "a.b=.c",
            "a.b.c d",
        ] {
            assert!(
                matches!(CompactJws::split(bad), Err(TokenError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn none_and_unknown_algorithms_are_malformed_headers() {
        for alg in ["none", "None", "NONE", "XS256"] {
            let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}"));
            let token = format!("{header}.e30.c2ln");
            let parts = CompactJws::split(&token).unwrap();
            assert!(
                matches!(parts.header(), Err(TokenError::Malformed(_))),
                "{alg}"
            );
        }
    }

    #[test]
    fn duplicate_claims_are_malformed() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"a","sub":"b"}"#);
        let token = format!("e30.{payload}.c2ln");
        let parts = CompactJws::split(&token).unwrap();
        assert!(matches!(parts.claims(), Err(TokenError::Malformed(_))));
    }
}
