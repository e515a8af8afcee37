//! The demo OpenID Connect issuer: discovery, JWKS, and a token endpoint that
//! mints an access token for any user name.
//!
//! The gateway trusts issuers through discovery and JWKS, so the demo issuer
//! publishes both exactly like a real provider does, and signs with the two
//! key types real providers use: RSA-2048 (`RS256`, kid `rsa-1`) and P-256
//! (`ES256`, kid `ec-1`). Keys are generated at start and never leave the
//! process.
//!
//! Besides the OIDC surface it has a few `/dev/…` endpoints for walkthroughs
//! and tests: a plain-text token for `curl`, RSA key rotation (new kid, old
//! public keys stay published, as during a real rollover), and a counter of
//! JWKS fetches so tests can check the gateway's JWKS cache.
//!
//! Tests mostly mint in process: [`IssuerHandle::mint`] for ordinary tokens
//! described by a [`TokenRequest`] (claims can be overridden or removed), and
//! [`IssuerHandle::sign_raw`] for tokens with an arbitrary header and payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use parking_lot::RwLock;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::RunningServer;

/// `client_id` (and `azp`) of a token when the request names none.
pub const DEFAULT_CLIENT_ID: &str = "erp-web";
/// `scope` of a token when the request names none.
pub const DEFAULT_SCOPE: &str = "erp.read erp.write";
/// `aud` of a token when the request names none.
pub const DEFAULT_AUDIENCE: &str = "erp-api";
/// Lifetime of a token, in seconds, when the request names none.
pub const DEFAULT_EXPIRES_IN: i64 = 300;

/// The largest `expires_in` (in either direction) the token endpoint accepts:
/// ten years, far beyond any test, and far from integer overflow.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// The algorithms the HTTP token endpoints mint with: those of the two keys.
const HTTP_ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
];

/// What can go wrong inside the issuer.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The issuer holds no key for this algorithm (EdDSA, ES384).
    #[error("the devkit issuer has no key for {0:?}")]
    UnsupportedAlgorithm(Algorithm),
    /// Generating or encoding a key failed.
    #[error("generating a devkit issuer key: {0}")]
    KeyGeneration(String),
    /// `jsonwebtoken` refused to sign.
    #[error("signing a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// The demo OpenID Connect issuer; [`Issuer::start`] runs one and returns its
/// [`IssuerHandle`].
#[derive(Debug)]
pub struct Issuer;

impl Issuer {
    /// Generates the keys (RSA-2048 `rsa-1`, P-256 `ec-1`), binds `bind`
    /// (port 0 picks a free port) and serves the issuer on the current tokio
    /// runtime until the handle is shut down or dropped.
    ///
    /// The issuer URL is `http://<bound address>`, with `127.0.0.1` (or
    /// `[::1]`) standing in for an unspecified bind address.
    ///
    /// # Errors
    ///
    /// If `bind` cannot be bound (the message names the address) or key
    /// generation fails.
    pub async fn start(bind: SocketAddr) -> anyhow::Result<IssuerHandle> {
        let (listener, addr) = RunningServer::bind(bind, "the devkit issuer").await?;
        let (rsa, ec) = tokio::task::spawn_blocking(|| {
            Ok::<_, IssuerError>((RsaKey::generate()?, EcKey::generate()?))
        })
        .await??;
        let host = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let issuer_url = format!("http://{}", SocketAddr::new(host, addr.port()));
        let state = Arc::new(IssuerState {
            sid_salt: uuid::Uuid::new_v4(),
            keys: RwLock::new(KeyRing {
                rsa: vec![rsa.with_kid("rsa-1")],
                ec: ec.with_kid("ec-1"),
            }),
            jwks_fetches: AtomicU64::new(0),
            issuer_url,
        });
        let server = RunningServer::serve(listener, addr, router(&state), "issuer");
        tracing::info!(issuer = %state.issuer_url, "devkit issuer started");
        Ok(IssuerHandle {
            state,
            addr,
            server: Some(server),
        })
    }
}

