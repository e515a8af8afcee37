//! The admin listener: a separate address (loopback by default) for health,
//! readiness, metrics and the admin API, so none of it is reachable through
//! the proxy.
//!
//! * `GET /healthz`: the process is alive (always 200);
//! * `GET /readyz`: 200 when every issuer's keys are loaded and the store
//!   answers, 503 with the failing checks otherwise;
//! * `GET /metrics`: Prometheus text format;
//! * `/admin/v1/…`: the admin API ([`api`]), only with the admin bearer
//!   token ([`gate`]); disabled when none is configured.
//!
//! The first three need no token. [`client`] and [`command`] are the other
//! side: the `session-gateway admin` command line over the admin API.

pub mod api;
pub mod client;
pub mod command;
pub mod error;
pub mod gate;
pub mod pagination;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::json;

use crate::config::AdminConfig;
use crate::proxy::Access;
use gate::AdminGate;

/// The admin HTTP service, run as a Pingora background service.
pub struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    access: Arc<Access>,
    gate: AdminGate,
}

impl AdminService {
    /// A service over an already bound listener, with the admin API enabled
    /// when `config` names an admin token.
    pub fn new(listener: std::net::TcpListener, access: Arc<Access>, config: &AdminConfig) -> Self {
        Self {
            listener: Mutex::new(Some(listener)),
            access,
            gate: AdminGate::new(config),
        }
    }
}

/// The routes of the admin listener.
pub fn router(access: Arc<Access>, gate: AdminGate) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&access))
        .nest(api::PREFIX, api::router(access, gate))
}

async fn readyz(State(access): State<Arc<Access>>) -> Response {
    let mut failing = Vec::new();
    for issuer in access.verifier().issuers() {
        if !issuer.is_loaded() {
            failing.push(format!(
                "keys of issuer {} not loaded",
                issuer.config().issuer
            ));
        }
    }
    if let Err(e) = access.store().ping().await {
        failing.push(e.to_string());
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": failing.is_empty(), "failing": failing})),
    )
        .into_response()
}

/// `GET /metrics`: the gateway's registry, with the seat gauges read from
/// the store now (fleet-wide with Redis) and the JWKS key ages.
async fn metrics(State(access): State<Arc<Access>>) -> Response {
    let metrics = access.metrics();
    let started = std::time::Instant::now();
    let usage = access.store().usage().await;
    metrics.store_call("usage", started.elapsed(), &usage);
    match usage {
        Ok(usage) => metrics.set_usage(&usage),
        // Stale seat gauges are better than no metrics during an outage;
        // store_errors_total tells the story.
        Err(error) => tracing::debug!(%error, "seat gauges not refreshed"),
    }
    let now = access.verifier().clock().now_ms();
    for issuer in access.verifier().issuers() {
        let age = issuer.keys().map_or(-1, |k| {
            i64::try_from(now.saturating_sub(k.loaded_ms) / 1000).unwrap_or(i64::MAX)
        });
        metrics
            .jwks_key_age
            .with_label_values(&[issuer.config().issuer.as_str()])
            .set(age);
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
        let app = router(Arc::clone(&self.access), self.gate.clone());
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "admin listener failed");
        }
    }
}
