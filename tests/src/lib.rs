//! The end-to-end harness: real gateway processes between the devkit's real
//! issuer and backend, on free loopback ports.
//!
//! A test reads like its scenario:
//!
//! ```ignore
//! let kit = Devkit::start().await?;
//! let mut config = kit.config();
//! config.pool(0).insert("limit".into(), 2.into());
//! let gw = Gateway::start(env!("CARGO_BIN_EXE_gateway-under-test"), &config).await?;
//! let token = kit.token("alice");
//! let r = gw.get("/api/orders", &token).await?;
//! ```
//!
//! Every process a test starts is killed when its handle drops; every wait
//! is a poll of a condition with a deadline, never a bare sleep.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub mod admin;
pub mod contract;
pub mod oidc;
pub mod redis;
pub mod relay;

pub use oidc::{Browser, LogoutCatcher, OidcProvider, ProviderOptions, Tokens};
pub use redis::{REDIS_SESSION_ID_LEN, RedisServer, store_config};
pub use session_gateway::devkit::{Backend, BackendHandle, Issuer, IssuerHandle, TokenRequest};

/// How long a test may wait for any one condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A free TCP port on 127.0.0.1 (the OS picks it, and this process never
/// hands the same one out twice; it is released at once, so a rare
/// collision with another process is possible and retried by
/// [`Gateway::start`]).
pub fn free_port() -> u16 {
    // The kernel may hand the same ephemeral port out again as soon as it is
    // released, so two calls in a row (a gateway's proxy and admin ports) can
    // collide; ports handed out once in this process are never handed out again.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..64 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if port != 0 && !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
    0
}

/// A devkit issuer and backend for one test.
pub struct Devkit {
    /// The demo OIDC issuer.
    pub issuer: IssuerHandle,
    /// The demo ERP backend.
    pub backend: BackendHandle,
}

impl Devkit {
    /// Starts both on free loopback ports.
    pub async fn start() -> anyhow::Result<Self> {
        let loopback: SocketAddr = "127.0.0.1:0".parse()?;
        Ok(Self {
            issuer: Issuer::start(loopback).await?,
            backend: Backend::start(loopback, "erp-1").await?,
        })
    }

    /// A valid RS256 token for a user (client `erp-web`, 5 minutes).
    pub fn token(&self, user: &str) -> String {
        self.issuer.mint(&TokenRequest::new(user))
    }

    /// A token from a request.
    pub fn mint(&self, request: &TokenRequest) -> String {
        self.issuer.mint(request)
    }

    /// The standard test configuration: one issuer (discovery), one pool of
    /// 10 seats, one upstream (the backend), routes `/api/` (session),
    /// `/token-only/` (token), `/public/` (public).
    pub fn config(&self) -> ConfigDoc {
        ConfigDoc::standard(self.issuer.issuer_url(), self.backend.addr())
    }
}

/// A gateway configuration as an editable TOML document.
#[derive(Debug, Clone)]
pub struct ConfigDoc(pub toml::Table);

impl ConfigDoc {
    /// The standard configuration for an issuer and a backend.
    pub fn standard(issuer_url: &str, backend: SocketAddr) -> Self {
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:1"]
admin_listen = "127.0.0.1:2"
threads = 1
grace_period = "0s"
shutdown_timeout = "1s"
realm = "erp"

[[issuers]]
issuer = "{issuer_url}"
audiences = ["erp-api"]
algorithms = ["RS256", "ES256"]
jwks_min_refetch = "60s"

[sessions]
idle_timeout = "20m"
absolute_timeout = "8h"
sweep_interval = "1s"

[[pools]]
name = "default"
limit = 10

[[upstreams]]
name = "erp"
servers = ["{backend}"]
read_timeout = "5s"

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"

[[routes]]
name = "token-only"
path_prefix = "/token-only/"
upstream = "erp"
policy = "token"

[[routes]]
name = "public"
path_prefix = "/public/"
upstream = "erp"
policy = "public"

[logging]
level = "info"
format = "json"
"#
        );
        // The template is fixed text; a parse failure is a bug in this file.
        ConfigDoc(toml::from_str(&text).expect("standard test configuration parses"))
    }

    /// A top-level table (`server`, `sessions`, `tokens`, …), created if absent.
    pub fn table(&mut self, name: &str) -> &mut toml::Table {
        let entry = self
            .0
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => t,
            other => {
                *other = toml::Value::Table(toml::Table::new());
                match other {
                    toml::Value::Table(t) => t,
                    _ => unreachable!("just set to a table"),
                }
            }
        }
    }

    /// Sets `section.key`.
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        self.table(section).insert(key.to_string(), value.into());
        self
    }

    /// The n-th table of an array of tables (`pools`, `routes`, …).
    pub fn item(&mut self, array: &str, index: usize) -> &mut toml::Table {
        match self
            .0
            .get_mut(array)
            .and_then(|v| v.as_array_mut())
            .and_then(|a| a.get_mut(index))
        {
            Some(toml::Value::Table(t)) => t,
            _ => panic!("configuration has no {array}[{index}]"),
        }
    }

    /// The n-th pool.
    pub fn pool(&mut self, index: usize) -> &mut toml::Table {
        self.item("pools", index)
    }

    /// Appends a table to an array of tables, parsed from TOML text.
    pub fn push(&mut self, array: &str, table_toml: &str) -> &mut Self {
        let table: toml::Table = toml::from_str(table_toml).expect("test table parses");
        let entry = self
            .0
            .entry(array.to_string())
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(items) = entry {
            items.push(toml::Value::Table(table));
        }
        self
    }

    /// Replaces an array of tables.
    pub fn clear(&mut self, array: &str) -> &mut Self {
        self.0
            .insert(array.to_string(), toml::Value::Array(Vec::new()));
        self
    }

    /// The Redis store, on the server at `url`.
    pub fn use_redis(&mut self, url: impl Into<String>) -> &mut Self {
        self.set("sessions", "store", "redis");
        self.set("redis", "url", url.into())
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        toml::to_string(&self.0).unwrap_or_default()
    }
}