fn router(state: &Arc<IssuerState>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/dev/token", get(dev_token))
        .route("/dev/rotate", post(dev_rotate))
        .route("/dev/requests", get(dev_requests))
        .with_state(Arc::clone(state))
}

/// A running demo issuer: its URLs, in-process minting for tests, and its
/// lifecycle. Dropping it stops the server (without waiting);
/// [`IssuerHandle::shutdown`] stops it and waits.
pub struct IssuerHandle {
    state: Arc<IssuerState>,
    addr: SocketAddr,
    /// `None` while suspended.
    server: Option<RunningServer>,
}

impl std::fmt::Debug for IssuerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerHandle")
            .field("issuer_url", &self.state.issuer_url)
            .finish_non_exhaustive()
    }
}

impl IssuerHandle {
    /// The issuer URL, `iss` of every token: `http://127.0.0.1:PORT`, no
    /// trailing slash. Discovery is at `<issuer_url>/.well-known/openid-configuration`.
    pub fn issuer_url(&self) -> &str {
        &self.state.issuer_url
    }

    /// The JWKS URL, `<issuer_url>/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.issuer_url)
    }

    /// The token endpoint, `<issuer_url>/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.state.issuer_url)
    }

    /// The address the issuer listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many times `GET /jwks` has been served.
    pub fn jwks_fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::Relaxed)
    }

    /// The JWKS document as `GET /jwks` serves it, without counting a fetch
    /// (for configurations that name a `jwks_file`).
    pub fn jwks(&self) -> Value {
        self.state.jwks()
    }

    /// The current RSA public key as SPKI PEM (for peers that verify with a
    /// PEM file, such as HAProxy's `jwt_verify` in the benchmarks).
    pub fn rsa_public_pem(&self) -> String {
        self.state.keys.read().current_rsa().key.public_pem.clone()
    }

    /// Generates a new RSA key (`rsa-2`, `rsa-3`, …), makes it the key for
    /// the RSA algorithms, keeps every older public key in the JWKS, and
    /// returns the new kid.
    ///
    /// # Errors
    ///
    /// If generating the key fails.
    pub async fn rotate(&self) -> Result<String, IssuerError> {
        rotate(&self.state).await
    }

    /// The `sid` claim of `username`'s tokens: stable for this issuer's
    /// lifetime, different between issuers (back-channel logout tests).
    pub fn sid_for(&self, username: &str) -> String {
        self.state.sid_for(username)
    }

    /// The header [`IssuerHandle::mint`] uses for `alg`: `typ` JWT and the kid
    /// of the current key for that algorithm (none for algorithms without a
    /// key).
    pub fn header(&self, alg: Algorithm) -> Header {
        self.state.header(alg)
    }

    /// The claims [`IssuerHandle::mint`] would sign for `req`, as of now,
    /// with a fresh `jti`.
    pub fn claims(&self, req: &TokenRequest) -> Value {
        Value::Object(self.state.claims(req, unix_now()))
    }

    /// Mints the token `req` describes, signed with the current key for
    /// `req.alg`.
    ///
    /// # Panics
    ///
    /// If the issuer has no key for `req.alg` (EdDSA, ES384): a mistake in the
    /// calling test, not a runtime condition.
    pub fn mint(&self, req: &TokenRequest) -> String {
        let mut header = self.header(req.alg);
        header.typ = req.typ.clone();
        self.sign_raw(&header, &self.claims(req))
    }

    /// Signs `claims` under `header` exactly as given (kid, typ and all) with
    /// the current key for `header.alg`: the RSA key for RS256/384/512 and
    /// PS256/384/512, the P-256 key for ES256.
    ///
    /// HS256/384/512 are signed with the current RSA *public* key (its SPKI
    /// PEM) as the HMAC secret: the classic algorithm-confusion forgery, which
    /// the gateway must refuse.
    ///
    /// # Panics
    ///
    /// If the issuer has no key for `header.alg` (EdDSA, ES384); see
    /// [`IssuerHandle::try_sign_raw`] for the fallible form.
    pub fn sign_raw(&self, header: &Header, claims: &Value) -> String {
        match self.try_sign_raw(header, claims) {
            Ok(token) => token,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`IssuerHandle::sign_raw`], returning an error instead of panicking.
    ///
    /// # Errors
    ///
    /// [`IssuerError::UnsupportedAlgorithm`] if the issuer has no key for
    /// `header.alg`, [`IssuerError::Signing`] if signing fails.
    pub fn try_sign_raw(&self, header: &Header, claims: &Value) -> Result<String, IssuerError> {
        self.state.sign(header, claims)
    }

    /// Signs a header and a payload given as raw bytes, which need not be
    /// JSON, UTF-8 or free of duplicate members, with the current key for
    /// `alg` (the same keys as [`IssuerHandle::sign_raw`]): for tokens no
    /// serializer would produce, such as duplicate claims or deeply nested
    /// JSON that the gateway must refuse although the signature is genuine.
    ///
    /// # Errors
    ///
    /// [`IssuerError::UnsupportedAlgorithm`] if the issuer has no key for
    /// `alg`, [`IssuerError::Signing`] if signing fails.
    pub fn sign_bytes(
        &self,
        alg: Algorithm,
        header: &[u8],
        payload: &[u8],
    ) -> Result<String, IssuerError> {
        self.state.sign_bytes(alg, header, payload)
    }

    /// Stops the server and waits until it has ended.
    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.stop().await;
        }
    }

    /// Stops serving HTTP (discovery, JWKS, token endpoints) but keeps the
    /// keys and the address: an identity-provider outage. In-process minting
    /// still works. [`IssuerHandle::resume`] brings the same issuer back.
    pub async fn suspend(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        tracing::info!(issuer = %self.state.issuer_url, "devkit issuer suspended");
    }

    /// Serves again on the same address, with the same keys, after
    /// [`IssuerHandle::suspend`] (does nothing while serving).
    ///
    /// # Errors
    ///
    /// If the address cannot be bound again (another process took the port).
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.server.is_none() {
            let (listener, addr) = RunningServer::bind(self.addr, "the devkit issuer").await?;
            self.server = Some(RunningServer::serve(
                listener,
                addr,
                router(&self.state),
                "issuer",
            ));
            tracing::info!(issuer = %self.state.issuer_url, "devkit issuer resumed");
        }
        Ok(())
    }
}

