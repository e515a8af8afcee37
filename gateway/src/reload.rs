//! Live reload: on `SIGHUP` or `POST /admin/v1/reload` the configuration
//! file is read and validated again; if it is valid, the routes, upstream
//! groups, issuers and token rules, pools (limits, matches, reserved seats,
//! caps, timeouts) and header names switch at once for new requests, while
//! sessions, seats, leases and revocations stay as they are. If it is not,
//! nothing changes and the error is logged and counted.
//!
//! Some settings shape the process itself (listeners, TLS, threads, the
//! store, the identity rule, logging, the admin token); they change only at
//! restart. A reload that changes them applies everything else and names
//! them in its log line and report.
//!
//! The [`Reloader`] also owns the background tasks that belong to one
//! configuration: each issuer's key refresh and each checked upstream
//! group's health probes. An issuer or group the reload keeps (same
//! settings) keeps its task, its loaded keys and its health state; a new one
//! gets a task; a removed one has its task stopped.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::access::{Access, AccessPolicy};
use crate::auth::jwks::{IssuerKeys, keep_fresh};
use crate::config::{Config, ConfigError, FileConfig};
use crate::licensing::Pools;
use crate::proxy::table::{LiveTable, RouteTable};
use crate::proxy::upstreams::Upstream;
use crate::telemetry::Metrics;

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is not a valid configuration.
    #[error("{0}")]
    Invalid(String),
    /// A part of the new configuration could not be built.
    #[error("{0}")]
    Build(String),
    /// The reloader is not running (the gateway is stopping).
    #[error("the gateway is stopping")]
    Stopped,
}

impl From<ConfigError> for ReloadError {
    fn from(e: ConfigError) -> Self {
        ReloadError::Invalid(e.to_string())
    }
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReloadReport {
    /// Settings that differ from the running process but change only at
    /// restart (they keep their running values).
    pub restart_required: Vec<String>,
    /// Issuers, pools, routes and upstream groups now in force.
    pub issuers: usize,
    /// Pools in force.
    pub pools: usize,
    /// Routes in force.
    pub routes: usize,
    /// Upstream groups in force.
    pub upstreams: usize,
}

/// Reads the configuration again (the file named at start, or the embedded
/// dev configuration).
pub type ConfigSource = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

type Reply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

/// Asks the [`Reloader`] for a reload; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadRequests {
    sender: mpsc::UnboundedSender<Option<Reply>>,
}

impl ReloadRequests {
    /// Asks for a reload without waiting for it (`SIGHUP`).
    pub fn request(&self) {
        let _ = self.sender.send(None);
    }

