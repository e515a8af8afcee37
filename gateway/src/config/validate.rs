//! [`FileConfig`] → [`Config`]: every check that needs more than a type.
//!
//! Each refusal names its key path (`routes[2].upstream`) and says what would
//! be accepted, so an operator can fix the file from the message alone.

use std::collections::{BTreeSet, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::file::{
    ClaimMatchSection, FileConfig, IssuerSection, PoolSection, RedisSection, RouteSection,
};
use super::*;
use crate::licensing::{ClaimMatch, Pool, ReservedSeats, SubjectLimit, SubjectLimitPolicy};
use crate::session::identity::IdentityRule;

/// Collects the origin so every error can name the file.
struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn fail<T>(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.into(),
            message: message.into(),
        })
    }

    fn duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        parse_duration(text).or_else(|e| self.fail(key, format!("`{text}` {e}")))
    }

    fn positive_duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(key, text)?;
        if d.is_zero() {
            return self.fail(key, "must be longer than zero");
        }
        Ok(d)
    }

    fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        SocketAddr::from_str(text.trim()).or_else(|_| {
            self.fail(
                key,
                format!("`{text}` is not an IP address with a port, e.g. \"0.0.0.0:8080\" or \"[::1]:8080\""),
            )
        })
    }

    fn header_name(&self, key: &str, text: &str) -> Result<HeaderName, ConfigError> {
        let name = HeaderName::from_str(text)
            .or_else(|_| self.fail(key, format!("`{text}` is not a valid HTTP header name")))?;
        // Protocol headers, among them every hop-by-hop header (RFC 9110
        // §7.6.1, plus the obsolete `Proxy-Connection` many proxies still
        // honour): a proxy on the way may drop or act on them.
        const RESERVED: &[&str] = &[
            "authorization",
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "cookie",
            "keep-alive",
            "proxy-authorization",
            "proxy-authenticate",
        ];
        // `Transfer_Encoding` is `Transfer-Encoding` to a CGI-style backend.
        if RESERVED.contains(&header_spelling(&name).as_str()) {
            return self.fail(
                key,
                format!("`{text}` is a protocol header and cannot carry identity"),
            );
        }
        Ok(name)
    }

    fn claim_match(
        &self,
        key: &str,
        section: &ClaimMatchSection,
    ) -> Result<ClaimMatch, ConfigError> {
        self.claim_rule(key, &section.claim, &section.any_of)
    }

    fn claim_rule(
        &self,
        key: &str,
        claim: &str,
        any_of: &[String],
    ) -> Result<ClaimMatch, ConfigError> {
        if claim.trim().is_empty() {
            return self.fail(format!("{key}.claim"), "must name a claim");
        }
        if any_of.is_empty() {
            return self.fail(format!("{key}.any_of"), "must list at least one value");
        }
        Ok(ClaimMatch::new(claim.to_string(), any_of.iter().cloned()))
    }
}

pub(super) fn validate(
    file: FileConfig,
    origin: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let c = Check { origin };

    let server = server(&c, &file, base_dir)?;
    let tokens = tokens(&c, &file)?;
    let sessions = sessions(&c, &file)?;
    let redis = match sessions.store {
        StoreKind::Redis => Some(redis(&c, &file, &sessions, base_dir, env)?),
        StoreKind::Memory => None,
    };
    let issuers = file
        .issuers
        .iter()
        .enumerate()
        .map(|(i, s)| issuer(&c, &format!("issuers[{i}]"), s, base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for (i, s) in issuers.iter().enumerate() {
        if !seen.insert(s.issuer.clone()) {
            return c.fail(
                format!("issuers[{i}].issuer"),
                format!("`{}` is configured twice", s.issuer),
            );
        }
    }
    let pools = pools(&c, &file, &sessions)?;
    let upstreams = upstreams(&c, &file)?;
    let routes = file
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(&c, &format!("routes[{i}]"), r, &upstreams, &server, env))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        if !seen.insert(r.name.clone()) {
            return c.fail(
                format!("routes[{i}].name"),
                format!("route `{}` is defined twice", r.name),
            );
        }
    }
    if routes.is_empty() {
        return c.fail("routes", "at least one [[routes]] entry is needed");
    }
    if routes.iter().any(|r| r.policy != RoutePolicy::Public) && issuers.is_empty() {
        return c.fail(
            "issuers",
            "routes with policy `session` or `token` need at least one [[issuers]] entry",
        );
    }
    if routes.iter().any(|r| r.policy == RoutePolicy::Session) && pools.is_empty() {
        return c.fail(
            "pools",
            "routes with policy `session` need at least one [[pools]] entry",
        );
    }
    let headers = headers(&c, &file)?;
    let logging = logging(&c, &file)?;
    let admin = admin(&c, &file, base_dir, env)?;

    Ok(Config {
        server,
        issuers,
        tokens,
        sessions,
        redis,
        pools,
        upstreams,
        routes,
        headers,
        logging,
        admin,
        effective: file,
    })
}

