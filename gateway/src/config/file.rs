//! The configuration file as written: serde structs that mirror the TOML.
//!
//! Nothing here is interpreted. Durations are still strings, addresses still
//! text; [`super::validate`] turns this into the typed runtime values, naming
//! the key path of anything it refuses. Every struct denies unknown keys, so
//! a typo is an error instead of a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
    #[serde(default)]
    pub tokens: TokensSection,
    #[serde(default)]
    pub sessions: SessionsSection,
    /// Required when `sessions.store = "redis"`; no silent default address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSection>,
    #[serde(default)]
    pub pools: Vec<PoolSection>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    #[serde(default)]
    pub headers: HeadersSection,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub tracing: TracingSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub usage: UsageSection,
}

/// `[server]`: listeners and process behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Vec<String>,
    pub admin_listen: String,
    pub tls: Option<TlsSection>,
    pub threads: Option<usize>,
    /// Whether idle proxy threads take tasks queued on busy ones.
    pub work_stealing: bool,
    /// Whether TLS listeners offer HTTP/2 (ALPN `h2`) beside HTTP/1.1.
    pub http2: bool,
    /// Whether plain listeners take HTTP/2 with prior knowledge (h2c).
    pub h2c: bool,
    pub grace_period: String,
    pub shutdown_timeout: String,
    pub realm: String,
    pub gateway_prefix: String,
    /// Whether `/readyz` fails while the session store is unreachable.
    pub readiness_requires_store: bool,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` / `Forwarded`
    /// entries, `X-Forwarded-Proto` and request id are believed.
    pub trusted_proxies: Vec<String>,
    /// The request id header, kept from a trusted proxy or generated.
    pub request_id_header: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: vec!["0.0.0.0:8080".into()],
            admin_listen: "127.0.0.1:9190".into(),
            tls: None,
            threads: None,
            work_stealing: false,
            http2: true,
            h2c: false,
            grace_period: "5s".into(),
            shutdown_timeout: "5s".into(),
            realm: "session-gateway".into(),
            gateway_prefix: "/.gateway".into(),
            readiness_requires_store: false,
            trusted_proxies: Vec::new(),
            request_id_header: "x-request-id".into(),
        }
    }
}

/// `[server.tls]`: certificate and key files for the proxy listeners.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: String,
    pub key: String,
    /// Further certificates, chosen by the name a client asks for (SNI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<NamedCertificateSection>,
}

/// `[server] tls.certificates[]`: a certificate for some host names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamedCertificateSection {
    pub names: Vec<String>,
    pub cert: String,
    pub key: String,
}

/// `[[issuers]]`: one trusted OpenID Connect provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: String,
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch: String,
    #[serde(default = "default_http_timeout")]
    pub http_timeout: String,
    /// Accepted `aud` values of back-channel logout tokens (the relying
    /// parties' client ids); `audiences` when unset.
    #[serde(default)]
    pub logout_audiences: Option<Vec<String>>,
    /// Whether a logout token must carry `typ: logout+jwt`.
    #[serde(default)]
    pub require_logout_typ: bool,
    /// Accepted `typ` headers of access tokens (`""`: no `typ`).
    #[serde(default = "default_access_token_types")]
    pub access_token_types: Vec<String>,
    /// The smallest RSA modulus, in bits, a JWKS key may have.
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: u32,
    /// PEM CA certificates trusted for discovery and JWKS fetches, instead
    /// of the system's roots (a provider with a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

fn default_min_rsa_bits() -> u32 {
    super::DEFAULT_MIN_RSA_BITS
}

fn default_access_token_types() -> Vec<String> {
    ["at+jwt", "application/at+jwt", "JWT", ""]
        .map(String::from)
        .to_vec()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_jwks_refresh() -> String {
    "5m".into()
}
fn default_jwks_min_refetch() -> String {
    "10s".into()
}
fn default_http_timeout() -> String {
    "5s".into()
}

/// `[tokens]`: how access tokens are judged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    pub leeway: String,
    pub max_lifetime: Option<String>,
    pub max_auth_age: Option<String>,
    pub required_claims: Vec<String>,
    pub cache_size: usize,
    pub max_token_bytes: usize,
}

impl Default for TokensSection {
    fn default() -> Self {
        Self {
            leeway: "30s".into(),
            max_lifetime: None,
            max_auth_age: None,
            required_claims: Vec::new(),
            cache_size: 100_000,
            max_token_bytes: 8192,
        }
    }
}

/// `[sessions]`: where sessions live and how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    pub store: String,
    pub idle_timeout: String,
    pub absolute_timeout: String,
    pub identity: Vec<String>,
    /// Unset: [`super::DEFAULT_TOUCH_INTERVAL`], or a quarter of the
    /// shortest idle timeout when that is shorter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touch_interval: Option<String>,
    pub lease_revalidate: String,
    pub sweep_interval: String,
    pub license_unavailable_status: u16,
}

impl Default for SessionsSection {
    fn default() -> Self {
        Self {
            store: "memory".into(),
            idle_timeout: "20m".into(),
            absolute_timeout: "8h".into(),
            identity: vec!["iss".into(), "sub".into(), "client_id|azp".into()],
            touch_interval: None,
            lease_revalidate: "30s".into(),
            sweep_interval: "10s".into(),
            license_unavailable_status: 429,
        }
    }
}

/// `[redis]`: the shared store, used when `sessions.store = "redis"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: String,
    /// The server (standalone), without a password.
    pub url: String,
    /// Seed nodes (cluster) or sentinels (sentinel).
    pub urls: Vec<String>,
    /// The monitored master's name (sentinel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// Environment variable holding the password, if Redis needs one (under
    /// Sentinel: the primary's password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Environment variable holding the sentinels' own password (sentinel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_password_env: Option<String>,
    /// PEM file of the CA certificates trusted for `rediss://`, instead of
    /// the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// PEM client certificate chain, for servers that require mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    pub key_prefix: String,
    pub connect_timeout: String,
    pub response_timeout: String,
    pub grace_period: String,
    /// Replicas that must have an admission or close before it is
    /// acknowledged (`WAIT`); 0 = asynchronous replication.
    pub wait_replicas: u32,
    /// How long `WAIT` may take.
    pub wait_timeout: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            mode: "standalone".into(),
            url: "redis://127.0.0.1:6379".into(),
            urls: Vec::new(),
            master_name: None,
            password_env: None,
            sentinel_password_env: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            key_prefix: "sg".into(),
            connect_timeout: "1s".into(),
            response_timeout: "1s".into(),
            grace_period: "0s".into(),
            wait_replicas: 0,
            wait_timeout: "100ms".into(),
        }
    }
}