    /// Reloads and waits for the outcome (the admin API).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(Some(reply))
            .map_err(|_| ReloadError::Stopped)?;
        outcome.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// Reads one setting from the file, as JSON for comparison.
type Setting = fn(&FileConfig) -> serde_json::Value;

/// Settings that change only at restart: a name and how to read it from
/// the file.
const RESTART_ONLY: &[(&str, Setting)] = &[
    ("server.listen", |f| json(&f.server.listen)),
    ("server.admin_listen", |f| json(&f.server.admin_listen)),
    ("server.tls", |f| json(&f.server.tls)),
    ("server.threads", |f| json(&f.server.threads)),
    ("server.work_stealing", |f| json(&f.server.work_stealing)),
    ("server.http2", |f| json(&f.server.http2)),
    ("server.h2c", |f| json(&f.server.h2c)),
    ("server.grace_period", |f| json(&f.server.grace_period)),
    ("server.shutdown_timeout", |f| {
        json(&f.server.shutdown_timeout)
    }),
    ("sessions.store", |f| json(&f.sessions.store)),
    ("sessions.identity", |f| json(&f.sessions.identity)),
    ("sessions.touch_interval", |f| {
        json(&f.sessions.touch_interval)
    }),
    ("sessions.lease_revalidate", |f| {
        json(&f.sessions.lease_revalidate)
    }),
    ("sessions.sweep_interval", |f| {
        json(&f.sessions.sweep_interval)
    }),
    ("redis", |f| json(&f.redis)),
    ("logging", |f| json(&f.logging)),
    ("tracing", |f| json(&f.tracing)),
    ("admin", |f| json(&f.admin)),
];

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The restart-only settings in which `next` differs from `running`.
pub fn restart_required(running: &FileConfig, next: &FileConfig) -> Vec<String> {
    RESTART_ONLY
        .iter()
        .filter(|(_, read)| read(running) != read(next))
        .map(|(name, _)| (*name).to_string())
        .collect()
}

/// A background task that belongs to one issuer or upstream group.
struct Task<T> {
    owner: Arc<T>,
    stop: watch::Sender<bool>,
}

/// Applies reloads and runs the per-configuration background tasks; a
/// Pingora background service.
pub struct Reloader {
    source: ConfigSource,
    /// The file as the process started with it: restart-only settings are
    /// compared with this.
    started: FileConfig,
    current: Mutex<Config>,
    access: Arc<Access>,
    table: LiveTable,
    metrics: Arc<Metrics>,
    key_tasks: Mutex<Vec<Task<IssuerKeys>>>,
    health_tasks: Mutex<Vec<Task<Upstream>>>,
    requests: Mutex<Option<mpsc::UnboundedReceiver<Option<Reply>>>>,
}

impl Reloader {
    /// A reloader of the running configuration `config`, whose access
    /// decision and routing table it will replace; and the handle that asks
    /// it for reloads.
    pub fn new(
        source: ConfigSource,
        config: Config,
        access: Arc<Access>,
        table: LiveTable,
        metrics: Arc<Metrics>,
    ) -> (Self, ReloadRequests) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let reloader = Self {
            source,
            started: config.effective.clone(),
            current: Mutex::new(config),
            access,
            table,
            metrics,
            key_tasks: Mutex::new(Vec::new()),
            health_tasks: Mutex::new(Vec::new()),
            requests: Mutex::new(Some(receiver)),
        };
        (reloader, ReloadRequests { sender })
    }

    /// Reads, validates and applies the configuration; on any error nothing
    /// changes.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let next = (self.source)()?;
        let mut current = self.current.lock();
        let restart_required = restart_required(&self.started, &next.effective);

        let running = self.access.policy();
        let verifier = if next.issuers == current.issuers
            && next.tokens == current.tokens
            && next.claims_in_use() == current.claims_in_use()
        {
            Arc::clone(&running.verifier)
        } else {
            let verifier = running
                .verifier
                .reconfigured(&next.issuers, next.tokens.clone())
                .map_err(|e| ReloadError::Build(format!("issuers: {e}")))?
                .retaining(next.claims_in_use());
            Arc::new(verifier)
        };
        let table = self.table.load_full();
        let mut upstreams = Vec::with_capacity(next.upstreams.len());
        for (index, config) in next.upstreams.iter().enumerate() {
            let kept = table.upstreams.iter().find(|u| u.config() == config);
            upstreams.push(match kept {
                Some(upstream) => Arc::clone(upstream),
                None => Arc::new(
                    Upstream::build(index, config)
                        .map_err(|e| ReloadError::Build(e.to_string()))?,
                ),
            });
        }
        let pools = Pools::new(next.pools.clone()).with_usage_retention(next.usage);
        let report = ReloadReport {
            restart_required,
            issuers: next.issuers.len(),
            pools: pools.len(),
            routes: next.routes.len(),
            upstreams: upstreams.len(),
        };