fn server(c: &Check, file: &FileConfig, base_dir: &Path) -> Result<ServerConfig, ConfigError> {
    let s = &file.server;
    if s.listen.is_empty() {
        return c.fail("server.listen", "must list at least one address");
    }
    let listen = s
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| c.socket_addr(&format!("server.listen[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    let admin_listen = c.socket_addr("server.admin_listen", &s.admin_listen)?;
    if listen.iter().any(|l| listeners_clash(l, &admin_listen)) {
        return c.fail(
            "server.admin_listen",
            "must differ from every proxy listener in server.listen",
        );
    }
    let threads = match s.threads {
        Some(0) => return c.fail("server.threads", "must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if s.realm.is_empty()
        || s.realm
            .chars()
            .any(|ch| ch == '"' || ch == '\\' || ch.is_control())
    {
        return c.fail(
            "server.realm",
            "must be non-empty, without quotes, backslashes or control characters",
        );
    }
    let prefix = s.gateway_prefix.as_str();
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || prefix.ends_with('/')
        || prefix.contains(['?', '#'])
    {
        return c.fail(
            "server.gateway_prefix",
            "must be a path like \"/.gateway\" (leading slash, no trailing slash)",
        );
    }
    let tls = match &s.tls {
        None => None,
        Some(t) => {
            let files = TlsFiles {
                cert: base_dir.join(&t.cert),
                key: base_dir.join(&t.key),
            };
            if let Err(e) = check_tls_files(&files) {
                return c.fail("server.tls", e);
            }
            Some(files)
        }
    };
    Ok(ServerConfig {
        listen,
        admin_listen,
        tls,
        threads,
        grace_period: c.duration("server.grace_period", &s.grace_period)?,
        shutdown_timeout: c.duration("server.shutdown_timeout", &s.shutdown_timeout)?,
        realm: s.realm.clone(),
        gateway_prefix: prefix.to_string(),
        readiness_requires_store: s.readiness_requires_store,
    })
}

/// Whether two listeners would compete for one port: the same address, or
/// the same (non-ephemeral) port where one of them is a wildcard that covers
/// the other (`[::]` also covers IPv4 on a dual-stack host).
fn listeners_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    let covers = |wild: &SocketAddr, other: &SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a == b || (a.port() != 0 && a.port() == b.port() && (covers(a, b) || covers(b, a)))
}

/// `http://` is accepted only for loopback hosts (development, tests).
fn secure_url(c: &Check, key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).or_else(|e| c.fail(key, format!("`{text}` is not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => c.fail(
            key,
            "must use https (plain http is accepted only for loopback hosts)",
        ),
        other => c.fail(key, format!("scheme `{other}` is not supported; use https")),
    }
}

fn issuer(
    c: &Check,
    key: &str,
    s: &IssuerSection,
    base_dir: &Path,
) -> Result<IssuerConfig, ConfigError> {
    if s.issuer.trim().is_empty() {
        return c.fail(format!("{key}.issuer"), "must be the issuer's `iss` value");
    }
    if s.audiences.is_empty() || s.audiences.iter().any(|a| a.is_empty()) {
        return c.fail(
            format!("{key}.audiences"),
            "must list at least one non-empty audience",
        );
    }
    if s.algorithms.is_empty() {
        return c.fail(
            format!("{key}.algorithms"),
            "must list at least one algorithm",
        );
    }
    let mut algorithms = Vec::new();
    for (i, name) in s.algorithms.iter().enumerate() {
        let akey = format!("{key}.algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            return c.fail(akey, "`none` means unsigned tokens and is never accepted");
        }
        let alg = Algorithm::from_str(name).or_else(|_| {
            c.fail(
                akey.clone(),
                format!("`{name}` is not a supported algorithm; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"),
            )
        })?;
        if alg.family() == AlgorithmFamily::Hmac {
            return c.fail(akey, format!("`{name}` is a shared-secret (HMAC) algorithm; an issuer's JWKS holds public keys, so only asymmetric algorithms are accepted"));
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let keys = match (&s.jwks_uri, &s.jwks_file) {
        (Some(_), Some(_)) => return c.fail(key, "set either jwks_uri or jwks_file, not both"),
        (Some(uri), None) => KeySource::JwksUri(secure_url(c, &format!("{key}.jwks_uri"), uri)?),
        (None, Some(path)) => {
            let path = base_dir.join(path);
            if let Err(e) = check_jwks_file(&path) {
                return c.fail(format!("{key}.jwks_file"), e);
            }
            KeySource::JwksFile(path)
        }
        (None, None) => {
            let base = secure_url(c, &format!("{key}.issuer"), &s.issuer)?;
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                base.as_str().trim_end_matches('/')
            );
            KeySource::Discovery(secure_url(c, &format!("{key}.issuer"), &discovery)?)
        }
    };
    let logout_audiences = match &s.logout_audiences {
        // Safe as a default only because access tokens and logout tokens
        // are told apart by type, whatever audience they share.
        None => s.audiences.clone(),
        Some(list) if list.is_empty() || list.iter().any(|a| a.trim().is_empty()) => {
            return c.fail(
                format!("{key}.logout_audiences"),
                "must list at least one non-empty client id (or be left out to use `audiences`)",
            );
        }
        Some(list) => list.clone(),
    };
    if s.access_token_types.is_empty() {
        return c.fail(
            format!("{key}.access_token_types"),
            "must list at least one token type (\"\" stands for tokens without `typ`)",
        );
    }
    let mut access_token_types = Vec::new();
    for (i, typ) in s.access_token_types.iter().enumerate() {
        let normalised = super::token_type(Some(typ));
        if super::NEVER_ACCESS_TOKEN_TYPES.contains(&normalised.as_str()) {
            return c.fail(
                format!("{key}.access_token_types[{i}]"),
                format!("`{typ}` is the type of tokens that are never access tokens"),
            );
        }
        if !access_token_types.contains(&normalised) {
            access_token_types.push(normalised);
        }
    }
    Ok(IssuerConfig {
        issuer: s.issuer.clone(),
        audiences: s.audiences.clone(),
        algorithms,
        keys,
        jwks_refresh: c.positive_duration(&format!("{key}.jwks_refresh"), &s.jwks_refresh)?,
        jwks_min_refetch: c.duration(&format!("{key}.jwks_min_refetch"), &s.jwks_min_refetch)?,
        http_timeout: c.positive_duration(&format!("{key}.http_timeout"), &s.http_timeout)?,
        logout_audiences,
        require_logout_typ: s.require_logout_typ,
        access_token_types,
    })
}

fn tokens(c: &Check, file: &FileConfig) -> Result<TokenPolicy, ConfigError> {
    let t = &file.tokens;
    let optional = |key: &str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
        v.as_deref()
            .map(|text| c.positive_duration(key, text))
            .transpose()
    };
    if !(256..=65_536).contains(&t.max_token_bytes) {
        return c.fail("tokens.max_token_bytes", "must be between 256 and 65536");
    }
    if let Some(i) = t.required_claims.iter().position(|n| n.trim().is_empty()) {
        return c.fail(format!("tokens.required_claims[{i}]"), "must name a claim");
    }
    Ok(TokenPolicy {
        leeway: c.duration("tokens.leeway", &t.leeway)?,
        max_lifetime: optional("tokens.max_lifetime", &t.max_lifetime)?,
        max_auth_age: optional("tokens.max_auth_age", &t.max_auth_age)?,
        required_claims: t.required_claims.clone(),
        cache_size: t.cache_size,
        max_token_bytes: t.max_token_bytes,
    })
}

fn redis(
    c: &Check,
    file: &FileConfig,
    sessions: &SessionSettings,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RedisConfig, ConfigError> {
    let Some(r) = &file.redis else {
        return c.fail(
            "redis",
            "`sessions.store = \"redis\"` needs a [redis] table naming the server, e.g. url = \"redis://10.0.0.7:6379\"",
        );
    };
    let (mode, urls, key) = match r.mode.as_str() {
        "standalone" => (RedisMode::Standalone, vec![r.url.clone()], "redis.url"),
        "cluster" => {
            if r.urls.is_empty() {
                return c.fail(
                    "redis.urls",
                    "cluster mode needs at least one seed node URL",
                );
            }
            (RedisMode::Cluster, r.urls.clone(), "redis.urls")
        }
        "sentinel" => {
            if r.urls.is_empty() {
                return c.fail(
                    "redis.urls",
                    "sentinel mode needs at least one sentinel URL",
                );
            }
            if r.master_name.as_deref().is_none_or(str::is_empty) {
                return c.fail(
                    "redis.master_name",
                    "sentinel mode needs the monitored master's name",
                );
            }
            (RedisMode::Sentinel, r.urls.clone(), "redis.urls")
        }
        other => {
            return c.fail(
                "redis.mode",
                format!("`{other}` is not a mode; use \"standalone\", \"cluster\" or \"sentinel\""),
            );
        }
    };
    if mode != RedisMode::Sentinel && r.sentinel_password_env.is_some() {
        return c.fail(
            "redis.sentinel_password_env",
            "is only used with mode = \"sentinel\" (the password of the sentinels themselves)",
        );
    }
    let secret = |key: &str, var: &Option<String>| -> Result<Option<String>, ConfigError> {
        match var {
            None => Ok(None),
            Some(var) => match env(var) {
                Some(p) if !p.is_empty() => Ok(Some(p)),
                _ => c.fail(key, format!("environment variable `{var}` is not set")),
            },
        }
    };
    let password = secret("redis.password_env", &r.password_env)?;
    let sentinel_password = secret("redis.sentinel_password_env", &r.sentinel_password_env)?;
    // Each URL carries the password of the server it names. Sentinels and
    // the primary they watch keep separate passwords (`requirepass` in
    // sentinel.conf is not the primary's), so neither stands in for the other.
    let (url_password, password_key, master_password) = match mode {
        RedisMode::Sentinel => (
            sentinel_password,
            "redis.sentinel_password_env",
            password.map(Secret::new),
        ),
        _ => (password, "redis.password_env", None),
    };
    let mut secrets = Vec::with_capacity(urls.len());
    let mut secure = None;
    for (i, text) in urls.iter().enumerate() {
        let at = if mode != RedisMode::Standalone {
            format!("{key}[{i}]")
        } else {
            key.to_string()
        };
        let mut url = match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => u,
            _ => return c.fail(at, format!("`{text}` is not a redis:// or rediss:// URL")),
        };
        // One TLS setting serves every node, so the nodes must agree on it.
        let tls = url.scheme() == "rediss";
        if *secure.get_or_insert(tls) != tls {
            return c.fail(
                at,
                "mixes redis:// and rediss://; every URL must use the same scheme",
            );
        }
        if url.password().is_some() {
            return c.fail(
                at,
                format!(
                    "must not contain a password; name an environment variable in {password_key}"
                ),
            );
        }
        if let Some(p) = &url_password
            && url.set_password(Some(p)).is_err()
        {
            return c.fail(at, "cannot carry a password");
        }
        secrets.push(Secret::new(url.to_string()));
    }
    let tls = redis_tls(c, r, base_dir, secure == Some(true))?;
    if r.key_prefix.is_empty()
        || !r
            .key_prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | ':'))
    {
        return c.fail(
            "redis.key_prefix",
            "must be non-empty letters, digits, `-`, `_`, `.` or `:`",
        );
    }
    let grace_period = c.duration("redis.grace_period", &r.grace_period)?;
    if grace_period >= sessions.idle_timeout {
        return c.fail(
            "redis.grace_period",
            "must be shorter than sessions.idle_timeout",
        );
    }
    if r.wait_replicas > 0 && mode == RedisMode::Cluster {
        return c.fail(
            "redis.wait_replicas",
            "is not supported with mode = \"cluster\" (a pool's keys live on one shard; use each shard's own replication settings)",
        );
    }
    let wait_timeout = c.positive_duration("redis.wait_timeout", &r.wait_timeout)?;
    Ok(RedisConfig {
        mode,
        urls: secrets,
        master_name: r.master_name.clone(),
        master_password,
        tls,
        key_prefix: r.key_prefix.clone(),
        connect_timeout: c.positive_duration("redis.connect_timeout", &r.connect_timeout)?,
        response_timeout: c.positive_duration("redis.response_timeout", &r.response_timeout)?,
        grace_period,
        touch_interval: sessions.touch_interval,
        wait_replicas: r.wait_replicas,
        wait_timeout,
    })
}

/// `redis.tls_*`: only with `rediss://` URLs. Each file is read now, so a
/// missing or malformed one is refused by `check-config` and before the
/// gateway serves, not found at the first connection.
fn redis_tls(
    c: &Check,
    r: &RedisSection,
    base_dir: &Path,
    secure: bool,
) -> Result<Option<RedisTls>, ConfigError> {
    let named = [
        ("redis.tls_ca_file", &r.tls_ca_file),
        ("redis.tls_cert_file", &r.tls_cert_file),
        ("redis.tls_key_file", &r.tls_key_file),
    ];
    if !secure {
        if let Some((key, _)) = named.iter().find(|(_, value)| value.is_some()) {
            return c.fail(
                *key,
                "is only used with rediss:// URLs (TLS), and the URLs here are redis://",
            );
        }
        return Ok(None);
    }
    let ca_pem = r
        .tls_ca_file
        .as_deref()
        .map(|path| pem_certificates(c, "redis.tls_ca_file", base_dir, path))
        .transpose()?;
    let client = match (&r.tls_cert_file, &r.tls_key_file) {
        (None, None) => None,
        (Some(_), None) => {
            return c.fail(
                "redis.tls_key_file",
                "is needed with redis.tls_cert_file (the client certificate's private key)",
            );
        }
        (None, Some(_)) => {
            return c.fail(
                "redis.tls_cert_file",
                "is needed with redis.tls_key_file (the certificate of that key)",
            );
        }
        (Some(cert), Some(key)) => {
            let cert_pem = pem_certificates(c, "redis.tls_cert_file", base_dir, cert)?;
            let key_pem = read_file(c, "redis.tls_key_file", base_dir, key)?;
            if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                return c.fail(
                    "redis.tls_key_file",
                    format!("`{key}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"),
                );
            }
            let Ok(key_pem) = String::from_utf8(key_pem) else {
                return c.fail("redis.tls_key_file", format!("`{key}` is not PEM text"));
            };
            Some(RedisClientIdentity {
                cert_pem,
                key_pem: Secret::new(key_pem),
            })
        }
    };
    Ok(Some(RedisTls { ca_pem, client }))
}

