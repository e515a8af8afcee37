//! The issuer's signing keys: generated at start (RSA-2048 and P-256),
//! rotated on request (older RSA public keys stay published), and the JWKS
//! document that publishes them.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use super::{IssuerError, IssuerState};

/// The signing keys. The last RSA key signs; the older ones stay published.
pub(super) struct KeyRing {
    pub(super) rsa: Vec<Kid<RsaKey>>,
    pub(super) ec: Kid<EcKey>,
}

impl KeyRing {
    pub(super) fn current_rsa(&self) -> &Kid<RsaKey> {
        // `rsa` starts with one key and only grows.
        &self.rsa[self.rsa.len() - 1]
    }
}

/// A key and its kid.
pub(super) struct Kid<K> {
    pub(super) kid: String,
    pub(super) key: K,
}

/// An RSA private key in the form `jsonwebtoken` signs with, and the public
/// parts the JWKS and the HMAC-confusion forgery need.
pub(super) struct RsaKey {
    pub(super) encoding: EncodingKey,
    pub(super) n: String,
    pub(super) e: String,
    pub(super) public_pem: String,
}

impl RsaKey {
    pub(super) fn generate() -> Result<Self, IssuerError> {
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

    pub(super) fn with_kid(self, kid: &str) -> Kid<Self> {
        Kid {
            kid: kid.to_owned(),
            key: self,
        }
    }
}

/// A P-256 private key in the form `jsonwebtoken` signs with (PKCS#8 DER) and
/// its public point for the JWKS.
pub(super) struct EcKey {
    pub(super) encoding: EncodingKey,
    pub(super) x: String,
    pub(super) y: String,
}

impl EcKey {
    pub(super) fn generate() -> Result<Self, IssuerError> {
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

    pub(super) fn with_kid(self, kid: &str) -> Kid<Self> {
        Kid {
            kid: kid.to_owned(),
            key: self,
        }
    }
}

impl IssuerState {
    pub(super) fn jwks(&self) -> Value {
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
}

pub(super) async fn rotate(state: &Arc<IssuerState>) -> Result<String, IssuerError> {
    let key = tokio::task::spawn_blocking(RsaKey::generate)
        .await
        .map_err(|e| IssuerError::KeyGeneration(e.to_string()))??;
    let mut keys = state.keys.write();
    let kid = format!("rsa-{}", keys.rsa.len() + 1);
    keys.rsa.push(key.with_kid(&kid));
    tracing::info!(kid = %kid, "devkit issuer rotated its RSA key");
    Ok(kid)
}
