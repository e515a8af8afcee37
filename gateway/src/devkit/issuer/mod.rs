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
//!
//! Layout: this module starts the server and holds the state its parts share;
//! [`IssuerHandle`] (`handle.rs`) is what callers hold, [`TokenRequest`]
//! (`token_request.rs`) what they ask for. `keys.rs` generates, rotates and
//! publishes the keys, `signing.rs` turns a request into signed claims, and
//! each group of endpoints has its own file: `discovery.rs` (discovery and
//! JWKS), `token.rs` (`POST /token`, `GET /dev/token`), `dev.rs` (the other
//! `/dev/…` endpoints).

mod dev;
mod discovery;
mod handle;
mod keys;
mod signing;
#[cfg(test)]
mod tests;
mod token;
mod token_request;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use jsonwebtoken::Algorithm;
use parking_lot::RwLock;

use super::RunningServer;
use dev::{dev_requests, dev_rotate};
use discovery::{discovery, jwks};
pub use handle::IssuerHandle;
use keys::{EcKey, KeyRing, RsaKey};
use token::{dev_token, token};
pub use token_request::TokenRequest;

/// `client_id` (and `azp`) of a token when the request names none.
pub const DEFAULT_CLIENT_ID: &str = "erp-web";
/// `scope` of a token when the request names none.
pub const DEFAULT_SCOPE: &str = "erp.read erp.write";
/// `aud` of a token when the request names none.
pub const DEFAULT_AUDIENCE: &str = "erp-api";
/// Lifetime of a token, in seconds, when the request names none.
pub const DEFAULT_EXPIRES_IN: i64 = 300;

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

/// The state the handle and the HTTP handlers share.
struct IssuerState {
    issuer_url: String,
    /// Mixed into `sid` so that two issuers give the same user different sids.
    sid_salt: uuid::Uuid,
    keys: RwLock<KeyRing>,
    jwks_fetches: AtomicU64,
}

/// Seconds since the Unix epoch, from the wall clock: the gateway under test
/// checks `exp` against its own wall clock.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
