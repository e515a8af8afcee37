//! A compact JWS split into its three parts and decoded, refusing every
//! shape that is not one (a JWE, empty or non-base64url parts, a header
//! that is not JOSE) before any key is looked at.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;

use super::TokenError;
use crate::claims::Claims;

/// The three parts of a compact JWS.
pub(super) struct CompactJws<'a> {
    /// `header.payload`, the signed bytes.
    pub(super) message: &'a str,
    header: &'a str,
    payload: &'a str,
    pub(super) signature: &'a str,
}

impl<'a> CompactJws<'a> {
    pub(super) fn split(token: &'a str) -> Result<Self, TokenError> {
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

    pub(super) fn header(&self) -> Result<Header, TokenError> {
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

    pub(super) fn claims(&self) -> Result<Claims, TokenError> {
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
