//! The OpenID Connect surface the gateway trusts an issuer through: the
//! discovery document and the JWKS it points to.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::IssuerState;

/// `GET /.well-known/openid-configuration`.
pub(super) async fn discovery(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    let url = &state.issuer_url;
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["token"],
        "grant_types_supported": ["password"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid", "erp.read", "erp.write"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "jti",
            "client_id", "azp", "scope", "sid"
        ],
    }))
}

/// `GET /jwks`; counts the fetch.
pub(super) async fn jwks(State(state): State<Arc<IssuerState>>) -> Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    Json(state.jwks())
}
