//! `POST /admin/v1/reload`: the live reload of the configuration file, as
//! `SIGHUP` does it, answered with what was applied (a
//! [`ReloadReport`](crate::reload::ReloadReport)) or why nothing was
//! (a problem document, status 422). Needs the admin token.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AdminState;
use super::error::AdminError;
use crate::reload::ReloadError;

/// Where the endpoint is mounted.
pub const PATH: &str = "/admin/v1/reload";

/// Reloads the configuration and reports the outcome.
pub async fn reload(State(state): State<AdminState>, request: Request) -> Response {
    if let Err(error) = state.gate.check(request.headers()) {
        return error.into_response();
    }
    let Some(reloads) = &state.reloads else {
        return AdminError::Disabled.into_response();
    };
    match reloads.reload().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => {
            let status = match error {
                ReloadError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                ReloadError::Invalid(_) | ReloadError::Build(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let body = json!({
                "type": "urn:session-gateway:error:reload_refused",
                "title": "configuration reload refused",
                "status": status.as_u16(),
                "detail": format!("{error}; the running configuration stays"),
            });
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}
