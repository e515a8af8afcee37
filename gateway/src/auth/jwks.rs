//! An issuer's signing keys: where they come from, how they are cached and
//! when they are fetched again.
//!
//! Keys are loaded from OIDC discovery, a `jwks_uri` or a local `jwks_file`,
//! and held in an [`ArcSwapOption`] so the hot path reads them without a lock.
//! They are refreshed periodically (by the server's JWKS background service);
//! a failed refresh keeps the old keys (stale-if-error). A token whose `kid`
//! is unknown triggers one refetch, single-flight and at most once per
//! `jwks_min_refetch`, so a key rotation is picked up at once while a flood of
//! made-up `kid`s cannot turn the gateway into a load generator against the
//! issuer.
//!
//! Keys the gateway cannot use safely are dropped when loading: symmetric
//! (`oct`) keys, keys marked for encryption, and keys of a kind we do not know.
//! So are weak public keys ([`KeyRejection`]): an RSA modulus under 2048 bits
//! or an even or tiny exponent, an EC point that is not on its curve, and an
//! Ed25519 key of small order — the identity point, for one, "verifies" the
//! signature `R = identity, S = 0` over any message. Each refused key is
//! logged with its `kid` when the document is loaded.
//!
//! Each key is parsed into an aws-lc public key once per load, for every
//! algorithm it may verify, so a signature check does not rebuild the key (for
//! RSA, its Montgomery context) on every token.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;

use crate::clock::{SharedClock, UnixMillis};
use crate::config::{IssuerConfig, KeySource};

/// Why keys could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The discovery or JWKS request failed.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The JWKS file could not be read.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The document is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

/// Why one key of a JWKS document was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// Not a signature key the gateway may use (`oct`, `use: enc`, unknown).
    #[error("not an asymmetric signature key")]
    NotForSignatures,
    /// The JWK does not parse or its material does not decode.
    #[error("malformed key")]
    Malformed,
    /// An RSA modulus below the floor.
    #[error("RSA modulus of {bits} bits (at least {min} required)")]
    WeakRsaModulus {
        /// The modulus size.
        bits: usize,
        /// The floor.
        min: usize,
    },
    /// An RSA public exponent that is even or below 3.
    #[error("RSA public exponent is even or below 3")]
    WeakRsaExponent,
    /// An EC point that is not on its curve (or a wrong-size coordinate).
    #[error("EC point is not on the curve")]
    InvalidPoint,
    /// An Ed25519 public key of small order.
    #[error("Ed25519 public key of small order")]
    SmallOrder,
}

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One key that may verify signatures.
#[derive(Clone)]
pub struct VerificationKey {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    /// The key family (RSA, EC, Ed).
    pub family: AlgorithmFamily,
    /// The curve of an EC or OKP key.
    pub curve: Option<EllipticCurve>,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<String>,
    /// The key, parsed once for each algorithm it [fits](Self::fits).
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("curve", &self.curve)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Whether this key may verify a signature made with `alg`: same family,
    /// the curve the algorithm requires, and the JWK's own `alg` if it has one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.family != alg.family() || alg.family() == AlgorithmFamily::Hmac {
            return false;
        }
        let curve_ok = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        };
        curve_ok && self.alg.as_deref().is_none_or(|a| a == algorithm_name(alg))
    }

    /// Whether `signature` (raw bytes, not base64) is a valid `alg`
    /// signature of `message` under this key. False for an algorithm the key
    /// does not fit.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

