//! Tests of configuration parsing and validation: the defaults a minimal file
//! yields, a full file, and one test per refusal, each checking the key path
//! the error names (operators fix files from that path alone).
//!
//! Environment variables are injected through the `env` parameter of
//! [`Config::from_toml`]; no test reads or changes the process environment.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::licensing::{ClaimMatch, SubjectLimit, SubjectLimitPolicy};

/// The smallest useful file: one issuer (discovery), one pool, one upstream,
/// one session route. Starts with `[[issuers]]`, so a test may put a
/// `[server]`, `[tokens]`, `[sessions]`, `[headers]` or `[logging]` table in
/// front of it.
const MINIMAL: &str = r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["erp-api"]

[[pools]]
name = "default"
limit = 10

[[upstreams]]
name = "erp"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "erp-api"
upstream = "erp"
policy = "session"
"#;

/// A complete example file (its `[redis]` table is parsed but, with `store = "memory"`,
/// not used), plus every optional key of a pool, route and upstream.
const FULL: &str = r#"
[server]
listen = ["0.0.0.0:8080", "[::]:8081"]
admin_listen = "127.0.0.1:9190"
threads = 4
grace_period = "10s"
shutdown_timeout = "3s"
realm = "erp"
gateway_prefix = "/_gateway"

[[issuers]]
issuer = "https://idp.example.com"          # discovery at /.well-known/openid-configuration
audiences = ["erp-api"]
algorithms = ["RS256", "ES256"]

[[issuers]]
issuer = "https://partner.example.org/realms/erp"
audiences = ["erp-api", "erp-batch"]
algorithms = ["PS256", "EdDSA"]
jwks_uri = "https://partner.example.org/realms/erp/certs"
jwks_refresh = "1h"
jwks_min_refetch = "30s"
http_timeout = "2s"

[tokens]
leeway = "30s"
max_lifetime = "15m"
max_auth_age = "8h"
required_claims = ["jti"]
cache_size = 5000
max_token_bytes = 16384

[sessions]
store = "memory"
idle_timeout = "20m"
absolute_timeout = "8h"
identity = ["iss", "sub", "client_id|azp"]
touch_interval = "1s"
sweep_interval = "5s"
license_unavailable_status = 503

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "sg"

[[pools]]
name = "interactive"
limit = 50
match = { claim = "client_id", any_of = ["erp-web", "erp-desktop"] }
per_subject_limit = 2
on_subject_limit = "replace_oldest"
reserved = [{ claim = "sub", any_of = ["cfo", "night-batch"], seats = 1 }]

[[pools]]
name = "system"
limit = 5
match = { claim = "realm_access.roles", any_of = ["system"] }
absolute_timeout = "1h"
idle_timeout = "5m"

[[pools]]
name = "default"
limit = 10                      # the last pool without match catches the rest

[[upstreams]]
name = "erp"
servers = ["10.0.0.5:8080", "10.0.0.6:8080"]
health_check = { path = "/health", interval = "5s" }

[[upstreams]]
name = "erp-tls"
servers = ["10.0.0.7:8443"]
health_check = { path = "/status", interval = "10s", timeout = "2s", host = "erp.internal" }
connect_timeout = "1s"
read_timeout = "60s"
write_timeout = "10s"
tls = true
sni = "erp.internal"

[[routes]]
name = "erp-api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"

[[routes]]
name = "erp-reports"
host = "*.Reports.Example.com"
path_prefix = "/reports/"
upstream = "erp-tls"
policy = "token"
required_scopes = ["erp.reports"]
authorization = "replace"
authorization_env = "ERP_REPORTS_AUTH"

[[routes]]
name = "erp-status"
path_prefix = "/status"
upstream = "erp"
policy = "public"
authorization = "strip"

[headers]
session_id = "X-ERP-Session"
subject = "X-ERP-User"
client = "X-ERP-Client"
pool = "X-ERP-License"
claims = { email = "X-ERP-Email", "realm_access.roles" = "X-ERP-Roles" }

[logging]
level = "info,session_gateway=debug"
format = "text"
"#;

/// The origin named in every error of these tests.
const ORIGIN: &str = "test.toml";

fn no_env(_: &str) -> Option<String> {
    None
}

fn full_env(name: &str) -> Option<String> {
    (name == "ERP_REPORTS_AUTH").then(|| "Basic ZXJwOnNlY3JldA==".to_string())
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, ORIGIN, Path::new("."), &no_env)
}

fn valid(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("refused: {e}"))
}

/// MINIMAL with tables put in front of it.
fn minimal_with(tables: &str) -> String {
    format!("{tables}\n{MINIMAL}")
}

/// Asserts that the configuration is refused with an error naming `key`,
/// whose one-line message contains `fragment`; returns the message.
#[track_caller]
fn refused(text: &str, key: &str, fragment: &str) -> String {
    refused_with(text, &no_env, key, fragment)
}

#[track_caller]
fn refused_with(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    fragment: &str,
) -> String {
    let message = refused_in(Path::new("."), text, env, key, fragment);
    assert!(
        message.starts_with(&format!("{ORIGIN}: ")),
        "no origin in: {message}"
    );
    assert!(
        message.contains(&format!("{key}: ")),
        "no key path in: {message}"
    );
    message
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------- defaults

#[test]
fn minimal_config_yields_the_documented_defaults() {
    let c = valid(MINIMAL);

    assert_eq!(
        c.server.listen,
        vec!["0.0.0.0:8080".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        c.server.admin_listen,
        "127.0.0.1:9190".parse::<SocketAddr>().unwrap()
    );
    assert!(c.server.tls.is_none());
    assert!(c.server.threads >= 1);
    assert_eq!(c.server.grace_period, secs(5));
    assert_eq!(c.server.shutdown_timeout, secs(5));
    assert_eq!(c.server.realm, "session-gateway");
    assert_eq!(c.server.gateway_prefix, "/.gateway");

    let issuer = &c.issuers[0];
    assert_eq!(issuer.issuer, "https://idp.example.com");
    assert_eq!(issuer.audiences, vec!["erp-api".to_string()]);
    assert_eq!(issuer.algorithms, vec![Algorithm::RS256]);
    assert_eq!(
        issuer.keys,
        KeySource::Discovery(
            "https://idp.example.com/.well-known/openid-configuration"
                .parse()
                .unwrap()
        )
    );
    assert_eq!(issuer.jwks_refresh, secs(300));
    assert_eq!(issuer.jwks_min_refetch, secs(10));
    assert_eq!(issuer.http_timeout, secs(5));

    assert_eq!(c.tokens.leeway, secs(30));
    assert_eq!(c.tokens.max_lifetime, None);
    assert_eq!(c.tokens.max_auth_age, None);
    assert!(c.tokens.required_claims.is_empty());
    assert_eq!(c.tokens.cache_size, 100_000);
    assert_eq!(c.tokens.max_token_bytes, 8192);

    assert_eq!(c.sessions.store, StoreKind::Memory);
    assert_eq!(c.sessions.idle_timeout, secs(20 * 60));
    assert_eq!(c.sessions.absolute_timeout, secs(8 * 3600));
    assert_eq!(c.sessions.touch_interval, secs(30));
    assert_eq!(c.sessions.sweep_interval, secs(10));
    assert_eq!(c.sessions.license_unavailable_status, 429);
    let identity: Vec<Vec<&str>> = c
        .sessions
        .identity
        .iter()
        .map(|alternatives| alternatives.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        identity,
        vec![vec!["iss"], vec!["sub"], vec!["client_id", "azp"]]
    );

    let pool = &c.pools[0];
    assert_eq!(pool.name, "default");
    assert_eq!(pool.limit, 10);
    assert_eq!(pool.rule, None);
    assert_eq!(pool.subject_limit, None);
    assert!(pool.reserved.is_empty());
    assert_eq!(
        pool.idle_timeout,
        secs(20 * 60),
        "a pool inherits [sessions] idle_timeout"
    );
    assert_eq!(
        pool.absolute_timeout,
        secs(8 * 3600),
        "a pool inherits [sessions] absolute_timeout"
    );

    let upstream = &c.upstreams[0];
    assert_eq!(upstream.servers, vec!["127.0.0.1:9000".to_string()]);
    assert!(upstream.health_check.is_none());
    assert_eq!(upstream.connect_timeout, secs(2));
    assert_eq!(upstream.read_timeout, secs(30));
    assert_eq!(upstream.write_timeout, secs(30));
    assert!(!upstream.tls);
    assert_eq!(
        upstream.sni, "127.0.0.1",
        "SNI defaults to the first server's host"
    );

    let route = &c.routes[0];
    assert_eq!(route.name, "erp-api");
    assert_eq!(route.host, None);
    assert_eq!(route.path_prefix, "/");
    assert_eq!(route.upstream, 0);
    assert_eq!(route.policy, RoutePolicy::Session);
    assert!(route.required_scopes.is_empty());
    assert_eq!(route.authorization, UpstreamAuthorization::Pass);

    assert_eq!(c.headers.session_id.as_str(), "x-session-id");
    assert_eq!(c.headers.subject.as_str(), "x-auth-subject");
    assert_eq!(c.headers.client.as_str(), "x-auth-client");
    assert_eq!(c.headers.pool.as_str(), "x-license-pool");
    assert!(c.headers.claims.is_empty());

    assert_eq!(c.logging.level, "info");
    assert_eq!(c.logging.format, LogFormat::Json);
}

#[test]
fn a_config_of_public_routes_needs_no_issuer_and_no_pool() {
    let c = valid(
        r#"
[[upstreams]]
name = "erp"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "open"
upstream = "erp"
policy = "public"
"#,
    );
    assert!(c.issuers.is_empty());
    assert!(c.pools.is_empty());
}

// ---------------------------------------------------------------- full file

#[test]
fn full_config_like_the_design_is_accepted_with_every_value_typed() {
    let c = Config::from_toml(FULL, ORIGIN, Path::new("."), &full_env)
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(
        c.server.listen[1],
        "[::]:8081".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.server.threads, 4);
    assert_eq!(c.server.grace_period, secs(10));
    assert_eq!(c.server.shutdown_timeout, secs(3));
    assert_eq!(c.server.realm, "erp");
    assert_eq!(c.server.gateway_prefix, "/_gateway");

    assert_eq!(c.issuers.len(), 2);
    assert_eq!(
        c.issuers[0].algorithms,
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert!(matches!(c.issuers[0].keys, KeySource::Discovery(_)));
    let partner = &c.issuers[1];
    assert_eq!(
        partner.keys,
        KeySource::JwksUri(
            "https://partner.example.org/realms/erp/certs"
                .parse()
                .unwrap()
        )
    );
    assert_eq!(partner.algorithms, vec![Algorithm::PS256, Algorithm::EdDSA]);
    assert_eq!(partner.audiences.len(), 2);
    assert_eq!(partner.jwks_refresh, secs(3600));
    assert_eq!(partner.jwks_min_refetch, secs(30));
    assert_eq!(partner.http_timeout, secs(2));

    assert_eq!(c.tokens.max_lifetime, Some(secs(15 * 60)));
    assert_eq!(c.tokens.max_auth_age, Some(secs(8 * 3600)));
    assert_eq!(c.tokens.required_claims, vec!["jti".to_string()]);
    assert_eq!(c.tokens.cache_size, 5000);
    assert_eq!(c.tokens.max_token_bytes, 16384);
    assert_eq!(c.sessions.sweep_interval, secs(5));
    assert_eq!(c.sessions.license_unavailable_status, 503);

    let names: Vec<&str> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["interactive", "system", "default"],
        "pools keep file order (matching order)"
    );
    let interactive = &c.pools[0];
    assert_eq!(interactive.limit, 50);
    assert_eq!(
        interactive.rule,
        Some(ClaimMatch::new(
            "client_id".into(),
            ["erp-web".into(), "erp-desktop".into()]
        ))
    );
    assert_eq!(
        interactive.subject_limit,
        Some(SubjectLimit {
            max: 2,
            policy: SubjectLimitPolicy::ReplaceOldest
        })
    );
    assert_eq!(interactive.reserved.len(), 1);
    assert_eq!(interactive.reserved[0].seats, 1);
    assert_eq!(
        interactive.reserved[0].rule,
        ClaimMatch::new("sub".into(), ["cfo".into(), "night-batch".into()])
    );
    assert_eq!(interactive.shared_seats(), 49);
    let system = &c.pools[1];
    assert_eq!(
        system.absolute_timeout,
        secs(3600),
        "per-pool absolute_timeout overrides [sessions]"
    );
    assert_eq!(
        system.idle_timeout,
        secs(300),
        "per-pool idle_timeout overrides [sessions]"
    );
    assert_eq!(c.pools[2].rule, None);
    assert_eq!(c.pools[2].absolute_timeout, secs(8 * 3600));

    let erp = &c.upstreams[0];
    let check = erp.health_check.as_ref().unwrap();
    assert_eq!(check.path, "/health");
    assert_eq!(check.interval, secs(5));
    assert_eq!(check.timeout, secs(1));
    assert_eq!(
        check.host, "10.0.0.5",
        "the probe's Host defaults to the first server's host"
    );
    let tls = &c.upstreams[1];
    assert!(tls.tls);
    assert_eq!(tls.sni, "erp.internal");
    assert_eq!(tls.connect_timeout, secs(1));
    assert_eq!(tls.read_timeout, secs(60));
    assert_eq!(tls.write_timeout, secs(10));
    assert_eq!(tls.health_check.as_ref().unwrap().host, "erp.internal");
    assert_eq!(tls.health_check.as_ref().unwrap().timeout, secs(2));

    let reports = &c.routes[1];
    assert_eq!(
        reports.host.as_deref(),
        Some("*.reports.example.com"),
        "hosts are lowercased"
    );
    assert_eq!(reports.upstream, 1);
    assert_eq!(reports.policy, RoutePolicy::Token);
    assert_eq!(reports.required_scopes, vec!["erp.reports".to_string()]);
    assert_eq!(
        reports.authorization,
        UpstreamAuthorization::Replace(Secret::new("Basic ZXJwOnNlY3JldA==".into()))
    );
    assert_eq!(c.routes[2].policy, RoutePolicy::Public);
    assert_eq!(c.routes[2].authorization, UpstreamAuthorization::Strip);

    assert_eq!(c.headers.session_id.as_str(), "x-erp-session");
    assert_eq!(c.headers.pool.as_str(), "x-erp-license");
    let claims: Vec<(&str, &str)> = c
        .headers
        .claims
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        claims,
        [
            ("email", "x-erp-email"),
            ("realm_access.roles", "x-erp-roles")
        ]
    );

    assert_eq!(c.logging.level, "info,session_gateway=debug");
    assert_eq!(c.logging.format, LogFormat::Text);
}

#[test]
fn claims_in_use_are_the_registered_ones_and_every_configured_claim() {
    let c = Config::from_toml(FULL, ORIGIN, Path::new("."), &full_env).unwrap();
    let names: Vec<String> = c.claims_in_use().into_iter().collect();
    // Pools name client_id, sub and realm_access.roles; headers email and
    // realm_access.roles, whose top-level claim is kept too.
    assert_eq!(
        names,
        [
            "azp",
            "client_id",
            "email",
            "iss",
            "realm_access",
            "realm_access.roles",
            "scope",
            "scp",
            "sid",
            "sub"
        ]
    );
    let text = FULL.replace(
        r#"identity = ["iss", "sub", "client_id|azp"]"#,
        r#"identity = ["iss", "tenant|org.id", "sub"]"#,
    );
    let c = Config::from_toml(&text, ORIGIN, Path::new("."), &full_env).unwrap();
    let names = c.claims_in_use();
    for name in ["tenant", "org", "org.id"] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

#[test]
fn jwks_file_is_resolved_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let text = MINIMAL.replace(
        "audiences = [\"erp-api\"]",
        "audiences = [\"erp-api\"]\njwks_file = \"jwks.json\"",
    );
    let c = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.issuers[0].keys,
        KeySource::JwksFile(dir.path().join("jwks.json"))
    );

    // Relative to the directory given, not to the working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let e = Config::from_toml(&text, ORIGIN, elsewhere.path(), &no_env).unwrap_err();
    assert_eq!(e.key(), "issuers[0].jwks_file");
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn jwks_file_does_not_need_a_url_issuer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let text = MINIMAL.replace(
        "issuer = \"https://idp.example.com\"",
        "issuer = \"urn:example:legacy-idp\"\njwks_file = \"jwks.json\"",
    );
    let c = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.issuers[0].issuer, "urn:example:legacy-idp");
}

