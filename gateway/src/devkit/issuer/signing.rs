//! What a minted token says and how it is signed: the header (kid of the
//! current key), the claims a [`TokenRequest`] describes, and signatures with
//! the issuer's keys, including the HMAC-with-the-public-key forgery tests
//! need and raw-byte signing for tokens no serializer would produce.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::{IssuerError, IssuerState, TokenRequest, unix_now};

impl IssuerState {
    pub(super) fn sid_for(&self, username: &str) -> String {
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

    pub(super) fn header(&self, alg: Algorithm) -> Header {
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

    pub(super) fn claims(&self, req: &TokenRequest, now: i64) -> Map<String, Value> {
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

    pub(super) fn sign(&self, header: &Header, claims: &Value) -> Result<String, IssuerError> {
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

    pub(super) fn sign_bytes(
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
    pub(super) fn mint(&self, req: &TokenRequest) -> Result<String, IssuerError> {
        let claims = Value::Object(self.claims(req, unix_now()));
        self.sign(&self.header(req.alg), &claims)
    }
}