        // Everything is built: switch. The store learns the pools first, so
        // a request admitted under the new policy finds its pool known.
        self.access.store().reconfigure(&pools);
        self.access.replace_policy(AccessPolicy {
            verifier: Arc::clone(&verifier),
            pools,
        });
        self.table
            .store(Arc::new(RouteTable::of_config(&next, upstreams.clone())));
        self.follow(verifier.issuers(), &upstreams);
        *current = next;
        Ok(report)
    }

    /// Starts the tasks of issuers and groups that have none, and stops
    /// those of issuers and groups no longer in force.
    fn follow(&self, issuers: &[Arc<IssuerKeys>], upstreams: &[Arc<Upstream>]) {
        let metrics = Arc::clone(&self.metrics);
        retarget(&mut self.key_tasks.lock(), issuers.iter(), |keys, stop| {
            tokio::spawn(keep_fresh(keys, Arc::clone(&metrics), stop));
        });
        let checked = upstreams.iter().filter(|u| u.runs_in_background());
        retarget(&mut self.health_tasks.lock(), checked, |upstream, stop| {
            let balancer = Arc::clone(upstream.balancer());
            tokio::spawn(async move { balancer.start(stop).await });
        });
    }

    fn apply_logged(&self) -> Result<ReloadReport, ReloadError> {
        let outcome = self.reload();
        match &outcome {
            Ok(report) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["applied"])
                    .inc();
                if report.restart_required.is_empty() {
                    tracing::info!(
                        pools = report.pools,
                        routes = report.routes,
                        "configuration reloaded"
                    );
                } else {
                    tracing::warn!(
                        pools = report.pools,
                        routes = report.routes,
                        restart_required = %report.restart_required.join(", "),
                        "configuration reloaded; these settings change only at restart and keep their running values"
                    );
                }
            }
            Err(error) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["refused"])
                    .inc();
                tracing::error!(%error, "configuration reload refused; the running configuration stays");
            }
        }
        outcome
    }
}

/// Makes `tasks` run exactly one task per owner in `owners`: stops tasks of
/// owners that left, starts `spawn` for owners that have none.
fn retarget<'a, T: 'a>(
    tasks: &mut Vec<Task<T>>,
    owners: impl Iterator<Item = &'a Arc<T>>,
    spawn: impl Fn(Arc<T>, watch::Receiver<bool>),
) {
    let owners: Vec<&Arc<T>> = owners.collect();
    tasks.retain(|task| {
        let keep = owners.iter().any(|o| Arc::ptr_eq(o, &task.owner));
        if !keep {
            let _ = task.stop.send(true);
        }
        keep
    });
    for owner in owners {
        if !tasks.iter().any(|t| Arc::ptr_eq(&t.owner, owner)) {
            let (stop, stopped) = watch::channel(false);
            spawn(Arc::clone(owner), stopped);
            tasks.push(Task {
                owner: Arc::clone(owner),
                stop,
            });
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let table = self.table.load_full();
        self.follow(self.access.verifier().issuers(), &table.upstreams);
        let Some(mut requests) = self.requests.lock().take() else {
            return;
        };
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Some(reply) => {
                        let outcome = self.apply_logged();
                        if let Some(reply) = reply {
                            let _ = reply.send(outcome);
                        }
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        for task in self.key_tasks.lock().drain(..) {
            let _ = task.stop.send(true);
        }
        for task in self.health_tasks.lock().drain(..) {
            let _ = task.stop.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).expect("a valid file")
    }

    #[test]
    fn restart_only_settings_are_named_and_others_are_not() {
        let running =
            file("[server]\nlisten = [\"127.0.0.1:8080\"]\n[[pools]]\nname = \"p\"\nlimit = 1\n");
        let next = file(
            "[server]\nlisten = [\"127.0.0.1:8081\"]\nrealm = \"erp\"\n[sessions]\nstore = \"redis\"\n[logging]\nlevel = \"debug\"\n[[pools]]\nname = \"p\"\nlimit = 5\n",
        );
        assert_eq!(
            restart_required(&running, &next),
            ["server.listen", "sessions.store", "logging"]
        );
        assert!(restart_required(&running, &running).is_empty());
    }

    #[test]
    fn retargeting_keeps_starts_and_stops_tasks() {
        let (a, b, c) = (Arc::new(1), Arc::new(2), Arc::new(3));
        let started = Mutex::new(Vec::new());
        let mut tasks = Vec::new();
        retarget(&mut tasks, [&a, &b].into_iter(), |o, _| {
            started.lock().push(*o)
        });
        let b_stopped = tasks[1].stop.subscribe();
        retarget(&mut tasks, [&a, &c].into_iter(), |o, _| {
            started.lock().push(*o)
        });
        assert_eq!(*started.lock(), [1, 2, 3]);
        assert_eq!(tasks.len(), 2);
        assert!(
            *b_stopped.borrow(),
            "the task of a removed owner is told to stop"
        );
    }
}
