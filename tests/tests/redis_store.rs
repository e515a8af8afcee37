//! The store contract suite against the Redis store and a real
//! `redis-server` (one per case, on a free port, killed with the store).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_gateway::clock::ManualClock;
use session_gateway::config::RedisConfig;
use session_gateway::licensing::{Pool, Pools};
use session_gateway::session::{
    AdmitOutcome, AdmitRequest, AuditEvent, AuditPage, AuditQuery, AuditSink, CloseReason,
    ClosedSession, IdentityKey, LogoutLedger, PoolUsage, RedisStore, Revocation, RevocationStore,
    Session, SessionFilter, SessionStore, Store, StoreError, SubjectKey, UsageLedger,
};
use session_gateway::session::{ClientBound, ClientCounts, ClientLedger, ClientSighting};
use session_gateway::session::{QueueExit, SeatListener, SeatQueue, Ticket};
use session_gateway::usage::{LedgerSnapshot, Step};
use session_gateway_e2e::RedisServer;
use session_gateway_e2e::contract::StoreFuture;

/// The Redis store, owning the `redis-server` it talks to.
struct StoreWithServer {
    store: Arc<RedisStore>,
    _server: RedisServer,
}

/// The test configuration: the fast path off (every call reaches Redis, so
/// the suite checks the scripts), strict outage behaviour.
fn redis_config(url: String) -> RedisConfig {
    session_gateway_e2e::store_config(url, "contract")
}

fn redis_factory(pools: Pools, clock: ManualClock) -> StoreFuture {
    Box::pin(async move {
        let server = RedisServer::start().expect("redis-server");
        let store =
            RedisStore::new(&redis_config(server.url()), &pools, Arc::new(clock)).expect("store");
        let store: Arc<dyn Store> = Arc::new(StoreWithServer {
            store,
            _server: server,
        });
        store
    })
}

#[async_trait]
impl SessionStore for StoreWithServer {
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError> {
        self.store.admit(request).await
    }
    async fn find(
        &self,
        pool: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Session>, StoreError> {
        self.store.find(pool, identity).await
    }
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.store.get(id).await
    }
    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        self.store.close(id, reason).await
    }
    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        self.store.close_subject(subject, reason).await
    }
    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        self.store.list(filter).await
    }
    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        self.store.usage().await
    }
    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError> {
        self.store.sweep().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
    fn reconfigure(&self, pools: &Pools) {
        self.store.reconfigure(pools)
    }
}

#[async_trait]
impl RevocationStore for StoreWithServer {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.store.revoke(revocation).await
    }
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.store.revocations().await
    }
    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError> {
        self.store.delete_revocation(id).await
    }
    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError> {
        self.store.deleted_revocations().await
    }
}

#[async_trait]
impl LogoutLedger for StoreWithServer {
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<String>, StoreError> {
        self.store.linked_sessions(sid_key).await
    }
    async fn first_use(&self, key: &str, until_ms: u64) -> Result<bool, StoreError> {
        self.store.first_use(key, until_ms).await
    }
    async fn release_use(&self, key: &str) -> Result<(), StoreError> {
        self.store.release_use(key).await
    }
}

#[async_trait]
impl AuditSink for StoreWithServer {
    fn queue_audit(&self, event: AuditEvent) {
        self.store.queue_audit(event);
    }
    async fn read_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.store.read_audit(query).await
    }
}

#[async_trait]
impl UsageLedger for StoreWithServer {
    async fn usage_ledger(
        &self,
        pool: &str,
        bucket: Option<usize>,
        step: Step,
        from: u64,
    ) -> Result<Option<LedgerSnapshot>, StoreError> {
        self.store.usage_ledger(pool, bucket, step, from).await
    }
}

#[async_trait]
impl ClientLedger for StoreWithServer {
    async fn note_client(
        &self,
        pool: &str,
        session_id: &str,
        sighting: &ClientSighting,
        window: Duration,
        refuse_beyond: Option<ClientBound>,
    ) -> Result<ClientCounts, StoreError> {
        self.store
            .note_client(pool, session_id, sighting, window, refuse_beyond)
            .await
    }
}

#[async_trait]
impl SeatQueue for StoreWithServer {
    async fn leave_queue(
        &self,
        pool: &Pool,
        ticket: &Ticket,
        exit: QueueExit,
    ) -> Result<bool, StoreError> {
        self.store.leave_queue(pool, ticket, exit).await
    }

    fn on_seat_freed(&self, listener: SeatListener) {
        self.store.on_seat_freed(listener);
    }
}