/// A gateway process.
pub struct Gateway {
    child: Child,
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// What to wait for after starting a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Await {
    /// `/readyz` answers 200 (keys loaded, store reachable).
    Ready,
    /// `/healthz` answers (the process serves, whatever its readiness).
    Alive,
}

impl Gateway {
    /// Starts a gateway on free ports and waits until it is ready.
    pub async fn start(binary: &str, config: &ConfigDoc) -> anyhow::Result<Self> {
        Self::start_awaiting(binary, config, Await::Ready).await
    }

    /// Starts a gateway and waits for `what`.
    pub async fn start_awaiting(
        binary: &str,
        config: &ConfigDoc,
        what: Await,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(binary, config, what, &[]).await
    }

    /// Starts a gateway with extra environment variables (the secrets its
    /// configuration names) and waits for `what`. The test process's own
    /// environment stays untouched, so tests running in parallel never see
    /// each other's variables.
    pub async fn start_with_env(
        binary: &str,
        config: &ConfigDoc,
        what: Await,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut last_error = None;
        // Free ports are only probably free; retry on a collision.
        for _ in 0..3 {
            match Self::try_start(binary, config, what, env).await {
                Ok(gw) => return Ok(gw),
                Err(e) if format!("{e:#}").contains("cannot listen") => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("gateway did not start")))
    }

    async fn try_start(
        binary: &str,
        config: &ConfigDoc,
        what: Await,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut config = config.clone();
        config.set("server", "listen", vec![addr.to_string()]);
        config.set("server", "admin_listen", admin.to_string());
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config.render())?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {binary}"))?;
        let mut gw = Gateway {
            child,
            addr,
            admin,
            dir,
            client: client(),
        };
        let probe = match what {
            Await::Ready => "/readyz",
            Await::Alive => "/healthz",
        };
        let started = Instant::now();
        loop {
            if let Some(status) = gw.child.try_wait()? {
                bail!("gateway exited with {status}: {}", gw.logs());
            }
            if let Ok(r) = gw.client.get(gw.admin_url(probe)).send().await
                && r.status().is_success()
            {
                return Ok(gw);
            }
            if started.elapsed() > DEADLINE {
                bail!("gateway not {what:?} within {DEADLINE:?}: {}", gw.logs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A URL on the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// A client without proxies or pooling surprises.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Reply> {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await?;
        Reply::read(r).await
    }

    /// `GET path` without credentials.
    pub async fn get_anonymous(&self, path: &str) -> anyhow::Result<Reply> {
        Reply::read(self.client.get(self.url(path)).send().await?).await
    }

    /// `POST /.gateway/logout` with a bearer token.
    pub async fn logout(&self, token: &str) -> anyhow::Result<Reply> {
        let r = self
            .client
            .post(self.url("/.gateway/logout"))
            .bearer_auth(token)
            .send()
            .await?;
        Reply::read(r).await
    }

    /// One scrape of the instance's `/metrics`, as text.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(self
            .client()
            .get(self.admin_url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The value of one series of the instance's `/metrics`, e.g.
    /// `session_gateway_tunnels_open{pool="default"}`; `None` when absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok()))
    }

    /// The caller's current session (`GET /.gateway/session`).
    pub async fn session(&self, token: &str) -> anyhow::Result<Reply> {
        self.get("/.gateway/session", token).await
    }

    /// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        eventually(what, &mut check).await
    }

    /// Replaces the configuration file the process was started with (its
    /// listener addresses kept), e.g. before a reload.
    pub fn rewrite_config(&self, config: &ConfigDoc) -> anyhow::Result<()> {
        let mut config = config.clone();
        config.set("server", "listen", vec![self.addr.to_string()]);
        config.set("server", "admin_listen", self.admin.to_string());
        std::fs::write(self.dir.path().join("gateway.toml"), config.render())?;
        Ok(())
    }

    /// Sends a signal (`"HUP"`, `"QUIT"`, …) to the process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child)
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    // SIGTERM is Pingora's graceful shutdown; the test configs keep its grace short.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    Ok(child.wait()?)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > DEADLINE {
            bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP client for tests: no proxies from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .unwrap_or_default()
}

/// [`client`], speaking HTTP/2 with prior knowledge (h2c) only.
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("an h2c test client builds")
}

