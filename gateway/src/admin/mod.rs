//! The admin listener: a separate address (loopback by default) for health,
//! readiness, metrics and the admin API, so none of it is reachable through
//! the proxy.
//!
//! * `GET /healthz`: the process is alive (always 200);
//! * `GET /readyz`: 200 when this instance can serve its routes: every proxy
//!   listener accepts connections and every issuer's keys are loaded; 503
//!   with the failing checks otherwise. An unreachable store is reported as
//!   `degraded` (session routes answer `store_unavailable` meanwhile, token
//!   and public routes keep working) and fails readiness only with
//!   `server.readiness_requires_store = true`: otherwise a Redis outage would
//!   take every instance of a fleet out of its load balancer at once;
//! * `POST /admin/v1/reload`: live reload ([`reload`]), with the admin token;
//! * `GET /metrics`: Prometheus text format;
//! * `/admin/v1/…`: the admin API ([`api`]), only with the admin bearer
//!   token ([`gate`]); disabled when none is configured.
//!
//! The first three need no token. [`client`] and [`command`] are the other
//! side: the `session-gateway admin` command line over the admin API.

pub mod api;
pub mod audit;
pub mod client;
pub mod command;
pub mod console;
pub mod error;
pub mod gate;
pub mod openapi;
pub mod pagination;
pub mod reload;
pub mod usage;
pub mod usage_cli;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;

use crate::access::Access;
use crate::config::{AdminConfig, ServerConfig};
use crate::reload::ReloadRequests;
use gate::AdminGate;

/// The admin HTTP service, run as a Pingora background service.
pub struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    state: AdminState,
}

/// What the admin listener's handlers share.
#[derive(Clone)]
pub struct AdminState {
    access: Arc<Access>,
    gate: AdminGate,
    readiness: Readiness,
    reloads: Option<ReloadRequests>,
}

/// What `/readyz` checks besides the issuers' keys.
#[derive(Debug, Clone)]
struct Readiness {
    /// The proxy listeners, probed with a connection.
    listeners: Vec<SocketAddr>,
    /// Whether an unreachable store fails readiness.
    requires_store: bool,
}

impl AdminService {
    /// A service over an already bound listener, with the admin API enabled
    /// when `config` names an admin token.
    pub fn new(
        listener: std::net::TcpListener,
        access: Arc<Access>,
        config: &AdminConfig,
        server: &ServerConfig,
    ) -> Self {
        Self {
            listener: Mutex::new(Some(listener)),
            state: AdminState {
                access,
                gate: AdminGate::new(config),
                readiness: Readiness {
                    listeners: server.listen.clone(),
                    requires_store: server.readiness_requires_store,
                },
                reloads: None,
            },
        }
    }

    /// Enables `POST /admin/v1/reload`.
    pub fn with_reloads(mut self, reloads: ReloadRequests) -> Self {
        self.state.reloads = Some(reloads);
        self
    }
}

/// The routes of the admin listener.
pub fn router(state: AdminState) -> Router {
    let access = Arc::clone(&state.access);
    let gate = state.gate.clone();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(reload::PATH, post(reload::reload))
        .with_state(state)
        .nest(api::PREFIX, api::router(access, gate))
        .merge(console::router())
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let access = &state.access;
    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    for addr in &state.readiness.listeners {
        if !crate::proxy::probe::accepts(*addr).await {
            failing.push(format!("proxy listener {addr} does not accept connections"));
        }
    }
    for issuer in access.verifier().issuers() {
        if !issuer.is_loaded() {
            failing.push(format!(
                "keys of issuer {} not loaded",
                issuer.config().issuer
            ));
        }
    }
    if let Err(e) = access.store().ping().await {
        if state.readiness.requires_store {
            failing.push(e.to_string());
        } else {
            degraded.push(e.to_string());
        }
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "ready": failing.is_empty(),
            "failing": failing,
            "degraded": degraded,
        })),
    )
        .into_response()
}

/// `GET /metrics`: the gateway's registry, with the seat gauges read from
/// the store now (fleet-wide with Redis) and the JWKS key ages.
async fn metrics(State(state): State<AdminState>) -> Response {
    let access = &state.access;
    let metrics = access.metrics();
    let started = std::time::Instant::now();
    let usage = access.store().usage().await;
    metrics.store_call("usage", started.elapsed(), &usage);
    match usage {
        Ok(usage) => metrics.set_usage(&usage),
        // A frozen seat count would look true; an absent one says "unknown"
        // (and session_gateway_store_up says why).
        Err(error) => {
            tracing::debug!(%error, "seat gauges not refreshed");
            metrics.set_store_unreachable();
        }
    }
    let now = access.verifier().clock().now_ms();
    // Issuers a reload removed disappear, like the pools above.
    metrics.jwks_key_age.reset();
    metrics.jwks_keys_loaded.reset();
    for issuer in access.verifier().issuers() {
        let name = [issuer.config().issuer.as_str()];
        let keys = issuer.keys();
        metrics
            .jwks_keys_loaded
            .with_label_values(&name)
            .set(i64::from(keys.is_some()));
        // No age for keys that never loaded: a sentinel would read as a time.
        if let Some(keys) = keys {
            let age = i64::try_from(now.saturating_sub(keys.loaded_ms) / 1000).unwrap_or(i64::MAX);
            metrics.jwks_key_age.with_label_values(&name).set(age);
        }
    }
    match metrics.render() {
        Ok((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, "admin listener unusable");
                return;
            }
        };
        let app = router(self.state.clone());
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "admin listener failed");
        }
    }
}