/// The aws-lc parameters for `alg`. RSA accepts 2048- to 8192-bit keys;
/// ECDSA signatures are in the fixed-width `r || s` form JWS uses (RFC 7518
/// §3.4). `None` for HMAC and anything unknown.
fn lc_parameters(alg: Algorithm) -> Option<LcParameters> {
    use LcParameters::{Point, Rsa};
    Some(match alg {
        Algorithm::RS256 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Rsa(&lc::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Rsa(&lc::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Rsa(&lc::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Point(&lc::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Point(&lc::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Point(&lc::ED25519),
        _ => return None,
    })
}

enum LcParameters {
    Rsa(&'static lc::RsaParameters),
    Point(&'static dyn lc::VerificationAlgorithm),
}

/// The public key material of a JWK, decoded from base64url.
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed EC point (`04 || x || y`) or a raw Ed25519 key.
    Point(Vec<u8>),
}

impl KeyMaterial {
    fn parse_for(&self, alg: Algorithm) -> Option<ParsedPublicKey> {
        match (self, lc_parameters(alg)?) {
            (KeyMaterial::Rsa { n, e }, LcParameters::Rsa(params)) => {
                RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(params)
                    .ok()
            }
            (KeyMaterial::Point(bytes), LcParameters::Point(params)) => {
                ParsedPublicKey::new(params, bytes).ok()
            }
            _ => None,
        }
    }
}

/// Every algorithm a key may be parsed for.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The JOSE name of an algorithm (`RS256`, …).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Algorithms added to jsonwebtoken later are unknown here, and an
        // unknown name never matches an allow-list entry or a key.
        _ => "unknown",
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    /// Keys in the document that were dropped (unusable or malformed).
    pub skipped: usize,
    /// When it was loaded.
    pub loaded_ms: UnixMillis,
}

impl KeySet {
    /// Parses a JWKS document, keeping only keys fit for signature checks.
    /// A malformed key is skipped, not fatal, so one odd key at the issuer
    /// does not lock everybody out.
    pub fn parse(document: &[u8], loaded_ms: UnixMillis) -> Result<Self, JwksError> {
        let value: Value = serde_json::from_slice(document)
            .map_err(|e| JwksError::Invalid(format!("JWKS is not JSON: {e}")))?;
        let Some(entries) = value.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::Invalid("JWKS has no `keys` array".into()));
        };
        let mut set = KeySet {
            loaded_ms,
            ..KeySet::default()
        };
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
            match serde_json::from_value::<Jwk>(entry.clone())
                .map_err(|_| KeyRejection::Malformed)
                .and_then(|jwk| usable_key(&jwk))
            {
                Ok(key) => set.keys.push(key),
                Err(KeyRejection::NotForSignatures) => {
                    tracing::debug!(kid, "JWKS key skipped: not a signature key");
                    set.skipped += 1;
                }
                Err(reason) => {
                    tracing::warn!(kid, reason = %reason, "JWKS key refused");
                    set.skipped += 1;
                }
            }
        }
        Ok(set)
    }

    /// Keys that may verify a token signed with `alg` and naming `kid`
    /// (all fitting keys when the token names none).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(move |k| k.fits(alg))
    }

    /// Whether a key with this `kid` exists (whatever its type).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn usable_key(jwk: &Jwk) -> Result<VerificationKey, KeyRejection> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return Err(KeyRejection::NotForSignatures);
    }
    let b64 = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| KeyRejection::Malformed)
    };
    let (family, curve, material) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let (n, e) = (b64(&p.n)?, b64(&p.e)?);
            check_rsa(&n, &e, MIN_RSA_BITS)?;
            (AlgorithmFamily::Rsa, None, KeyMaterial::Rsa { n, e })
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let mut point = vec![0x04];
            point.extend(b64(&p.x)?);
            point.extend(b64(&p.y)?);
            (
                AlgorithmFamily::Ec,
                Some(p.curve.clone()),
                KeyMaterial::Point(point),
            )
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            let x = b64(&p.x)?;
            if p.curve == EllipticCurve::Ed25519 && is_small_order_ed25519(&x) {
                return Err(KeyRejection::SmallOrder);
            }
            (
                AlgorithmFamily::Ed,
                Some(p.curve.clone()),
                KeyMaterial::Point(x),
            )
        }
        // Symmetric keys never verify anything here: the gateway does not
        // share secrets with issuers, and an `oct` key in a public JWKS is
        // exactly what an HMAC key-confusion attack needs.
        _ => return Err(KeyRejection::NotForSignatures),
    };
    let mut key = VerificationKey {
        kid: jwk.common.key_id.clone(),
        family,
        curve,
        alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
        parsed: Vec::new(),
    };
    for alg in ASYMMETRIC {
        if key.fits(alg) {
            // A key that does not parse for an algorithm it fits (a point
            // off the curve — aws-lc checks the curve equation and that the
            // point is not the identity, which the uncompressed form cannot
            // encode anyway —, a malformed modulus) is malformed as a whole.
            let parsed = material.parse_for(alg).ok_or(match family {
                AlgorithmFamily::Ec => KeyRejection::InvalidPoint,
                _ => KeyRejection::Malformed,
            })?;
            key.parsed.push((alg, parsed));
        }
    }
    if key.parsed.is_empty() {
        return Err(KeyRejection::NotForSignatures);
    }
    Ok(key)
}