/// A claim test: the claim's value (or one of its values, for arrays) is one of `any_of`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMatchSection {
    pub claim: String,
    pub any_of: Vec<String>,
}

/// `[[pools]]`: one license pool.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub name: String,
    pub limit: u32,
    #[serde(default, rename = "match")]
    pub matcher: Option<ClaimMatchSection>,
    #[serde(default)]
    pub per_subject_limit: Option<u32>,
    #[serde(default = "default_on_subject_limit")]
    pub on_subject_limit: String,
    #[serde(default)]
    pub reserved: Vec<ReservedSection>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub absolute_timeout: Option<String>,
    /// Sessions beyond `limit`: a number of seats, or a share of the limit
    /// (`"10%"`); validated in `validate/pools.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdraft: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_token: Option<SharedTokenSection>,
    /// How long a closed session's seat stays with its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger: Option<String>,
    /// How long a seat is held at least after its session opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_hold: Option<String>,
    /// Whether callers that find no seat wait for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSection>,
}

/// `[[pools]] queue`: callers that find no seat wait for one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    pub max_wait: String,
    pub max_length: u32,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            max_wait: "10s".into(),
            max_length: 100,
        }
    }
}

/// `[[pools]] shared_token`: when one token counts as used by several.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedTokenSection {
    pub window: String,
    pub max_addresses: u32,
    pub max_user_agents: u32,
    pub on_shared: String,
}

