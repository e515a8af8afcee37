//! The `/dev/…` endpoints for walkthroughs and tests besides `/dev/token`:
//! RSA key rotation and the count of JWKS fetches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::IssuerState;
use super::keys::rotate;
use super::token::server_error;

/// `POST /dev/rotate`: `{kid}` of the new RSA signing key.
pub(super) async fn dev_rotate(State(state): State<Arc<IssuerState>>) -> Response {
    match rotate(&state).await {
        Ok(kid) => Json(json!({ "kid": kid })).into_response(),
        Err(error) => server_error(&error),
    }
}

/// `GET /dev/requests`: `{jwks: n}`.
pub(super) async fn dev_requests(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    Json(json!({ "jwks": state.jwks_fetches.load(Ordering::Relaxed) }))
}