/// Refuses an RSA key whose modulus is below `min_bits` or whose public
/// exponent is even or below 3 (e = 1 makes the "signature" the message).
fn check_rsa(n: &[u8], e: &[u8], min_bits: usize) -> Result<(), KeyRejection> {
    let bits = |v: &[u8]| {
        let v = &v[v.iter().position(|&b| b != 0).unwrap_or(v.len())..];
        v.first().map_or(0, |&top| {
            (v.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
        })
    };
    let modulus = bits(n);
    if modulus < min_bits {
        return Err(KeyRejection::WeakRsaModulus {
            bits: modulus,
            min: min_bits,
        });
    }
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || bits(e) < 2 {
        return Err(KeyRejection::WeakRsaExponent);
    }
    Ok(())
}

/// The eight points of small order on edwards25519, encoded with the sign
/// bit (bit 255) cleared, plus the non-canonical encodings of y = 0 and
/// y = 1 (y + p still fits in 255 bits). Any key matching one of these
/// with either sign bit has order 1, 2, 4 or 8 (the list libsodium checks).
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = [
    // y = 0 (order 4, both signs of x)
    [0; 32],
    // y = 1: the identity (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 = -1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p, non-canonical 0 (order 4)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p + 1, non-canonical 1 (order 1)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether a 32-byte Ed25519 public key is a point of small order, in any
/// encoding (the sign bit is ignored: it selects x, not the order class).
fn is_small_order_ed25519(key: &[u8]) -> bool {
    let Ok(mut key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    key[31] &= 0x7f;
    ED25519_SMALL_ORDER.contains(&key)
}

/// The keys of one issuer, with their refresh logic.
pub struct IssuerKeys {
    config: Arc<IssuerConfig>,
    current: ArcSwapOption<KeySet>,
    /// Serialises fetches; holds when the last refetch for an unknown key
    /// started (periodic refreshes do not count against that rate limit).
    fetch_gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped on every successful load, so waiters of a single-flight fetch
    /// see that someone else already refreshed.
    generation: AtomicU64,
    failures: AtomicU64,
    http: reqwest::Client,
    clock: SharedClock,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.config.issuer)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Keys for an issuer, not loaded yet.
    pub fn new(config: Arc<IssuerConfig>, clock: SharedClock) -> Result<Self, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            // Fetches are rare and may run on any of the server's runtimes;
            // pooled connections would be tied to the runtime that opened them.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("session-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            current: ArcSwapOption::empty(),
            fetch_gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            http,
            clock,
        })
    }

    /// The issuer's configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The current keys, if they were ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Whether keys were ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Failed fetches so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Fetches the keys now (periodic refresh). On failure the old keys stay.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let _gate = self.fetch_gate.lock().await;
        self.fetch_and_store().await
    }

    /// Fetches again because a token named a key we do not have. Returns the
    /// keys to retry with, or `None` when the refetch is rate-limited or fails.
    /// Concurrent callers share one fetch.
    pub async fn refetch_for_unknown_key(&self) -> Option<Arc<KeySet>> {
        let seen = self.generation.load(Ordering::Acquire);
        let mut gate = self.fetch_gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Someone refreshed while we waited for the gate.
            return self.keys();
        }
        if let Some(last) = *gate
            && last.elapsed() < self.config.jwks_min_refetch
        {
            return None;
        }
        *gate = Some(Instant::now());
        match self.fetch_and_store().await {
            Ok(keys) => Some(keys),
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "JWKS refetch failed");
                None
            }
        }
    }

    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, JwksError> {
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                if set.skipped > 0 {
                    tracing::warn!(
                        issuer = %self.config.issuer,
                        skipped = set.skipped,
                        "JWKS holds keys that cannot verify signatures; they are ignored"
                    );
                }
                self.current.store(Some(Arc::clone(&set)));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(set)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let document = match &self.config.keys {
            KeySource::JwksFile(path) => read_file(path).await?,
            KeySource::JwksUri(url) => self.get(url.as_str()).await?,
            KeySource::Discovery(url) => {
                let jwks_uri = self.discover(url.as_str()).await?;
                self.get(&jwks_uri).await?
            }
        };
        KeySet::parse(&document, self.clock.now_ms())
    }

    async fn discover(&self, url: &str) -> Result<String, JwksError> {
        let body = self.get(url).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            JwksError::Invalid(format!("discovery document {url} is not JSON: {e}"))
        })?;
        // OpenID Connect Discovery §4.3: the document must name the issuer we
        // asked about, or we would trust keys of someone else.
        let named = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if named != self.config.issuer {
            return Err(JwksError::Invalid(format!(
                "discovery document {url} names issuer `{named}`, expected `{}`",
                self.config.issuer
            )));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| JwksError::Invalid(format!("discovery document {url} has no jwks_uri")))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        Ok(body.to_vec())
    }

    /// How long to wait before the next periodic refresh: the configured
    /// interval once loaded, quick retries (capped) while never loaded.
    pub fn next_refresh_in(&self, consecutive_failures: u32) -> Duration {
        if self.is_loaded() {
            return self.config.jwks_refresh;
        }
        let backoff =
            Duration::from_millis(250u64.saturating_mul(1 << consecutive_failures.min(6)));
        backoff.min(self.config.jwks_refresh)
    }
}