mod contract {
    session_gateway_e2e::store_contract_tests!(super::redis_factory);
}

/// The scripted day of the usage contract, with every call alternating
/// between two instances on one Redis: the history is the fleet's, exact
/// whichever instance opened, closed, refused or swept.
#[tokio::test]
async fn usage_history_is_exact_across_a_two_instance_fleet() -> anyhow::Result<()> {
    use session_gateway_e2e::contract::{T0, pool, scripted_day};

    let server = RedisServer::start()?;
    let clock = ManualClock::starting_at(T0);
    let pools = Pools::new(vec![pool("p", 3)]);
    let config = redis_config(server.url());
    let a: Arc<dyn Store> = RedisStore::new(&config, &pools, Arc::new(clock.clone()))?;
    let b: Arc<dyn Store> = RedisStore::new(&config, &pools, Arc::new(clock.clone()))?;
    scripted_day(&[a, b], &clock, &pools).await;
    Ok(())
}

/// Two instances of the store on one `redis-server`: A, and B listening for
/// revocations, with leases that only a revocation (or the channel) can end
/// within a test.
struct TwoInstances {
    server: RedisServer,
    a: Arc<RedisStore>,
    b: Arc<RedisStore>,
    pool: Arc<session_gateway::licensing::Pool>,
    stop: tokio::sync::watch::Sender<bool>,
    listener: tokio::task::JoinHandle<()>,
}

impl TwoInstances {
    async fn start() -> anyhow::Result<Self> {
        use session_gateway::clock::SystemClock;
        use session_gateway_e2e::contract::pool;

        let server = RedisServer::start()?;
        let mut config = redis_config(server.url());
        config.touch_interval = Duration::from_secs(600);
        let pools = Pools::new(vec![pool("p", 5)]);
        let a = RedisStore::new(&config, &pools, Arc::new(SystemClock))?;
        let b = RedisStore::new(&config, &pools, Arc::new(SystemClock))?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let listener = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.listen_for_revocations(shutdown).await }
        });
        let two = Self {
            server,
            a,
            b,
            pool: Arc::new(pool("p", 5)),
            stop,
            listener,
        };
        // Subscribed, and B's lease epoch begun: leases confirmed from now on
        // are fresh.
        session_gateway_e2e::eventually("B listening", || async {
            let epoch = two.b.leases().epoch();
            Ok((epoch > 0 && epoch.is_multiple_of(2)).then_some(()))
        })
        .await?;
        two.await_subscribers("1").await?;
        Ok(two)
    }

    /// Waits until the revocation channel has this many subscribers.
    async fn await_subscribers(&self, n: &str) -> anyhow::Result<()> {
        session_gateway_e2e::eventually("B's subscription", || async {
            Ok((self
                .server
                .cli(&["PUBSUB", "NUMSUB", "contract:revocations"])?
                .ends_with(n))
            .then_some(()))
        })
        .await
    }

    /// Opens alice's session on A and caches its lease on B; its id.
    async fn alice_on_both(&self) -> anyhow::Result<String> {
        use session_gateway::session::Admission;

        let opened = self.a.admit(&self.alice()).await?.admission;
        let id = opened.session().map(|s| s.id.clone()).unwrap_or_default();
        let on_b = self.b.admit(&self.alice()).await?.admission;
        assert!(matches!(on_b, Admission::Reused(ref s) if s.id == id));
        assert!(self.b.leases().fresh("p", &ALICE.identity.key).is_some());
        Ok(id)
    }

    fn alice(&self) -> AdmitRequest<'_> {
        AdmitRequest::of(&self.pool, &ALICE.identity)
    }

    /// B's next call for alice must go to Redis and open a new session.
    async fn b_opens_anew(&self, closed_id: &str) -> anyhow::Result<()> {
        use session_gateway::session::Admission;

        match self.b.admit(&self.alice()).await?.admission {
            Admission::Opened { session, .. } => assert_ne!(session.id, closed_id),
            other => panic!("B reused a closed session: {other:?}"),
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.listener.await?;
        Ok(())
    }
}

static ALICE: std::sync::LazyLock<session_gateway_e2e::contract::Caller> =
    std::sync::LazyLock::new(|| session_gateway_e2e::contract::caller("alice", "erp-web"));

