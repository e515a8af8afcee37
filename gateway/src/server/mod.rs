//! Start-up: turns a validated [`Config`] into one Pingora server with its
//! services — the proxy, the admin listener, the configuration service
//! (live reload, each issuer's key refresh, each checked upstream group's
//! health probes), the session sweeper and, with Redis, the revocation
//! listener — and runs it until SIGTERM (graceful) or SIGINT. SIGHUP reloads
//! the configuration ([`crate::reload`]); see [`signals`] for every signal.

pub mod certificates;
pub mod signals;

use std::net::TcpListener;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};

use crate::access::{Access, AccessPolicy};
use crate::admin::AdminService;
use crate::auth::Verifier;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, StoreKind};
use crate::licensing::Pools;
use crate::proxy::Gateway;
use crate::proxy::table::RouteTable;
use crate::proxy::upstreams::Upstream;
use crate::reload::{ConfigSource, ReloadRequests, Reloader};
use crate::session::{IdentityRule, MemoryStore, RedisStore, SharedStore};
use crate::telemetry::Metrics;
use signals::Signals;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address is taken or not allowed.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// The address.
        addr: String,
        /// Which listener.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A part could not be built.
    #[error("{0}")]
    Build(String),
}

/// Runs the gateway until it is told to stop. Blocking; must not be called
/// inside a tokio runtime (Pingora builds its own runtimes). `source` reads
/// the configuration again for a live reload.
pub fn run(config: Config, source: ConfigSource) -> Result<(), StartError> {
    run_with_clock(config, source, Arc::new(SystemClock))
}

/// [`run`] with an explicit clock (tests of timelines).
pub fn run_with_clock(
    config: Config,
    source: ConfigSource,
    clock: SharedClock,
) -> Result<(), StartError> {
    signals::ignore_until_handled();
    let (server, reloads) = build(config, source, clock)?;
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(reloads)),
    });
    Ok(())
}

