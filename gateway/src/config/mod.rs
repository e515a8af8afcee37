//! Configuration: the TOML file, its defaults, and its validation into typed
//! runtime values.
//!
//! [`Config::load`] reads a file, parses it into [`file::FileConfig`] (serde,
//! unknown keys refused) and validates it into [`Config`]. After that nothing
//! inside the gateway sees a duration string, an address string or an
//! `Option` that means "not configured": every value is typed, every default
//! applied. Any error is one line that names the key path, for example
//! `config.toml: pools[1].limit: must be at least 1`.
//!
//! Secrets (the upstream credential of a route, Redis passwords) are never
//! written in the file; the file names an environment variable and
//! validation reads it. The Redis TLS files are read by validation too, so
//! `check-config` reports a missing one.

pub mod file;
mod validate;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::licensing::Pool;

pub use file::FileConfig;

/// A configuration that could not be loaded; `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (part of the message, not a `source`, so that printing the
        /// error chain does not repeat it).
        error: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema.
    #[error("{origin}: {location}{key}: {message}")]
    Parse {
        /// File name (or `<inline>`).
        origin: String,
        /// `line L, column C: ` where known.
        location: String,
        /// The key path, e.g. `pools[0].limit`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The values are well-formed TOML but not a usable configuration.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// File name (or `<inline>`).
        origin: String,
        /// The key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The key path the error is about.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Read { .. } => "",
            ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and process behaviour.
    pub server: ServerConfig,
    /// Trusted token issuers.
    pub issuers: Vec<IssuerConfig>,
    /// How tokens are judged.
    pub tokens: TokenPolicy,
    /// Session store and timing.
    pub sessions: SessionSettings,
    /// `[redis]`, when `sessions.store = "redis"`.
    pub redis: Option<RedisConfig>,
    /// License pools, in matching order.
    pub pools: Vec<Pool>,
    /// Backend groups.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes, in matching order.
    pub routes: Vec<RouteConfig>,
    /// Identity header names.
    pub headers: IdentityHeaderNames,
    /// Logging.
    pub logging: LoggingConfig,
    /// `[tracing]`: span export.
    pub tracing: TracingConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[usage]`: how long the usage history is kept.
    pub usage: crate::usage::UsageRetention,
    /// The file as parsed, with every default filled in (for `check-config`).
    pub effective: FileConfig,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Proxy listeners.
    pub listen: Vec<SocketAddr>,
    /// The admin/metrics listener, never one of the proxy listeners.
    pub admin_listen: SocketAddr,
    /// TLS for the proxy listeners.
    pub tls: Option<TlsFiles>,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Whether the proxy threads share one work-stealing runtime (`true`) or
    /// each run their own (`false`, the default: a request stays on the
    /// thread that accepted it, which Pingora measures faster for
    /// short requests).
    pub work_stealing: bool,
    /// TLS listeners offer HTTP/2 (ALPN `h2`, then `http/1.1`).
    pub http2: bool,
    /// Plain listeners take HTTP/2 with prior knowledge (h2c) beside HTTP/1.1.
    pub h2c: bool,
    /// How long a stopping gateway keeps serving in-flight requests.
    pub grace_period: Duration,
    /// After the grace period, how long runtimes get to wind down.
    pub shutdown_timeout: Duration,
    /// The realm in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Path prefix of the gateway's own endpoints (`/.gateway`).
    pub gateway_prefix: String,
    /// Whether `/readyz` fails while the session store is unreachable
    /// (otherwise the outage is reported as `degraded`).
    pub readiness_requires_store: bool,
    /// `server.trusted_proxies`: the peers whose forwarding headers count.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `server.request_id_header` (lowercase).
    pub request_id_header: http::HeaderName,
}

/// Certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Further certificates by host name (SNI); `cert` and `key` serve
    /// every other name and clients that send none.
    pub by_name: Vec<NamedCertificate>,
}

/// A listener certificate for some host names.
#[derive(Debug, Clone)]
pub struct NamedCertificate {
    /// Lowercase host names, or `*.` and a parent domain (one label).
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `<issuer>/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery(url::Url),
    /// A JWKS document at this URL.
    JwksUri(url::Url),
    /// A JWKS document in a local file (re-read on every refresh).
    JwksFile(PathBuf),
}

