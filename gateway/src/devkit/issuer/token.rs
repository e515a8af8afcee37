//! The token endpoints: `POST /token` (OAuth-style JSON) and `GET /dev/token`
//! (the bare token, for `curl`), their parameters, and the OAuth 2.0 error
//! responses they answer with.

use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::json;

use super::{IssuerError, IssuerState, TokenRequest};

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

/// The parameters of `POST /token` (form) and `GET /dev/token` (query).
/// Everything is optional here so that a missing or malformed value gets an
/// OAuth-style `invalid_request` rather than a framework rejection.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TokenParams {
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

pub(super) fn server_error(error: &IssuerError) -> Response {
    tracing::warn!(%error, "devkit issuer failed");
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        error.to_string(),
    )
}

/// `POST /token`: `{access_token, token_type, expires_in, scope}`.
pub(super) async fn token(
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
pub(super) async fn dev_token(
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
