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
//! may drift without changing who holds a seat; with a manual [`Clock`]
//! (tests) the store passes its time to the scripts instead.
//!
//! All keys of a pool share the hash tag `{<prefix>:<pool>}`, so a pool lives
//! in one Redis Cluster slot, and every key expires with its sessions.

mod health;
mod lease;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use health::{Replaceable, SUSPECT_AFTER};
pub use lease::{LeaseCache, LeaseDrop};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, IntoConnectionInfo, Script, TlsCertificates, TlsMode, Value};

use super::{
    Admission, AdmitOutcome, AdmitRequest, AuditEvent, AuditSink, CloseReason, ClosedSession,
    IdentityKey, LogoutLedger, PoolUsage, Refusal, Revocation, RevocationListener, RevocationNews,
    RevocationStore, Session, SessionFilter, SessionId, SessionStore, StoreError, SubjectKey,
};
use crate::clock::{SharedClock, UnixMillis};
use crate::config::{RedisConfig, RedisMode, RedisTls};
use crate::licensing::{Pool, Pools, SubjectLimitPolicy};
use crate::session::identity::Digest32;

const COMMON: &str = include_str!("lua/common.lua");

/// About how many audit events the stream keeps (`XADD … MAXLEN ~`).
const AUDIT_STREAM_CAP: u64 = 100_000;

/// Most audit events one script call appends.
const AUDIT_BATCH: usize = 256;

/// Most audit events waiting for the stream; more are dropped (the log has
/// them) rather than held while Redis is away.
const AUDIT_QUEUE_CAP: usize = 50_000;

/// How long the first queued audit event waits for others to share its
/// script call: at thousands of new sessions a second, tens of events.
const AUDIT_DELAY: Duration = Duration::from_millis(10);

/// How often, and how patiently, an admission whose caller was told 503 is
/// undone: 250 ms doubling to 5 s, 20 attempts (about a minute and a half).
const ABANDON_ATTEMPTS: u32 = 20;
const ABANDON_RETRY_START: Duration = Duration::from_millis(250);
const ABANDON_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long an abandoned id stays refused to a late admission.
const ABANDON_MARK: Duration = Duration::from_secs(600);

/// The largest integer a Lua number holds exactly (2^53): times passed to
/// the scripts are capped here, so a far-future claim cannot wrap.
const MAX_LUA_INT: u64 = 1 << 53;

/// How often the revocation subscription is checked with a PING: the bound
/// on how long a subscription left half-open goes unnoticed (plus the
/// response timeout).
const PUBSUB_PING_INTERVAL: Duration = Duration::from_secs(1);

/// How long a session's keys outlive its expiry, so the sweeper can still
/// read a just-expired session and report its `idle` / `absolute` close.
const LINGER: Duration = Duration::from_secs(600);

/// Most touches one script call carries, so one call never holds Redis for
/// long (each touch is four commands).
const TOUCH_BATCH: usize = 256;

/// How long a due touch waits for others: an eighth of `touch_interval`, at
/// most 100 ms. A touch falls due at three quarters of the interval, so it
/// is answered before its lease runs out.
fn touch_delay(touch_interval: Duration) -> Duration {
    (touch_interval / 8).min(Duration::from_millis(100))
}

/// The scripts, compiled once (their SHA-1 is computed at start).
struct Scripts {
    admit: Script,
    touch: Script,
    find: Script,
    get: Script,
    close: Script,
    close_subject: Script,
    list: Script,
    usage: Script,
    sweep: Script,
    revoke: Script,
    revocations: Script,
    delete_revocation: Script,
    deleted_revocations: Script,
    mark_revoked: Script,
    forget_marker: Script,
    generation: Script,
    abandon: Script,
    first_use: Script,
    release_use: Script,
    members: Script,
    audit: Script,
    ping: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            admit: with_common(include_str!("lua/admit.lua")),
            touch: with_common(include_str!("lua/touch.lua")),
            find: with_common(include_str!("lua/find.lua")),
            get: with_common(include_str!("lua/get.lua")),
            close: with_common(include_str!("lua/close.lua")),
            close_subject: with_common(include_str!("lua/close_subject.lua")),
            list: with_common(include_str!("lua/list.lua")),
            usage: with_common(include_str!("lua/usage.lua")),
            sweep: with_common(include_str!("lua/sweep.lua")),
            revoke: with_common(include_str!("lua/revoke.lua")),
            revocations: with_common(include_str!("lua/revocations.lua")),
            delete_revocation: with_common(include_str!("lua/delete_revocation.lua")),
            deleted_revocations: with_common(include_str!("lua/deleted_revocations.lua")),
            mark_revoked: with_common(include_str!("lua/mark_revoked.lua")),
            forget_marker: Script::new("return redis.call('DEL', KEYS[1])"),
            generation: Script::new(include_str!("lua/generation.lua")),
            abandon: with_common(include_str!("lua/abandon.lua")),
            first_use: with_common(include_str!("lua/first_use.lua")),
            release_use: Script::new("return redis.call('DEL', KEYS[1])"),
            members: Script::new("return redis.call('SMEMBERS', KEYS[1])"),
            audit: Script::new(include_str!("lua/audit.lua")),
            ping: Script::new("return redis.call('PING')"),
        }
    }
}