/// A file of one or more PEM certificates, read and checked.
fn pem_certificates(
    c: &Check,
    key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<Vec<u8>, ConfigError> {
    let pem = read_file(c, key, base_dir, path)?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => c.fail(key, format!("`{path}` holds no PEM certificate")),
        Err(e) => c.fail(key, format!("`{path}` is not valid PEM ({e})")),
    }
}

fn read_file(c: &Check, key: &str, base_dir: &Path, path: &str) -> Result<Vec<u8>, ConfigError> {
    let full = base_dir.join(path);
    std::fs::read(&full).or_else(|e| c.fail(key, format!("cannot read {}: {e}", full.display())))
}

/// The shortest admin token accepted: a guessable token on an API that can
/// end every session is worse than none.
const MIN_ADMIN_TOKEN: usize = 16;

fn admin(
    c: &Check,
    file: &FileConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AdminConfig, ConfigError> {
    let a = &file.admin;
    let (key, token) = match (&a.token_env, &a.token_file) {
        (None, None) => return Ok(AdminConfig::default()),
        (Some(_), Some(_)) => return c.fail("admin", "set token_env or token_file, not both"),
        (Some(var), None) => match env(var) {
            Some(token) => ("admin.token_env", token),
            None => {
                return c.fail(
                    "admin.token_env",
                    format!("environment variable `{var}` is not set"),
                );
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(base_dir.join(path)) {
            Ok(token) => ("admin.token_file", token),
            Err(e) => return c.fail("admin.token_file", format!("cannot read `{path}`: {e}")),
        },
    };
    let token = token.trim().to_string();
    if token.len() < MIN_ADMIN_TOKEN || token.chars().any(|ch| !ch.is_ascii_graphic()) {
        return c.fail(
            key,
            format!("the token must be at least {MIN_ADMIN_TOKEN} visible ASCII characters"),
        );
    }
    Ok(AdminConfig {
        token: Some(Secret::new(token)),
    })
}

fn sessions(c: &Check, file: &FileConfig) -> Result<SessionSettings, ConfigError> {
    let s = &file.sessions;
    let store = match s.store.as_str() {
        "memory" => StoreKind::Memory,
        "redis" => StoreKind::Redis,
        other => {
            return c.fail(
                "sessions.store",
                format!("`{other}` is not a store; use \"memory\" or \"redis\""),
            );
        }
    };
    let idle_timeout = c.positive_duration("sessions.idle_timeout", &s.idle_timeout)?;
    let absolute_timeout = c.positive_duration("sessions.absolute_timeout", &s.absolute_timeout)?;
    let touch_interval = c.positive_duration("sessions.touch_interval", &s.touch_interval)?;
    if touch_interval >= idle_timeout {
        return c.fail(
            "sessions.touch_interval",
            "must be shorter than sessions.idle_timeout",
        );
    }
    if s.identity.is_empty() {
        return c.fail(
            "sessions.identity",
            "must list at least one claim, e.g. [\"iss\", \"sub\"]",
        );
    }
    let mut components = Vec::new();
    for (i, entry) in s.identity.iter().enumerate() {
        let alternatives: Vec<String> = entry.split('|').map(|a| a.trim().to_string()).collect();
        if alternatives.iter().any(|a| a.is_empty()) {
            return c.fail(
                format!("sessions.identity[{i}]"),
                format!("`{entry}` must be a claim name or alternatives like \"client_id|azp\""),
            );
        }
        components.push(alternatives);
    }
    if !(400..=599).contains(&s.license_unavailable_status) {
        return c.fail(
            "sessions.license_unavailable_status",
            "must be an HTTP error status (400-599)",
        );
    }
    Ok(SessionSettings {
        store,
        idle_timeout,
        absolute_timeout,
        identity: IdentityRule::new(components),
        touch_interval,
        sweep_interval: c.positive_duration("sessions.sweep_interval", &s.sweep_interval)?,
        license_unavailable_status: s.license_unavailable_status,
    })
}

fn pools(
    c: &Check,
    file: &FileConfig,
    sessions: &SessionSettings,
) -> Result<Vec<Pool>, ConfigError> {
    let mut pools = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in file.pools.iter().enumerate() {
        let key = format!("pools[{i}]");
        pools.push(pool(c, &key, p, sessions)?);
        if !names.insert(p.name.clone()) {
            return c.fail(
                format!("{key}.name"),
                format!("pool `{}` is defined twice", p.name),
            );
        }
        if p.matcher.is_none() && i + 1 != file.pools.len() {
            return c.fail(
                format!("{key}.match"),
                "only the last pool may omit `match` (it catches every token the pools before it did not)",
            );
        }
    }
    Ok(pools)
}

fn pool(
    c: &Check,
    key: &str,
    p: &PoolSection,
    sessions: &SessionSettings,
) -> Result<Pool, ConfigError> {
    let valid_name = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !valid_name {
        return c.fail(
            format!("{key}.name"),
            "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
        );
    }
    if p.limit == 0 {
        return c.fail(format!("{key}.limit"), "must be at least 1");
    }
    let rule = p
        .matcher
        .as_ref()
        .map(|m| c.claim_match(&format!("{key}.match"), m))
        .transpose()?;
    let policy = match p.on_subject_limit.as_str() {
        "deny" => SubjectLimitPolicy::Deny,
        "replace_oldest" => SubjectLimitPolicy::ReplaceOldest,
        other => {
            return c.fail(
                format!("{key}.on_subject_limit"),
                format!("`{other}` is not a policy; use \"deny\" or \"replace_oldest\""),
            );
        }
    };
    let subject_limit = match p.per_subject_limit {
        Some(0) => return c.fail(format!("{key}.per_subject_limit"), "must be at least 1"),
        Some(max) => Some(SubjectLimit { max, policy }),
        None => None,
    };
    let mut reserved = Vec::new();
    let mut total_reserved: u64 = 0;
    for (j, r) in p.reserved.iter().enumerate() {
        let rkey = format!("{key}.reserved[{j}]");
        if r.seats == 0 {
            return c.fail(format!("{rkey}.seats"), "must be at least 1");
        }
        total_reserved += u64::from(r.seats);
        reserved.push(ReservedSeats {
            rule: c.claim_rule(&rkey, &r.claim, &r.any_of)?,
            seats: r.seats,
        });
    }
    if total_reserved >= u64::from(p.limit) {
        return c.fail(
            format!("{key}.reserved"),
            format!(
                "reserved seats ({total_reserved}) must leave at least one shared seat of limit ({})",
                p.limit
            ),
        );
    }
    let idle_timeout = match &p.idle_timeout {
        Some(t) => c.positive_duration(&format!("{key}.idle_timeout"), t)?,
        None => sessions.idle_timeout,
    };
    if idle_timeout <= sessions.touch_interval {
        return c.fail(
            format!("{key}.idle_timeout"),
            "must be longer than sessions.touch_interval",
        );
    }
    let absolute_timeout = match &p.absolute_timeout {
        Some(t) => c.positive_duration(&format!("{key}.absolute_timeout"), t)?,
        None => sessions.absolute_timeout,
    };
    Ok(Pool {
        name: p.name.clone(),
        limit: p.limit,
        rule,
        subject_limit,
        reserved,
        idle_timeout,
        absolute_timeout,
    })
}

fn upstreams(c: &Check, file: &FileConfig) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let key = format!("upstreams[{i}]");
        if u.name.is_empty() {
            return c.fail(format!("{key}.name"), "must not be empty");
        }
        if !names.insert(u.name.clone()) {
            return c.fail(
                format!("{key}.name"),
                format!("upstream `{}` is defined twice", u.name),
            );
        }
        if u.servers.is_empty() {
            return c.fail(
                format!("{key}.servers"),
                "must list at least one \"host:port\"",
            );
        }
        for (j, s) in u.servers.iter().enumerate() {
            let has_port = s
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
            if !has_port {
                return c.fail(
                    format!("{key}.servers[{j}]"),
                    format!("`{s}` must be \"host:port\""),
                );
            }
            if let Err(e) = s.to_socket_addrs() {
                return c.fail(
                    format!("{key}.servers[{j}]"),
                    format!("cannot resolve `{s}`: {e}"),
                );
            }
        }
        let first_host = u.servers[0]
            .rsplit_once(':')
            .map_or("", |(h, _)| h)
            .to_string();
        let health_check = match &u.health_check {
            None => None,
            Some(h) => {
                if !h.path.starts_with('/') {
                    return c.fail(format!("{key}.health_check.path"), "must start with '/'");
                }
                Some(HealthCheckConfig {
                    path: h.path.clone(),
                    interval: c
                        .positive_duration(&format!("{key}.health_check.interval"), &h.interval)?,
                    timeout: c
                        .positive_duration(&format!("{key}.health_check.timeout"), &h.timeout)?,
                    host: h.host.clone().unwrap_or_else(|| first_host.clone()),
                })
            }
        };
        out.push(UpstreamConfig {
            name: u.name.clone(),
            servers: u.servers.clone(),
            health_check,
            connect_timeout: c
                .positive_duration(&format!("{key}.connect_timeout"), &u.connect_timeout)?,
            read_timeout: c.positive_duration(&format!("{key}.read_timeout"), &u.read_timeout)?,
            write_timeout: c
                .positive_duration(&format!("{key}.write_timeout"), &u.write_timeout)?,
            tls: u.tls,
            sni: u.sni.clone().unwrap_or(first_host),
        });
    }
    Ok(out)
}

fn route(
    c: &Check,
    key: &str,
    r: &RouteSection,
    upstreams: &[UpstreamConfig],
    server: &ServerConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RouteConfig, ConfigError> {
    if r.name.is_empty() {
        return c.fail(format!("{key}.name"), "must not be empty");
    }
    let upstream = upstreams
        .iter()
        .position(|u| u.name == r.upstream)
        .map_or_else(
            || {
                let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                c.fail(
                    format!("{key}.upstream"),
                    format!(
                        "no upstream named `{}` (defined: {})",
                        r.upstream,
                        known.join(", ")
                    ),
                )
            },
            Ok,
        )?;
    let policy = match r.policy.as_str() {
        "session" => RoutePolicy::Session,
        "token" => RoutePolicy::Token,
        "public" => RoutePolicy::Public,
        other => {
            return c.fail(
                format!("{key}.policy"),
                format!("`{other}` is not a policy; use \"session\", \"token\" or \"public\""),
            );
        }
    };
    if !r.path_prefix.starts_with('/') || r.path_prefix.contains(['?', '#']) {
        return c.fail(
            format!("{key}.path_prefix"),
            "must be a path starting with '/'",
        );
    }
    let gateway = &server.gateway_prefix;
    if r.path_prefix == *gateway || r.path_prefix.starts_with(&format!("{gateway}/")) {
        return c.fail(
            format!("{key}.path_prefix"),
            format!("`{gateway}` is reserved for the gateway's own endpoints"),
        );
    }
    let host = match &r.host {
        None => None,
        Some(h) => {
            let h = h.trim().to_ascii_lowercase();
            let body = h.strip_prefix("*.").unwrap_or(&h);
            let valid = !body.is_empty()
                && body
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.'))
                && !body.starts_with('.')
                && !body.ends_with('.');
            if !valid {
                return c.fail(
                    format!("{key}.host"),
                    "must be a host name like \"erp.example.com\" or \"*.example.com\" (no port)",
                );
            }
            Some(h)
        }
    };
    if policy == RoutePolicy::Public && !r.required_scopes.is_empty() {
        return c.fail(
            format!("{key}.required_scopes"),
            "a public route has no token to carry scopes",
        );
    }
    let authorization = match (r.authorization.as_str(), &r.authorization_env) {
        ("pass", None) => UpstreamAuthorization::Pass,
        ("strip", None) => UpstreamAuthorization::Strip,
        ("replace", Some(var)) => {
            let value = env(var).filter(|v| !v.is_empty()).map_or_else(
                || {
                    c.fail(
                        format!("{key}.authorization_env"),
                        format!("environment variable `{var}` is not set (it must hold the upstream Authorization value)"),
                    )
                },
                Ok,
            )?;
            if HeaderValue::from_str(&value).is_err() {
                return c.fail(
                    format!("{key}.authorization_env"),
                    format!("environment variable `{var}` is not a valid header value"),
                );
            }
            UpstreamAuthorization::Replace(Secret::new(value))
        }
        ("replace", None) => {
            return c.fail(
                format!("{key}.authorization_env"),
                "`authorization = \"replace\"` needs the name of the environment variable holding the credential",
            );
        }
        ("pass" | "strip", Some(_)) => {
            return c.fail(
                format!("{key}.authorization_env"),
                "only used with `authorization = \"replace\"`",
            );
        }
        (other, _) => {
            return c.fail(
                format!("{key}.authorization"),
                format!("`{other}` is not a mode; use \"pass\", \"strip\" or \"replace\""),
            );
        }
    };
    let upgrades = match r.upgrades.as_str() {
        "refuse" => UpgradePolicy::Refuse,
        "allow" => UpgradePolicy::Allow,
        other => {
            return c.fail(
                format!("{key}.upgrades"),
                format!("`{other}` is not an upgrade policy; use \"refuse\" or \"allow\""),
            );
        }
    };
    Ok(RouteConfig {
        name: r.name.clone(),
        host,
        path_prefix: r.path_prefix.clone(),
        upstream,
        policy,
        required_scopes: r.required_scopes.clone(),
        authorization,
        upgrades,
    })
}

fn headers(c: &Check, file: &FileConfig) -> Result<IdentityHeaderNames, ConfigError> {
    let h = &file.headers;
    let names = IdentityHeaderNames {
        session_id: c.header_name("headers.session_id", &h.session_id)?,
        subject: c.header_name("headers.subject", &h.subject)?,
        client: c.header_name("headers.client", &h.client)?,
        pool: c.header_name("headers.pool", &h.pool)?,
        claims: h
            .claims
            .iter()
            .map(|(claim, header)| {
                Ok((
                    claim.clone(),
                    c.header_name(&format!("headers.claims.{claim}"), header)?,
                ))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
    };
    let mut seen = BTreeSet::new();
    let all = [
        &names.session_id,
        &names.subject,
        &names.client,
        &names.pool,
    ]
    .into_iter()
    .chain(names.claims.iter().map(|(_, n)| n));
    // Compared as a CGI-style backend sees them (`X_Auth_Subject` is
    // `X-Auth-Subject` there): two spellings of one name would let a claim
    // value stand in for the subject or the session.
    for name in all {
        if !seen.insert(header_spelling(name)) {
            return c.fail(
                "headers",
                format!("header `{name}` is used twice (`_` and `-` count as the same)"),
            );
        }
    }
    Ok(names)
}

/// A header name as backends that treat `_` like `-` see it (lowercase).
fn header_spelling(name: &HeaderName) -> String {
    name.as_str().replace('_', "-")
}

fn logging(c: &Check, file: &FileConfig) -> Result<LoggingConfig, ConfigError> {
    let l = &file.logging;
    if let Err(e) = check_log_filter(&l.level) {
        return c.fail("logging.level", e);
    }
    let format = match l.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return c.fail(
                "logging.format",
                format!("`{other}` is not a format; use \"json\" or \"text\""),
            );
        }
    };
    Ok(LoggingConfig {
        level: l.level.clone(),
        format,
    })
}

/// Units humantime knows but a duration here may not use: months and years
/// have no fixed length, and `M` (months) beside `m` (minutes) read `"20M"`
/// as twenty months.
const REFUSED_DURATION_UNITS: &[&str] =
    &["M", "month", "months", "y", "yr", "yrs", "year", "years"];

/// A duration such as `"30s"`, `"20m"`, `"1h 30m"` or `"500ms"`, parsed by
/// humantime unless it uses one of [`REFUSED_DURATION_UNITS`]. The error
/// completes the sentence "`text` …".
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str =
        "units are ms, s, m (minutes), h, d and w; write e.g. \"30s\", \"20m\", \"8h\"";
    let mut units = text
        .split(|ch: char| !ch.is_ascii_alphabetic())
        .filter(|word| !word.is_empty());
    if let Some(unit) = units.find(|unit| REFUSED_DURATION_UNITS.contains(unit)) {
        return Err(format!(
            "uses `{unit}` (months or years), which has no fixed length; {HINT}"
        ));
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("is not a duration ({e}); {HINT}"))
}

/// The levels a log filter may name.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A log filter: a level (`"info"`), or comma-separated directives
/// `target=level` with an optional default level (`"info,session_gateway=debug"`).
/// `tracing`'s own parser reads a bare unknown word as a target name, so
/// `"verbose"` would silently disable every log line; here every level must
/// be one of [`LOG_LEVELS`].
fn check_log_filter(text: &str) -> Result<(), String> {
    let hint = format!("levels are {}", LOG_LEVELS.join(", "));
    if text.trim().is_empty() {
        return Err(format!("must name a level; {hint}"));
    }
    for directive in text.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                let valid_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | ':' | '-'));
                if !valid_target {
                    return Err(format!(
                        "`{directive}` is not a directive; write `target=level`, e.g. \"session_gateway=debug\""
                    ));
                }
                level
            }
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("`{level}` is not a log level; {hint}"));
        }
    }
    if tracing_subscriber::EnvFilter::try_new(text).is_err() {
        return Err(format!("`{text}` is not a log filter; {hint}"));
    }
    Ok(())
}