/// `[[issuers]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Accepted `aud` values; a token needs at least one of them.
    pub audiences: Vec<String>,
    /// The algorithm allow-list (never HMAC, never `none`).
    pub algorithms: Vec<Algorithm>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Periodic JWKS refresh.
    pub jwks_refresh: Duration,
    /// Minimum time between two fetches triggered by unknown `kid`s.
    pub jwks_min_refetch: Duration,
    /// Timeout of one discovery or JWKS request.
    pub http_timeout: Duration,
    /// Accepted `aud` values of back-channel logout tokens: the client ids
    /// of the relying parties the provider sends them for (OIDC BCL 1.0
    /// §2.4). Defaults to `audiences`, which real providers do not use.
    pub logout_audiences: Vec<String>,
    /// Whether a logout token must carry `typ: logout+jwt`; when false, one
    /// without `typ` is accepted too (never another `typ`).
    pub require_logout_typ: bool,
    /// Accepted access-token `typ` headers, as [`token_type`] normalises
    /// them; `""` stands for a token without `typ`.
    pub access_token_types: Vec<String>,
    /// The smallest RSA modulus, in bits, of a key the issuer's JWKS may
    /// hold (2048 unless set; 1024 at the least for legacy providers).
    pub min_rsa_bits: usize,
    /// PEM CA certificates trusted for discovery and JWKS fetches instead of
    /// the system's roots (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
}

/// `sessions.touch_interval` when unset (unless a quarter of the shortest
/// idle timeout is shorter): a touch costs Redis four commands per busy
/// session, and a session may idle out up to this much early, 2.5 % of the
/// default 20-minute idle timeout.
pub const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(30);

/// `min_rsa_bits` of an issuer that does not set it: NIST SP 800-131A's
/// floor for RSA signatures.
pub const DEFAULT_MIN_RSA_BITS: u32 = 2048;

/// Normalised `typ` values of tokens that are never access tokens, whatever
/// `access_token_types` says: back-channel logout tokens, ID tokens and
/// security event tokens (RFC 8725 §3.11).
pub const NEVER_ACCESS_TOKEN_TYPES: &[&str] = &["logout+jwt", "id+jwt", "secevent+jwt"];

/// A JOSE `typ` header as compared: lowercase, without the optional
/// `application/` prefix (RFC 7515 §4.1.9), `""` for none.
pub fn token_type(typ: Option<&str>) -> String {
    let typ = typ.unwrap_or("").trim().to_ascii_lowercase();
    match typ.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => typ,
    }
}

/// `[tokens]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Clock skew allowed on `exp`, `nbf`, `iat`, `auth_time`.
    pub leeway: Duration,
    /// Refuse tokens whose `exp - iat` is longer.
    pub max_lifetime: Option<Duration>,
    /// Refuse tokens whose `auth_time` is older.
    pub max_auth_age: Option<Duration>,
    /// Claims every token must carry.
    pub required_claims: Vec<String>,
    /// Entries of the verified-token cache (0 disables it).
    pub cache_size: usize,
    /// Longest accepted token, in bytes.
    pub max_token_bytes: usize,
}

/// Which store holds sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process only.
    Memory,
    /// Shared by the fleet, in Redis.
    Redis,
}

/// How the gateway reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// One server (or a proxy in front of several).
    Standalone,
    /// Redis Cluster, from seed nodes.
    Cluster,
    /// A primary found through Redis Sentinel (`master_name`), re-resolved
    /// after a failover.
    Sentinel,
}