/// Keeps an issuer's keys fresh until `shutdown` turns true: loads them at
/// once, retries quickly while they were never loaded, then refreshes every
/// `jwks_refresh`. A failed refresh keeps the previous keys.
pub async fn keep_fresh(
    issuer: Arc<IssuerKeys>,
    metrics: Arc<crate::telemetry::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let result = issuer.refresh().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics
            .jwks_refreshes
            .with_label_values(&[issuer.config.issuer.as_str(), outcome])
            .inc();
        match result {
            Ok(keys) => {
                failures = 0;
                tracing::debug!(issuer = %issuer.config.issuer, keys = keys.len(), "JWKS loaded");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    issuer = %issuer.config.issuer,
                    %error,
                    stale = issuer.is_loaded(),
                    "JWKS refresh failed"
                );
            }
        }
        let wait = issuer.next_refresh_in(failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, JwksError> {
    tokio::fs::read(path).await.map_err(|e| JwksError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa_jwk(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"})
    }

    #[test]
    fn keeps_signature_keys_and_drops_symmetric_and_encryption_keys() {
        let doc = json!({"keys": [
            rsa_jwk("a"),
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "XYZ", "kid": "odd"},
            {"kid": "broken"}
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes(), 1).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped, 4);
        assert!(set.has_kid("a"));
        assert!(!set.has_kid("h"));
    }

    #[test]
    fn candidates_respect_kid_family_and_pinned_alg() {
        let doc = json!({"keys": [rsa_jwk("a"), rsa_jwk("b")]});
        let set = KeySet::parse(doc.to_string().as_bytes(), 1).unwrap();
        assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 2);
        // The JWKs pin RS256, so RS384 or PS256 may not use them.
        assert_eq!(set.candidates(None, Algorithm::RS384).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::PS256).count(), 0);
        // An RSA key never verifies EC or HMAC signatures.
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("zzz"), Algorithm::RS256).count(), 0);
    }

    /// A fresh P-256 key pair and its public JWK.
    fn ec_key(kid: &str) -> (aws_lc_rs::signature::EcdsaKeyPair, Value) {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!((point.len(), point[0]), (65, 0x04));
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        (pair, jwk)
    }

    #[test]
    fn parsed_keys_verify_only_their_own_algorithm() {
        let (pair, jwk) = ec_key("ec");
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes(), 1).unwrap();
        let key = set.candidates(Some("ec"), Algorithm::ES256).next().unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = pair.sign(&rng, b"header.payload").unwrap();
        assert!(key.verifies(Algorithm::ES256, b"header.payload", signature.as_ref()));
        assert!(!key.verifies(Algorithm::ES256, b"header.payloaD", signature.as_ref()));
        // Not parsed for what it does not fit, so it cannot verify there.
        for other in [Algorithm::ES384, Algorithm::RS256, Algorithm::HS256] {
            assert!(!key.verifies(other, b"header.payload", signature.as_ref()));
        }
    }

    #[test]
    fn keys_that_do_not_parse_are_skipped() {
        let (_, mut off_curve) = ec_key("off");
        let mut y = URL_SAFE_NO_PAD
            .decode(off_curve["y"].as_str().unwrap())
            .unwrap();
        y[31] ^= 1;
        off_curve["y"] = URL_SAFE_NO_PAD.encode(&y).into();
        let (_, mut wrong_curve) = ec_key("p384");
        wrong_curve["crv"] = "P-384".into();
        let doc = json!({"keys": [
            off_curve,
            wrong_curve,
            {"kty": "RSA", "kid": "bad-b64", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc-alg", "alg": "RSA-OAEP", "n": RSA_N, "e": "AQAB"},
            rsa_jwk("good")
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes(), 1).unwrap();
        assert_eq!((set.len(), set.skipped), (1, 4));
        assert!(set.has_kid("good"));
    }

    fn okp(kid: &str, x: &[u8]) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(x)})
    }

    fn rejection(jwk: Value) -> KeyRejection {
        let jwk: Jwk = serde_json::from_value(jwk).unwrap();
        usable_key(&jwk).expect_err("key refused")
    }

    /// The identity point as an Ed25519 public key.
    const IDENTITY: [u8; 32] = {
        let mut k = [0; 32];
        k[0] = 1;
        k
    };

    #[test]
    fn the_identity_key_would_verify_anything() {
        // Why small-order keys must go: aws-lc accepts R = identity, S = 0
        // under the identity key for any message.
        let key = KeyMaterial::Point(IDENTITY.to_vec())
            .parse_for(Algorithm::EdDSA)
            .expect("aws-lc parses the identity point");
        let mut forged = IDENTITY.to_vec();
        forged.extend([0; 32]);
        assert!(key.verify_sig(b"any.claims", &forged).is_ok());
        assert_eq!(rejection(okp("weak", &IDENTITY)), KeyRejection::SmallOrder);
    }

    #[test]
    fn small_order_ed25519_keys_are_refused_in_every_encoding() {
        for (i, point) in ED25519_SMALL_ORDER.iter().enumerate() {
            for sign in [0, 0x80] {
                let mut key = *point;
                key[31] |= sign;
                let doc = json!({"keys": [okp(&format!("small-{i}"), &key)]});
                let set = KeySet::parse(doc.to_string().as_bytes(), 1).unwrap();
                assert_eq!((set.len(), set.skipped), (0, 1), "{key:02x?}");
            }
        }
        // A real key stays.
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pair = Ed25519KeyPair::generate().unwrap();
        let doc = json!({"keys": [okp("real", pair.public_key().as_ref())]});
        let set = KeySet::parse(doc.to_string().as_bytes(), 1).unwrap();
        assert_eq!((set.len(), set.skipped), (1, 0));
        let key = set
            .candidates(Some("real"), Algorithm::EdDSA)
            .next()
            .unwrap();
        let signature = pair.sign(b"h.p");
        assert!(key.verifies(Algorithm::EdDSA, b"h.p", signature.as_ref()));
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        let n1024 = URL_SAFE_NO_PAD.encode([0xc5; 128]);
        assert_eq!(
            rejection(json!({"kty": "RSA", "kid": "small", "n": n1024, "e": "AQAB"})),
            KeyRejection::WeakRsaModulus {
                bits: 1024,
                min: 2048
            }
        );
        // A leading zero byte does not make a modulus bigger.
        let mut padded = vec![0u8];
        padded.extend([0xc5; 255]);
        assert!(matches!(
            rejection(json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&padded), "e": "AQAB"})),
            KeyRejection::WeakRsaModulus { bits: 2040, .. }
        ));
        for e in ["AQ", "Ag", "AAE", "AQAA"] {
            assert_eq!(
                rejection(json!({"kty": "RSA", "kid": "e", "n": RSA_N, "e": e})),
                KeyRejection::WeakRsaExponent,
                "e = {e}"
            );
        }
        assert!(usable_key(&serde_json::from_value(rsa_jwk("ok")).unwrap()).is_ok());
    }

    #[test]
    fn ec_points_off_the_curve_or_at_zero_are_refused() {
        let zero = URL_SAFE_NO_PAD.encode([0; 32]);
        assert_eq!(
            rejection(json!({"kty": "EC", "crv": "P-256", "x": zero, "y": zero})),
            KeyRejection::InvalidPoint
        );
        let (_, mut off) = ec_key("off");
        off["x"] = URL_SAFE_NO_PAD.encode([7; 32]).into();
        assert_eq!(rejection(off), KeyRejection::InvalidPoint);
    }

    #[test]
    fn rejects_documents_that_are_not_a_jwks() {
        assert!(KeySet::parse(b"not json", 1).is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}", 1).is_err());
        assert!(KeySet::parse(b"[]", 1).is_err());
    }
}
