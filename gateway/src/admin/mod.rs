//! The admin listener: a separate address (loopback by default) for health,
//! readiness and metrics, so none of it is reachable through the proxy.
//!
//! * `GET /healthz`: the process is alive (always 200);
//! * `GET /readyz`: 200 when every issuer's keys are loaded and the store
//!   answers, 503 with the failing checks otherwise;
//! * `GET /metrics`: Prometheus text format.

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

use crate::proxy::Access;

/// The admin HTTP service, run as a Pingora background service.
pub struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    access: Arc<Access>,
}

impl AdminService {
    /// A service over an already bound listener.
    pub fn new(listener: std::net::TcpListener, access: Arc<Access>) -> Self {
        Self {
            listener: Mutex::new(Some(listener)),
            access,
        }
    }
}

/// The routes of the admin listener.
pub fn router(access: Arc<Access>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(access)
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

async fn metrics() -> Response {
    use pingora_prometheus::prometheus::{Encoder, TextEncoder};
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&pingora_prometheus::prometheus::gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
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
        let app = router(Arc::clone(&self.access));
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(error) = serve.await {
            tracing::error!(%error, "admin listener failed");
        }
    }
}