/// The description of a token for [`IssuerHandle::mint`]; the fields mirror
/// the `POST /token` form. Build it with [`TokenRequest::new`] and the
/// builder methods.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    /// `sub`.
    pub username: String,
    /// `client_id` and `azp`.
    pub client_id: String,
    /// `scope`, space-separated.
    pub scope: String,
    /// `exp - iat` in seconds; negative for a token that is already expired.
    pub expires_in: i64,
    /// The signing algorithm (and so the key).
    pub alg: Algorithm,
    /// `aud`.
    pub audience: String,
    /// Claims merged over the defaults: a value replaces the default claim of
    /// that name, `null` removes it.
    pub extra: Map<String, Value>,
    /// The `typ` header; `None` leaves it out.
    pub typ: Option<String>,
}

impl TokenRequest {
    /// A token for `username` with the defaults: client [`DEFAULT_CLIENT_ID`],
    /// scope [`DEFAULT_SCOPE`], audience [`DEFAULT_AUDIENCE`],
    /// [`DEFAULT_EXPIRES_IN`] seconds, RS256.
    #[must_use]
    pub fn new(username: impl Into<String>) -> Self {
        TokenRequest {
            username: username.into(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            expires_in: DEFAULT_EXPIRES_IN,
            alg: Algorithm::RS256,
            audience: DEFAULT_AUDIENCE.to_owned(),
            extra: Map::new(),
            typ: Some("JWT".to_owned()),
        }
    }

    /// Sets the `typ` header (`JWT` by default): `at+jwt`, `logout+jwt`,
    /// `Bearer` as Keycloak sends it, or `None` for no `typ` at all.
    #[must_use]
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(str::to_owned);
        self
    }