fn build(
    config: Config,
    source: ConfigSource,
    clock: SharedClock,
) -> Result<(Server, ReloadRequests), StartError> {
    // Bind the admin listener now, and probe the proxy addresses, so a taken
    // port is one clear error at start instead of a log line from a runtime.
    let admin_listener = bind(&config.server.admin_listen.to_string(), "admin_listen")?;
    for addr in &config.server.listen {
        drop(bind(&addr.to_string(), "listen")?);
    }

    let pools = Pools::new(config.pools.clone()).with_usage_retention(config.usage);
    let mut redis_store = None;
    let store: SharedStore = match (config.sessions.store, &config.redis) {
        (StoreKind::Redis, Some(redis)) => {
            let store = RedisStore::new(redis, &pools, Arc::clone(&clock))
                .map_err(|e| StartError::Build(e.to_string()))?;
            redis_store = Some(Arc::clone(&store));
            store
        }
        _ => Arc::new(MemoryStore::new(&pools, Arc::clone(&clock))),
    };
    let verifier = Arc::new(
        Verifier::new(&config.issuers, config.tokens.clone(), Arc::clone(&clock))
            .map_err(|e| StartError::Build(e.to_string()))?
            .retaining(config.claims_in_use()),
    );
    let metrics = Arc::new(Metrics::new());
    let access = Arc::new(Access::new(
        AccessPolicy { verifier, pools },
        IdentityRule::new(config.sessions.identity.clone()),
        Arc::clone(&store),
        Arc::clone(&metrics),
    ));

    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    access.listen_to_revocations();
    access.listen_for_seats();

    let mut upstreams = Vec::with_capacity(config.upstreams.len());
    for (index, upstream) in config.upstreams.iter().enumerate() {
        let upstream =
            Upstream::build(index, upstream).map_err(|e| StartError::Build(e.to_string()))?;
        upstreams.push(Arc::new(upstream));
    }
    let table = Arc::new(ArcSwap::from_pointee(RouteTable::of_config(
        &config, upstreams,
    )));
    let mut gateway = Gateway::new(Arc::clone(&access), Arc::clone(&table));
    if let Some(otlp) = &config.tracing.otlp {
        let spans = crate::telemetry::spans::SpanExport::new(otlp).map_err(StartError::Build)?;
        gateway = gateway.with_span_export(Arc::new(spans));
    }
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    proxy.threads = Some(config.server.threads);
    if config.server.h2c
        && let Some(app) = proxy.app_logic_mut()
    {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    for addr in &config.server.listen {
        match &config.server.tls {
            None => proxy.add_tcp(&addr.to_string()),
            Some(tls) => {
                let mut settings = pingora::listeners::tls::TlsSettings::intermediate(
                    &tls.cert.display().to_string(),
                    &tls.key.display().to_string(),
                )
                .map_err(|e| StartError::Build(format!("server.tls: {e}")))?;
                if !tls.by_name.is_empty() {
                    let by_name = certificates::CertificatesByName::load(tls)
                        .map_err(|e| StartError::Build(format!("server.tls.certificates: {e}")))?;
                    settings.set_cert_resolver(Arc::new(by_name));
                }
                if config.server.http2 {
                    settings.enable_h2();
                }
                proxy.add_tls_with_settings(&addr.to_string(), None, settings);
            }
        }
    }
    server.add_service(proxy);

    server.add_service(background_service(
        "session sweeper",
        Sweeper {
            access: Arc::clone(&access),
            interval: config.sessions.sweep_interval,
        },
    ));
    if let Some(store) = redis_store {
        server.add_service(background_service(
            "revocations",
            RevocationListener { store },
        ));
    }
    let admin = AdminService::new(
        admin_listener,
        Arc::clone(&access),
        &config.admin,
        &config.server,
    );
    let (reloader, reloads) = Reloader::new(source, config.clone(), access, table, metrics);
    server.add_service(background_service(
        "admin",
        admin.with_reloads(reloads.clone()),
    ));
    server.add_service(background_service("configuration", reloader));
    server.add_service(background_service(
        "start-up check",
        StartupCheck {
            listeners: config.server.listen.clone(),
        },
    ));

    tracing::info!(
        listen = ?config.server.listen,
        admin = %config.server.admin_listen,
        store = ?config.sessions.store,
        "session-gateway starting"
    );
    Ok((server, reloads))
}

fn bind(addr: &str, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|e| StartError::Bind {
        addr: addr.to_string(),
        what,
        reason: e.to_string(),
    })
}

/// How long the proxy listeners get to accept their first connection.
const STARTUP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Ends the process (non-zero) when a proxy listener is not accepting
/// connections soon after start: a proxy service that failed in its own
/// thread would otherwise leave a process that looks alive and serves
/// nothing.
struct StartupCheck {
    listeners: Vec<std::net::SocketAddr>,
}

#[async_trait]
impl BackgroundService for StartupCheck {
    async fn start(&self, shutdown: ShutdownWatch) {
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        for addr in &self.listeners {
            while !crate::proxy::probe::accepts(*addr).await {
                if *shutdown.borrow() {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::error!(listener = %addr, "the proxy listener does not accept connections; stopping");
                    eprintln!(
                        "session-gateway: the proxy listener {addr} does not accept connections"
                    );
                    std::process::exit(1);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        tracing::debug!("every proxy listener accepts connections");
    }
}

/// Drops cached leases of sessions closed anywhere in the fleet.
struct RevocationListener {
    store: Arc<RedisStore>,
}

#[async_trait]
impl BackgroundService for RevocationListener {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.store.listen_for_revocations(shutdown).await;
    }
}

/// Closes expired sessions without waiting for traffic, so seat counts and
/// audit events are true even when nobody calls.
struct Sweeper {
    access: Arc<Access>,
    interval: std::time::Duration,
}

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Revocations made by other instances arrive with this tick.
            self.access.sync_revocations().await;
            self.access.sweep_expired().await;
        }
    }
}
