//! [`IssuerHandle`]: what the caller of [`Issuer::start`](super::Issuer::start)
//! holds. Its URLs, in-process minting and signing for tests, key rotation,
//! and the server's lifecycle (shutdown, suspend, resume).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jsonwebtoken::{Algorithm, Header};
use serde_json::Value;

use super::keys::rotate;
use super::{IssuerError, IssuerState, TokenRequest, router, unix_now};
use crate::devkit::RunningServer;

/// A running demo issuer: its URLs, in-process minting for tests, and its
/// lifecycle. Dropping it stops the server (without waiting);
/// [`IssuerHandle::shutdown`] stops it and waits.
pub struct IssuerHandle {
    pub(super) state: Arc<IssuerState>,
    pub(super) addr: SocketAddr,
    /// `None` while suspended.
    pub(super) server: Option<RunningServer>,
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
