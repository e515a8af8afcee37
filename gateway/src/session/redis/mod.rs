//! The Redis store: sessions and seats shared by a fleet of gateway
//! instances (docs/design.md §5, docs/architecture.md).
//!
//! Every state transition is one Lua script (`lua/*.lua`, each with a header
//! listing KEYS and ARGV), run atomically by Redis with EVALSHA (the redis
//! crate loads a script again on NOSCRIPT). No transition is a
//! read-modify-write from Rust across two round trips, so no interleaving of
//! instances can put more sessions in a pool than its limit or give one
//! identity two seats.
//!
//! Session expiry uses the Redis server's clock (`TIME`), so instance clocks
//! may drift without changing who holds a seat; with a manual clock (tests)
//! the store passes its time to the scripts instead.
//!
//! All keys of a pool share the hash tag `{<prefix>:<pool>}`, so a pool lives
//! in one Redis Cluster slot, and every key expires with its sessions.
//!
//! This file holds [`RedisStore`] itself (its state, its construction, its
//! key names). The rest, by what each part decides:
//!
//! * reaching Redis: `connect` (topologies, TLS), `driver` (the runtime the
//!   calls run on), `health` (replacing a connection that stops answering),
//!   `replication` (`WAIT` for replicas);
//! * talking to it: `scripts` (loading and calling the Lua scripts),
//!   `decode` (replies and errors);
//! * the store traits: `sessions` ([`SessionStore`](crate::session::SessionStore)),
//!   `admission` (one admission and its undo), `revocations`, `logout_ledger`,
//!   `audit` (the audit stream queue);
//! * keeping the fleet in step: `lease` (the local lease cache), `touch` (the
//!   touch batcher), `subscription` (the revocation channel, its PING and
//!   the store generation).

mod admission;
mod audit;
mod clients;
mod connect;
mod decode;
mod driver;
mod health;
mod layout;
mod lease;
mod logout_ledger;
mod queue;
mod replication;
mod revocations;
mod scripts;
mod sessions;
mod subscription;
mod touch;
mod usage;

use std::sync::{Arc, Weak};
use std::time::Duration;

use health::{Replaceable, SUSPECT_AFTER};
pub use lease::{LeaseCache, LeaseDrop};

use self::audit::AuditQueue;
use self::connect::{Connection, client, first_url, sentinel_client, tls_certificates};
use self::driver::Driver;
use self::scripts::Scripts;
use self::touch::touch_delay;
use crate::clock::SharedClock;
use crate::config::{RedisConfig, RedisMode};
use crate::licensing::{Pool, Pools};
use crate::session::{RevocationListener, Session, SessionId, StoreError};

/// The largest integer a Lua number holds exactly (2^53): times passed to
/// the scripts are capped here, so a far-future claim cannot wrap.
const MAX_LUA_INT: u64 = 1 << 53;

/// How long a session's keys outlive its expiry, so the sweeper can still
/// read a just-expired session and report its `idle` / `absolute` close.
const LINGER: Duration = Duration::from_secs(600);