/// `[redis]`, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Standalone, cluster or sentinel.
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs, all of one scheme, each with its
    /// password already inserted: the server or the cluster's seed nodes
    /// (`password_env`), or the sentinels (`sentinel_password_env`).
    pub urls: Vec<Secret>,
    /// The master's name under Sentinel.
    pub master_name: Option<String>,
    /// Under Sentinel, the password of the primary the sentinels name
    /// (`password_env`); the sentinels' own password is in `urls`.
    pub master_password: Option<Secret>,
    /// TLS settings when the URLs are `rediss://`; under Sentinel they apply
    /// to the sentinels and to the primary alike.
    pub tls: Option<RedisTls>,
    /// Prefix of every key and channel.
    pub key_prefix: String,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on one command.
    pub response_timeout: Duration,
    /// How long a session confirmed before an outage keeps working.
    pub grace_period: Duration,
    /// `sessions.touch_interval`: at most one touch per leased session per
    /// this interval.
    pub touch_interval: Duration,
    /// `sessions.lease_revalidate`: the longest a lease is served without
    /// Redis confirming it again.
    pub lease_revalidate: Duration,
    /// Replicas that must have a new session or a close before the caller
    /// is answered (`WAIT`); 0 = none.
    pub wait_replicas: u32,
    /// The longest `WAIT`.
    pub wait_timeout: Duration,
}

/// TLS material for `rediss://` connections, read (and its PEM checked)
/// when the configuration loads, so a missing or unreadable file stops the
/// gateway before it serves.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and key, for servers that require mutual TLS.
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM (Redis TLS,
/// upstream mTLS).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain.
    pub cert_pem: Vec<u8>,
    /// The private key.
    pub key_pem: Secret,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates are public but long; the key is shown as redacted.
        f.debug_struct("RedisTls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("client", &self.client.as_ref().map(|c| &c.key_pem))
            .finish()
    }
}

/// `[sessions]`.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Which store.
    pub store: StoreKind,
    /// Default idle timeout (pools may override).
    pub idle_timeout: Duration,
    /// Default absolute lifetime (pools may override).
    pub absolute_timeout: Duration,
    /// Claims that make up the session identity: one entry per component,
    /// each the alternative claim names of that component (the first one a
    /// token carries is used). The session identity rule is built from it.
    pub identity: Vec<Vec<String>>,
    /// The most often a leased session's idle timer is slid in a shared
    /// store (one touch per session per interval); also how far a session's
    /// last use in the store may lag its real last call.
    pub touch_interval: Duration,
    /// The longest a shared store's lease is served without the store
    /// confirming it again (the safety net behind the close channel).
    pub lease_revalidate: Duration,
    /// How often expired sessions are swept.
    pub sweep_interval: Duration,
    /// Status of the `license_unavailable` refusal.
    pub license_unavailable_status: u16,
}

/// `[[upstreams]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Name referenced by routes.
    pub name: String,
    /// `host:port` of each server.
    pub servers: Vec<String>,
    /// HTTP health check.
    pub health_check: Option<HealthCheckConfig>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each read from the server.
    pub read_timeout: Duration,
    /// Timeout of each write to the server.
    pub write_timeout: Duration,
    /// Speak TLS to the servers.
    pub tls: bool,
    /// SNI (and certificate name) when `tls`.
    pub sni: String,
    /// The CAs the servers' certificates must chain to (DER, `ca_file`);
    /// `None`: the system's roots.
    pub ca: Option<Vec<Vec<u8>>>,
    /// The certificate and key the gateway presents to the servers (mTLS).
    pub client_identity: Option<ClientIdentity>,
    /// Whether the servers' certificates are verified at all.
    pub verify_cert: bool,
    /// Whether they must name `sni`.
    pub verify_hostname: bool,
    /// Whether HTTP/2 is offered to the servers (ALPN `h2` with TLS,
    /// prior knowledge without).
    pub http2: bool,
    /// How often the servers' host names are looked up again; `None` when
    /// every server is an IP address, or with `resolve_interval = "0s"`.
    pub resolve_interval: Option<Duration>,
}

