//! Why an admin API request failed, and the one place where that becomes an
//! HTTP response: an RFC 9457 problem (`application/problem+json`) with the
//! stable `type` URI `urn:session-gateway:error:<code>`, like the proxy's
//! refusals (docs/design.md §6), plus `WWW-Authenticate` on 401, `Retry-After`
//! on 503 and `Allow` on 405.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::proxy::problem::PROBLEM_JSON;
use crate::session::StoreError;

/// The realm of the admin API's bearer challenge.
pub const REALM: &str = "session-gateway-admin";

/// Seconds a client should wait before retrying after a store failure.
const STORE_RETRY_AFTER_SECS: u64 = 1;

/// A failed admin API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No admin token is configured, so the API is off.
    #[error(
        "the admin API is disabled: configure its bearer token with `[admin] token_env` \
         or `[admin] token_file` and restart the gateway"
    )]
    Disabled,
    /// The request carried no bearer token.
    #[error("the admin API needs `Authorization: Bearer <admin token>`")]
    MissingToken,
    /// The request carried a bearer token that is not the admin token.
    #[error("the admin token was not accepted")]
    WrongToken,
    /// No open session has this id.
    #[error("no open session with id `{0}`")]
    SessionNotFound(String),
    /// No revocation in force has this id.
    #[error("no revocation in force with id `{0}`")]
    RevocationNotFound(String),
    /// A query or path parameter has a bad value.
    #[error("parameter `{parameter}`: {reason}")]
    BadParameter {
        /// The parameter's name.
        parameter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No admin API endpoint has this path.
    #[error("no admin API endpoint at `{0}`")]
    NotFound(String),
    /// The endpoint exists but not with this method.
    #[error("method {0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// A bad value of the parameter `parameter`.
    pub fn bad_parameter(parameter: &str, reason: impl Into<String>) -> Self {
        AdminError::BadParameter {
            parameter: parameter.to_string(),
            reason: reason.into(),
        }
    }

    /// The stable code, as it appears in `type`.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Disabled => "admin_disabled",
            AdminError::MissingToken | AdminError::WrongToken => "admin_unauthorized",
            AdminError::SessionNotFound(_) => "session_not_found",
            AdminError::RevocationNotFound(_) => "revocation_not_found",
            AdminError::BadParameter { .. } => "bad_request",
            AdminError::NotFound(_) => "not_found",
            AdminError::MethodNotAllowed(_) => "method_not_allowed",
            AdminError::Store(_) => "store_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Disabled
            | AdminError::SessionNotFound(_)
            | AdminError::RevocationNotFound(_)
            | AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::MissingToken | AdminError::WrongToken => StatusCode::UNAUTHORIZED,
            AdminError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            AdminError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AdminError::Disabled => "Admin API disabled",
            AdminError::MissingToken | AdminError::WrongToken => "Admin authentication required",
            AdminError::SessionNotFound(_) => "Session not found",
            AdminError::RevocationNotFound(_) => "Revocation not found",
            AdminError::BadParameter { .. } => "Bad request",
            AdminError::NotFound(_) => "Not found",
            AdminError::MethodNotAllowed(_) => "Method not allowed",
            AdminError::Store(_) => "Session store unavailable",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), on 401 only: bare
    /// when no token was presented, with `error="invalid_token"` otherwise.
    fn challenge(&self) -> Option<String> {
        match self {
            AdminError::MissingToken => Some(format!("Bearer realm=\"{REALM}\"")),
            AdminError::WrongToken => {
                Some(format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""))
            }
            _ => None,
        }
    }

    /// The problem document.
    pub fn body(&self) -> ProblemDocument<'_> {
        ProblemDocument {
            kind: format!("urn:session-gateway:error:{}", self.code()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            parameter: match self {
                AdminError::BadParameter { parameter, .. } => Some(parameter),
                _ => None,
            },
            session_id: match self {
                AdminError::SessionNotFound(id) => Some(id),
                _ => None,
            },
            revocation_id: match self {
                AdminError::RevocationNotFound(id) => Some(id),
                _ => None,
            },
        }
    }
}

/// An RFC 9457 problem document of the admin API, members in the usual
/// order.
#[derive(Debug, Serialize)]
pub struct ProblemDocument<'a> {
    /// `urn:session-gateway:error:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the code.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The parameter with a bad value (`bad_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'a str>,
    /// The id that was not found (`session_not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
    /// The id that was not found (`revocation_not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_id: Option<&'a str>,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Store(error) = &self {
            tracing::error!(%error, "admin API: session store failed");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (
            self.status(),
            [
                (header::CONTENT_TYPE, PROBLEM_JSON),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = self
            .challenge()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if matches!(self, AdminError::Store(_)) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_the_stable_type_and_extras() {
        let body = |e: AdminError| serde_json::to_value(e.body()).unwrap();
        let body = body(AdminError::bad_parameter("limit", "must be a number"));
        assert_eq!(body["type"], "urn:session-gateway:error:bad_request");
        assert_eq!(body["status"], 400);
        assert_eq!(body["parameter"], "limit");
        assert_eq!(body["detail"], "parameter `limit`: must be a number");

        let body = serde_json::to_value(AdminError::SessionNotFound("abc".into()).body()).unwrap();
        assert_eq!(body["type"], "urn:session-gateway:error:session_not_found");
        assert_eq!(body["session_id"], "abc");
    }

    #[test]
    fn unauthorized_responses_challenge_and_store_failures_ask_to_retry() {
        let r = AdminError::MissingToken.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"session-gateway-admin\""
        );
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let r = AdminError::WrongToken.into_response();
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        let r = AdminError::Store(StoreError::Unavailable("down".into())).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