    /// Sets `client_id` (and `azp`).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sets `scope`.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Sets the lifetime in seconds; negative means already expired.
    #[must_use]
    pub fn expires_in(mut self, seconds: i64) -> Self {
        self.expires_in = seconds;
        self
    }

    /// Sets the signing algorithm.
    #[must_use]
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Sets `aud`.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Sets claim `name` to `value`, replacing a default claim of that name.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Leaves claim `name` out of the token.
    #[must_use]
    pub fn without_claim(mut self, name: impl Into<String>) -> Self {
        self.extra.insert(name.into(), Value::Null);
        self
    }
}

/// The state the handle and the HTTP handlers share.
struct IssuerState {
    issuer_url: String,
    /// Mixed into `sid` so that two issuers give the same user different sids.
    sid_salt: uuid::Uuid,
    keys: RwLock<KeyRing>,
    jwks_fetches: AtomicU64,
}

/// The signing keys. The last RSA key signs; the older ones stay published.
struct KeyRing {
    rsa: Vec<Kid<RsaKey>>,
    ec: Kid<EcKey>,
}

impl KeyRing {
    fn current_rsa(&self) -> &Kid<RsaKey> {
        // `rsa` starts with one key and only grows.
        &self.rsa[self.rsa.len() - 1]
    }
}

/// A key and its kid.
struct Kid<K> {
    kid: String,
    key: K,
}

/// An RSA private key in the form `jsonwebtoken` signs with, and the public
/// parts the JWKS and the HMAC-confusion forgery need.
struct RsaKey {
    encoding: EncodingKey,
    n: String,
    e: String,
    public_pem: String,
}

impl RsaKey {
    fn generate() -> Result<Self, IssuerError> {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        let public = private.to_public_key();
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        Ok(RsaKey {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            public_pem,
        })
    }

    fn with_kid(self, kid: &str) -> Kid<Self> {
        Kid {
            kid: kid.to_owned(),
            key: self,
        }
    }
}

/// A P-256 private key in the form `jsonwebtoken` signs with (PKCS#8 DER) and
/// its public point for the JWKS.
struct EcKey {
    encoding: EncodingKey,
    x: String,
    y: String,
}

impl EcKey {
    fn generate() -> Result<Self, IssuerError> {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| IssuerError::KeyGeneration(e.to_string()))?;
        let point = secret.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(IssuerError::KeyGeneration(
                "the P-256 public key has no affine coordinates".into(),
            ));
        };
        Ok(EcKey {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        })
    }

    fn with_kid(self, kid: &str) -> Kid<Self> {
        Kid {
            kid: kid.to_owned(),
            key: self,
        }
    }
}

impl IssuerState {
    fn jwks(&self) -> Value {
        let keys = self.keys.read();
        let mut published: Vec<Value> = keys
            .rsa
            .iter()
            .map(|k| {
                json!({
                    "kty": "RSA",
                    "kid": k.kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": k.key.n,
                    "e": k.key.e,
                })
            })
            .collect();
        published.push(json!({
            "kty": "EC",
            "kid": keys.ec.kid,
            "alg": "ES256",
            "use": "sig",
            "crv": "P-256",
            "x": keys.ec.key.x,
            "y": keys.ec.key.y,
        }));
        json!({ "keys": published })
    }

