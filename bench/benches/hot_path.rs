//! Criterion micro-benchmarks of the pieces on the gateway's hot path
//! (docs/design.md §4): token verification (cache hit and miss, RS256 and
//! ES256), session identity derivation, route matching, and the admit call
//! against the memory store and a local `redis-server`, and the request
//! metrics' label lookups.
//!
//! Run: `cargo bench -p session-gateway-bench --bench hot_path`
//! (one group: `cargo bench -p session-gateway-bench --bench hot_path -- verify`).
//! The Redis cases start their own `redis-server` on a free loopback port
//! and are skipped with a message when it is not installed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use session_gateway::auth::{Claims, Principal, Verifier};
use session_gateway::clock::{SharedClock, SystemClock};
use session_gateway::config::Config;
use session_gateway::devkit::{Issuer, IssuerHandle, TokenRequest};
use session_gateway::licensing::Pools;
use session_gateway::proxy::routes::Router;
use session_gateway::session::{AdmitRequest, IdentityRule, MemoryStore, RedisStore, SessionStore};
use session_gateway_e2e::RedisServer;

/// Distinct tokens per cache-miss case, so a miss never becomes a hit.
const MISS_TOKENS: usize = 512;

struct Setup {
    runtime: tokio::runtime::Runtime,
    issuer: IssuerHandle,
    _dir: tempfile::TempDir,
    jwks_path: String,
}

impl Setup {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let issuer = runtime
            .block_on(Issuer::start("127.0.0.1:0".parse().expect("an address")))
            .expect("the devkit issuer");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string()).expect("the JWKS file");
        Self {
            runtime,
            issuer,
            jwks_path: jwks.display().to_string(),
            _dir: dir,
        }
    }

    /// The gateway configuration of these benchmarks; `cache_size` 0 turns
    /// the verified-token cache off.
    fn config(&self, cache_size: usize, redis_url: Option<&str>) -> Config {
        let store = match redis_url {
            Some(url) => format!("store = \"redis\"\n\n[redis]\nurl = \"{url}\"\n"),
            None => "store = \"memory\"\n".to_string(),
        };
        let text = format!(
            r#"
[[issuers]]
issuer = "{issuer}"
audiences = ["erp-api"]
algorithms = ["RS256", "ES256"]
jwks_file = "{jwks}"

[tokens]
cache_size = {cache_size}

[sessions]
{store}
[[pools]]
name = "default"
limit = 1000000000

[[upstreams]]
name = "erp"
servers = ["127.0.0.1:9"]

[[routes]]
name = "status"
path_prefix = "/status/"
upstream = "erp"
policy = "public"

[[routes]]
name = "reports"
path_prefix = "/api/reports/"
upstream = "erp"
policy = "token"

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"
"#,
            issuer = self.issuer.issuer_url(),
            jwks = self.jwks_path,
        );
        Config::from_toml(&text, "bench.toml", std::path::Path::new("."), &|_| None)
            .expect("the benchmark configuration is valid")
    }

    fn verifier(&self, cache_size: usize) -> Verifier {
        let config = self.config(cache_size, None);
        let clock: SharedClock = Arc::new(SystemClock);
        // Retaining, as the gateway does: the miss path pays for the drop.
        let verifier = Verifier::new(&config.issuers, config.tokens.clone(), clock)
            .expect("a verifier")
            .retaining(config.claims_in_use());
        self.runtime
            .block_on(verifier.issuers()[0].refresh())
            .expect("the JWKS file loads");
        verifier
    }

    fn tokens(&self, alg: Algorithm, count: usize) -> Vec<String> {
        (0..count)
            .map(|n| {
                self.issuer.mint(
                    &TokenRequest::new(format!("user-{n}"))
                        .alg(alg)
                        .expires_in(7200),
                )
            })
            .collect()
    }

    fn principal(&self, verifier: &Verifier, token: &str) -> Arc<Principal> {
        self.runtime
            .block_on(verifier.verify(token))
            .expect("a valid token")
            .0
    }
}

fn verify(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    for (name, alg) in [("RS256", Algorithm::RS256), ("ES256", Algorithm::ES256)] {
        let cached = setup.verifier(100_000);
        let token = setup.tokens(alg, 1).remove(0);
        setup.principal(&cached, &token);
        group.bench_function(BenchmarkId::new("cache_hit", name), |b| {
            b.iter(|| setup.runtime.block_on(cached.verify(&token)).is_ok())
        });

        let uncached = setup.verifier(0);
        let tokens = setup.tokens(alg, MISS_TOKENS);
        let mut next = 0;
        group.bench_function(BenchmarkId::new("cache_miss", name), |b| {
            b.iter(|| {
                next = (next + 1) % tokens.len();
                setup
                    .runtime
                    .block_on(uncached.verify(&tokens[next]))
                    .is_ok()
            })
        });
    }
    group.finish();
}

