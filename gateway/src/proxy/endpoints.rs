//! The gateway's own endpoints under its prefix (docs/design.md §6):
//! `GET session`, `POST logout` and `POST backchannel-logout`. Each reads
//! the request, calls one operation of the access decision and writes the
//! answer.

use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::proxy::Session as HttpSession;

use super::denial::{self, Wording};
use super::problem::{ErrorCode, Problem};
use super::respond::respond;
use super::service::{Gateway, authorization};
use crate::access::BackchannelError;
use crate::auth::Principal;
use crate::session::Session;

/// The largest back-channel logout request body read (a form with one JWT).
const MAX_LOGOUT_BODY: usize = 64 * 1024;

impl Gateway {
    /// The principal of a request to a gateway endpoint that only answers
    /// `method`: 405 for another method, the access decision's denial else.
    async fn caller(
        &self,
        request: &RequestHeader,
        method: &'static str,
        wording: &Wording,
    ) -> Result<Arc<Principal>, Problem> {
        if request.method.as_str() != method {
            return Err(
                Problem::new(ErrorCode::MethodNotAllowed, format!("use {method}")).allow(method),
            );
        }
        let (principal, _) = self
            .access
            .authenticate(&authorization(request))
            .await
            .map_err(|d| denial::problem(&d, wording))?;
        Ok(principal)
    }

    /// `GET <prefix>/session`.
    pub(super) async fn session_endpoint(
        &self,
        request: &RequestHeader,
        wording: &Wording,
    ) -> Result<Vec<u8>, Problem> {
        let principal = self.caller(request, "GET", wording).await?;
        match self
            .access
            .current_session(&principal)
            .await
            .map_err(|d| denial::problem(&d, wording))?
        {
            Some(session) => Ok(session_view(&session)),
            None => Err(Problem::new(
                ErrorCode::NoSession,
                "this identity has no open session; the next API call opens one",
            )),
        }
    }

    /// `POST <prefix>/logout`: closes the caller's session (freeing its
    /// seat, or keeping it for its identity in a pool with `linger` or
    /// `min_hold`) and refuses the presented token until it expires.
    pub(super) async fn logout_endpoint(
        &self,
        request: &RequestHeader,
        wording: &Wording,
    ) -> Result<Vec<u8>, Problem> {
        let principal = self.caller(request, "POST", wording).await?;
        let closed = self
            .access
            .logout(&principal)
            .await
            .map_err(|d| denial::problem(&d, wording))?;
        let body = serde_json::json!({
            "logged_out": true,
            "session_id": closed.map(|s| s.id),
        });
        Ok(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// `POST <prefix>/backchannel-logout` (OpenID Connect Back-Channel Logout
    /// 1.0 §2.8): 200 with `Cache-Control: no-store` when the logout token is
    /// valid, 400 `{error, error_description}` otherwise.
    pub(super) async fn backchannel_endpoint(
        &self,
        session: &mut HttpSession,
    ) -> pingora::Result<()> {
        let answer = match self.read_logout_token(session).await? {
            Ok(token) => match self.access.backchannel_logout(&token).await {
                Ok(closed) => {
                    tracing::info!(closed, "back-channel logout");
                    Ok(())
                }
                Err(BackchannelError::Invalid(reason)) => Err((400, reason)),
                Err(BackchannelError::Unavailable) => {
                    Err((503, "temporarily unavailable".to_string()))
                }
            },
            Err(reason) => Err((400, reason)),
        };
        match answer {
            Ok(()) => respond(session, 200, "application/json", b"{}".to_vec(), None).await,
            Err((status, reason)) => {
                let error = if status == 400 {
                    "invalid_request"
                } else {
                    "temporarily_unavailable"
                };
                let body = serde_json::json!({"error": error, "error_description": reason});
                respond(
                    session,
                    status,
                    "application/json",
                    serde_json::to_vec(&body).unwrap_or_default(),
                    None,
                )
                .await
            }
        }
    }

    /// The `logout_token` of a form-encoded POST, or why there is none.
    async fn read_logout_token(
        &self,
        session: &mut HttpSession,
    ) -> pingora::Result<Result<String, String>> {
        let request = session.req_header();
        if request.method != http::Method::POST {
            return Ok(Err("use POST".into()));
        }
        let form = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !form {
            return Ok(Err(
                "the body must be application/x-www-form-urlencoded".into()
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_LOGOUT_BODY {
                return Ok(Err("request body too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let tokens: Vec<String> = url::form_urlencoded::parse(&body)
            .filter(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .collect();
        Ok(match tokens.as_slice() {
            [token] if !token.is_empty() => Ok(token.clone()),
            [] | [_] => Err("missing `logout_token`".into()),
            _ => Err("more than one `logout_token`".into()),
        })
    }
}

/// The JSON of `GET /.gateway/session`.
fn session_view(session: &Session) -> Vec<u8> {
    serde_json::to_vec(&session.view()).unwrap_or_default()
}