/// The connection: the redis crate's own clients, which reconnect by
/// themselves when a connection drops, each held in a [`Replaceable`] that
/// also replaces one that stops answering (see [`health`]). They run a
/// driver task on the runtime that creates them, so they are created on the
/// store's own small runtime (see [`Driver`]), never on whichever Pingora
/// service happens to call first.
enum Connection {
    Standalone {
        client: redis::Client,
        config: redis::aio::ConnectionManagerConfig,
        conn: Replaceable<ConnectionManager>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        conn: Replaceable<ClusterConnection>,
    },
    Sentinel {
        /// Knows the sentinels, their password and TLS, and the primary's.
        sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
        config: redis::aio::ConnectionManagerConfig,
        /// The current primary; replaced after any failed call, so the next
        /// call asks the sentinels again (after a failover the old primary
        /// refuses writes or is gone).
        conn: Replaceable<ConnectionManager>,
    },
}

impl Connection {
    /// Records the outcome of a call (`None`: the call timed out).
    fn record(&self, outcome: Option<&Result<Value, StoreError>>) {
        match self {
            Connection::Standalone { conn, .. } | Connection::Sentinel { conn, .. } => {
                conn.record(outcome)
            }
            Connection::Cluster { conn, .. } => conn.record(outcome),
        }
    }
}

/// A dedicated one-thread runtime for the Redis connection's driver task:
/// alive as long as the store, never starved by proxy work, and not stopped
/// before in-flight requests during a graceful shutdown.
struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    fn new() -> Result<Self, StoreError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis-driver")
            .enable_all()
            .build()
            .map(|rt| Driver(Some(rt)))
            .map_err(|e| StoreError::Protocol(format!("redis runtime: {e}")))
    }

    /// Runs a future on the driver runtime and waits for it from any runtime.
    async fn run<F, T>(&self, future: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, redis::RedisError>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .0
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store is shutting down".into()))?;
        match runtime.spawn(future).await {
            Ok(result) => result.map_err(|e| store_error(&e)),
            Err(e) => Err(StoreError::Unavailable(format!("redis driver: {e}"))),
        }
    }
}