#[test]
fn jwks_uri_replaces_discovery() {
    let text = MINIMAL.replace(
        "audiences = [\"erp-api\"]",
        "audiences = [\"erp-api\"]\njwks_uri = \"https://idp.example.com/keys\"",
    );
    assert_eq!(
        valid(&text).issuers[0].keys,
        KeySource::JwksUri("https://idp.example.com/keys".parse().unwrap())
    );
}

#[test]
fn config_load_names_the_file_and_resolves_relative_paths_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.json"), r#"{"keys":[]}"#).unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\njwks_file = \"keys.json\"",
        ),
    )
    .unwrap();
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.issuers[0].keys,
        KeySource::JwksFile(dir.path().join("keys.json"))
    );

    std::fs::write(&path, MINIMAL.replace("limit = 10", "limit = 0")).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: pools[0].limit: must be at least 1", path.display())
    );

    let missing = dir.path().join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
    // The CLI prints the error chain (`{:#}`); the reason must appear once.
    let printed = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(printed.matches("(os error").count(), 1, "{printed}");
}

#[test]
fn tls_files_are_resolved_against_the_config_directory() {
    let base = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("tls")).unwrap();
    write_certificate(elsewhere.path(), "abs");
    let absolute_key = elsewhere.path().join("abs.key");
    // The absolute key belongs to another certificate, so use its own.
    std::fs::copy(
        elsewhere.path().join("abs.crt"),
        base.path().join("tls/abs.crt"),
    )
    .unwrap();
    let c = Config::from_toml(
        &minimal_with(&format!(
            "[server]\ntls = {{ cert = \"tls/abs.crt\", key = \"{}\" }}",
            absolute_key.display()
        )),
        ORIGIN,
        base.path(),
        &no_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert, base.path().join("tls/abs.crt"));
    assert_eq!(tls.key, absolute_key, "absolute paths stay as written");
}

// ---------------------------------------------------------------- parse errors

#[test]
fn unknown_key_names_its_path_and_line() {
    let message = refused(
        &minimal_with("[sessions]\nidel_timeout = \"5m\""),
        "sessions.idel_timeout",
        "unknown field `idel_timeout`, expected one of",
    );
    assert!(message.contains("line 2, column 1"), "{message}");

    let text = format!("{MINIMAL}\n[[pools]]\nname = \"batch\"\nlimt = 3\n");
    let line = text.lines().position(|l| l.starts_with("limt")).unwrap() + 1;
    let message = refused(&text, "pools[1].limt", "unknown field `limt`");
    assert!(
        message.contains(&format!("line {line}, column 1")),
        "{message}"
    );

    refused(
        &MINIMAL.replace(
            "limit = 10",
            "limit = 10\nmatch = { claim = \"azp\", any_of = [\"x\"], values = [] }",
        ),
        "pools[0].match.values",
        "unknown field `values`",
    );
    refused(
        &minimal_with("[sesions]\nstore = \"memory\""),
        "sesions",
        "unknown field `sesions`",
    );
}

#[test]
fn wrong_type_names_its_path() {
    let message = refused(
        &MINIMAL.replace("limit = 10", "limit = \"10\""),
        "pools[0].limit",
        "invalid type: string \"10\", expected u32",
    );
    assert!(message.contains("line "), "{message}");
    refused(
        &minimal_with("[sessions]\nidle_timeout = 20"),
        "sessions.idle_timeout",
        "invalid type: integer `20`, expected a string",
    );
    refused(
        &minimal_with("[sessions]\nidentity = \"sub\""),
        "sessions.identity",
        "invalid type",
    );
    refused(
        &minimal_with("[server]\nlisten = \"0.0.0.0:8080\""),
        "server.listen",
        "invalid type",
    );
    refused(
        &MINIMAL.replace("limit = 10", "limit = -1"),
        "pools[0].limit",
        "expected u32",
    );
}