    fn sid_for(&self, username: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.sid_salt.as_bytes())
            .chain_update(username.as_bytes())
            .finalize();
        digest[..16]
            .iter()
            .fold(String::with_capacity(32), |mut hex, b| {
                hex.push_str(&format!("{b:02x}"));
                hex
            })
    }

    fn header(&self, alg: Algorithm) -> Header {
        let keys = self.keys.read();
        let mut header = Header::new(alg);
        header.kid = match alg {
            Algorithm::ES256 => Some(keys.ec.kid.clone()),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(keys.current_rsa().kid.clone()),
            _ => None,
        };
        header
    }

    fn claims(&self, req: &TokenRequest, now: i64) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer_url.clone().into());
        claims.insert("sub".into(), req.username.clone().into());
        claims.insert("aud".into(), req.audience.clone().into());
        claims.insert("client_id".into(), req.client_id.clone().into());
        claims.insert("azp".into(), req.client_id.clone().into());
        claims.insert("scope".into(), req.scope.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(req.expires_in).into());
        claims.insert("auth_time".into(), now.into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        claims.insert("sid".into(), self.sid_for(&req.username).into());
        for (name, value) in &req.extra {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
        claims
    }

    fn sign(&self, header: &Header, claims: &Value) -> Result<String, IssuerError> {
        let keys = self.keys.read();
        let token = match header.alg {
            Algorithm::ES256 => jsonwebtoken::encode(header, claims, &keys.ec.key.encoding)?,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                jsonwebtoken::encode(header, claims, &keys.current_rsa().key.encoding)?
            }
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = EncodingKey::from_secret(keys.current_rsa().key.public_pem.as_bytes());
                jsonwebtoken::encode(header, claims, &secret)?
            }
            other => return Err(IssuerError::UnsupportedAlgorithm(other)),
        };
        Ok(token)
    }

    fn sign_bytes(
        &self,
        alg: Algorithm,
        header: &[u8],
        payload: &[u8],
    ) -> Result<String, IssuerError> {
        let keys = self.keys.read();
        let hmac;
        let key = match alg {
            Algorithm::ES256 => &keys.ec.key.encoding,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => &keys.current_rsa().key.encoding,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                hmac = EncodingKey::from_secret(keys.current_rsa().key.public_pem.as_bytes());
                &hmac
            }
            other => return Err(IssuerError::UnsupportedAlgorithm(other)),
        };
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)?;
        Ok(format!("{message}.{signature}"))
    }

    /// Mints the token of an HTTP request.
    fn mint(&self, req: &TokenRequest) -> Result<String, IssuerError> {
        let claims = Value::Object(self.claims(req, unix_now()));
        self.sign(&self.header(req.alg), &claims)
    }
}

/// Seconds since the Unix epoch, from the wall clock: the gateway under test
/// checks `exp` against its own wall clock.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn rotate(state: &Arc<IssuerState>) -> Result<String, IssuerError> {
    let key = tokio::task::spawn_blocking(RsaKey::generate)
        .await
        .map_err(|e| IssuerError::KeyGeneration(e.to_string()))??;
    let mut keys = state.keys.write();
    let kid = format!("rsa-{}", keys.rsa.len() + 1);
    keys.rsa.push(key.with_kid(&kid));
    tracing::info!(kid = %kid, "devkit issuer rotated its RSA key");
    Ok(kid)
}

/// The parameters of `POST /token` (form) and `GET /dev/token` (query).
/// Everything is optional here so that a missing or malformed value gets an
/// OAuth-style `invalid_request` rather than a framework rejection.
#[derive(Debug, Default, Deserialize)]
struct TokenParams {
    username: Option<String>,
    /// `GET /dev/token?user=alice`.
    user: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    expires_in: Option<String>,
    alg: Option<String>,
    audience: Option<String>,
}

impl TokenParams {
    fn into_request(self) -> Result<TokenRequest, String> {
        let username = self
            .username
            .or(self.user)
            .filter(|u| !u.is_empty())
            .ok_or("`username` is required")?;
        let mut req = TokenRequest::new(username);
        if let Some(client_id) = self.client_id {
            if client_id.is_empty() {
                return Err("`client_id` must not be empty".into());
            }
            req.client_id = client_id;
        }
        if let Some(scope) = self.scope {
            req.scope = scope;
        }
        if let Some(audience) = self.audience {
            if audience.is_empty() {
                return Err("`audience` must not be empty".into());
            }
            req.audience = audience;
        }
        if let Some(expires_in) = self.expires_in {
            req.expires_in = expires_in
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|s| s.abs() <= MAX_EXPIRES_IN)
                .ok_or_else(|| {
                    format!(
                        "`expires_in` must be a whole number of seconds between \
                         -{MAX_EXPIRES_IN} and {MAX_EXPIRES_IN}"
                    )
                })?;
        }
        if let Some(alg) = self.alg {
            req.alg = Algorithm::from_str(&alg)
                .ok()
                .filter(|a| HTTP_ALGORITHMS.contains(a))
                .ok_or_else(|| {
                    format!("`alg` must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256; got `{alg}`")
                })?;
        }
        Ok(req)
    }
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let body = json!({ "error": error, "error_description": description.into() });
    (status, Json(body)).into_response()
}