/// A close on one instance drops the cached lease on another through the
/// revocation channel, so the next call there goes to Redis (and opens a new
/// session) instead of reusing the closed one from its cache.
#[tokio::test]
async fn revocations_drop_cached_leases_on_other_instances() -> anyhow::Result<()> {
    use session_gateway::session::CloseReason;

    let two = TwoInstances::start().await?;
    let id = two.alice_on_both().await?;
    assert!(two.a.close(&id, CloseReason::Admin).await?.is_some());
    session_gateway_e2e::eventually("the revocation reaching B", || async {
        Ok(two.b.leases().is_empty().then_some(()))
    })
    .await?;
    two.b_opens_anew(&id).await?;
    two.stop().await
}

/// A close whose revocation message is lost (the subscription was broken
/// when it was published) does not leave the closed session usable from
/// another instance's cache: while the channel is broken no lease is fresh,
/// so the next call there asks Redis.
#[tokio::test]
async fn a_broken_revocation_channel_ends_cached_leases() -> anyhow::Result<()> {
    use session_gateway::session::CloseReason;

    let two = TwoInstances::start().await?;
    let id = two.alice_on_both().await?;
    // Break B's subscription and close the session while it is down.
    two.server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    two.await_subscribers("0").await?;
    assert!(two.a.close(&id, CloseReason::Admin).await?.is_some());
    session_gateway_e2e::eventually("B's lease no longer fresh", || async {
        Ok(two
            .b
            .leases()
            .fresh("p", &ALICE.identity.key)
            .is_none()
            .then_some(()))
    })
    .await?;
    two.b_opens_anew(&id).await?;
    two.stop().await
}

/// One touch call slides the idle timers of many sessions of a pool: the
/// open ones come back with their new expiry, a closed one as `None`, and
/// the seats stay exact.
#[tokio::test]
async fn one_touch_call_slides_a_batch_and_reports_closed_sessions() -> anyhow::Result<()> {
    use session_gateway::clock::Clock;
    use session_gateway_e2e::contract::{caller, pool};

    let server = RedisServer::start()?;
    let pools = Pools::new(vec![pool("p", 5)]);
    let clock = ManualClock::starting_at(1_000_000);
    let store = RedisStore::new(&redis_config(server.url()), &pools, Arc::new(clock.clone()))?;
    let p = Arc::new(pool("p", 5));
    let mut sessions = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let who = caller(user, "erp-web");
        let request = AdmitRequest::of(&p, &who.identity);
        let admitted = store.admit(&request).await?.admission;
        sessions.push(admitted.session().cloned().expect("a seat is free"));
    }
    store.close(&sessions[1].id, CloseReason::Logout).await?;
    clock.advance(Duration::from_secs(60));

    let answers = store.touch_many(&sessions).await?;
    assert_eq!(answers.len(), 3);
    let now = clock.now_ms();
    for index in [0, 2] {
        let fresh = answers[index].as_ref().expect("still open");
        assert_eq!(fresh.id, sessions[index].id);
        assert_eq!(fresh.last_seen_ms, now);
        assert_eq!(
            fresh.idle_expires_ms,
            now + p.idle_timeout.as_millis() as u64
        );
        assert!(fresh.idle_expires_ms > sessions[index].idle_expires_ms);
    }
    assert!(answers[1].is_none(), "a closed session is not revived");
    let seen = store.get(&sessions[0].id).await?.expect("open");
    assert_eq!(
        seen.last_seen_ms, now,
        "the slide is stored, not only returned"
    );
    let usage = store.usage().await?;
    assert_eq!(usage[0].in_use, 2);
    assert!(store.get(&sessions[1].id).await?.is_none());
    Ok(())
}

