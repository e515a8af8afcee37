//! The demo ERP backend: answers every request with a JSON echo of what it
//! received, and remembers the last request.
//!
//! It stands in for the legacy ERP APIs the gateway protects. What matters
//! about a backend here is what reached it, so every answer echoes the
//! method, path, query, headers and body it saw (the walkthrough shows the
//! identity headers the gateway added), and the handle exposes a request
//! counter and the last request so tests can assert "nothing was forwarded"
//! or "the spoofed `X-Auth-Subject` was stripped".
//!
//! Below HTTP, the backend also counts the TCP connections it accepts and
//! the bytes that arrive on them ([`BackendHandle::connections`],
//! [`BackendHandle::bytes_received`]): a request the backend could not even
//! parse (a smuggled fragment, a half-sent chunked body) never reaches a
//! handler, but it still arrives as bytes, so "not one byte arrived" is the
//! strict form of "nothing was forwarded".
//!
//! A few paths help the gateway's own checks: `GET /health` for upstream
//! health checks (counted apart, so they do not disturb request counts),
//! `/slow?ms=N` for timeouts and `/status/{code}` for upstream errors.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::RunningServer;

/// The longest `/slow` sleeps, whatever it is asked: one hour.
const MAX_SLOW: Duration = Duration::from_secs(60 * 60);

/// The demo ERP backend; [`Backend::start`] runs one and returns its
/// [`BackendHandle`].
#[derive(Debug)]
pub struct Backend;

impl Backend {
    /// Binds `bind` (port 0 picks a free port) and serves a backend called
    /// `name` (echoed as `backend`, and sent as the `x-backend` response
    /// header, so load-balancing tests can tell backends apart) on the
    /// current tokio runtime until the handle is shut down or dropped.
    ///
    /// Endpoints: `GET /health` answers `ok`; `/slow?ms=N` sleeps N
    /// milliseconds (at most an hour) then echoes; `/status/{code}` echoes
    /// with that status (200–599); anything else echoes with 200.
    ///
    /// # Errors
    ///
    /// If `bind` cannot be bound; the message names the address.
    pub async fn start(bind: SocketAddr, name: &str) -> anyhow::Result<BackendHandle> {
        let what = format!("the devkit backend `{name}`");
        let (listener, addr) = RunningServer::bind(bind, &what).await?;
        let state = Arc::new(BackendState {
            name: name.to_owned(),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            last: Mutex::new(None),
        });
        let router = Router::new()
            .route("/health", get(health).fallback(echo))
            .route("/slow", any(slow))
            .route("/status/{code}", any(status))
            .fallback(echo)
            .with_state(Arc::clone(&state));
        let metered = MeteredListener {
            inner: listener,
            state: Arc::clone(&state),
        };
        let server = RunningServer::serve(metered, addr, router, "backend");
        tracing::info!(backend = name, %addr, "devkit backend started");
        Ok(BackendHandle { state, server })
    }
}

/// A running demo backend: what it has received, and its lifecycle. Dropping
/// it stops the server (without waiting); [`BackendHandle::shutdown`] stops
/// it and waits.
pub struct BackendHandle {
    state: Arc<BackendState>,
    server: RunningServer,
}

impl std::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("name", &self.state.name)
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

impl BackendHandle {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// How many requests arrived, health checks excepted.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many `GET /health` checks arrived.
    pub fn health_checks(&self) -> u64 {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// How many TCP connections the backend accepted (health checks
    /// included).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// How many bytes arrived on all connections (health checks included),
    /// whether or not they formed a request.
    pub fn bytes_received(&self) -> u64 {
        self.state.bytes_received.load(Ordering::SeqCst)
    }

    /// The last request that arrived, health checks excepted.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.last.lock().clone()
    }

    /// Stops the server and waits until it has ended.
    pub async fn shutdown(self) {
        self.server.stop().await;
    }
}

/// A request as the backend received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// Every header in arrival order, names lowercase, one entry per value.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The HTTP version it came in (`HTTP/1.1`, `HTTP/2.0`).
    pub version: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The state the handle and the HTTP handlers share.
struct BackendState {
    name: String,
    requests: AtomicU64,
    health_checks: AtomicU64,
    connections: AtomicU64,
    bytes_received: AtomicU64,
    last: Mutex<Option<RecordedRequest>>,
}

/// The backend's listener: a `TcpListener` that counts the connections it
/// accepts and hands out streams that count the bytes read from them.
struct MeteredListener {
    inner: TcpListener,
    state: Arc<BackendState>,
}