fn invalid_request(description: impl Into<String>) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn server_error(error: &IssuerError) -> Response {
    tracing::warn!(%error, "devkit issuer failed");
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        error.to_string(),
    )
}

/// `GET /.well-known/openid-configuration`.
async fn discovery(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    let url = &state.issuer_url;
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["token"],
        "grant_types_supported": ["password"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid", "erp.read", "erp.write"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "jti",
            "client_id", "azp", "scope", "sid"
        ],
    }))
}

/// `GET /jwks`; counts the fetch.
async fn jwks(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    Json(state.jwks())
}

/// `POST /token`: `{access_token, token_type, expires_in, scope}`.
async fn token(
    State(state): State<Arc<IssuerState>>,
    form: Result<Form<TokenParams>, FormRejection>,
) -> Response {
    let req = match form {
        Ok(Form(params)) => params.into_request(),
        Err(rejection) => Err(rejection.body_text()),
    };
    let req = match req {
        Ok(req) => req,
        Err(description) => return invalid_request(description),
    };
    match state.mint(&req) {
        Ok(access_token) => {
            tracing::debug!(subject = %req.username, client = %req.client_id, "devkit issuer minted a token");
            let body = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": req.expires_in,
                "scope": req.scope,
            });
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(error) => server_error(&error),
    }
}

/// `GET /dev/token?user=alice`: the bare token and a newline, for
/// `TOKEN=$(curl -s …)`.
async fn dev_token(
    State(state): State<Arc<IssuerState>>,
    query: Result<Query<TokenParams>, QueryRejection>,
) -> Response {
    let req = match query {
        Ok(Query(params)) => params.into_request(),
        Err(rejection) => Err(rejection.body_text()),
    };
    let req = match req {
        Ok(req) => req,
        Err(description) => return invalid_request(description),
    };
    match state.mint(&req) {
        Ok(token) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("{token}\n"),
        )
            .into_response(),
        Err(error) => server_error(&error),
    }
}

/// `POST /dev/rotate`: `{kid}` of the new RSA signing key.
async fn dev_rotate(State(state): State<Arc<IssuerState>>) -> Response {
    match rotate(&state).await {
        Ok(kid) => Json(json!({ "kid": kid })).into_response(),
        Err(error) => server_error(&error),
    }
}

