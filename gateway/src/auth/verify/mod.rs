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
//!
//! This module holds the [`Verifier`] and its checks; `jws.rs` splits a
//! compact JWS into its parts, `access_token.rs` tells access tokens from
//! every other kind of token, and `bearer.rs` reads the `Authorization`
//! header.

mod access_token;
mod bearer;
mod jws;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use sha2::{Digest, Sha256};

use super::jwks::{IssuerKeys, KeySet, algorithm_name};
use crate::claims::Claims;
use crate::clock::SharedClock;
use crate::config::{IssuerConfig, TokenPolicy};
use crate::digest::Digest32;
pub use access_token::check_access_token_type;
pub use bearer::{BearerError, bearer_token};
use jws::CompactJws;

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