/// A response, read completely.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads a response.
    pub async fn read(r: reqwest::Response) -> anyhow::Result<Self> {
        Ok(Self {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await?.to_vec(),
        })
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `type` code (`license_unavailable`, …).
    pub fn problem(&self) -> String {
        self.json()["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:session-gateway:error:"))
            .unwrap_or("")
            .to_string()
    }

    /// For an echoed backend response: the header the backend received.
    pub fn forwarded_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_string)
    }
}

/// Sends raw requests one after another on one TCP connection, reading
/// each response (framed by `Content-Length`) before sending the next. For
/// requests a client library would normalise (dot-segments) and for
/// keep-alive checks.
pub async fn raw_exchange(addr: SocketAddr, requests: &[&[u8]]) -> anyhow::Result<Vec<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut buffer = Vec::new();
    let mut out = Vec::new();
    let started = Instant::now();
    for request in requests {
        stream.write_all(request).await?;
        loop {
            if let Some((head_end, length)) = framed(&buffer)
                && buffer.len() >= head_end + length
            {
                out.push(String::from_utf8_lossy(&buffer[..head_end + length]).to_string());
                buffer.drain(..head_end + length);
                break;
            }
            if started.elapsed() > DEADLINE {
                bail!("no complete response within {DEADLINE:?}");
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await??;
            if n == 0 {
                bail!("connection closed after {} response(s)", out.len());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(out)
}

fn framed(buffer: &[u8]) -> Option<(usize, usize)> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((head_end, length))
}

/// A response read off the wire by [`raw_conversation`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header as text (first value, case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The problem `type` code (`invalid_token`, …), or `""`.
    pub fn problem(&self) -> String {
        serde_json::from_slice::<Value>(&self.body).unwrap_or(Value::Null)["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:session-gateway:error:"))
            .unwrap_or("")
            .to_string()
    }

    /// Whether the server announced that it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What came back on one connection after [`raw_conversation`] sent its
/// bytes.
#[derive(Debug, Clone)]
pub struct RawConversation {
    /// Every complete response, in order.
    pub responses: Vec<RawResponse>,
    /// Bytes after the last complete response (a truncated response).
    pub trailing: Vec<u8>,
}

impl RawConversation {
    /// The statuses, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

/// Sends `bytes` on a new connection exactly as given (one write) and reads
/// until the gateway closes the connection; then splits what came back into
/// responses. For framing attacks, where a client library would refuse to
/// send the request or hide how many responses came back.
///
/// The sending half stays open: Pingora takes a half-closed connection for a
/// client that went away and sends no response (docs/security.md, known
/// limitations). So the bytes must make the gateway close: `Connection:
/// close`, or framing it refuses. Bounded by [`DEADLINE`]: a connection
/// still open then is an error.
pub async fn raw_conversation(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<RawConversation> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    // The gateway may answer and close before it has read everything; a
    // failed write then is part of the behaviour under test, not an error.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        bail!("the connection stayed open for {DEADLINE:?} after the request");
    }
    let mut rest = received.as_slice();
    let mut responses = Vec::new();
    while let Some((response, used)) = parse_response(rest) {
        responses.push(response);
        rest = &rest[used..];
    }
    Ok(RawConversation {
        responses,
        trailing: rest.to_vec(),
    })
}

/// One complete response at the start of `buffer`, and how many bytes it
/// took.
fn parse_response(buffer: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut response = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    let body = &buffer[head_end..];
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut at = 0;
        loop {
            let line_end = body[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&body[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            let data = line_end + 2;
            if size == 0 {
                // No trailers are expected from the gateway.
                let end = data + 2;
                return (body.len() >= end).then(|| (response, head_end + end));
            }
            if body.len() < data + size + 2 {
                return None;
            }
            response.body.extend_from_slice(&body[data..data + size]);
            at = data + size + 2;
        }
    }
    let length = match response.header("content-length") {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    if body.len() < length {
        return None;
    }
    response.body = body[..length].to_vec();
    Some((response, head_end + length))
}

/// A listener a test owns and nothing should ever connect to: a URL planted
/// in a token (`jku`, `x5u`, `kid`) points here, and the test then proves the
/// gateway never followed it. Counts every connection accepted.
pub struct Tripwire {
    addr: SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Ok(Self {
            addr,
            connections,
            task,
        })
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}