#[test]
fn malformed_toml_is_one_line_with_its_position() {
    let e = load("[server\nlisten = []").unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }));
    let message = e.to_string();
    assert!(
        message.starts_with("test.toml: line 1, column "),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn missing_required_key_names_its_parent() {
    refused(
        &MINIMAL.replace("limit = 10\n", ""),
        "pools[0]",
        "missing field `limit`",
    );
}

// ---------------------------------------------------------------- durations

#[test]
fn durations_use_humantime_syntax() {
    let c = valid(&minimal_with(
        "[sessions]\nidle_timeout = \"1h 30m\"\nabsolute_timeout = \"2days\"\ntouch_interval = \"500ms\"\nsweep_interval = \"90s\"",
    ));
    assert_eq!(c.sessions.idle_timeout, secs(90 * 60));
    assert_eq!(c.sessions.absolute_timeout, secs(2 * 86_400));
    assert_eq!(c.sessions.touch_interval, Duration::from_millis(500));
    assert_eq!(c.sessions.sweep_interval, secs(90));
}

#[test]
fn bad_duration_names_its_path_and_shows_the_syntax() {
    refused(
        &minimal_with("[sessions]\nidle_timeout = \"20 minutes please\""),
        "sessions.idle_timeout",
        "is not a duration",
    );
    refused(
        &minimal_with("[tokens]\nleeway = \"30\""),
        "tokens.leeway",
        "write e.g. \"30s\", \"20m\", \"8h\"",
    );
    refused(
        &MINIMAL.replace(
            "limit = 10",
            "limit = 10\nabsolute_timeout = \"1 fortnight\"",
        ),
        "pools[0].absolute_timeout",
        "is not a duration",
    );
    refused(
        &MINIMAL.replace(
            "servers = [\"127.0.0.1:9000\"]",
            "servers = [\"127.0.0.1:9000\"]\nread_timeout = \"soon\"",
        ),
        "upstreams[0].read_timeout",
        "is not a duration",
    );
}

#[test]
fn zero_is_refused_where_a_wait_must_be_positive() {
    refused(
        &minimal_with("[sessions]\nidle_timeout = \"0s\""),
        "sessions.idle_timeout",
        "must be longer than zero",
    );
    refused(
        &minimal_with("[tokens]\nmax_lifetime = \"0s\""),
        "tokens.max_lifetime",
        "must be longer than zero",
    );
    refused(
        &MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\nhttp_timeout = \"0s\"",
        ),
        "issuers[0].http_timeout",
        "must be longer than zero",
    );
    // Zero is a meaningful value for these.
    let c = valid(&minimal_with(
        "[server]\ngrace_period = \"0s\"\n[tokens]\nleeway = \"0s\"",
    ));
    assert_eq!(c.server.grace_period, Duration::ZERO);
    assert_eq!(c.tokens.leeway, Duration::ZERO);
}

// ---------------------------------------------------------------- issuers

#[test]
fn algorithm_none_is_refused_in_any_case() {
    let text = |alg: &str| {
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\nalgorithms = [\"RS256\", \"{alg}\"]"),
        )
    };
    refused(
        &text("none"),
        "issuers[0].algorithms[1]",
        "`none` means unsigned tokens and is never accepted",
    );
    refused(&text("NONE"), "issuers[0].algorithms[1]", "never accepted");
}

#[test]
fn hmac_algorithms_are_refused() {
    let text = |alg: &str| {
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\nalgorithms = [\"{alg}\"]"),
        )
    };
    for alg in ["HS256", "HS384", "HS512"] {
        refused(
            &text(alg),
            "issuers[0].algorithms[0]",
            "shared-secret (HMAC)",
        );
    }
    refused(
        &text("RS1"),
        "issuers[0].algorithms[0]",
        "is not a supported algorithm",
    );
    refused(
        &MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\nalgorithms = []",
        ),
        "issuers[0].algorithms",
        "at least one algorithm",
    );
}

#[test]
fn jwks_uri_and_jwks_file_together_are_refused() {
    refused(
        &MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\njwks_uri = \"https://idp.example.com/keys\"\njwks_file = \"keys.json\"",
        ),
        "issuers[0]",
        "set either jwks_uri or jwks_file, not both",
    );
}

#[test]
fn plain_http_issuer_is_refused_unless_loopback() {
    refused(
        &MINIMAL.replace("https://idp.example.com", "http://idp.example.com"),
        "issuers[0].issuer",
        "must use https (plain http is accepted only for loopback hosts)",
    );
    refused(
        &MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\njwks_uri = \"http://keys.example.com/jwks\"",
        ),
        "issuers[0].jwks_uri",
        "must use https",
    );
    refused(
        &MINIMAL.replace("https://idp.example.com", "ftp://idp.example.com"),
        "issuers[0].issuer",
        "scheme `ftp` is not supported",
    );
    refused(
        &MINIMAL.replace("https://idp.example.com", "idp.example.com"),
        "issuers[0].issuer",
        "is not a URL",
    );
    for loopback in [
        "http://127.0.0.1:9180",
        "http://localhost:9180/realms/dev",
        "http://[::1]:9180",
    ] {
        let c = valid(&MINIMAL.replace("https://idp.example.com", loopback));
        let KeySource::Discovery(url) = &c.issuers[0].keys else {
            panic!("not discovery")
        };
        assert!(
            url.as_str().ends_with("/.well-known/openid-configuration"),
            "{url}"
        );
    }
}

#[test]
fn discovery_url_keeps_the_issuer_path() {
    let c = valid(&MINIMAL.replace(
        "https://idp.example.com",
        "https://idp.example.com/realms/erp/",
    ));
    assert_eq!(
        c.issuers[0].keys,
        KeySource::Discovery(
            "https://idp.example.com/realms/erp/.well-known/openid-configuration"
                .parse()
                .unwrap()
        )
    );
}

#[test]
fn issuer_needs_audiences_and_is_unique() {
    refused(
        &MINIMAL.replace("audiences = [\"erp-api\"]", "audiences = []"),
        "issuers[0].audiences",
        "at least one non-empty audience",
    );
    refused(
        &MINIMAL.replace("audiences = [\"erp-api\"]", "audiences = [\"\"]"),
        "issuers[0].audiences",
        "non-empty",
    );
    let twice = format!(
        "[[issuers]]\nissuer = \"https://idp.example.com\"\naudiences = [\"other\"]\n{MINIMAL}"
    );
    refused(&twice, "issuers[1].issuer", "is configured twice");
}

#[test]
fn issuer_token_types_and_logout_audiences_default_and_normalise() {
    let c = valid(MINIMAL);
    let issuer = &c.issuers[0];
    // Unset: today's behaviour, the access-token audiences.
    assert_eq!(issuer.logout_audiences, vec!["erp-api".to_string()]);
    assert!(!issuer.require_logout_typ);
    assert_eq!(issuer.access_token_types, ["at+jwt", "jwt", ""]);

    let c = valid(&MINIMAL.replace(
        "audiences = [\"erp-api\"]",
        "audiences = [\"erp-api\"]\nlogout_audiences = [\"erp-web\", \"erp-desktop\"]\n\
         require_logout_typ = true\naccess_token_types = [\"Application/AT+JWT\", \"Bearer\"]",
    ));
    let issuer = &c.issuers[0];
    assert_eq!(issuer.logout_audiences, ["erp-web", "erp-desktop"]);
    assert!(issuer.require_logout_typ);
    assert_eq!(issuer.access_token_types, ["at+jwt", "bearer"]);
}

#[test]
fn the_smallest_rsa_key_of_an_issuer_is_2048_bits_unless_set_within_bounds() {
    assert_eq!(valid(MINIMAL).issuers[0].min_rsa_bits, 2048);
    let with = |line: &str| {
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\n{line}"),
        )
    };
    assert_eq!(
        valid(&with("min_rsa_bits = 3072")).issuers[0].min_rsa_bits,
        3072
    );
    assert_eq!(
        valid(&with("min_rsa_bits = 1024")).issuers[0].min_rsa_bits,
        1024
    );
    for bits in ["512", "1023", "8193", "0"] {
        refused(
            &with(&format!("min_rsa_bits = {bits}")),
            "issuers[0].min_rsa_bits",
            "between 1024 and 8192",
        );
    }
}

#[test]
fn issuer_token_types_and_logout_audiences_are_checked() {
    let with = |line: &str| {
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\n{line}"),
        )
    };
    refused(
        &with("logout_audiences = []"),
        "issuers[0].logout_audiences",
        "at least one non-empty client id",
    );
    refused(
        &with("logout_audiences = [\" \"]"),
        "issuers[0].logout_audiences",
        "non-empty",
    );
    refused(
        &with("access_token_types = []"),
        "issuers[0].access_token_types",
        "at least one token type",
    );
    refused(
        &with("access_token_types = [\"JWT\", \"application/logout+jwt\"]"),
        "issuers[0].access_token_types[1]",
        "never access tokens",
    );
    refused(
        &with("access_token_types = [\"id+jwt\"]"),
        "issuers[0].access_token_types[0]",
        "never access tokens",
    );
}

// ---------------------------------------------------------------- server

#[test]
fn admin_listen_equal_to_a_proxy_listener_is_refused() {
    refused(
        &minimal_with("[server]\nlisten = [\"127.0.0.1:8080\", \"127.0.0.1:9190\"]"),
        "server.admin_listen",
        "must differ from every proxy listener in server.listen",
    );
}

#[test]
fn admin_listen_on_a_port_a_wildcard_listener_holds_is_refused() {
    // 0.0.0.0:8080 already holds 127.0.0.1:8080: the admin listener could
    // never bind, so the file is refused instead of failing at start.
    refused(
        &minimal_with("[server]\nlisten = [\"0.0.0.0:8080\"]\nadmin_listen = \"127.0.0.1:8080\""),
        "server.admin_listen",
        "must differ",
    );
    refused(
        &minimal_with("[server]\nlisten = [\"127.0.0.1:8080\"]\nadmin_listen = \"0.0.0.0:8080\""),
        "server.admin_listen",
        "must differ",
    );
    refused(
        &minimal_with("[server]\nlisten = [\"[::]:8080\"]\nadmin_listen = \"127.0.0.1:8080\""),
        "server.admin_listen",
        "must differ",
    );
    // Other ports, and an IPv6 address beside an IPv4 wildcard, are fine.
    valid(&minimal_with(
        "[server]\nlisten = [\"0.0.0.0:8080\"]\nadmin_listen = \"0.0.0.0:9190\"",
    ));
    valid(&minimal_with(
        "[server]\nlisten = [\"0.0.0.0:8080\"]\nadmin_listen = \"[::1]:8080\"",
    ));
}

#[test]
fn server_values_are_checked() {
    refused(
        &minimal_with("[server]\nlisten = []"),
        "server.listen",
        "at least one address",
    );
    refused(
        &minimal_with("[server]\nlisten = [\"localhost:8080\"]"),
        "server.listen[0]",
        "is not an IP address with a port",
    );
    refused(
        &minimal_with("[server]\nadmin_listen = \"127.0.0.1\""),
        "server.admin_listen",
        "is not an IP address with a port",
    );
    refused(
        &minimal_with("[server]\nthreads = 0"),
        "server.threads",
        "at least 1",
    );
    refused(
        &minimal_with("[server]\nrealm = 'say \"hi\"'"),
        "server.realm",
        "without quotes",
    );
    refused(
        &minimal_with("[server]\nrealm = \"\""),
        "server.realm",
        "non-empty",
    );
    for prefix in ["/", "gateway", "/.gateway/", "/.gateway?x"] {
        refused(
            &minimal_with(&format!("[server]\ngateway_prefix = \"{prefix}\"")),
            "server.gateway_prefix",
            "leading slash",
        );
    }
}