impl Driver {
    /// Starts a background task on the driver runtime; false once the store
    /// is shutting down.
    fn spawn<F>(&self, future: F) -> bool
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.as_ref().map(|rt| rt.spawn(future)).is_some()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; this never blocks.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A [`Store`](super::Store) in Redis, shared by every gateway instance that points at it.
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
    /// `redis.wait_replicas` and `redis.wait_timeout`.
    wait_replicas: u32,
    wait_timeout: Duration,
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

/// Audit events on their way to the stream. At most one flush runs at a
/// time: the first event waits [`AUDIT_DELAY`] for company, then the flush
/// sends everything queued, including what queued while its previous call
/// was in flight.
#[derive(Default)]
struct AuditQueue {
    events: Vec<AuditEvent>,
    flushing: bool,
}

/// A session as the scripts return it: 11 fields, plus a close reason.
type Fields = Vec<String>;

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
        Ok(Arc::new_cyclic(|me| Self {
            connection,
            driver,
            prefix: config.key_prefix.clone(),
            pools: arc_swap::ArcSwap::from_pointee(StorePools {
                configured: pools.clone(),
                every: pools.iter().cloned().collect(),
            }),
            clock: clock.is_manual().then_some(clock),
            scripts: Scripts::new(),
            leases: Arc::new(LeaseCache::new(config.touch_interval, config.grace_period)),
            sid_links: quick_cache::sync::Cache::new(200_000),
            timeout: config.connect_timeout + config.response_timeout,
            pubsub,
            pending_touches: parking_lot::Mutex::new(Vec::new()),
            pending_audit: parking_lot::Mutex::new(AuditQueue::default()),
            touch_delay: touch_delay(config.touch_interval),
            me: me.clone(),
            revocation_listener: parking_lot::Mutex::new(None),
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
        }))
    }

    /// Listens for revocations published by any instance and drops the
    /// matching leases, until `shutdown` turns true. Reconnects by itself.
    pub async fn listen_for_revocations(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use futures_util::StreamExt;
        let channel = self.revocations_channel();
        loop {
            let subscribed = async {
                let connect = async {
                    let client = self.pubsub_client().await?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                let pubsub = tokio::time::timeout(self.timeout, connect)
                    .await
                    .map_err(|_| io_timeout("subscribing to the revocation channel"))??;
                // Closes published before this point were not heard: leases
                // confirmed until now must ask Redis again; revocations
                // published meanwhile are fetched again.
                self.leases.subscribed();
                self.tell(RevocationNews::Resubscribed);
                let (mut sink, mut messages) = pubsub.split();
                let mut generation = self.generation().await.ok();
                // A half-open subscription hears nothing and never ends: a
                // PING that gets no answer ends it (and with it the epoch).
                let mut ping = tokio::time::interval(PUBSUB_PING_INTERVAL);
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let text: String = message.get_payload().unwrap_or_default();
                            if let Some(encoded) = text.strip_prefix("revoke|") {
                                if let Some(revocation) = Revocation::decode(encoded) {
                                    self.tell(RevocationNews::Revoked(revocation));
                                }
                            } else if let Some(revocation) = LeaseDrop::parse(&text) {
                                self.leases.forget(&revocation.pool, &revocation.identity);
                            }
                        }
                        _ = ping.tick() => {
                            tokio::time::timeout(self.timeout, sink.ping::<Value>())
                                .await
                                .map_err(|_| io_timeout("revocation channel PING"))??;
                            self.check_generation(&mut generation).await;
                        }
                    }
                }
                redis::RedisResult::Ok(())
            };
            tokio::select! {
                result = subscribed => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "revocation channel lost; reconnecting");
                    }
                }
                _ = shutdown.changed() => return,
            }
            // Messages are missed from now until the next subscription: no
            // cached lease is fresh meanwhile (grace still applies).
            self.leases.subscription_lost();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The store's generation (written when Redis has none).
    async fn generation(&self) -> Result<String, StoreError> {
        let fresh = super::new_session_id();
        let value = self
            .run(
                &self.scripts.generation,
                &[format!("{{{}}}:generation", self.prefix)],
                &[fresh],
            )
            .await?;
        text(&value)
    }

    /// Ends the lease epoch when the generation changed since `seen`: Redis
    /// lost its data without dropping a connection (FLUSHALL, a restart
    /// without persistence behind a proxy), so sessions cached here may no
    /// longer exist there. Revocations are fetched again too.
    async fn check_generation(&self, seen: &mut Option<String>) {
        let Ok(now) = self.generation().await else {
            return;
        };
        if seen.as_ref().is_some_and(|g| *g != now) {
            tracing::warn!("Redis lost its data (new store generation): every cached lease ends");
            self.leases.subscribed();
            self.tell(RevocationNews::Resubscribed);
        }
        *seen = Some(now);
    }

    /// After an admission whose caller was told 503: until Redis answers
    /// (bounded), close the session it opened under `proposed` if nobody
    /// used it since, or mark the id so that a late run opens nothing. The
    /// guarantee: a seat taken by an admission whose caller got 503 is held
    /// only until this succeeds, unless the client called again and uses it.
    fn abandon_later(&self, tag: String, pool: String, proposed: SessionId) {
        let Some(me) = self.me.upgrade() else { return };
        self.driver.spawn(async move {
            let mut delay = ABANDON_RETRY_START;
            for _ in 0..ABANDON_ATTEMPTS {
                let keys = [format!("{tag}:i:{proposed}"), format!("{tag}:ab:{proposed}")];
                let args = [
                    me.now_arg(),
                    tag.clone(),
                    proposed.clone(),
                    millis(ABANDON_MARK).to_string(),
                ];
                match me.run(&me.scripts.abandon, &keys, &args).await {
                    Ok(Value::Nil) => return,
                    Ok(value) => {
                        if let Ok(Some((session, _))) = session_of(&pool, &value) {
                            tracing::warn!(
                                session_id = %session.id,
                                subject = %session.subject,
                                "released the seat of a session opened after its caller was told 503"
                            );
                            me.queue_audit(vec![
                                ("event", "session_closed".into()),
                                ("session_id", session.id.clone()),
                                ("pool", pool.clone()),
                                ("subject", session.subject.clone()),
                                ("reason", "abandoned".into()),
                            ]);
                        }
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(ABANDON_RETRY_MAX);
                    }
                }
            }
            tracing::warn!(
                session_id = %proposed,
                "could not release a possibly abandoned admission; its seat frees at the idle timeout"
            );
        });
    }

    /// With `redis.wait_replicas`, waits (`WAIT`, at most
    /// `redis.wait_timeout`) until that many replicas have every write made
    /// so far on the connection; whether they have. Always true without the
    /// setting, and under Cluster (refused by the configuration).
    async fn replicated(&self, operation: &str) -> bool {
        if self.wait_replicas == 0 {
            return true;
        }
        let conn = match &self.connection {
            Connection::Standalone { conn, .. } | Connection::Sentinel { conn, .. } => {
                conn.current()
            }
            Connection::Cluster { .. } => return true,
        };
        let Some(mut conn) = conn else {
            return false;
        };
        let wait_ms = millis(self.wait_timeout);
        let mut command = redis::cmd("WAIT");
        command.arg(self.wait_replicas).arg(wait_ms);
        let wait = command.query_async::<i64>(&mut conn);
        match tokio::time::timeout(self.timeout + self.wait_timeout, wait).await {
            Ok(Ok(acked)) if acked >= i64::from(self.wait_replicas) => true,
            Ok(Ok(acked)) => {
                tracing::warn!(
                    operation,
                    acked,
                    wanted = self.wait_replicas,
                    "Redis write not acknowledged by enough replicas in time"
                );
                false
            }
            Ok(Err(error)) => {
                tracing::warn!(operation, %error, "Redis WAIT failed");
                false
            }
            Err(_) => {
                tracing::warn!(operation, "Redis WAIT timed out");
                false
            }
        }
    }

    /// Passes news from the revocation channel to the listener, if any.
    fn tell(&self, news: RevocationNews) {
        let listener = self.revocation_listener.lock().clone();
        if let Some(listener) = listener {
            listener(news);
        }
    }

    /// A client for the revocation channel: the server, a cluster node (any
    /// node hears every PUBLISH), or the primary the sentinels name now.
    async fn pubsub_client(&self) -> redis::RedisResult<redis::Client> {
        match &self.connection {
            Connection::Sentinel { sentinel, .. } => sentinel.lock().await.async_get_client().await,
            _ => Ok(self.pubsub.clone()),
        }
    }

    /// Queues the asynchronous touch of a cached lease. The first touch of a
    /// batch schedules its flush `touch_delay` later; every touch that falls
    /// due meanwhile rides along, so Redis sees a few script calls per
    /// second per instance however many sessions are busy.
    fn touch_later(&self, session: Session) {
        let first = {
            let mut pending = self.pending_touches.lock();
            pending.push(session);
            pending.len() == 1
        };
        if !first {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            tokio::time::sleep(me.touch_delay).await;
            me.flush_touches().await;
        });
    }

    /// Sends every queued touch, one script call per pool and chunk.
    async fn flush_touches(&self) {
        let mut due = std::mem::take(&mut *self.pending_touches.lock());
        due.sort_by(|a, b| a.pool.cmp(&b.pool));
        for batch in due.chunk_by(|a, b| a.pool == b.pool) {
            for chunk in batch.chunks(TOUCH_BATCH) {
                let epoch = self.leases.epoch();
                match self.touch_many(chunk).await {
                    Ok(answers) => {
                        for (sent, answer) in chunk.iter().zip(answers) {
                            match answer {
                                Some(fresh) => self.leases.confirm(fresh, epoch),
                                None => self.leases.forget(&sent.pool, &sent.identity),
                            }
                        }
                    }
                    // Keep the leases: they run out of the cache by themselves.
                    Err(error) => tracing::debug!(%error, "asynchronous touch failed"),
                }
            }
        }
    }

    /// Appends queued audit events until none is left, up to
    /// [`AUDIT_BATCH`] per script call. A failed call drops its events (the
    /// log has them too) rather than holding memory while Redis is away.
    async fn flush_audit(&self) {
        loop {
            let batch: Vec<AuditEvent> = {
                let mut queue = self.pending_audit.lock();
                if queue.events.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let take = queue.events.len().min(AUDIT_BATCH);
                queue.events.drain(..take).collect()
            };
            let mut args = vec![AUDIT_STREAM_CAP.to_string()];
            for event in &batch {
                args.push(event.len().to_string());
                for (field, value) in event {
                    args.push((*field).to_string());
                    args.push(value.clone());
                }
            }
            let key = format!("{{{}}}:audit", self.prefix);
            if let Err(error) = self.run(&self.scripts.audit, &[key], &args).await {
                tracing::debug!(%error, events = batch.len(), "audit events not appended to the store");
            }
        }
    }

    /// The local lease cache (the hot path reads it; revocations drop from it).
    pub fn leases(&self) -> &Arc<LeaseCache> {
        &self.leases
    }

    /// The channel of closes and revocations.
    fn revocations_channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }

    fn revocations_key(&self) -> String {
        format!("{{{}}}:revocations", self.prefix)
    }

    /// The ids of deleted revocations (in the revocations' slot).
    fn tombstones_key(&self) -> String {
        format!("{{{}}}:revocations:deleted", self.prefix)
    }

    fn tag(&self, pool: &str) -> String {
        format!("{{{}:{}}}", self.prefix, pool)
    }

    fn now_arg(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(|| "0".to_string(), |c| c.now_ms().to_string())
    }

    async fn run(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        // Connecting is bounded too: a Redis that accepts but never answers
        // must not hold a request forever.
        let call = async {
            match &self.connection {
                Connection::Standalone {
                    client,
                    config,
                    conn,
                } => {
                    let mut conn = conn
                        .get(|| {
                            let (client, config) = (client.clone(), config.clone());
                            self.driver.run(async move {
                                client.get_connection_manager_with_config(config).await
                            })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
                Connection::Sentinel {
                    sentinel,
                    config,
                    conn,
                } => {
                    let mut conn = conn
                        .get(|| {
                            let (sentinel, config) = (Arc::clone(sentinel), config.clone());
                            self.driver.run(async move {
                                let client = sentinel.lock().await.async_get_client().await?;
                                client.get_connection_manager_with_config(config).await
                            })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
                Connection::Cluster { client, conn } => {
                    let mut conn = conn
                        .get(|| {
                            let client = client.clone();
                            self.driver
                                .run(async move { client.get_async_connection().await })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => {
                self.connection.record(Some(&result));
                result
            }
            Err(_) => {
                self.connection.record(None);
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
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

    /// Slides the idle timers of sessions of one pool in one script call (the
    /// lease cache's asynchronous touches); one answer per session, in order,
    /// `None` for those that have closed or were replaced.
    pub async fn touch_many(
        &self,
        sessions: &[Session],
    ) -> Result<Vec<Option<Session>>, StoreError> {
        let Some(first) = sessions.first() else {
            return Ok(Vec::new());
        };
        let pool = self.pool(&first.pool)?;
        if sessions.iter().any(|s| s.pool != pool.name) {
            return Err(StoreError::Protocol(
                "one touch batch must hold one pool's sessions".into(),
            ));
        }
        let tag = self.tag(&pool.name);
        let mut args = Vec::with_capacity(3 + 2 * sessions.len());
        args.extend([
            self.now_arg(),
            tag.clone(),
            millis(pool.idle_timeout).to_string(),
        ]);
        for session in sessions {
            args.push(session.identity.to_hex());
            args.push(session.id.clone());
        }
        let value = self
            .run(
                &self.scripts.touch,
                &[format!("{tag}:s:{}", first.identity.to_hex())],
                &args,
            )
            .await?;
        let answers = array(&value)?;
        if answers.len() != sessions.len() {
            return Err(protocol("touch reply does not match the batch"));
        }
        answers
            .iter()
            .map(|a| session_of(&pool.name, a).map(|found| found.map(|(s, _)| s)))
            .collect()
    }

    async fn admit_in_store(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError> {
        let pool = request.pool;
        let tag = self.tag(&pool.name);
        let identity = request.identity.key.to_hex();
        let (subject_max, policy) = match pool.subject_limit {
            Some(limit) => (
                limit.max,
                match limit.policy {
                    SubjectLimitPolicy::Deny => "deny",
                    SubjectLimitPolicy::ReplaceOldest => "replace",
                },
            ),
            None => (0, "deny"),
        };
        let proposed = super::new_session_id();
        let mut args = vec![
            self.now_arg(),
            tag.clone(),
            identity.clone(),
            proposed.clone(),
            request.identity.issuer.clone(),
            request.identity.subject.clone(),
            request.identity.client.clone().unwrap_or_default(),
            request.identity.subject_key.to_hex(),
            millis(pool.idle_timeout).to_string(),
            millis(pool.absolute_timeout).to_string(),
            millis(LINGER).to_string(),
            request.reserved.unwrap_or(0).to_string(),
            subject_max.to_string(),
            policy.to_string(),
            if request.token.is_some() { "1" } else { "0" }.to_string(),
            request
                .token
                .and_then(|t| t.issued_ms)
                .map_or_else(|| "-1".to_string(), |ms| ms.min(MAX_LUA_INT).to_string()),
        ];
        args.extend(Self::bucket_args(pool));
        let token_key = request.token.map_or("", |t| t.key);
        let mut keys = vec![
            format!("{tag}:s:{identity}"),
            format!("{tag}:rt:{token_key}"),
            format!("{tag}:rs:{}", request.identity.subject_key.to_hex()),
        ];
        if let Some(sid) = request.sid {
            let sid = sid.key();
            keys.push(format!("{tag}:sid:{sid}"));
            keys.push(format!("{tag}:rt:sid:{sid}"));
        }
        let value = match self.run(&self.scripts.admit, &keys, &args).await {
            Ok(value) => value,
            Err(error @ StoreError::Unavailable(_)) => {
                // The caller is told 503, but Redis may run (or have run)
                // the admission: release what it opens.
                self.abandon_later(tag, pool.name.clone(), proposed);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let parts = array(&value)?;
        if parts.len() != 6 {
            return Err(protocol("admit reply has the wrong shape"));
        }
        let kind = text(&parts[0])?;
        let expired = closed_list(&pool.name, &parts[5])?;
        let count = u32::try_from(int(&parts[3])?).unwrap_or(u32::MAX);
        let retry_ms = int(&parts[4])?;
        let retry_after = if retry_ms < 0 {
            whole_seconds(pool.idle_timeout)
        } else {
            whole_seconds(Duration::from_millis(retry_ms as u64))
        };
        let session = || {
            session_of(&pool.name, &parts[1])?
                .map(|(s, _)| s)
                .ok_or_else(|| protocol("admit reply lacks the session"))
        };
        let admission = match kind.as_str() {
            "reused" => Admission::Reused(session()?),
            "opened" => Admission::Opened {
                session: session()?,
                replaced: session_of(&pool.name, &parts[2])?.map(|(s, reason)| ClosedSession {
                    session: s,
                    reason: reason.unwrap_or(CloseReason::Replaced),
                }),
            },
            "full" => Admission::Refused(Refusal::PoolFull {
                limit: pool.limit,
                in_use: count,
                retry_after,
            }),
            "revoked" => Admission::Refused(Refusal::Revoked),
            // Only an admission already given up answers this, and nobody
            // waits for its answer.
            "abandoned" => {
                return Err(StoreError::Unavailable("admission abandoned".into()));
            }
            "subject" => Admission::Refused(Refusal::SubjectLimit {
                limit: subject_max,
                retry_after,
            }),
            other => return Err(protocol(&format!("admit reply kind `{other}`"))),
        };
        if let Admission::Opened { session, .. } = &admission
            && !self.replicated("admit").await
        {
            // Not acknowledged by enough replicas: a failover could lose
            // it, so the caller is not told it holds a seat, and the seat
            // is released again.
            self.abandon_later(tag, pool.name.clone(), session.id.clone());
            return Err(StoreError::Unavailable(
                "the new session did not reach enough replicas in time".into(),
            ));
        }
        Ok(AdmitOutcome { admission, expired })
    }

    /// Runs one of the scripts that read or sweep a whole pool (list,
    /// usage, sweep: same KEYS and ARGV).
    async fn whole_pool(&self, script: &Script, pool: &Pool) -> Result<Value, StoreError> {
        let tag = self.tag(&pool.name);
        self.run(
            script,
            &[format!("{tag}:b:0")],
            &[self.now_arg(), tag, pool.bucket_count().to_string()],
        )
        .await
    }

    /// Closes by id in every pool (ids do not name their pool; pools are few
    /// and closing is rare).
    async fn close_by_id(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let tag = self.tag(&pool.name);
            let value = self
                .run(
                    &self.scripts.close,
                    &[format!("{tag}:i:{id}")],
                    &[
                        self.now_arg(),
                        tag,
                        id.to_string(),
                        reason.as_str().to_string(),
                    ],
                )
                .await?;
            if let Some((session, _)) = session_of(&pool.name, &value)? {
                self.leases.forget(&session.pool, &session.identity);
                return Ok(Some(ClosedSession { session, reason }));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError> {
        let sid_key = request.sid.map(|sid| sid.key());
        if let Some(lease) = self.leases.fresh(&request.pool.name, &request.identity.key)
            && sid_key.as_ref().is_none_or(|key| {
                self.sid_links
                    .get(&(lease.session.id.clone(), key.clone()))
                    .is_some()
            })
        {
            if lease.touch_due {
                self.touch_later(lease.session.clone());
            }
            return Ok(AdmitOutcome {
                admission: Admission::Reused(lease.session),
                expired: Vec::new(),
            });
        }
        let epoch = self.leases.epoch();
        match self.admit_in_store(request).await {
            Ok(outcome) => {
                if let Some(session) = outcome.admission.session() {
                    self.leases.confirm(session.clone(), epoch);
                    if let Some(key) = sid_key {
                        self.sid_links.insert((session.id.clone(), key), ());
                    }
                }
                if let Admission::Opened {
                    replaced: Some(replaced),
                    ..
                } = &outcome.admission
                {
                    self.leases
                        .forget(&replaced.session.pool, &replaced.session.identity);
                }
                for closed in &outcome.expired {
                    self.leases
                        .forget(&closed.session.pool, &closed.session.identity);
                }
                Ok(outcome)
            }
            Err(error) => match self
                .leases
                .within_grace(&request.pool.name, &request.identity.key)
            {
                // Redis is down, but this session was confirmed recently
                // enough: the operator chose to let it continue.
                Some(session) => Ok(AdmitOutcome {
                    admission: Admission::Reused(session),
                    expired: Vec::new(),
                }),
                None => Err(error),
            },
        }
    }

    async fn find(
        &self,
        pool: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Session>, StoreError> {
        let tag = self.tag(pool);
        let identity = identity.to_hex();
        let value = self
            .run(
                &self.scripts.find,
                &[format!("{tag}:s:{identity}")],
                &[self.now_arg(), tag, identity],
            )
            .await?;
        Ok(session_of(pool, &value)?.map(|(s, _)| s))
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let tag = self.tag(&pool.name);
            let value = self
                .run(
                    &self.scripts.get,
                    &[format!("{tag}:i:{id}")],
                    &[self.now_arg(), tag, id.to_string()],
                )
                .await?;
            if let Some((session, _)) = session_of(&pool.name, &value)? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        let closed = self.close_by_id(id, reason).await?;
        if closed.is_some() {
            self.replicated("close").await;
        }
        Ok(closed)
    }

    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        let mut closed = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let tag = self.tag(&pool.name);
            let value = match self
                .run(
                    &self.scripts.close_subject,
                    &[format!("{tag}:u:{}", subject.to_hex())],
                    &[self.now_arg(), tag, reason.as_str().to_string()],
                )
                .await
            {
                Ok(value) => value,
                Err(error) => return partial(closed, error),
            };
            for c in closed_list(&pool.name, &value)? {
                self.leases.forget(&c.session.pool, &c.session.identity);
                closed.push(ClosedSession { reason, ..c });
            }
        }
        if !closed.is_empty() {
            self.replicated("close_subject").await;
        }
        Ok(closed)
    }

    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        let mut sessions = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            if filter.pool.as_ref().is_some_and(|p| p != &pool.name) {
                continue;
            }
            let value = self.whole_pool(&self.scripts.list, pool).await?;
            for item in array(&value)? {
                if let Some((s, _)) = session_of(&pool.name, item)?
                    && filter.subject.as_ref().is_none_or(|sub| sub == &s.subject)
                {
                    sessions.push(s);
                }
            }
        }
        sessions.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(sessions)
    }

    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        let mut usage = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.configured.iter() {
            let value = self.whole_pool(&self.scripts.usage, pool).await?;
            usage.push(PoolUsage {
                pool: pool.name.clone(),
                limit: pool.limit,
                reserved: pool.reserved_total(),
                in_use: u32::try_from(int(&value)?).unwrap_or(u32::MAX),
            });
        }
        Ok(usage)
    }

    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError> {
        let mut closed = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let value = match self.whole_pool(&self.scripts.sweep, pool).await {
                Ok(value) => value,
                Err(error) => return partial(closed, error),
            };
            for c in closed_list(&pool.name, &value)? {
                self.leases.forget(&c.session.pool, &c.session.identity);
                closed.push(c);
            }
        }
        Ok(closed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let value = self.run(&self.scripts.ping, &[], &[]).await?;
        match value {
            Value::SimpleString(_) | Value::Okay | Value::BulkString(_) => Ok(()),
            _ => Err(protocol("PING reply")),
        }
    }

    fn reconfigure(&self, pools: &Pools) {
        // Limits and reserved seats travel with every admission (script
        // arguments); only the set of pools to report, sweep and search is
        // kept here. A removed pool stays in `every` until restart.
        let current = self.pools.load();
        let mut every: Vec<Arc<Pool>> = pools.iter().cloned().collect();
        every.extend(
            current
                .every
                .iter()
                .filter(|old| pools.get(&old.name).is_none())
                .cloned(),
        );
        self.pools.store(Arc::new(StorePools {
            configured: pools.clone(),
            every,
        }));
    }
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        // The markers first: once the message is out, an instance that
        // missed it must already find them in its admissions.
        let until = revocation.until_ms().min(MAX_LUA_INT).to_string();
        let (marker, not_before) = match revocation {
            Revocation::Token { key, .. } => (format!("rt:{key}"), String::new()),
            Revocation::Subject {
                subject,
                not_before_ms,
                ..
            } => (
                format!("rs:{}", subject.to_hex()),
                not_before_ms.to_string(),
            ),
        };
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:{marker}", self.tag(&pool.name));
            self.run(
                &self.scripts.mark_revoked,
                &[key],
                &[self.now_arg(), until.clone(), not_before.clone()],
            )
            .await?;
        }
        self.run(
            &self.scripts.revoke,
            &[self.revocations_key()],
            &[
                self.now_arg(),
                revocation.encode(),
                until,
                millis(LINGER).to_string(),
                self.revocations_channel(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let value = self
            .run(
                &self.scripts.revocations,
                &[self.revocations_key()],
                &[self.now_arg()],
            )
            .await?;
        array(&value)?
            .iter()
            .map(|v| Revocation::decode(&text(v)?).ok_or_else(|| protocol("bad revocation")))
            .collect()
    }

    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError> {
        // The admission markers go first, with every revocation of that id
        // (they are per token or per subject, as the id is).
        let marker = match id.strip_prefix(super::SUBJECT_REVOCATION_ID_PREFIX) {
            Some(subject) => format!("rs:{subject}"),
            None => format!("rt:{id}"),
        };
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:{marker}", self.tag(&pool.name));
            self.run(&self.scripts.forget_marker, &[key], &[]).await?;
        }
        let value = self
            .run(
                &self.scripts.delete_revocation,
                &[self.revocations_key(), self.tombstones_key()],
                &[self.now_arg(), id.to_string(), millis(LINGER).to_string()],
            )
            .await?;
        array(&value)?
            .iter()
            .map(|v| Revocation::decode(&text(v)?).ok_or_else(|| protocol("bad revocation")))
            .collect()
    }

    fn on_revocation_news(&self, listener: RevocationListener) {
        *self.revocation_listener.lock() = Some(listener);
    }

    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError> {
        let value = self
            .run(
                &self.scripts.deleted_revocations,
                &[self.tombstones_key()],
                &[self.now_arg()],
            )
            .await?;
        array(&value)?.iter().map(text).collect()
    }
}

#[async_trait]
impl LogoutLedger for RedisStore {
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<SessionId>, StoreError> {
        // A link lives in the slot of the pool that opened the session (the
        // admission writes it), so a lookup asks every pool.
        let mut linked = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let key = format!("{}:sid:{sid_key}", self.tag(&pool.name));
            let value = self.run(&self.scripts.members, &[key], &[]).await?;
            for id in array(&value)? {
                linked.push(text(id)?);
            }
        }
        Ok(linked)
    }

    async fn first_use(&self, key: &str, until_ms: UnixMillis) -> Result<bool, StoreError> {
        let value = self
            .run(
                &self.scripts.first_use,
                &[format!("{{{}}}:used:{key}", self.prefix)],
                &[self.now_arg(), until_ms.to_string()],
            )
            .await?;
        Ok(int(&value)? == 1)
    }

    async fn release_use(&self, key: &str) -> Result<(), StoreError> {
        self.run(
            &self.scripts.release_use,
            &[format!("{{{}}}:used:{key}", self.prefix)],
            &[],
        )
        .await?;
        Ok(())
    }
}

impl AuditSink for RedisStore {
    fn queue_audit(&self, event: AuditEvent) {
        let start = {
            let mut queue = self.pending_audit.lock();
            if queue.events.len() >= AUDIT_QUEUE_CAP {
                tracing::debug!("audit queue full; event not appended to the store");
                return;
            }
            queue.events.push(event);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start
            && let Some(me) = self.me.upgrade()
            && !self.driver.spawn(async move {
                tokio::time::sleep(AUDIT_DELAY).await;
                me.flush_audit().await;
            })
        {
            self.pending_audit.lock().flushing = false;
        }
    }
}

/// Sessions already closed in earlier pools are gone from Redis: they must
/// still be reported (audited) even when a later pool fails.
fn partial(
    closed: Vec<ClosedSession>,
    error: StoreError,
) -> Result<Vec<ClosedSession>, StoreError> {
    if closed.is_empty() {
        Err(error)
    } else {
        tracing::warn!(%error, "store operation failed part-way; reporting what was closed");
        Ok(closed)
    }
}

/// A client for one server: with TLS when the URL is `rediss://` (the
/// configuration then always carries TLS settings, even if only the
/// system's roots).
fn client(url: &str, certificates: Option<&TlsCertificates>) -> redis::RedisResult<redis::Client> {
    match certificates {
        Some(certificates) => redis::Client::build_with_tls(url, certificates.clone()),
        None => redis::Client::open(url),
    }
}

/// The redis crate's form of the TLS settings; without a CA file it trusts
/// the system's roots.
fn tls_certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|identity| ClientTlsConfig {
            client_cert: identity.cert_pem.clone(),
            client_key: identity.key_pem.expose().as_bytes().to_vec(),
        }),
        root_cert: tls.ca_pem.clone(),
    }
}

/// A client that asks the sentinels for the primary of `master_name` and
/// connects to it. The sentinels' URLs carry their own password; the primary
/// gets `master_password`. With `rediss://` sentinels, the primary is
/// reached over TLS too, with the same CA and client certificate: a
/// deployment that encrypts one hop encrypts the other.
fn sentinel_client(
    config: &RedisConfig,
    certificates: Option<&TlsCertificates>,
) -> redis::RedisResult<SentinelClient> {
    let mut sentinels = Vec::with_capacity(config.urls.len());
    let mut credentials = None;
    for url in &config.urls {
        let info = url.expose().into_connection_info()?;
        let settings = info.redis_settings();
        credentials.get_or_insert_with(|| {
            (
                settings.username().map(str::to_string),
                settings.password().map(str::to_string),
            )
        });
        sentinels.push(info.addr().clone());
    }
    let mut builder = SentinelClientBuilder::new(
        sentinels,
        config.master_name.as_deref().unwrap_or_default(),
        SentinelServerType::Master,
    )?;
    if let Some((username, password)) = credentials {
        if let Some(username) = username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(password) = &config.master_password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_sentinel_certificates(certificates.clone())
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates.clone());
    }
    builder.build()
}

fn first_url(config: &RedisConfig) -> Result<&str, StoreError> {
    config
        .urls
        .first()
        .map(|u| u.expose())
        .ok_or_else(|| StoreError::Protocol("no Redis URL configured".into()))
}

fn store_error(e: &redis::RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// A timeout as the redis crate's I/O error, for code that handles both.
fn io_timeout(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

fn protocol(what: &str) -> StoreError {
    StoreError::Protocol(what.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(millis(d).div_ceil(1000).max(1))
}

fn array(v: &Value) -> Result<&[Value], StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(protocol("expected an array")),
    }
}

fn text(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(protocol("expected a string")),
    }
}

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(_) | Value::SimpleString(_) => text(v)?
            .parse()
            .map_err(|_| protocol("expected an integer")),
        _ => Err(protocol("expected an integer")),
    }
}

/// Parses a session reply (11 fields, optionally a 12th with the close
/// reason); `Nil` or an empty array is no session.
fn session_of(pool: &str, v: &Value) -> Result<Option<(Session, Option<CloseReason>)>, StoreError> {
    let items = array(v)?;
    if items.is_empty() {
        return Ok(None);
    }
    let fields: Fields = items.iter().map(text).collect::<Result<_, _>>()?;
    if fields.len() < 11 {
        return Err(protocol("session reply has too few fields"));
    }
    let digest = |s: &str| Digest32::from_hex(s).ok_or_else(|| protocol("bad digest in session"));
    let number = |s: &str| {
        s.parse::<UnixMillis>()
            .map_err(|_| protocol("bad time in session"))
    };
    let session = Session {
        id: fields[0].clone(),
        identity: digest(&fields[1])?,
        bucket: fields[2]
            .parse()
            .map_err(|_| protocol("bad bucket in session"))?,
        issuer: fields[3].clone(),
        subject: fields[4].clone(),
        client: (!fields[5].is_empty()).then(|| fields[5].clone()),
        subject_key: digest(&fields[6])?,
        created_ms: number(&fields[7])?,
        last_seen_ms: number(&fields[8])?,
        idle_expires_ms: number(&fields[9])?,
        absolute_expires_ms: number(&fields[10])?,
        pool: pool.to_string(),
    };
    let reason = fields.get(11).map(|r| match r.as_str() {
        "absolute" => CloseReason::Absolute,
        "logout" => CloseReason::Logout,
        "backchannel" => CloseReason::Backchannel,
        "admin" => CloseReason::Admin,
        "replaced" => CloseReason::Replaced,
        _ => CloseReason::Idle,
    });
    Ok(Some((session, reason)))
}

fn closed_list(pool: &str, v: &Value) -> Result<Vec<ClosedSession>, StoreError> {
    let mut out = Vec::new();
    for item in array(v)? {
        if let Some((session, reason)) = session_of(pool, item)? {
            out.push(ClosedSession {
                session,
                reason: reason.unwrap_or(CloseReason::Idle),
            });
        }
    }
    Ok(out)
}