impl axum::serve::Listener for MeteredListener {
    type Io = MeteredStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (MeteredStream, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        self.state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&self.state);
        (MeteredStream { io, state }, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection of the backend; every byte read from it is counted.
struct MeteredStream {
    io: TcpStream,
    state: Arc<BackendState>,
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.state
            .bytes_received
            .fetch_add(read as u64, Ordering::SeqCst);
        polled
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl BackendState {
    /// Counts and remembers a request.
    fn record(&self, request: RecordedRequest) {
        // Remember first, so that a test that sees the count also sees the
        // request.
        *self.last.lock() = Some(request);
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

/// Builds the record of a request; header values that are not UTF-8 are
/// kept lossily.
fn recorded(
    (method, version): (&Method, Version),
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> RecordedRequest {
    RecordedRequest {
        version: format!("{version:?}"),
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), text(value)))
            .collect(),
        body: body.to_vec(),
    }
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The echo body: `{backend, method, path, query, headers, body, version}`, with
/// repeated headers joined by `", "`.
fn echo_body(name: &str, request: &RecordedRequest) -> Value {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    json!({
        "backend": name,
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
        "version": request.version,
    })
}

/// Answers `status` with the echo of `request` (no body where HTTP forbids
/// one).
fn echo_response(state: &BackendState, status: StatusCode, request: &RecordedRequest) -> Response {
    let name = HeaderValue::from_str(&state.name).ok();
    let mut response = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        status.into_response()
    } else {
        (status, axum::Json(echo_body(&state.name, request))).into_response()
    };
    if let Some(name) = name {
        response.headers_mut().insert("x-backend", name);
    }
    response
}

/// Any request without a route of its own: 200 and the echo.
async fn echo(
    State(state): State<Arc<BackendState>>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = recorded((&method, version), &uri, &headers, &body);
    let response = echo_response(&state, StatusCode::OK, &request);
    state.record(request);
    response
}

/// `GET /health`: `ok`, counted apart from requests.
async fn health(State(state): State<Arc<BackendState>>) -> Response {
    state.health_checks.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}

#[derive(Debug, Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

/// `/slow?ms=N`: sleeps, then echoes. The request counts when it arrives.
async fn slow(
    State(state): State<Arc<BackendState>>,
    params: Result<Query<SlowParams>, QueryRejection>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = recorded((&method, version), &uri, &headers, &body);
    state.record(request.clone());
    match params {
        Ok(Query(SlowParams { ms })) => {
            let pause = Duration::from_millis(ms.unwrap_or(0)).min(MAX_SLOW);
            tokio::time::sleep(pause).await;
            echo_response(&state, StatusCode::OK, &request)
        }
        Err(rejection) => (
            StatusCode::BAD_REQUEST,
            format!(
                "`ms` must be a whole number of milliseconds: {}",
                rejection.body_text()
            ),
        )
            .into_response(),
    }
}

/// `/status/{code}`: echoes with status `code` (200–599).
async fn status(
    State(state): State<Arc<BackendState>>,
    Path(code): Path<String>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = recorded((&method, version), &uri, &headers, &body);
    let response = match code
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        Some(code) => echo_response(&state, code, &request),
        None => (
            StatusCode::BAD_REQUEST,
            format!("`{code}` is not a status code between 200 and 599"),
        )
            .into_response(),
    };
    state.record(request);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(name: &str) -> anyhow::Result<BackendHandle> {
        Backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), name).await
    }

    #[tokio::test]
    async fn echoes_and_records_requests() -> anyhow::Result<()> {
        let backend = start("erp-a").await?;
        let client = reqwest::Client::new();
        assert_eq!(backend.requests(), 0);
        assert_eq!(backend.last_request(), None);

        let response = client
            .post(format!("{}/api/orders/7?expand=lines", backend.url()))
            .header("X-Auth-Subject", "alice")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .body("payload")
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("x-backend")
                .map(HeaderValue::as_bytes),
            Some(&b"erp-a"[..])
        );
        let echo: Value = response.json().await?;
        assert_eq!(echo["backend"], "erp-a");
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/api/orders/7");
        assert_eq!(echo["query"], "expand=lines");
        assert_eq!(echo["headers"]["x-auth-subject"], "alice");
        assert_eq!(echo["headers"]["x-multi"], "one, two");
        assert_eq!(echo["body"], "payload");

        assert_eq!(backend.requests(), 1);
        assert_eq!(backend.connections(), 1);
        assert!(backend.bytes_received() > 0);
        let last = backend
            .last_request()
            .ok_or_else(|| anyhow::anyhow!("nothing recorded"))?;
        assert_eq!(last.method, "POST");
        assert_eq!(last.path, "/api/orders/7");
        assert_eq!(last.query.as_deref(), Some("expand=lines"));
        assert_eq!(last.header("X-AUTH-SUBJECT"), Some("alice"));
        assert_eq!(last.header_values("x-multi"), ["one", "two"]);
        assert_eq!(last.body, b"payload");

        let echo: Value = client
            .delete(format!("{}/", backend.url()))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(echo["method"], "DELETE");
        assert_eq!(echo["query"], Value::Null);
        assert_eq!(backend.requests(), 2);
        backend.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn health_is_counted_apart() -> anyhow::Result<()> {
        let backend = start("erp").await?;
        let client = reqwest::Client::new();
        let response = client
            .get(format!("{}/health", backend.url()))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await?, "ok");
        assert_eq!(backend.health_checks(), 1);
        assert_eq!(backend.requests(), 0);
        assert_eq!(backend.last_request(), None);

        // Other methods on /health are ordinary requests.
        let echo: Value = client
            .post(format!("{}/health", backend.url()))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(echo["path"], "/health");
        assert_eq!(backend.requests(), 1);
        backend.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn status_and_slow() -> anyhow::Result<()> {
        let backend = start("erp").await?;
        let client = reqwest::Client::new();
        for code in [201_u16, 204, 404, 500, 503] {
            let response = client
                .get(format!("{}/status/{code}", backend.url()))
                .send()
                .await?;
            assert_eq!(response.status().as_u16(), code);
        }
        let response = client
            .get(format!("{}/status/42", backend.url()))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(backend.requests(), 6);

        let started = std::time::Instant::now();
        let echo: Value = client
            .get(format!("{}/slow?ms=50", backend.url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(echo["path"], "/slow");
        assert_eq!(echo["query"], "ms=50");
        let response = client
            .get(format!("{}/slow?ms=later", backend.url()))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(backend.requests(), 8);
        backend.shutdown().await;
        Ok(())
    }

    #[tokio::test]
    async fn drop_stops_the_server() -> anyhow::Result<()> {
        let backend = start("erp").await?;
        let addr = backend.addr();
        drop(backend);
        // Dropping only signals; give the server task a moment to end.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the backend still listens after being dropped")
    }
}