// ---------------------------------------------------------------- tokens

#[test]
fn token_limits_are_checked() {
    refused(
        &minimal_with("[tokens]\nmax_token_bytes = 100"),
        "tokens.max_token_bytes",
        "between 256 and 65536",
    );
    refused(
        &minimal_with("[tokens]\nmax_token_bytes = 100000"),
        "tokens.max_token_bytes",
        "between 256 and 65536",
    );
    refused(
        &minimal_with("[tokens]\nrequired_claims = [\"jti\", \" \"]"),
        "tokens.required_claims[1]",
        "must name a claim",
    );
    assert_eq!(
        valid(&minimal_with("[tokens]\ncache_size = 0"))
            .tokens
            .cache_size,
        0
    );
}

// ---------------------------------------------------------------- sessions

#[test]
fn touch_interval_must_be_shorter_than_idle_timeout() {
    refused(
        &minimal_with("[sessions]\nidle_timeout = \"1m\"\ntouch_interval = \"1m\""),
        "sessions.touch_interval",
        "must be shorter than sessions.idle_timeout",
    );
    refused(
        &minimal_with("[sessions]\nidle_timeout = \"1m\"\ntouch_interval = \"2m\""),
        "sessions.touch_interval",
        "must be shorter",
    );
    valid(&minimal_with(
        "[sessions]\nidle_timeout = \"1m\"\ntouch_interval = \"59s\"",
    ));
}

#[test]
fn pool_idle_timeout_must_also_exceed_touch_interval() {
    // A cached lease is re-confirmed only every touch_interval; a pool whose
    // sessions idle out faster would lose seats that are still in use.
    let with_touch = |pool_idle: &str| {
        minimal_with("[sessions]\ntouch_interval = \"1s\"").replace(
            "limit = 10",
            &format!("limit = 10\nidle_timeout = \"{pool_idle}\""),
        )
    };
    refused(
        &with_touch("1s"),
        "pools[0].idle_timeout",
        "must be longer than sessions.touch_interval",
    );
    valid(&with_touch("2s"));
}

#[test]
fn proxy_threads_do_not_steal_work_unless_told() {
    assert!(!valid(MINIMAL).server.work_stealing);
    let c = valid(&minimal_with("[server]\nwork_stealing = true"));
    assert!(c.server.work_stealing);
}

#[test]
fn an_unset_touch_interval_is_30s_or_a_quarter_of_the_shortest_idle_timeout() {
    assert_eq!(valid(MINIMAL).sessions.touch_interval, secs(30));
    assert_eq!(valid(MINIMAL).sessions.lease_revalidate, secs(30));
    let c = valid(&minimal_with("[sessions]\nidle_timeout = \"1m\""));
    assert_eq!(c.sessions.touch_interval, secs(15));
    // A pool with a short idle timeout of its own lowers it too, so it is
    // never refused for a touch interval nobody set.
    let c = valid(&MINIMAL.replace("limit = 10", "limit = 10\nidle_timeout = \"1s\""));
    assert_eq!(c.sessions.touch_interval, Duration::from_millis(250));
    refused(
        &minimal_with("[sessions]\nlease_revalidate = \"0s\""),
        "sessions.lease_revalidate",
        "longer than zero",
    );
}

#[test]
fn license_unavailable_status_must_be_an_error_status() {
    for status in [200, 399, 600] {
        refused(
            &minimal_with(&format!(
                "[sessions]\nlicense_unavailable_status = {status}"
            )),
            "sessions.license_unavailable_status",
            "must be an HTTP error status (400-599)",
        );
    }
    refused(
        &minimal_with("[sessions]\nlicense_unavailable_status = 70000"),
        "sessions.license_unavailable_status",
        "expected u16",
    );
    for status in [400, 503, 599] {
        let c = valid(&minimal_with(&format!(
            "[sessions]\nlicense_unavailable_status = {status}"
        )));
        assert_eq!(c.sessions.license_unavailable_status, status);
    }
}

#[test]
fn identity_components_and_alternatives_are_checked() {
    let c = valid(&minimal_with(
        "[sessions]\nidentity = [\"sub\", \" client_id | azp | cid \"]",
    ));
    assert_eq!(
        c.sessions.identity,
        [
            vec!["sub".to_string()],
            vec![
                "client_id".to_string(),
                "azp".to_string(),
                "cid".to_string()
            ]
        ]
    );
    refused(
        &minimal_with("[sessions]\nidentity = []"),
        "sessions.identity",
        "at least one claim",
    );
    refused(
        &minimal_with("[sessions]\nidentity = [\"sub\", \"client_id|\"]"),
        "sessions.identity[1]",
        "alternatives like \"client_id|azp\"",
    );
    refused(
        &minimal_with("[sessions]\nidentity = [\"\"]"),
        "sessions.identity[0]",
        "must be a claim name",
    );
}

#[test]
fn store_must_be_known() {
    refused(
        &minimal_with("[sessions]\nstore = \"mongo\""),
        "sessions.store",
        "`mongo` is not a store",
    );
}

// ---------------------------------------------------------------- pools

fn pools(pools: &str) -> String {
    format!(
        r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["erp-api"]
{pools}
[[upstreams]]
name = "erp"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "erp-api"
upstream = "erp"
policy = "session"
"#
    )
}

#[test]
fn only_the_last_pool_may_omit_match() {
    refused(
        &pools("[[pools]]\nname = \"a\"\nlimit = 1\n[[pools]]\nname = \"b\"\nlimit = 1\n"),
        "pools[0].match",
        "only the last pool may omit `match`",
    );
    refused(
        &pools(
            "[[pools]]\nname = \"a\"\nlimit = 1\n[[pools]]\nname = \"b\"\nlimit = 1\nmatch = { claim = \"azp\", any_of = [\"x\"] }\n",
        ),
        "pools[0].match",
        "only the last pool may omit `match`",
    );
    let c = valid(&pools(
        "[[pools]]\nname = \"a\"\nlimit = 1\nmatch = { claim = \"azp\", any_of = [\"x\"] }\n[[pools]]\nname = \"b\"\nlimit = 1\n",
    ));
    assert_eq!(c.pools[1].rule, None);
    // Every pool may have a match: tokens that pass none get `no_pool`.
    valid(&pools(
        "[[pools]]\nname = \"a\"\nlimit = 1\nmatch = { claim = \"azp\", any_of = [\"x\"] }\n",
    ));
}

#[test]
fn reserved_seats_must_leave_a_shared_seat() {
    let text = |seats: (u32, u32)| {
        pools(&format!(
            "[[pools]]\nname = \"p\"\nlimit = 3\nreserved = [{{ claim = \"sub\", any_of = [\"cfo\"], seats = {} }}, {{ claim = \"sub\", any_of = [\"ceo\"], seats = {} }}]\n",
            seats.0, seats.1
        ))
    };
    refused(
        &text((2, 1)),
        "pools[0].reserved",
        "reserved seats (3) must leave at least one shared seat of limit (3)",
    );
    refused(&text((3, 1)), "pools[0].reserved", "reserved seats (4)");
    refused(&text((0, 1)), "pools[0].reserved[0].seats", "at least 1");
    let c = valid(&text((1, 1)));
    assert_eq!(c.pools[0].shared_seats(), 1);
    refused(
        &pools(
            "[[pools]]\nname = \"p\"\nlimit = 3\nreserved = [{ claim = \"sub\", any_of = [], seats = 1 }]\n",
        ),
        "pools[0].reserved[0].any_of",
        "at least one value",
    );
    refused(
        &pools(
            "[[pools]]\nname = \"p\"\nlimit = 3\nreserved = [{ claim = \"\", any_of = [\"cfo\"], seats = 1 }]\n",
        ),
        "pools[0].reserved[0].claim",
        "must name a claim",
    );
}

#[test]
fn pool_values_are_checked() {
    refused(
        &MINIMAL.replace("limit = 10", "limit = 0"),
        "pools[0].limit",
        "must be at least 1",
    );
    for name in ["", "two words", "ü", &"x".repeat(65)] {
        refused(
            &MINIMAL.replace("name = \"default\"", &format!("name = \"{name}\"")),
            "pools[0].name",
            "1-64 characters",
        );
    }
    refused(
        &pools(
            "[[pools]]\nname = \"a\"\nlimit = 1\nmatch = { claim = \"azp\", any_of = [\"x\"] }\n[[pools]]\nname = \"a\"\nlimit = 1\n",
        ),
        "pools[1].name",
        "pool `a` is defined twice",
    );
    refused(
        &MINIMAL.replace(
            "limit = 10",
            "limit = 10\nmatch = { claim = \"azp\", any_of = [] }",
        ),
        "pools[0].match.any_of",
        "at least one value",
    );
    refused(
        &MINIMAL.replace(
            "limit = 10",
            "limit = 10\nmatch = { claim = \" \", any_of = [\"x\"] }",
        ),
        "pools[0].match.claim",
        "must name a claim",
    );
    refused(
        &MINIMAL.replace("limit = 10", "limit = 10\nper_subject_limit = 0"),
        "pools[0].per_subject_limit",
        "at least 1",
    );
    refused(
        &MINIMAL.replace(
            "limit = 10",
            "limit = 10\nper_subject_limit = 1\non_subject_limit = \"kick\"",
        ),
        "pools[0].on_subject_limit",
        "use \"deny\" or \"replace_oldest\"",
    );
    let c = valid(&MINIMAL.replace("limit = 10", "limit = 10\nper_subject_limit = 1"));
    assert_eq!(
        c.pools[0].subject_limit,
        Some(SubjectLimit {
            max: 1,
            policy: SubjectLimitPolicy::Deny
        }),
        "on_subject_limit defaults to deny"
    );
}

// ---------------------------------------------------------------- upstreams and routes

#[test]
fn route_to_an_unknown_upstream_is_refused() {
    refused(
        &MINIMAL.replace("upstream = \"erp\"", "upstream = \"erp2\""),
        "routes[0].upstream",
        "no upstream named `erp2` (defined: erp)",
    );
}

#[test]
fn route_under_the_gateway_prefix_is_refused() {
    let route = |prefix: &str| {
        MINIMAL.replace(
            "policy = \"session\"",
            &format!("policy = \"session\"\npath_prefix = \"{prefix}\""),
        )
    };
    refused(
        &route("/.gateway"),
        "routes[0].path_prefix",
        "`/.gateway` is reserved for the gateway's own endpoints",
    );
    refused(
        &route("/.gateway/session"),
        "routes[0].path_prefix",
        "is reserved",
    );
    valid(&route("/api/"));
    // The reserved prefix follows [server] gateway_prefix.
    let custom = |prefix: &str| format!("[server]\ngateway_prefix = \"/_gw\"\n{}", route(prefix));
    refused(
        &custom("/_gw/"),
        "routes[0].path_prefix",
        "`/_gw` is reserved",
    );
    valid(&custom("/.gateway/"));
}