/// `[upstreams.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Path probed with GET; 200 means healthy.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Timeout of one probe.
    pub timeout: Duration,
    /// Host header of the probe.
    pub host: String,
}

/// What a route requires of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePolicy {
    /// A valid token and an open session (a seat).
    Session,
    /// A valid token only; no session, no seat.
    Token,
    /// Nothing; forwarded as is.
    Public,
}

impl RoutePolicy {
    /// The name used in configuration, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutePolicy::Session => "session",
            RoutePolicy::Token => "token",
            RoutePolicy::Public => "public",
        }
    }
}

/// A secret value; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself; only for the place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What happens to the client's `Authorization` header on the way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuthorization {
    /// Forwarded unchanged.
    Pass,
    /// Removed.
    Strip,
    /// Replaced by a static credential (read from the environment at start-up).
    Replace(Secret),
}

/// `[[routes]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Host to match (`example.com` or `*.example.com`), lowercase; any host if `None`.
    pub host: Option<String>,
    /// Path prefix to match.
    pub path_prefix: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// What the route requires.
    pub policy: RoutePolicy,
    /// Scopes the token must carry (403 otherwise).
    pub required_scopes: Vec<String>,
    /// Authorization header treatment.
    pub authorization: UpstreamAuthorization,
    /// Whether protocol upgrades (WebSocket) may pass.
    pub upgrades: UpgradePolicy,
    /// The route's CORS policy; `None`: the gateway answers no preflight
    /// and adds no CORS header (the default).
    pub cors: Option<CorsConfig>,
    /// The route's own upstream timeouts (the group's where `None`).
    pub timeouts: RouteTimeouts,
}

/// `[routes.timeouts]`, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// Connect (and TLS) timeout, instead of the upstream group's.
    pub connect: Option<Duration>,
    /// Timeout of each read from the server, instead of the group's.
    pub read: Option<Duration>,
    /// The whole exchange with the backend, from the request's arrival to
    /// the last byte of the response.
    pub total: Option<Duration>,
}

/// `[routes.cors]`: which cross-origin callers a browser may let read the
/// route's responses. The gateway answers a preflight (`OPTIONS` with
/// `Origin` and `Access-Control-Request-Method`) itself, without a token and
/// without opening a session, and adds `Access-Control-Allow-Origin` to the
/// responses of allowed origins, its own problems included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins (`scheme://host[:port]`, lowercase); empty with
    /// `any_origin`.
    pub allow_origins: Vec<String>,
    /// `allow_origins = ["*"]`: any origin (never with credentials).
    pub any_origin: bool,
    /// Methods a preflight may ask for, uppercase.
    pub allow_methods: Vec<http::Method>,
    /// Request headers a preflight may ask for, lowercase.
    pub allow_headers: Vec<http::HeaderName>,
    /// Response headers scripts may read besides the safelisted ones.
    pub expose_headers: Vec<http::HeaderName>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
    /// Whether credentialed requests (cookies, client certificates) may be
    /// read (`Access-Control-Allow-Credentials: true`).
    pub allow_credentials: bool,
}

/// Whether a route lets a request upgrade its connection (RFC 9110 §7.8).
///
/// An upgraded connection is a tunnel: once the backend answers 101, the
/// gateway no longer sees requests on it, so the token and session checks
/// made for the upgrade request are the last ones. Refusing is the default;
/// a route that needs WebSocket opts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpgradePolicy {
    /// A request carrying `Upgrade` gets 403 `upgrade_refused`, nothing forwarded.
    #[default]
    Refuse,
    /// Upgrades are forwarded after the route's usual checks.
    Allow,
}