/// `GET /dev/requests`: `{jwks: n}`.
async fn dev_requests(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    Json(json!({ "jwks": state.jwks_fetches.load(Ordering::Relaxed) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    async fn start() -> anyhow::Result<IssuerHandle> {
        Issuer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Verifies `token` against the JWKS the issuer serves over HTTP.
    fn verify(jwks: &JwkSet, token: &str, issuer: &str) -> anyhow::Result<Map<String, Value>> {
        let header = jsonwebtoken::decode_header(token)?;
        let kid = header
            .kid
            .ok_or_else(|| anyhow::anyhow!("token without kid"))?;
        let jwk = jwks
            .find(&kid)
            .ok_or_else(|| anyhow::anyhow!("kid {kid} not in the JWKS"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[DEFAULT_AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &DecodingKey::from_jwk(jwk)?,
            &validation,
        )?;
        Ok(data.claims)
    }

    fn int(claims: &Map<String, Value>, name: &str) -> anyhow::Result<i64> {
        claims
            .get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| anyhow::anyhow!("claim {name} missing or not an integer"))
    }

    #[tokio::test]
    async fn discovery_and_jwks_verify_minted_tokens() -> anyhow::Result<()> {
        let issuer = start().await?;
        let url = issuer.issuer_url().to_owned();
        assert_eq!(url, format!("http://127.0.0.1:{}", issuer.addr().port()));
        let client = reqwest::Client::new();

        let discovery: Value = client
            .get(format!("{url}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(discovery["issuer"], url.as_str());
        assert_eq!(discovery["jwks_uri"], issuer.jwks_url().as_str());
        assert_eq!(discovery["token_endpoint"], issuer.token_url().as_str());

        let jwks: JwkSet = client
            .get(issuer.jwks_url())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let kids: Vec<_> = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert_eq!(kids, ["rsa-1", "ec-1"]);
        assert_eq!(issuer.jwks_fetches(), 1);

        for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
            let token = issuer.mint(&TokenRequest::new("alice").alg(alg));
            assert_eq!(
                jsonwebtoken::decode_header(&token)?.kid.as_deref(),
                Some(kid)
            );
            let claims = verify(&jwks, &token, &url)?;
            assert_eq!(claims["iss"], url.as_str());
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["aud"], DEFAULT_AUDIENCE);
            assert_eq!(claims["client_id"], DEFAULT_CLIENT_ID);
            assert_eq!(claims["azp"], DEFAULT_CLIENT_ID);
            assert_eq!(claims["scope"], DEFAULT_SCOPE);
            assert_eq!(claims["sid"], issuer.sid_for("alice").as_str());
            assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
            let iat = int(&claims, "iat")?;
            assert_eq!(int(&claims, "nbf")?, iat);
            assert_eq!(int(&claims, "auth_time")?, iat);
            assert_eq!(int(&claims, "exp")? - iat, DEFAULT_EXPIRES_IN);
        }
        issuer.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn token_endpoint_mints_and_validates() -> anyhow::Result<()> {
        let issuer = start().await?;
        let client = reqwest::Client::new();
        let jwks: JwkSet = serde_json::from_value(issuer.jwks())?;

        let response = client
            .post(issuer.token_url())
            .form(&[
                ("username", "bob"),
                ("client_id", "erp-desktop"),
                ("expires_in", "-60"),
                ("alg", "ES256"),
            ])
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await?;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], -60);
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no access_token"))?;
        // Expired: the signature is right but validation refuses it.
        let error = verify(&jwks, token, issuer.issuer_url())
            .err()
            .ok_or_else(|| anyhow::anyhow!("an expired token verified"))?;
        assert!(error.to_string().contains("ExpiredSignature"), "{error}");
        let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token)?.claims;
        assert_eq!(claims["sub"], "bob");
        assert_eq!(claims["azp"], "erp-desktop");
        assert!(int(&claims, "exp")? < int(&claims, "iat")?);

        let text = client
            .get(format!(
                "{}/dev/token?user=carol&scope=erp.read",
                issuer.issuer_url()
            ))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let token = text
            .strip_suffix('\n')
            .ok_or_else(|| anyhow::anyhow!("no trailing newline"))?;
        let claims = verify(&jwks, token, issuer.issuer_url())?;
        assert_eq!(claims["sub"], "carol");
        assert_eq!(claims["scope"], "erp.read");

        for form in [
            vec![("client_id", "erp-web")],
            vec![("username", "")],
            vec![("username", "dave"), ("expires_in", "soon")],
            vec![("username", "dave"), ("alg", "HS256")],
            vec![("username", "dave"), ("alg", "none")],
            vec![("username", "dave"), ("audience", "")],
        ] {
            let response = client.post(issuer.token_url()).form(&form).send().await?;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{form:?}");
            let body: Value = response.json().await?;
            assert_eq!(body["error"], "invalid_request", "{form:?}");
            assert!(body["error_description"].is_string(), "{form:?}");
        }
        // Not a form at all.
        let response = client
            .post(issuer.token_url())
            .json(&json!({ "username": "dave" }))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.json::<Value>().await?["error"], "invalid_request");

        issuer.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn rotation_keeps_old_keys_published() -> anyhow::Result<()> {
        let issuer = start().await?;
        let client = reqwest::Client::new();
        let old = issuer.mint(&TokenRequest::new("alice"));

        let rotated: Value = client
            .post(format!("{}/dev/rotate", issuer.issuer_url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(rotated["kid"], "rsa-2");
        assert_eq!(issuer.rotate().await?, "rsa-3");

        let new = issuer.mint(&TokenRequest::new("alice"));
        assert_eq!(
            jsonwebtoken::decode_header(&new)?.kid.as_deref(),
            Some("rsa-3")
        );
        let jwks: JwkSet = client.get(issuer.jwks_url()).send().await?.json().await?;
        let kids: Vec<_> = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert_eq!(kids, ["rsa-1", "rsa-2", "rsa-3", "ec-1"]);
        verify(&jwks, &old, issuer.issuer_url())?;
        verify(&jwks, &new, issuer.issuer_url())?;

        let counted: Value = client
            .get(format!("{}/dev/requests", issuer.issuer_url()))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(counted, json!({ "jwks": 1 }));
        issuer.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn extra_claims_override_and_remove() -> anyhow::Result<()> {
        let issuer = start().await?;
        let req = TokenRequest::new("alice")
            .client_id("batch")
            .audience("other-api")
            .claim("roles", json!(["admin"]))
            .claim("sub", "mallory")
            .without_claim("sid")
            .without_claim("nbf");
        let claims = issuer.claims(&req);
        assert_eq!(claims["sub"], "mallory");
        assert_eq!(claims["roles"], json!(["admin"]));
        assert_eq!(claims["aud"], "other-api");
        assert_eq!(claims["client_id"], "batch");
        assert!(claims.get("sid").is_none());
        assert!(claims.get("nbf").is_none());
        assert!(claims.get("exp").is_some());
        issuer.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn sign_raw_uses_the_header_as_given() -> anyhow::Result<()> {
        let issuer = start().await?;
        let jwks: JwkSet = serde_json::from_value(issuer.jwks())?;
        let claims = issuer.claims(&TokenRequest::new("alice"));

        // RS384 with the RSA key verifies against the RSA public key.
        let mut header = issuer.header(Algorithm::RS384);
        assert_eq!(header.kid.as_deref(), Some("rsa-1"));
        let token = issuer.sign_raw(&header, &claims);
        let jwk = jwks
            .find("rsa-1")
            .ok_or_else(|| anyhow::anyhow!("no rsa-1"))?;
        let mut validation = Validation::new(Algorithm::RS384);
        validation.set_audience(&[DEFAULT_AUDIENCE]);
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk)?, &validation)?;

        // An unknown kid is kept.
        header.kid = Some("nobody".into());
        let token = issuer.sign_raw(&header, &claims);
        assert_eq!(
            jsonwebtoken::decode_header(&token)?.kid.as_deref(),
            Some("nobody")
        );

        // HS256 forgery: signed with the public key as the HMAC secret.
        let token = issuer.sign_raw(&issuer.header(Algorithm::HS256), &claims);
        assert_eq!(jsonwebtoken::decode_header(&token)?.alg, Algorithm::HS256);

        assert!(matches!(
            issuer.try_sign_raw(&Header::new(Algorithm::EdDSA), &claims),
            Err(IssuerError::UnsupportedAlgorithm(Algorithm::EdDSA))
        ));
        issuer.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_closes_the_port() -> anyhow::Result<()> {
        let issuer = start().await?;
        let addr = issuer.addr();
        issuer.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn suspend_and_resume_keep_the_address_and_the_keys() -> anyhow::Result<()> {
        let mut issuer = start().await?;
        let addr = issuer.addr();
        let jwks_before = issuer.jwks();
        issuer.suspend().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        issuer.resume().await?;
        assert_eq!(issuer.addr(), addr);
        let served: Value = reqwest::get(issuer.jwks_url()).await?.json().await?;
        assert_eq!(served, jwks_before);
        issuer.shutdown().await;
        Ok(())
    }
}