#[test]
fn route_values_are_checked() {
    let route = |extra: &str| MINIMAL.replace("policy = \"session\"", extra);
    refused(
        &route("policy = \"open\""),
        "routes[0].policy",
        "use \"session\", \"token\" or \"public\"",
    );
    refused(
        &route("policy = \"session\"\npath_prefix = \"api/\""),
        "routes[0].path_prefix",
        "starting with '/'",
    );
    refused(
        &route("policy = \"session\"\npath_prefix = \"/api?x\""),
        "routes[0].path_prefix",
        "starting with '/'",
    );
    refused(
        &route("policy = \"session\"\nhost = \"erp.example.com:8080\""),
        "routes[0].host",
        "no port",
    );
    refused(
        &route("policy = \"session\"\nhost = \"*.\""),
        "routes[0].host",
        "host name",
    );
    refused(
        &route("policy = \"public\"\nrequired_scopes = [\"erp\"]"),
        "routes[0].required_scopes",
        "public route",
    );
    refused(
        &MINIMAL.replace("name = \"erp-api\"", "name = \"\""),
        "routes[0].name",
        "must not be empty",
    );
    let twice = format!(
        "{MINIMAL}\n[[routes]]\nname = \"erp-api\"\nupstream = \"erp\"\npolicy = \"public\"\n"
    );
    refused(&twice, "routes[1].name", "route `erp-api` is defined twice");
    let no_routes = MINIMAL.split("[[routes]]").next().unwrap().to_string();
    refused(&no_routes, "routes", "at least one [[routes]] entry");
}

#[test]
fn protected_routes_need_issuers_and_session_routes_need_pools() {
    let without_issuer = MINIMAL.replace(
        "[[issuers]]\nissuer = \"https://idp.example.com\"\naudiences = [\"erp-api\"]\n",
        "",
    );
    refused(
        &without_issuer,
        "issuers",
        "need at least one [[issuers]] entry",
    );
    let without_pool = MINIMAL.replace("[[pools]]\nname = \"default\"\nlimit = 10\n", "");
    refused(&without_pool, "pools", "need at least one [[pools]] entry");
    valid(&without_pool.replace("policy = \"session\"", "policy = \"token\""));
}

#[test]
fn upstream_values_are_checked() {
    let upstream = |servers: &str| MINIMAL.replace("servers = [\"127.0.0.1:9000\"]", servers);
    refused(
        &upstream("servers = []"),
        "upstreams[0].servers",
        "at least one \"host:port\"",
    );
    refused(
        &upstream("servers = [\"127.0.0.1:9000\", \"10.0.0.1\"]"),
        "upstreams[0].servers[1]",
        "must be \"host:port\"",
    );
    refused(
        &upstream("servers = [\"127.0.0.1:9000\"]\nhealth_check = { path = \"health\" }"),
        "upstreams[0].health_check.path",
        "must start with '/'",
    );
    refused(
        &upstream(
            "servers = [\"127.0.0.1:9000\"]\nhealth_check = { path = \"/health\", interval = \"0s\" }",
        ),
        "upstreams[0].health_check.interval",
        "longer than zero",
    );
    let twice =
        format!("{MINIMAL}\n[[upstreams]]\nname = \"erp\"\nservers = [\"127.0.0.1:9001\"]\n");
    refused(
        &twice,
        "upstreams[1].name",
        "upstream `erp` is defined twice",
    );
    refused(
        &MINIMAL.replace("name = \"erp\"", "name = \"\""),
        "upstreams[0].name",
        "must not be empty",
    );
    let c = valid(&upstream("servers = [\"[::1]:9000\"]"));
    assert_eq!(c.upstreams[0].servers, vec!["[::1]:9000".to_string()]);
}

// ---------------------------------------------------------------- redis

/// MINIMAL with `store = "redis"` and this `[redis]` table.
fn redis_with(table: &str) -> String {
    minimal_with(&format!(
        "[sessions]\nstore = \"redis\"\n\n[redis]\n{table}\n"
    ))
}

/// A PEM block of `label`. Validation checks the PEM framing only, so the
/// body need not be a real certificate or key (the TLS e2e tests use real ones).
/// A directory holding `ca.pem`, `client.pem` and `client.key` (real
/// certificates and a key: certificates are parsed as X.509 at load).
fn tls_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "ca");
    write_certificate(dir.path(), "client");
    for (from, to) in [
        ("ca.crt", "ca.pem"),
        ("client.crt", "client.pem"),
        ("client.key", "client.key"),
    ] {
        std::fs::rename(dir.path().join(from), dir.path().join(to)).unwrap();
    }
    dir
}

#[track_caller]
fn redis_refused_in(dir: &Path, table: &str, key: &str, fragment: &str) -> String {
    refused_in(dir, &redis_with(table), &redis_env, key, fragment)
}

/// Asserts that `text`, read in `dir` with `env`, is refused with a one-line
/// error naming `key` and containing `fragment`; returns the message.
#[track_caller]
fn refused_in(
    dir: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    fragment: &str,
) -> String {
    let error = match Config::from_toml(text, ORIGIN, dir, env) {
        Ok(_) => panic!("accepted, expected an error at `{key}`"),
        Err(e) => e,
    };
    let message = error.to_string();
    assert_eq!(error.key(), key, "wrong key path in: {message}");
    assert!(message.contains(fragment), "`{fragment}` not in: {message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

fn redis_env(name: &str) -> Option<String> {
    match name {
        "REDIS_PASSWORD" => Some("primary-secret".into()),
        "SENTINEL_PASSWORD" => Some("sentinel-secret".into()),
        _ => None,
    }
}

#[test]
fn rediss_with_a_ca_file_and_a_client_certificate_reads_them_at_load() {
    let dir = tls_files();
    let c = Config::from_toml(
        &redis_with(
            "url = \"rediss://redis.internal:6380\"\ntls_ca_file = \"ca.pem\"\n\
             tls_cert_file = \"client.pem\"\ntls_key_file = \"client.key\"",
        ),
        ORIGIN,
        dir.path(),
        &no_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = c.redis.as_ref().unwrap();
    let tls = redis.tls.as_ref().expect("rediss:// has TLS settings");
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(tls.ca_pem.as_deref(), Some(read("ca.pem").as_slice()));
    let client = tls.client.as_ref().expect("client certificate");
    assert_eq!(client.cert_pem, read("client.pem"));
    assert_eq!(client.key_pem.expose().as_bytes(), read("client.key"));
    // The key never shows in Debug output.
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    // The effective configuration names the files (relative, as written).
    assert!(c.effective_toml().contains("tls_ca_file = \"ca.pem\""));
}

#[test]
fn rediss_without_a_ca_file_trusts_the_system_roots() {
    let c = valid(&redis_with("url = \"rediss://redis.internal:6380\""));
    let tls = c.redis.unwrap().tls.expect("rediss:// has TLS settings");
    assert!(tls.ca_pem.is_none());
    assert!(tls.client.is_none());
}

#[test]
fn plain_redis_has_no_tls_settings() {
    let c = valid(&redis_with("url = \"redis://127.0.0.1:6379\""));
    assert!(c.redis.unwrap().tls.is_none());
}

#[test]
fn a_missing_redis_ca_file_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_ca_file = \"missing-ca.pem\"",
        "redis.tls_ca_file",
        "missing-ca.pem",
    );
}

#[test]
fn a_redis_ca_file_without_a_certificate_is_refused() {
    let dir = tls_files();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_ca_file = \"empty.pem\"",
        "redis.tls_ca_file",
        "holds no PEM certificate",
    );
    // A PEM block that holds no X.509 certificate is refused at load, not
    // at the first connection.
    std::fs::write(
        dir.path().join("junk.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ2t3\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_ca_file = \"junk.pem\"",
        "redis.tls_ca_file",
        "is not X.509",
    );
    // A key where the CA should be is no certificate either.
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_ca_file = \"client.key\"",
        "redis.tls_ca_file",
        "holds no PEM certificate",
    );
}

#[test]
fn redis_tls_files_need_rediss_urls() {
    let dir = tls_files();
    for key in ["tls_ca_file", "tls_cert_file", "tls_key_file"] {
        redis_refused_in(
            dir.path(),
            &format!("url = \"redis://127.0.0.1:6379\"\n{key} = \"ca.pem\""),
            &format!("redis.{key}"),
            "only used with rediss://",
        );
    }
}

#[test]
fn a_redis_client_certificate_needs_its_key_and_a_key_its_certificate() {
    let dir = tls_files();
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_cert_file = \"client.pem\"",
        "redis.tls_key_file",
        "private key",
    );
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_key_file = \"client.key\"",
        "redis.tls_cert_file",
        "is needed",
    );
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_cert_file = \"client.pem\"\ntls_key_file = \"ca.pem\"",
        "redis.tls_key_file",
        "holds no PEM private key",
    );
    redis_refused_in(
        dir.path(),
        "url = \"rediss://127.0.0.1:6380\"\ntls_cert_file = \"client.pem\"\ntls_key_file = \"nope.key\"",
        "redis.tls_key_file",
        "cannot read",
    );
}

#[test]
fn redis_keys_of_another_mode_are_refused_not_ignored() {
    for (table, key, fragment) in [
        (
            "url = \"redis://10.0.0.7:6379\"\nurls = [\"redis://10.0.0.8:6379\"]",
            "redis.urls",
            "standalone mode uses `url`",
        ),
        (
            "master_name = \"sessions\"",
            "redis.master_name",
            "only used with mode = \"sentinel\"",
        ),
        (
            "mode = \"cluster\"\nurls = [\"redis://10.0.0.7:6379\"]\nurl = \"redis://10.0.0.9:6379\"",
            "redis.url",
            "list the nodes in `urls`",
        ),
        (
            "mode = \"cluster\"\nurls = [\"redis://10.0.0.7:6379\"]\nmaster_name = \"x\"",
            "redis.master_name",
            "only used with mode = \"sentinel\"",
        ),
    ] {
        refused(&redis_with(table), key, fragment);
    }
}

#[test]
fn redis_urls_must_agree_on_tls() {
    let dir = tls_files();
    redis_refused_in(
        dir.path(),
        "mode = \"cluster\"\nurls = [\"rediss://10.0.0.1:6380\", \"redis://10.0.0.2:6379\"]",
        "redis.urls[1]",
        "same scheme",
    );
}

