//! Error responses: RFC 9457 problem details with a stable `type` URI, plus
//! the RFC 6750 `WWW-Authenticate` challenge and `Retry-After` where the
//! HTTP contract (docs/design.md §6) asks for them.
//!
//! Every refusal of the gateway is built here, so the catalogue of codes is
//! one enum and clients can rely on `type` never changing.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// The content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable error codes; `type` is `urn:session-gateway:error:<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No bearer token on a protected route (401).
    MissingToken,
    /// The token failed verification (401).
    InvalidToken,
    /// The token lacks a scope the route needs (403).
    InsufficientScope,
    /// The token maps to no license pool (403).
    NoPool,
    /// Every seat of the pool is held (429 by default).
    LicenseUnavailable,
    /// The subject holds its maximum number of sessions (429).
    SessionLimit,
    /// The session store cannot be reached (503).
    StoreUnavailable,
    /// The issuer's keys were never loaded (503).
    IssuerUnavailable,
    /// No upstream server could be reached (502).
    UpstreamUnavailable,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// No route matches (404).
    NotFound,
    /// The request is malformed (400).
    BadRequest,
    /// The caller has no session (404 on `GET /.gateway/session`).
    NoSession,
    /// The method is not allowed on a gateway endpoint (405).
    MethodNotAllowed,
    /// The route does not allow protocol upgrades (403).
    UpgradeRefused,
    /// A CORS preflight the route's policy does not allow (403).
    CorsRefused,
    /// The session is used from more clients than its pool allows (403).
    TokenShared,
    /// The client went away while its request waited for a seat (499, as
    /// nginx logs it; nobody reads the response).
    ClientClosedRequest,
}

impl ErrorCode {
    /// The code as it appears in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::NoPool => "no_pool",
            ErrorCode::LicenseUnavailable => "license_unavailable",
            ErrorCode::SessionLimit => "session_limit",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::IssuerUnavailable => "issuer_unavailable",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NoSession => "no_session",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UpgradeRefused => "upgrade_refused",
            ErrorCode::CorsRefused => "cors_refused",
            ErrorCode::TokenShared => "token_shared",
            ErrorCode::ClientClosedRequest => "client_closed_request",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::MissingToken => "Authentication required",
            ErrorCode::InvalidToken => "Invalid access token",
            ErrorCode::InsufficientScope => "Insufficient scope",
            ErrorCode::NoPool => "No license pool for this token",
            ErrorCode::LicenseUnavailable => "No license available",
            ErrorCode::SessionLimit => "Too many sessions",
            ErrorCode::StoreUnavailable => "Session store unavailable",
            ErrorCode::IssuerUnavailable => "Token issuer unavailable",
            ErrorCode::UpstreamUnavailable => "Upstream unavailable",
            ErrorCode::UpstreamTimeout => "Upstream timeout",
            ErrorCode::NotFound => "Not found",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::NoSession => "No session",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::UpgradeRefused => "Upgrade refused",
            ErrorCode::CorsRefused => "Cross-origin request refused",
            ErrorCode::TokenShared => "Token shared",
            ErrorCode::ClientClosedRequest => "Client closed request",
        }
    }
}