/// Loads a listener's certificate chain and key as the proxy will, so a
/// missing, unreadable or mismatched file is refused by `check-config` and
/// before any listener opens (the proxy's own loader panics in a service
/// thread and leaves a process that serves nothing).
fn check_tls_files(files: &TlsFiles) -> Result<(), String> {
    use pingora::tls::{ServerConfig, install_default_crypto_provider, load_certs_and_key_files};
    for (what, path) in [("cert", &files.cert), ("key", &files.key)] {
        if let Err(e) = std::fs::File::open(path) {
            return Err(format!("{what}: cannot read {}: {e}", path.display()));
        }
    }
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let (chain, private_key) = match load_certs_and_key_files(&cert, &key) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(format!(
                "{cert} must hold a PEM certificate chain and {key} a PEM private key"
            ));
        }
        Err(e) => return Err(format!("cannot load {cert} / {key}: {e}")),
    };
    install_default_crypto_provider();
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map(|_| ())
        .map_err(|e| format!("the certificate in {cert} and the key in {key} do not fit: {e}"))
}

/// A JWKS file must be readable and hold a JSON object with a `keys` array
/// now, not only at the first key refresh (which would leave the gateway
/// running without keys). Its keys are judged when they load.
fn check_jwks_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let document: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if !document
        .get("keys")
        .is_some_and(serde_json::Value::is_array)
    {
        return Err(format!(
            "{} is not a JWKS (a JSON object with a `keys` array)",
            path.display()
        ));
    }
    Ok(())
}