#[test]
fn sentinel_takes_separate_passwords_for_the_sentinels_and_the_primary() {
    let c = Config::from_toml(
        &redis_with(
            "mode = \"sentinel\"\nurls = [\"redis://10.0.0.1:26379\", \"redis://10.0.0.2:26379\"]\n\
             master_name = \"sessions\"\npassword_env = \"REDIS_PASSWORD\"\n\
             sentinel_password_env = \"SENTINEL_PASSWORD\"",
        ),
        ORIGIN,
        Path::new("."),
        &redis_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = c.redis.as_ref().unwrap();
    assert_eq!(redis.mode, RedisMode::Sentinel);
    let urls: Vec<&str> = redis.urls.iter().map(Secret::expose).collect();
    assert_eq!(
        urls,
        [
            "redis://:sentinel-secret@10.0.0.1:26379",
            "redis://:sentinel-secret@10.0.0.2:26379"
        ]
    );
    assert_eq!(
        redis.master_password.as_ref().map(Secret::expose),
        Some("primary-secret")
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("-secret"), "{debug}");
    assert!(!c.effective_toml().contains("-secret"));
}

#[test]
fn sentinel_with_only_the_primary_password_asks_the_sentinels_without_one() {
    let c = Config::from_toml(
        &redis_with(
            "mode = \"sentinel\"\nurls = [\"redis://10.0.0.1:26379\"]\n\
             master_name = \"sessions\"\npassword_env = \"REDIS_PASSWORD\"",
        ),
        ORIGIN,
        Path::new("."),
        &redis_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = c.redis.unwrap();
    assert_eq!(redis.urls[0].expose(), "redis://10.0.0.1:26379");
    assert_eq!(
        redis.master_password.as_ref().map(Secret::expose),
        Some("primary-secret")
    );
}

#[test]
fn standalone_puts_the_password_in_its_url() {
    let c = Config::from_toml(
        &redis_with("url = \"rediss://redis.internal:6380\"\npassword_env = \"REDIS_PASSWORD\""),
        ORIGIN,
        Path::new("."),
        &redis_env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let redis = c.redis.unwrap();
    assert_eq!(
        redis.urls[0].expose(),
        "rediss://:primary-secret@redis.internal:6380"
    );
    assert!(redis.master_password.is_none());
}

#[test]
fn sentinel_password_refusals_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    redis_refused_in(
        dir.path(),
        "url = \"redis://127.0.0.1:6379\"\nsentinel_password_env = \"SENTINEL_PASSWORD\"",
        "redis.sentinel_password_env",
        "only used with mode = \"sentinel\"",
    );
    redis_refused_in(
        dir.path(),
        "mode = \"sentinel\"\nurls = [\"redis://10.0.0.1:26379\"]\nmaster_name = \"m\"\n\
         sentinel_password_env = \"UNSET_VARIABLE\"",
        "redis.sentinel_password_env",
        "`UNSET_VARIABLE` is not set",
    );
    redis_refused_in(
        dir.path(),
        "mode = \"sentinel\"\nurls = [\"redis://10.0.0.1:26379\"]\nmaster_name = \"m\"\n\
         password_env = \"UNSET_VARIABLE\"",
        "redis.password_env",
        "`UNSET_VARIABLE` is not set",
    );
    redis_refused_in(
        dir.path(),
        "mode = \"sentinel\"\nurls = [\"redis://:inline@10.0.0.1:26379\"]\nmaster_name = \"m\"",
        "redis.urls[0]",
        "redis.sentinel_password_env",
    );
}

// ---------------------------------------------------------------- upstream credential

fn replace_route(env_line: &str) -> String {
    MINIMAL.replace(
        "policy = \"session\"",
        &format!("policy = \"session\"\n{env_line}"),
    )
}

#[test]
fn authorization_replace_reads_the_named_environment_variable() {
    let text = replace_route("authorization = \"replace\"\nauthorization_env = \"ERP_BASIC\"");
    let env = |name: &str| (name == "ERP_BASIC").then(|| "Basic c2VydmljZTpwdw==".to_string());
    let c =
        Config::from_toml(&text, ORIGIN, Path::new("."), &env).unwrap_or_else(|e| panic!("{e}"));
    let UpstreamAuthorization::Replace(secret) = &c.routes[0].authorization else {
        panic!("not replace: {:?}", c.routes[0].authorization)
    };
    assert_eq!(secret.expose(), "Basic c2VydmljZTpwdw==");
    assert!(
        !format!("{:?}", c.routes[0]).contains("c2VydmljZTpwdw"),
        "the secret leaks through Debug"
    );
    let effective = c.effective_toml();
    assert!(
        !effective.contains("c2VydmljZTpwdw"),
        "the secret leaks into the effective configuration"
    );
    assert!(
        effective.contains("authorization_env = \"ERP_BASIC\""),
        "{effective}"
    );
}

#[test]
fn authorization_replace_with_a_missing_variable_is_refused() {
    let text = replace_route("authorization = \"replace\"\nauthorization_env = \"ERP_BASIC\"");
    refused(
        &text,
        "routes[0].authorization_env",
        "environment variable `ERP_BASIC` is not set",
    );
    let empty = |_: &str| Some(String::new());
    refused_with(&text, &empty, "routes[0].authorization_env", "is not set");
    let newline = |_: &str| Some("Basic a\nb".to_string());
    refused_with(
        &text,
        &newline,
        "routes[0].authorization_env",
        "is not a valid header value",
    );
}

#[test]
fn authorization_modes_and_their_variable_must_agree() {
    refused(
        &replace_route("authorization = \"replace\""),
        "routes[0].authorization_env",
        "needs the name of the environment variable",
    );
    refused(
        &replace_route("authorization = \"strip\"\nauthorization_env = \"ERP_BASIC\""),
        "routes[0].authorization_env",
        "only used with `authorization = \"replace\"`",
    );
    refused(
        &replace_route("authorization = \"drop\""),
        "routes[0].authorization",
        "use \"pass\", \"strip\" or \"replace\"",
    );
}

// ---------------------------------------------------------------- headers and logging

#[test]
fn protocol_headers_cannot_carry_identity() {
    refused(
        &minimal_with("[headers]\nsubject = \"Authorization\""),
        "headers.subject",
        "`Authorization` is a protocol header",
    );
    refused(
        &minimal_with("[headers]\nsession_id = \"host\""),
        "headers.session_id",
        "is a protocol header",
    );
    refused(
        &minimal_with("[headers.claims]\nemail = \"Cookie\""),
        "headers.claims.email",
        "is a protocol header",
    );
    refused(
        &minimal_with("[headers]\npool = \"X License\""),
        "headers.pool",
        "is not a valid HTTP header name",
    );
}

#[test]
fn hop_by_hop_headers_cannot_carry_identity() {
    for name in [
        "Proxy-Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Transfer_Encoding",
        "proxy_connection",
    ] {
        refused(
            &minimal_with(&format!("[headers.claims]\nemail = \"{name}\"")),
            "headers.claims.email",
            "is a protocol header",
        );
    }
}

#[test]
fn identity_header_names_must_differ_in_every_spelling() {
    for (section, name, clash) in [
        (
            "[headers.claims]\nemail",
            "X_Auth_Subject",
            "x_auth_subject",
        ),
        ("[headers.claims]\nemail", "x_session_id", "x_session_id"),
        (
            "[headers.claims]\nemail",
            "X_License_Pool",
            "x_license_pool",
        ),
        ("[headers.claims]\nemail", "X_AUTH_CLIENT", "x_auth_client"),
        ("[headers]\npool", "x_auth_subject", "x_auth_subject"),
    ] {
        refused(
            &minimal_with(&format!("{section} = \"{name}\"")),
            "headers",
            &format!("header `{clash}` is used twice"),
        );
    }
    refused(
        &minimal_with("[headers.claims]\nemail = \"X-Mail\"\nmail = \"x_mail\""),
        "headers",
        "is used twice",
    );
}

#[test]
fn identity_header_names_must_be_distinct() {
    refused(
        &minimal_with("[headers]\nsession_id = \"X-Auth-Subject\""),
        "headers",
        "header `x-auth-subject` is used twice",
    );
    refused(
        &minimal_with("[headers.claims]\nemail = \"x-session-id\""),
        "headers",
        "header `x-session-id` is used twice",
    );
    refused(
        &minimal_with("[headers.claims]\nemail = \"X-Mail\"\nmail = \"X-MAIL\""),
        "headers",
        "is used twice",
    );
}

#[test]
fn logging_values_are_checked() {
    refused(
        &minimal_with("[logging]\nformat = \"xml\""),
        "logging.format",
        "use \"json\" or \"text\"",
    );
    refused(
        &minimal_with("[logging]\nlevel = \"info,[\""),
        "logging.level",
        "`[` is not a log level",
    );
}

#[test]
fn log_levels_are_a_closed_set() {
    // `tracing` reads a bare unknown word as a target: "verbose" was
    // accepted and silenced every log line.
    refused(
        &minimal_with("[logging]\nlevel = \"verbose\""),
        "logging.level",
        "`verbose` is not a log level; levels are off, error, warn, info, debug, trace",
    );
    refused(
        &minimal_with("[logging]\nlevel = \"info,session_gateway=loud\""),
        "logging.level",
        "`loud` is not a log level",
    );
    for level in ["warn", "DEBUG", "info,session_gateway=debug", "off"] {
        let c = valid(&minimal_with(&format!("[logging]\nlevel = \"{level}\"")));
        assert_eq!(c.logging.level, level);
    }
}

#[test]
fn durations_refuse_months_and_years() {
    // humantime's `M` is months: "20M" was accepted as 20 months.
    for (text, unit) in [
        ("20M", "M"),
        ("1y", "y"),
        ("2 months", "months"),
        ("1year", "year"),
    ] {
        refused(
            &minimal_with(&format!("[sessions]\nidle_timeout = \"{text}\"")),
            "sessions.idle_timeout",
            &format!(
                "uses `{unit}` (months or years), which has no fixed length; units are ms, s, m (minutes), h, d and w"
            ),
        );
    }
    let c = valid(&minimal_with("[sessions]\nidle_timeout = \"20m\""));
    assert_eq!(c.sessions.idle_timeout, secs(20 * 60));
}

#[test]
fn wait_replicas_is_checked() {
    let c = valid(&minimal_with(
        "[sessions]\nstore = \"redis\"\n[redis]\nurl = \"redis://10.0.0.7:6379\"\nwait_replicas = 1\nwait_timeout = \"250ms\"",
    ));
    let redis = c.redis.expect("redis");
    assert_eq!(
        (redis.wait_replicas, redis.wait_timeout),
        (1, Duration::from_millis(250))
    );
    refused(
        &minimal_with(
            "[sessions]\nstore = \"redis\"\n[redis]\nmode = \"cluster\"\nurls = [\"redis://10.0.0.7:6379\"]\nwait_replicas = 1",
        ),
        "redis.wait_replicas",
        "is not supported with mode = \"cluster\"",
    );
}

#[test]
fn a_redis_store_needs_a_redis_table() {
    // Without one the store silently used redis://127.0.0.1:6379.
    refused(
        &minimal_with("[sessions]\nstore = \"redis\""),
        "redis",
        "`sessions.store = \"redis\"` needs a [redis] table",
    );
    let c = valid(&minimal_with(
        "[sessions]\nstore = \"redis\"\n[redis]\nurl = \"redis://10.0.0.7:6379\"",
    ));
    assert_eq!(c.redis.map(|r| r.urls.len()), Some(1));
}

// ---------------------------------------------------------------- effective configuration

/// Renders, parses the rendering, renders again: the two renderings match.
#[track_caller]
fn assert_round_trip(config: &Config, base: &Path, env: &dyn Fn(&str) -> Option<String>) {
    let first = config.effective_toml();
    let again = Config::from_toml(&first, "effective.toml", base, env)
        .unwrap_or_else(|e| panic!("the effective configuration is refused: {e}\n{first}"));
    assert_eq!(again.effective_toml(), first);
}

#[test]
fn effective_toml_lists_every_default_and_round_trips() {
    let c = valid(MINIMAL);
    let effective = c.effective_toml();
    for line in [
        "listen = [\"0.0.0.0:8080\"]",
        "admin_listen = \"127.0.0.1:9190\"",
        "algorithms = [\"RS256\"]",
        "leeway = \"30s\"",
        "idle_timeout = \"20m\"",
        "absolute_timeout = \"8h\"",
        "touch_interval = \"30s\"",
        "lease_revalidate = \"30s\"",
        "on_subject_limit = \"deny\"",
        "authorization = \"pass\"",
        "session_id = \"X-Session-Id\"",
        "format = \"json\"",
    ] {
        assert!(
            effective.contains(line),
            "`{line}` missing from:\n{effective}"
        );
    }
    assert_round_trip(&c, Path::new("."), &no_env);
}

#[test]
fn effective_toml_of_the_full_config_round_trips() {
    let c = Config::from_toml(FULL, ORIGIN, Path::new("."), &full_env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_round_trip(&c, Path::new("."), &full_env);
    let again = Config::from_toml(&c.effective_toml(), ORIGIN, Path::new("."), &full_env).unwrap();
    assert_eq!(again.pools, c.pools);
    assert_eq!(again.server.listen, c.server.listen);
    assert_eq!(again.sessions.identity, c.sessions.identity);
    assert_eq!(again.routes[1].authorization, c.routes[1].authorization);
    assert_eq!(again.headers.claims, c.headers.claims);
}

/// Writes a self-signed certificate and its key as `<name>.crt` and
/// `<name>.key` into `dir`.
fn write_certificate(dir: &Path, name: &str) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        generated.signing_key.serialize_pem(),
    )
    .unwrap();
}

#[test]
fn effective_toml_with_jwks_file_and_tls_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
    write_certificate(dir.path(), "gw");
    let text = format!(
        "[server]\ntls = {{ cert = \"gw.crt\", key = \"gw.key\" }}\n{}",
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            "audiences = [\"erp-api\"]\njwks_file = \"jwks.json\""
        )
    );
    let c = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.effective_toml().contains("jwks_file = \"jwks.json\""));
    assert_round_trip(&c, dir.path(), &no_env);
}