/// One error response, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// The stable code.
    pub code: ErrorCode,
    /// Human-readable detail (never a token or secret).
    pub detail: String,
    /// Extra members of the body (`pool`, `limit`, `in_use`, …).
    pub extra: Map<String, Value>,
    /// `WWW-Authenticate`, for 401 and 403 on protected routes.
    pub www_authenticate: Option<String>,
    /// `Retry-After`, in whole seconds.
    pub retry_after: Option<u64>,
    /// `Allow`, for 405.
    pub allow: Option<&'static str>,
    /// Further headers (the CORS headers of an allowed origin).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Problem {
    /// A problem with the code's usual status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::MissingToken | ErrorCode::InvalidToken => 401,
            ErrorCode::InsufficientScope | ErrorCode::NoPool => 403,
            ErrorCode::LicenseUnavailable | ErrorCode::SessionLimit => 429,
            ErrorCode::StoreUnavailable | ErrorCode::IssuerUnavailable => 503,
            ErrorCode::UpstreamUnavailable => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::NotFound | ErrorCode::NoSession => 404,
            ErrorCode::BadRequest => 400,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UpgradeRefused | ErrorCode::CorsRefused | ErrorCode::TokenShared => 403,
            ErrorCode::ClientClosedRequest => 499,
        };
        Self {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            www_authenticate: None,
            retry_after: None,
            allow: None,
            headers: Vec::new(),
        }
    }

    /// 401 without a token: the bare challenge (RFC 6750 §3.1: no error code
    /// when the request carried no authentication).
    pub fn missing_token(realm: &str) -> Self {
        let mut p = Problem::new(
            ErrorCode::MissingToken,
            "this route needs a bearer access token",
        );
        p.www_authenticate = Some(format!("Bearer realm=\"{realm}\""));
        p
    }

    /// 401 for a token that failed verification.
    pub fn invalid_token(realm: &str, description: &str) -> Self {
        let mut p = Problem::new(ErrorCode::InvalidToken, description);
        p.www_authenticate = Some(challenge(realm, "invalid_token", description, None));
        p
    }

    /// 403 for a token that lacks a scope the route needs.
    pub fn insufficient_scope(realm: &str, needed: &[String]) -> Self {
        let scope = needed.join(" ");
        let description = format!("this route needs scope `{scope}`");
        let mut p = Problem::new(ErrorCode::InsufficientScope, description.clone());
        p.www_authenticate = Some(challenge(
            realm,
            "insufficient_scope",
            &description,
            Some(&scope),
        ));
        p
    }

    /// Sets `Retry-After`, rounding up to whole seconds (at least 1).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Sets `Allow` (405 answers).
    pub fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Adds a member to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Overrides the status (configurable refusals).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut body = json!({
            "type": format!("urn:session-gateway:error:{}", self.code.as_str()),
            "title": self.code.title(),
            "status": self.status,
            "detail": self.detail,
        });
        if let Some(obj) = body.as_object_mut() {
            for (k, v) in &self.extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// An RFC 6750 §3 challenge. Quotes and backslashes cannot appear in our
/// descriptions, but are replaced anyway so a header can never break.
fn challenge(realm: &str, error: &str, description: &str, scope: Option<&str>) -> String {
    let clean = |s: &str| s.replace(['"', '\\'], "'");
    let mut value = format!(
        "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
        clean(description)
    );
    if let Some(scope) = scope {
        value.push_str(&format!(", scope=\"{}\"", clean(scope)));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_stable_type_and_extras() {
        let p = Problem::new(ErrorCode::LicenseUnavailable, "pool full")
            .with("pool", "default")
            .with("limit", 2)
            .retry_after(Duration::from_millis(1500));
        let body: Value = serde_json::from_slice(&p.body()).unwrap();
        assert_eq!(
            body["type"],
            "urn:session-gateway:error:license_unavailable"
        );
        assert_eq!(body["status"], 429);
        assert_eq!(body["pool"], "default");
        assert_eq!(body["limit"], 2);
        assert_eq!(p.retry_after, Some(2));
    }

    #[test]
    fn challenges_follow_rfc6750() {
        assert_eq!(
            Problem::missing_token("erp").www_authenticate.as_deref(),
            Some("Bearer realm=\"erp\"")
        );
        let p = Problem::invalid_token("erp", "token \"expired\"");
        assert_eq!(
            p.www_authenticate.as_deref(),
            Some(
                "Bearer realm=\"erp\", error=\"invalid_token\", error_description=\"token 'expired'\""
            )
        );
        let p = Problem::insufficient_scope("erp", &["erp.write".into()]);
        assert_eq!(p.status, 403);
        assert!(p.www_authenticate.unwrap().ends_with("scope=\"erp.write\""));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let p = Problem::new(ErrorCode::StoreUnavailable, "x").retry_after(Duration::ZERO);
        assert_eq!(p.retry_after, Some(1));
    }
}