fn identity_and_routes(c: &mut Criterion) {
    let setup = Setup::new();
    let config = setup.config(100_000, None);
    let verifier = setup.verifier(100_000);
    let token = setup.tokens(Algorithm::RS256, 1).remove(0);
    let principal = setup.principal(&verifier, &token);
    let rule = IdentityRule::new(config.sessions.identity.clone());
    let pools = Pools::new(config.pools.clone());
    c.bench_function("identity/derive_and_pool", |b| {
        b.iter(|| {
            let identity = rule.derive(&principal.claims).expect("identity claims");
            (identity, pools.select(&principal.claims).is_some())
        })
    });

    let router = Router::new(&config.routes, &config.server.gateway_prefix);
    let mut group = c.benchmark_group("routes/resolve");
    for path in [
        "/api/orders/4711",
        "/api/reports/daily",
        "/status/health",
        "/api/a/../b",
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(path), path, |b, path| {
            b.iter(|| router.resolve(Some("erp.example.test"), path))
        });
    }
    group.finish();
}

fn admit(c: &mut Criterion) {
    let setup = Setup::new();
    let memory_config = setup.config(100_000, None);
    let pools = Pools::new(memory_config.pools.clone());
    let verifier = setup.verifier(100_000);
    let principals: Vec<_> = setup
        .tokens(Algorithm::RS256, 1)
        .iter()
        .map(|t| setup.principal(&verifier, t))
        .collect();
    let rule = IdentityRule::new(memory_config.sessions.identity.clone());
    let pool = Arc::clone(&pools.select(&principals[0].claims).expect("a pool").pool);
    let identity = rule.derive(&principals[0].claims).expect("identity");
    let issuer = setup.issuer.issuer_url().to_string();
    let fresh_identity = |n: u64| {
        let claims = serde_json::json!({
            "iss": issuer, "sub": format!("bench-user-{n}"), "client_id": "erp-web",
        });
        let claims = Claims::from_map(claims.as_object().cloned().unwrap_or_default());
        rule.derive(&claims).expect("identity")
    };

    let mut group = c.benchmark_group("admit");
    group.throughput(Throughput::Elements(1));
    let memory = MemoryStore::new(&pools, Arc::new(SystemClock));
    let reuse = AdmitRequest::of(&pool, &identity);
    group.bench_function("memory/reuse", |b| {
        b.iter(|| setup.runtime.block_on(memory.admit(&reuse)).is_ok())
    });

    let Ok(server) = RedisServer::start() else {
        eprintln!(
            "admit/redis: skipped, redis-server is not installed (apt-get install redis-server)"
        );
        group.finish();
        return;
    };
    let redis_config = setup.config(100_000, Some(&server.url()));
    let mut redis = redis_config.redis.clone().expect("a redis section");
    // Every call reaches Redis: these cases measure the round trip and the
    // scripts, not the lease cache (measured by `lease_hit` below).
    redis.touch_interval = Duration::ZERO;
    let store = RedisStore::new(&redis, &pools, Arc::new(SystemClock)).expect("the Redis store");
    group.bench_function("redis/reuse", |b| {
        b.iter(|| setup.runtime.block_on(store.admit(&reuse)).is_ok())
    });
    let opened = AtomicU64::new(0);
    group.bench_function("redis/open", |b| {
        b.iter(|| {
            let identity = fresh_identity(opened.fetch_add(1, Ordering::Relaxed));
            let request = AdmitRequest::of(&pool, &identity);
            setup.runtime.block_on(store.admit(&request)).is_ok()
        })
    });
    redis.touch_interval = Duration::from_secs(1);
    let cached = RedisStore::new(&redis, &pools, Arc::new(SystemClock)).expect("the Redis store");
    setup
        .runtime
        .block_on(cached.admit(&reuse))
        .expect("the first admission");
    group.bench_function("redis/lease_hit", |b| {
        b.iter(|| setup.runtime.block_on(cached.admit(&reuse)).is_ok())
    });
    group.finish();
}

/// The two request metrics of a forwarded request: by label lookup (as
/// every request did before) and through the route table's resolved
/// handles.
fn request_metrics(c: &mut Criterion) {
    use session_gateway::telemetry::Metrics;
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("metrics/request");
    group.bench_function("label_lookup", |b| {
        b.iter(|| {
            metrics
                .requests
                .with_label_values(&["api", "session", "forwarded", "2xx"])
                .inc();
            metrics
                .request_duration
                .with_label_values(&["api", "session"])
                .observe(0.000_2);
        });
    });
    let forwarded = metrics
        .requests
        .with_label_values(&["api", "session", "forwarded", "2xx"]);
    let duration = metrics
        .request_duration
        .with_label_values(&["api", "session"]);
    group.bench_function("route_meter", |b| {
        b.iter(|| {
            forwarded.inc();
            duration.observe(0.000_2);
        });
    });
    group.finish();
}

/// What every request now pays before routing: its origin behind the
/// trusted proxies (a request id included) and its trace hop.
fn request_origin(c: &mut Criterion) {
    use session_gateway::proxy::forwarded::Forwarding;
    use session_gateway::proxy::trace::TraceHop;
    let forwarding = Forwarding {
        trusted: vec!["10.0.0.0/8".parse().expect("cidr")],
        ..Forwarding::default()
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        http::HeaderValue::from_static("203.0.113.9, 10.1.1.1"),
    );
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let peer: std::net::IpAddr = "10.2.2.2".parse().expect("ip");
    let mut group = c.benchmark_group("request");
    group.bench_function("origin_and_trace", |b| {
        b.iter(|| {
            let origin = forwarding.origin(peer, &headers);
            let hop = TraceHop::of(&headers, false);
            (origin.upstream_headers(&forwarding), hop.traceparent())
        });
    });
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = verify, identity_and_routes, admit, request_metrics, request_origin
}
criterion_main!(hot_path);