impl Default for SharedTokenSection {
    fn default() -> Self {
        Self {
            window: "10m".into(),
            max_addresses: 3,
            max_user_agents: 3,
            on_shared: "audit".into(),
        }
    }
}

fn default_on_subject_limit() -> String {
    "deny".into()
}

/// `[[pools.reserved]]`: seats only matching tokens may take.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReservedSection {
    pub claim: String,
    pub any_of: Vec<String>,
    pub seats: u32,
}

/// `[[upstreams]]`: a named group of backend servers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: String,
    pub servers: Vec<String>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSection>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_io_timeout")]
    pub read_timeout: String,
    #[serde(default = "default_io_timeout")]
    pub write_timeout: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM CA certificates the servers' certificates must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM certificate chain presented to the servers (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// PEM private key of `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
    #[serde(default = "default_true")]
    pub verify_cert: bool,
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
    #[serde(default)]
    pub http2: bool,
    /// How often host names in `servers` are looked up again (`"0s"`: only
    /// at start and reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_interval: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_io_timeout() -> String {
    "30s".into()
}

/// `[upstreams.health_check]`: an HTTP probe per server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval: String,
    #[serde(default = "default_health_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub host: Option<String>,
}

fn default_health_interval() -> String {
    "5s".into()
}
fn default_health_timeout() -> String {
    "1s".into()
}

/// `[[routes]]`: a request matcher and what to do with matching requests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    pub upstream: String,
    pub policy: String,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default = "default_authorization")]
    pub authorization: String,
    #[serde(default)]
    pub authorization_env: Option<String>,
    #[serde(default = "default_upgrades")]
    pub upgrades: String,
    #[serde(default)]
    pub cors: Option<CorsSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RouteTimeoutsSection>,
}

/// `[routes.timeouts]`: the route's own bounds on its upstream exchange.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeoutsSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
}

/// `[routes.cors]`: the route answers CORS preflights itself and marks the
/// responses browsers may read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    pub allow_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    pub max_age: String,
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}
fn default_cors_headers() -> Vec<String> {
    ["authorization", "content-type"].map(String::from).to_vec()
}
fn default_cors_max_age() -> String {
    "10m".into()
}

fn default_upgrades() -> String {
    "refuse".into()
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_authorization() -> String {
    "pass".into()
}

/// `[headers]`: names of the identity headers sent to upstreams.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    pub session_id: String,
    pub subject: String,
    pub client: String,
    pub pool: String,
    /// Set to `true` on requests of a session admitted beyond the limit.
    pub overdraft: String,
    pub claims: BTreeMap<String, String>,
}

impl Default for HeadersSection {
    fn default() -> Self {
        Self {
            session_id: "X-Session-Id".into(),
            subject: "X-Auth-Subject".into(),
            client: "X-Auth-Client".into(),
            pool: "X-License-Pool".into(),
            overdraft: "X-License-Overdraft".into(),
            claims: BTreeMap::new(),
        }
    }
}

/// `[admin]`: the admin API's bearer token, from the environment or a file
/// (never inline). Without either, the admin API is disabled.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Environment variable holding the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the token (surrounding whitespace ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// `[usage]`: how long the pools' usage history is kept, per step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSection {
    pub minutes: String,
    pub hours: String,
    pub days: String,
}

impl Default for UsageSection {
    fn default() -> Self {
        Self {
            minutes: "2d".into(),
            hours: "90d".into(),
            days: "1096d".into(),
        }
    }
}

/// `[tracing]`: export of the gateway's spans (OTLP over HTTP).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// Where spans are sent (`…/v1/traces`); none: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub export_timeout: String,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "session-gateway".into(),
            export_timeout: "5s".into(),
        }
    }
}

/// `[logging]`: log level and format.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    pub level: String,
    pub format: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "json".into(),
        }
    }
}
