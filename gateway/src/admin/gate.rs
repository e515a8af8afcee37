//! Who may use the admin API: the holder of the configured admin token.
//!
//! The presented bearer token is compared with the configured one in
//! constant time. Both are hashed with SHA-256 first, so the comparison
//! takes the same time whatever the presented token's length, and the gate
//! keeps only the digest of the token in memory. Without a configured token
//! the API is disabled and the gate refuses everything with
//! [`AdminError::Disabled`].

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AdminError;
use crate::auth::{BearerError, bearer_token};
use crate::config::AdminConfig;

/// The admission check of every `/admin/v1` request.
#[derive(Clone)]
pub struct AdminGate {
    /// SHA-256 of the admin token; `None` when the API is disabled.
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGate")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl AdminGate {
    /// The gate of the `[admin]` configuration.
    pub fn new(config: &AdminConfig) -> Self {
        Self {
            digest: config.token.as_ref().map(|t| digest(t.expose().as_bytes())),
        }
    }

    /// Whether an admin token is configured.
    pub fn is_enabled(&self) -> bool {
        self.digest.is_some()
    }

    /// Admits a request whose headers carry exactly one `Authorization:
    /// Bearer <admin token>`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AdminError> {
        let expected = self.digest.as_ref().ok_or(AdminError::Disabled)?;
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if headers.contains_key(header::AUTHORIZATION) {
                AdminError::WrongToken
            } else {
                AdminError::MissingToken
            });
        };
        let token = bearer_token(value.as_bytes()).map_err(|e| match e {
            BearerError::NotBearer => AdminError::MissingToken,
            BearerError::Malformed => AdminError::WrongToken,
        })?;
        if bool::from(digest(token.as_bytes()).ct_eq(expected)) {
            Ok(())
        } else {
            Err(AdminError::WrongToken)
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef-admin";

    fn gate() -> AdminGate {
        AdminGate::new(&AdminConfig {
            token: Some(Secret::new(TOKEN.to_string())),
        })
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_configured_token_passes() {
        let gate = gate();
        assert_eq!(gate.check(&headers(&[&format!("Bearer {TOKEN}")])), Ok(()));
        assert_eq!(gate.check(&headers(&[&format!("bearer {TOKEN}")])), Ok(()));
        assert_eq!(
            gate.check(&headers(&["Bearer 0123456789abcdef-admiN"])),
            Err(AdminError::WrongToken)
        );
        assert_eq!(
            gate.check(&headers(&[&format!("Bearer {TOKEN}x")])),
            Err(AdminError::WrongToken)
        );
        assert_eq!(gate.check(&headers(&[])), Err(AdminError::MissingToken));
        assert_eq!(
            gate.check(&headers(&["Basic dXNlcjpwdw=="])),
            Err(AdminError::MissingToken)
        );
        assert_eq!(
            gate.check(&headers(&["Bearer "])),
            Err(AdminError::WrongToken)
        );
        let twice = format!("Bearer {TOKEN}");
        assert_eq!(
            gate.check(&headers(&[&twice, &twice])),
            Err(AdminError::WrongToken)
        );
    }

    #[test]
    fn without_a_token_the_api_is_disabled() {
        let gate = AdminGate::new(&AdminConfig::default());
        assert!(!gate.is_enabled());
        assert_eq!(
            gate.check(&headers(&[&format!("Bearer {TOKEN}")])),
            Err(AdminError::Disabled)
        );
        assert!(!format!("{:?}", self::gate()).contains(TOKEN));
    }
}