/// The listener's files are loaded at validation: a missing certificate used
/// to pass `check-config` and leave a process whose proxy thread had panicked.
#[test]
fn tls_files_are_loaded_when_the_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "a");
    write_certificate(dir.path(), "b");
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let with_tls = |cert: &str, key: &str| {
        format!("[server]\ntls = {{ cert = \"{cert}\", key = \"{key}\" }}\n{MINIMAL}")
    };
    let refused_in = |text: String, fragment: &str| {
        let e = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap_err();
        assert_eq!(e.key(), "server.tls", "{e}");
        assert!(e.to_string().contains(fragment), "{e}");
    };
    refused_in(with_tls("nope.crt", "a.key"), "cert: cannot read");
    refused_in(with_tls("a.crt", "nope.key"), "key: cannot read");
    refused_in(
        with_tls("junk.pem", "a.key"),
        "must hold a PEM certificate chain",
    );
    refused_in(with_tls("a.crt", "b.key"), "do not fit");
    let c = Config::from_toml(&with_tls("a.crt", "a.key"), ORIGIN, dir.path(), &no_env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.tls.map(|t| t.cert), Some(dir.path().join("a.crt")));
}

#[test]
fn a_jwks_file_must_hold_a_jwks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("html.json"), "<html>").unwrap();
    std::fs::write(dir.path().join("list.json"), r#"{"kid":"a"}"#).unwrap();
    for (file, fragment) in [("html.json", "is not JSON"), ("list.json", "is not a JWKS")] {
        let text = MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\njwks_file = \"{file}\""),
        );
        let e = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap_err();
        assert_eq!(e.key(), "issuers[0].jwks_file");
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

// ---------------------------------------------------------------- upgrades

#[test]
fn routes_refuse_upgrades_unless_told() {
    assert_eq!(valid(MINIMAL).routes[0].upgrades, UpgradePolicy::Refuse);
    assert_eq!(
        valid(&replace_route("upgrades = \"allow\"")).routes[0].upgrades,
        UpgradePolicy::Allow
    );
    refused(
        &replace_route("upgrades = \"websocket\""),
        "routes[0].upgrades",
        "use \"refuse\" or \"allow\"",
    );
}

// ---------------------------------------------------------------- cors

#[test]
fn cors_is_off_unless_a_route_sets_a_policy() {
    assert_eq!(valid(MINIMAL).routes[0].cors, None);
    let config = valid(&replace_route(
        "cors = { allow_origins = [\"https://ERP.example.com\"], max_age = \"5m\" }",
    ));
    let cors = config.routes[0].cors.as_ref().expect("a policy");
    assert_eq!(cors.allow_origins, ["https://erp.example.com"]);
    assert!(!cors.any_origin);
    assert_eq!(
        cors.allow_methods,
        [http::Method::GET, http::Method::HEAD, http::Method::POST]
    );
    assert_eq!(cors.allow_headers.len(), 2);
    assert_eq!(cors.max_age, std::time::Duration::from_secs(300));
}

#[test]
fn cors_policies_are_checked_by_key() {
    for (policy, key, fragment) in [
        (
            "allow_origins = []",
            "routes[0].cors.allow_origins",
            "at least one origin",
        ),
        (
            "allow_origins = [\"https://erp.example.com/\"]",
            "routes[0].cors.allow_origins[0]",
            "is not an origin",
        ),
        (
            "allow_origins = [\"*\", \"https://a.example\"]",
            "routes[0].cors.allow_origins",
            "alone",
        ),
        (
            "allow_origins = [\"*\"], allow_credentials = true",
            "routes[0].cors.allow_credentials",
            "list the origins",
        ),
        (
            "allow_origins = [\"https://a.example\"], allow_methods = [\"GE T\"]",
            "routes[0].cors.allow_methods[0]",
            "not an HTTP method",
        ),
        (
            "allow_origins = [\"https://a.example\"], allow_headers = [\"bad header\"]",
            "routes[0].cors.allow_headers[0]",
            "not a header name",
        ),
        (
            "allow_origins = [\"https://a.example\"], max_age = \"2d\"",
            "routes[0].cors.max_age",
            "24h or less",
        ),
    ] {
        refused(
            &replace_route(&format!("cors = {{ {policy} }}")),
            key,
            fragment,
        );
    }
}

// ---------------------------------------------------------------- forwarding