/// `[headers]`: identity headers sent upstream (and always stripped from clients).
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    /// Carries the session id.
    pub session_id: HeaderName,
    /// Carries the token's `sub`.
    pub subject: HeaderName,
    /// Carries `client_id` or `azp`.
    pub client: HeaderName,
    /// Carries the license pool name.
    pub pool: HeaderName,
    /// `true` when the session holds a seat beyond the limit (overdraft).
    pub overdraft: HeaderName,
    /// Claim name → header carrying its value.
    pub claims: Vec<(String, HeaderName)>,
}

impl IdentityHeaderNames {
    /// Every identity header name, including the claim headers.
    pub fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.session_id,
            &self.subject,
            &self.client,
            &self.pool,
            &self.overdraft,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(_, h)| h))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// `[admin]`, validated.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The bearer token of the admin API; `None` disables the API (health,
    /// readiness and metrics stay open).
    pub token: Option<Secret>,
}

/// `[tracing]`.
#[derive(Debug, Clone, Default)]
pub struct TracingConfig {
    /// OTLP export of the request spans; `None`: off.
    pub otlp: Option<OtlpConfig>,
}

/// Where and how spans are exported (OTLP/HTTP with JSON bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's traces URL (`http://collector:4318/v1/traces`).
    pub endpoint: url::Url,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Bound on one export request.
    pub timeout: Duration,
}

/// `[logging]`.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// A `tracing` filter directive such as `info` or `session_gateway=debug`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml(&text, &path.display().to_string(), base, &|name| {
            std::env::var(name).ok()
        })
    }

    /// Parses and validates configuration text.
    ///
    /// `origin` names the text in errors; relative file paths in it resolve
    /// against `base_dir`; `env` looks up environment variables (injected so
    /// tests need not mutate the process environment).
    pub fn from_toml(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = parse(text, origin)?;
        validate::validate(file, origin, base_dir, env)
    }

    /// The claims anything reads from a verified token once it is verified:
    /// the registered ones the gateway itself uses, and every claim the
    /// identity rule, the pool and reserved-seat rules and the claim headers
    /// name. A dotted name also keeps its top-level claim, which it walks
    /// into. The verified-token cache keeps only these (see
    /// [`Verifier::retaining`](crate::auth::Verifier::retaining)).
    pub fn claims_in_use(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = ["iss", "sub", "client_id", "azp", "sid", "scope", "scp"]
            .into_iter()
            .map(String::from)
            .collect();
        let configured = self
            .sessions
            .identity
            .iter()
            .flatten()
            .chain(self.pools.iter().flat_map(|pool| {
                let reserved = pool.reserved.iter().map(|r| &r.rule.claim);
                pool.rule.iter().map(|rule| &rule.claim).chain(reserved)
            }))
            .chain(self.headers.claims.iter().map(|(claim, _)| claim));
        for name in configured {
            if let Some((top, _)) = name.split_once('.') {
                names.insert(top.to_string());
            }
            names.insert(name.clone());
        }
        names
    }

    /// The effective configuration as TOML (defaults filled in; no secrets,
    /// since the file holds none).
    pub fn effective_toml(&self) -> String {
        toml::to_string_pretty(&self.effective)
            .unwrap_or_else(|e| format!("# cannot render the effective configuration: {e}\n"))
    }
}

/// TOML text → [`FileConfig`], with the key path of the first problem.
fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    let deserializer =
        toml::de::Deserializer::parse(text).map_err(|e| parse_error(origin, text, "", &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        parse_error(origin, text, &key, e.inner())
    })
}

fn parse_error(origin: &str, text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let location = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before.len(), |nl| before.len() - nl - 1)
                + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    let message = e.message().trim().replace('\n', " ");
    ConfigError::Parse {
        origin: origin.to_string(),
        location,
        key: if key.is_empty() {
            "(top level)".into()
        } else {
            key.into()
        },
        message,
    }
}

#[cfg(test)]
mod tests;