/// A [`Store`](crate::session::Store) in Redis, shared by every gateway
/// instance that points at it.
pub struct RedisStore {
    connection: Connection,
    driver: Driver,
    prefix: String,
    pools: arc_swap::ArcSwap<StorePools>,
    clock: Option<SharedClock>,
    scripts: Scripts,
    leases: Arc<LeaseCache>,
    /// The (session id, `sid` key) links this instance made: a fresh lease
    /// spares the round trip only when the request's `sid` is among them,
    /// so a token of a new identity provider session reaching a leased
    /// session still links it (back-channel logout).
    sid_links: quick_cache::sync::Cache<(SessionId, String), ()>,
    timeout: Duration,
    /// For revocation messages outside Sentinel (any node of a cluster
    /// hears every PUBLISH).
    pubsub: redis::Client,
    /// Touches that fell due and wait for the next batch.
    pending_touches: parking_lot::Mutex<Vec<Session>>,
    /// Audit events waiting for the stream.
    pending_audit: parking_lot::Mutex<AuditQueue>,
    /// How long a due touch may wait for others to share its script call.
    touch_delay: Duration,
    /// Itself, to spawn asynchronous touches.
    me: Weak<RedisStore>,
    /// Who hears the revocations published by the fleet.
    revocation_listener: parking_lot::Mutex<Option<RevocationListener>>,
    /// Who hears that a seat may have freed (waiting callers).
    seats: crate::session::SeatNews,
    /// `redis.wait_replicas` and `redis.wait_timeout`.
    wait_replicas: u32,
    wait_timeout: Duration,
    /// Whether `ping` found a Redis new enough for the scripts.
    version_ok: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The pools the store works on: those configured now (reported by
/// `usage`), and every pool configured since start (closed, listed and swept,
/// so a pool removed by a reload lets its open sessions close normally).
struct StorePools {
    configured: Pools,
    every: Vec<Arc<Pool>>,
}

impl RedisStore {
    /// A store for these pools. `clock` is used only when it is manual
    /// (tests); otherwise Redis `TIME` decides expiry.
    pub fn new(
        config: &RedisConfig,
        pools: &Pools,
        clock: SharedClock,
    ) -> Result<Arc<Self>, StoreError> {
        let bad = |e: redis::RedisError| StoreError::Protocol(format!("redis configuration: {e}"));
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let certificates = config.tls.as_ref().map(tls_certificates);
        let connection = match &config.mode {
            RedisMode::Standalone => Connection::Standalone {
                client: client(first_url(config)?, certificates.as_ref()).map_err(bad)?,
                config: manager_config,
                conn: Replaceable::new(SUSPECT_AFTER),
            },
            RedisMode::Sentinel => Connection::Sentinel {
                sentinel: Arc::new(tokio::sync::Mutex::new(
                    sentinel_client(config, certificates.as_ref()).map_err(bad)?,
                )),
                config: manager_config,
                conn: Replaceable::replaced_on_any_error(),
            },
            RedisMode::Cluster => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(
                    config.urls.iter().map(|u| u.expose()),
                )
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(1);
                if let Some(certificates) = &certificates {
                    builder = builder.certs(certificates.clone());
                }
                Connection::Cluster {
                    client: builder.build().map_err(bad)?,
                    conn: Replaceable::new(SUSPECT_AFTER),
                }
            }
        };
        let pubsub = client(first_url(config)?, certificates.as_ref()).map_err(bad)?;
        let driver = Driver::new()?;
        let manual = clock.is_manual().then_some(clock);
        Ok(Arc::new_cyclic(|me| Self {
            connection,
            driver,
            prefix: config.key_prefix.clone(),
            pools: arc_swap::ArcSwap::from_pointee(StorePools {
                configured: pools.clone(),
                every: pools.iter().cloned().collect(),
            }),
            clock: manual.clone(),
            scripts: Scripts::new(),
            leases: Arc::new(LeaseCache::new(
                config.touch_interval,
                config.lease_revalidate,
                config.grace_period,
                manual,
            )),
            sid_links: quick_cache::sync::Cache::new(200_000),
            timeout: config.connect_timeout + config.response_timeout,
            pubsub,
            pending_touches: parking_lot::Mutex::new(Vec::new()),
            pending_audit: parking_lot::Mutex::new(AuditQueue::default()),
            touch_delay: touch_delay(config.touch_interval),
            me: me.clone(),
            revocation_listener: parking_lot::Mutex::new(None),
            seats: crate::session::SeatNews::default(),
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
            version_ok: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The local lease cache (the hot path reads it; revocations drop from it).
    pub fn leases(&self) -> &Arc<LeaseCache> {
        &self.leases
    }

    fn tag(&self, pool: &str) -> String {
        format!("{{{}:{}}}", self.prefix, pool)
    }

    fn now_arg(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(|| "0".to_string(), |c| c.now_ms().to_string())
    }

    /// The HISTORY argument of the scripts that open, close or refuse
    /// (`lua/common.lua`, "Usage history"): how long each step is kept, and
    /// the pool's absolute lifetime (how long a day's subjects stay open).
    fn history_arg(&self, pool: &Pool) -> String {
        let keep = self.pools.load().configured.usage_retention();
        format!(
            "{},{},{},{}",
            millis(keep.minutes),
            millis(keep.hours),
            millis(keep.days),
            millis(pool.absolute_timeout)
        )
    }

    /// The HOLD argument of the scripts that close (`lua/common.lua`, "Held
    /// seats"): the pool's `linger` and `min_hold`.
    fn hold_arg(pool: &Pool) -> String {
        format!("{},{}", millis(pool.linger), millis(pool.min_hold))
    }

    /// The QUEUE argument of the admission (`lua/common.lua`, "Seat
    /// queue"): the pool's `max_wait` and `max_length`, or empty.
    fn queue_arg(pool: &Pool) -> String {
        pool.queue.map_or_else(String::new, |q| {
            format!("{},{}", millis(q.max_wait), q.max_length)
        })
    }

    fn pool(&self, name: &str) -> Result<Arc<Pool>, StoreError> {
        self.pools
            .load()
            .every
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| StoreError::Protocol(format!("unknown pool `{name}`")))
    }

    fn bucket_args(pool: &Pool) -> Vec<String> {
        let n = pool.bucket_count();
        let mut args = vec![n.to_string()];
        args.extend((0..n).map(|b| pool.bucket_capacity(b).to_string()));
        args
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