#[test]
fn trusted_proxies_take_addresses_and_cidrs_and_name_a_bad_one() {
    let config = valid(&minimal_with(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\nrequest_id_header = \"X-Correlation-Id\"",
    ));
    let trusted: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(trusted, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
    assert_eq!(config.server.request_id_header.as_str(), "x-correlation-id");
    assert!(valid(MINIMAL).server.trusted_proxies.is_empty());
    assert_eq!(
        valid(MINIMAL).server.request_id_header.as_str(),
        "x-request-id"
    );
    refused(
        &minimal_with("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\"]"),
        "server.trusted_proxies[1]",
        "is not an address or CIDR",
    );
    refused(
        &minimal_with("[server]\nrequest_id_header = \"bad header\""),
        "server.request_id_header",
        "not a header name",
    );
}

#[test]
fn usage_retention_defaults_and_bounds() {
    let config = valid(MINIMAL);
    assert_eq!(config.usage, crate::usage::UsageRetention::default());
    assert_eq!(config.usage.minutes, secs(2 * 86_400));
    assert_eq!(config.usage.days, secs(1_096 * 86_400));
    let kept = valid(&minimal_with(
        "[usage]\nminutes = \"0s\"\nhours = \"30d\"\ndays = \"400d\"",
    ));
    assert_eq!(kept.usage.minutes, Duration::ZERO);
    assert_eq!(kept.usage.hours, secs(30 * 86_400));
    refused(
        &minimal_with("[usage]\nminutes = \"32d\""),
        "usage.minutes",
        "longer than the 31 days allowed",
    );
    refused(
        &minimal_with("[usage]\ndays = \"3y\""),
        "usage.days",
        "months or years",
    );
    refused(
        &minimal_with("[usage]\nweeks = \"3w\""),
        "usage.weeks",
        "unknown field `weeks`",
    );
}

#[test]
fn overdraft_is_seats_or_a_share_of_the_limit() {
    assert_eq!(valid(MINIMAL).pools[0].overdraft, 0);
    let with =
        |value: &str| MINIMAL.replace("limit = 10", &format!("limit = 10\noverdraft = {value}"));
    assert_eq!(valid(&with("2")).pools[0].overdraft, 2);
    assert_eq!(valid(&with("\"25%\"")).pools[0].overdraft, 2);
    assert_eq!(valid(&with("\"0%\"")).pools[0].overdraft, 0);
    let pool = &valid(&with("3")).pools[0];
    assert_eq!((pool.bucket_count(), pool.overdraft_bucket()), (2, Some(1)));
    refused(
        &with("11"),
        "pools[0].overdraft",
        "more than the pool's limit (10)",
    );
    refused(&with("-1"), "pools[0].overdraft", "negative");
    refused(
        &with("\"150%\""),
        "pools[0].overdraft",
        "percentage from 0% to 100%",
    );
    refused(
        &with("\"5%\""),
        "pools[0].overdraft",
        "rounds down to no seat",
    );
    refused(
        &with("true"),
        "pools[0].overdraft",
        "neither a number nor a percentage",
    );
}

#[test]
fn shared_token_detection_has_safe_defaults_and_bounds() {
    use crate::licensing::OnShared;
    assert_eq!(valid(MINIMAL).pools[0].shared_token, None);
    let with = |table: &str| {
        MINIMAL.replace(
            "limit = 10",
            &format!("limit = 10\nshared_token = {{ {table} }}"),
        )
    };
    let policy = valid(&with("")).pools[0].shared_token.expect("on");
    assert_eq!(
        (
            policy.window,
            policy.max_addresses,
            policy.max_user_agents,
            policy.on_shared
        ),
        (secs(600), 3, 3, OnShared::Audit)
    );
    let deny = valid(&with(
        "window = \"1h\", max_addresses = 2, on_shared = \"deny\"",
    ));
    let policy = deny.pools[0].shared_token.expect("on");
    assert_eq!(
        (policy.window, policy.max_addresses, policy.on_shared),
        (secs(3600), 2, OnShared::Deny)
    );
    refused(
        &with("window = \"2d\""),
        "pools[0].shared_token.window",
        "at most 1 day",
    );
    refused(
        &with("window = \"0s\""),
        "pools[0].shared_token.window",
        "longer than zero",
    );
    refused(
        &with("max_addresses = 0"),
        "pools[0].shared_token.max_addresses",
        "at least 1",
    );
    refused(
        &with("on_shared = \"block\""),
        "pools[0].shared_token.on_shared",
        "\"audit\" or \"deny\"",
    );
    refused(
        &with("max_ips = 2"),
        "pools[0].shared_token.max_ips",
        "unknown field",
    );
}

#[test]
fn http2_is_offered_on_tls_and_h2c_is_opt_in() {
    let config = valid(MINIMAL);
    assert!(config.server.http2);
    assert!(!config.server.h2c);
    let on = valid(&minimal_with("[server]\nh2c = true\nhttp2 = false"));
    assert!(on.server.h2c && !on.server.http2);
    refused(
        &minimal_with("[server]\nh2c = \"yes\""),
        "server.h2c",
        "invalid type",
    );
}

#[test]
fn linger_and_min_hold_are_off_by_default_and_bounded() {
    let pool = &valid(MINIMAL).pools[0];
    assert_eq!(
        (pool.linger, pool.min_hold),
        (Duration::ZERO, Duration::ZERO)
    );
    assert!(!pool.holds_seats());
    let with = |keys: &str| MINIMAL.replace("limit = 10", &format!("limit = 10\n{keys}"));
    let pool = &valid(&with("linger = \"5m\"\nmin_hold = \"15m\"")).pools[0];
    assert_eq!((pool.linger, pool.min_hold), (secs(300), secs(900)));
    // The later of close + linger and open + min_hold; only for closes that keep a seat.
    assert_eq!(pool.hold_until(0, 60_000, true), Some(900_000));
    assert_eq!(pool.hold_until(0, 1_000_000, true), Some(1_300_000));
    assert_eq!(pool.hold_until(0, 60_000, false), None);
    refused(&with("linger = \"2d\""), "pools[0].linger", "at most 1 day");
    refused(
        &with("min_hold = \"soon\""),
        "pools[0].min_hold",
        "is not a duration",
    );
}

#[test]
fn route_timeouts_are_optional_and_positive() {
    assert_eq!(
        valid(MINIMAL).routes[0].timeouts,
        crate::config::RouteTimeouts::default()
    );
    let with = |t: &str| {
        MINIMAL.replacen(
            "policy = \"session\"",
            &format!("policy = \"session\"\ntimeouts = {t}"),
            1,
        )
    };
    let r = &valid(&with("{ connect = \"2s\", total = \"1m\" }")).routes[0];
    assert_eq!(
        (r.timeouts.connect, r.timeouts.read, r.timeouts.total),
        (Some(secs(2)), None, Some(secs(60)))
    );
    refused(
        &with("{ read = \"0s\" }"),
        "routes[0].timeouts.read",
        "longer than zero",
    );
    refused(
        &with("{ whole = \"1s\" }"),
        "routes[0].timeouts.whole",
        "unknown field",
    );
}

/// MINIMAL's upstream with more keys, checked in `dir`.
#[track_caller]
fn upstream_refused_in(dir: &Path, keys: &str, key: &str, fragment: &str) {
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:9000\"]",
        &format!("servers = [\"127.0.0.1:9000\"]\n{keys}"),
    );
    refused_in(dir, &text, &no_env, key, fragment);
}

#[test]
fn upstream_tls_trust_settings_are_checked_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "ca");
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    upstream_refused_in(
        dir.path(),
        "ca_file = \"ca.crt\"",
        "upstreams[0].ca_file",
        "only applies with tls = true",
    );
    upstream_refused_in(
        dir.path(),
        "tls = true\nsni = \"\"",
        "upstreams[0].sni",
        "no certificate would be checked",
    );
    upstream_refused_in(
        dir.path(),
        "tls = true\nca_file = \"junk.pem\"",
        "upstreams[0].ca_file",
        "holds no PEM certificate",
    );
    upstream_refused_in(
        dir.path(),
        "tls = true\nclient_cert_file = \"ca.crt\"",
        "upstreams[0].client_key_file",
        "is needed with upstreams[0].client_cert_file",
    );
    upstream_refused_in(
        dir.path(),
        "tls = true\nverify_cert = false\nca_file = \"ca.crt\"",
        "upstreams[0].ca_file",
        "no effect with verify_cert = false",
    );
    let text = MINIMAL.replace(
        "servers = [\"127.0.0.1:9000\"]",
        "servers = [\"127.0.0.1:9000\"]\ntls = true\nca_file = \"ca.crt\"\nhttp2 = true",
    );
    let c = Config::from_toml(&text, ORIGIN, dir.path(), &no_env).unwrap();
    let upstream = &c.upstreams[0];
    assert_eq!(upstream.ca.as_ref().map(Vec::len), Some(1));
    assert_eq!(upstream.sni, "127.0.0.1");
    assert!(upstream.verify_cert && upstream.verify_hostname && upstream.http2);
}

#[test]
fn an_issuer_ca_file_is_checked_and_needs_fetched_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "ca");
    let with = |keys: &str| {
        MINIMAL.replace(
            "audiences = [\"erp-api\"]",
            &format!("audiences = [\"erp-api\"]\n{keys}"),
        )
    };
    let c = Config::from_toml(&with("ca_file = \"ca.crt\""), ORIGIN, dir.path(), &no_env).unwrap();
    assert!(c.issuers[0].ca_pem.is_some());
    let error = Config::from_toml(
        &with("ca_file = \"missing.pem\""),
        ORIGIN,
        dir.path(),
        &no_env,
    )
    .unwrap_err();
    assert_eq!(error.key(), "issuers[0].ca_file");
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys": []}"#).unwrap();
    let error = Config::from_toml(
        &with("jwks_file = \"jwks.json\"\nca_file = \"ca.crt\""),
        ORIGIN,
        dir.path(),
        &no_env,
    )
    .unwrap_err();
    assert_eq!(error.key(), "issuers[0].ca_file", "{error}");
}

#[test]
fn listener_certificates_by_name_are_checked_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path(), "gw");
    write_certificate(dir.path(), "a");
    let with = |certificates: &str| {
        minimal_with(&format!(
            "[server]\ntls = {{ cert = \"gw.crt\", key = \"gw.key\", certificates = [{certificates}] }}"
        ))
    };
    let ok =
        with(r#"{ names = ["A.example.com", "*.eu.example.com"], cert = "a.crt", key = "a.key" }"#);
    let c = Config::from_toml(&ok, ORIGIN, dir.path(), &no_env).unwrap();
    let tls = c.server.tls.expect("tls");
    assert_eq!(tls.by_name[0].names, ["a.example.com", "*.eu.example.com"]);
    for (certificates, key, fragment) in [
        (
            r#"{ names = [], cert = "a.crt", key = "a.key" }"#,
            "server.tls.certificates[0].names",
            "at least one",
        ),
        (
            r#"{ names = ["*"], cert = "a.crt", key = "a.key" }"#,
            "server.tls.certificates[0].names[0]",
            "not a host name",
        ),
        (
            r#"{ names = ["*.com.", "x"], cert = "a.crt", key = "a.key" }"#,
            "server.tls.certificates[0].names[0]",
            "not a host name",
        ),
        (
            r#"{ names = ["a.example.com"], cert = "a.crt", key = "a.key" }, { names = ["A.example.com"], cert = "a.crt", key = "a.key" }"#,
            "server.tls.certificates[1].names[0]",
            "already has a certificate",
        ),
        (
            r#"{ names = ["a.example.com"], cert = "a.crt", key = "gw.key" }"#,
            "server.tls.certificates[0]",
            "do not fit",
        ),
        (
            r#"{ names = ["a.example.com"], cert = "missing.crt", key = "a.key" }"#,
            "server.tls.certificates[0]",
            "cannot read",
        ),
    ] {
        let error =
            Config::from_toml(&with(certificates), ORIGIN, dir.path(), &no_env).unwrap_err();
        assert_eq!(error.key(), key, "{error}");
        assert!(error.to_string().contains(fragment), "{error}");
    }
}

#[test]
fn upstream_names_are_looked_up_again_every_30s_unless_set() {
    let with = |servers: &str, keys: &str| {
        MINIMAL.replace(
            "servers = [\"127.0.0.1:9000\"]",
            &format!("servers = [{servers}]\n{keys}"),
        )
    };
    let interval = |text: &str| valid(text).upstreams[0].resolve_interval;
    assert_eq!(
        interval(&with("\"127.0.0.1:9000\", \"[::1]:9000\"", "")),
        None
    );
    assert_eq!(
        interval(&with("\"localhost:9000\"", "")),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        interval(&with("\"localhost:9000\"", "resolve_interval = \"5s\"")),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        interval(&with("\"localhost:9000\"", "resolve_interval = \"0s\"")),
        None
    );
    refused(
        &with("\"localhost:9000\"", "resolve_interval = \"500ms\""),
        "upstreams[0].resolve_interval",
        "at least 1s",
    );
}

#[test]
fn span_export_is_off_unless_an_otlp_endpoint_is_set() {
    assert!(valid(MINIMAL).tracing.otlp.is_none());
    let on = valid(&minimal_with(
        "[tracing]\notlp_endpoint = \"http://otel-collector.observability:4318/v1/traces\"",
    ));
    let otlp = on.tracing.otlp.expect("export on");
    assert_eq!(otlp.service_name, "session-gateway");
    assert_eq!(otlp.timeout, Duration::from_secs(5));
    refused(
        &minimal_with("[tracing]\notlp_endpoint = \"grpc://collector:4317\""),
        "tracing.otlp_endpoint",
        "http:// or https://",
    );
    refused(
        &minimal_with(
            "[tracing]\notlp_endpoint = \"http://c:4318/v1/traces\"\nservice_name = \" \"",
        ),
        "tracing.service_name",
        "must not be empty",
    );
}