/// With the lease cache on, the touches of many busy sessions share script
/// calls: far fewer `EVALSHA`s reach Redis than sessions were touched.
#[tokio::test]
async fn busy_sessions_share_touch_calls() -> anyhow::Result<()> {
    use session_gateway::clock::SystemClock;
    use session_gateway_e2e::contract::{caller, pool};

    let server = RedisServer::start()?;
    let mut config = redis_config(server.url());
    // Touches fall due after 1.5 s and are flushed 100 ms later, before the
    // leases run out at 2 s, so no call below reaches Redis but the touches
    // and this test's own `list`s.
    config.touch_interval = Duration::from_secs(2);
    let pools = Pools::new(vec![pool("p", 100)]);
    let store = RedisStore::new(&config, &pools, Arc::new(SystemClock))?;
    let p = Arc::new(pool("p", 100));
    let callers: Vec<_> = (0..50)
        .map(|i| caller(&format!("user{i}"), "erp-web"))
        .collect();
    let admit_all = || async {
        for who in &callers {
            let request = AdmitRequest::of(&p, &who.identity);
            store.admit(&request).await?;
        }
        anyhow::Ok(())
    };
    admit_all().await?;
    let first = store.list(&SessionFilter::default()).await?;
    assert_eq!(first.len(), 50);
    server.cli(&["CONFIG", "RESETSTAT"])?;
    let lists = std::sync::atomic::AtomicU64::new(0);
    session_gateway_e2e::eventually("every session touched", || async {
        admit_all().await?;
        lists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = store.list(&SessionFilter::default()).await?;
        let all_slid = now.len() == first.len()
            && now.iter().all(|s| {
                first
                    .iter()
                    .any(|f| f.id == s.id && s.last_seen_ms > f.last_seen_ms)
            });
        Ok(all_slid.then_some(()))
    })
    .await?;
    let stats = server.cli(&["INFO", "commandstats"])?;
    let evalsha = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let touch_calls = evalsha.saturating_sub(lists.load(std::sync::atomic::Ordering::Relaxed));
    assert!(
        (1..50).contains(&touch_calls),
        "50 sessions touched in {touch_calls} script calls\n{stats}"
    );
    Ok(())
}

/// Audit events reach the fleet's stream in the order they were queued, and
/// events queued while a call is in flight share the next call.
#[tokio::test]
async fn queued_audit_events_reach_the_stream_in_order_sharing_calls() -> anyhow::Result<()> {
    use session_gateway::clock::SystemClock;
    use session_gateway_e2e::contract::pool;

    let server = RedisServer::start()?;
    let pools = Pools::new(vec![pool("p", 1)]);
    let store = RedisStore::new(&redis_config(server.url()), &pools, Arc::new(SystemClock))?;
    store.ping().await?;
    server.cli(&["CONFIG", "RESETSTAT"])?;
    for n in 0..600 {
        store.queue_audit(vec![("event", "test".into()), ("n", n.to_string())]);
    }
    session_gateway_e2e::eventually("every event in the stream", || async {
        Ok((server.cli(&["XLEN", "{contract}:audit"])? == "600").then_some(()))
    })
    .await?;
    let first = server.cli(&["XRANGE", "{contract}:audit", "-", "+", "COUNT", "1"])?;
    let last = server.cli(&["XREVRANGE", "{contract}:audit", "+", "-", "COUNT", "1"])?;
    let n_of = |entry: &str| -> Option<String> {
        let mut lines = entry.lines().map(str::trim);
        lines.find(|l| *l == "n")?;
        lines.next().map(str::to_string)
    };
    assert_eq!(n_of(&first).as_deref(), Some("0"), "{first}");
    assert_eq!(n_of(&last).as_deref(), Some("599"), "{last}");
    let stats = server.cli(&["INFO", "commandstats"])?;
    let calls = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        (3..100).contains(&calls),
        "600 events appended in {calls} script calls (at most 256 per call)\n{stats}"
    );
    Ok(())
}

/// Subject revocations written before the issuer and subject were kept
/// (`s|<until>|<key>|<not before>`) still load, without names, and can be
/// deleted by their id; new ones keep their names through Redis.
#[tokio::test]
async fn subject_revocations_recorded_without_names_still_load_and_delete() -> anyhow::Result<()> {
    use session_gateway::clock::SystemClock;
    use session_gateway::session::identity::subject_key;
    use session_gateway_e2e::contract::pool;

    let server = RedisServer::start()?;
    let pools = Pools::new(vec![pool("p", 1)]);
    let store = RedisStore::new(&redis_config(server.url()), &pools, Arc::new(SystemClock))?;
    let until = 4_102_444_800_000u64; // 2100-01-01
    let key = subject_key("https://idp.example.com", "alice");
    let old = format!("s|{until}|{}|1000", key.to_hex());
    server.cli(&["ZADD", "{contract}:revocations", &until.to_string(), &old])?;
    let named = Revocation::of_subject("https://idp.example.com", "bob", 1000, until);
    store.revoke(&named).await?;

    let mut listed = store.revocations().await?;
    listed.sort_by_key(Revocation::id);
    let unnamed = Revocation::Subject {
        subject: key,
        named: None,
        not_before_ms: 1000,
        until_ms: until,
    };
    let mut expected = vec![unnamed.clone(), named.clone()];
    expected.sort_by_key(Revocation::id);
    assert_eq!(listed, expected);

    assert_eq!(store.delete_revocation(&unnamed.id()).await?, vec![unnamed]);
    assert_eq!(store.revocations().await?, vec![named]);
    Ok(())
}
