//! The store contract suite against the Redis store and a real
//! `redis-server` (one per case, on a free port, killed with the store).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_gateway::clock::ManualClock;
use session_gateway::config::{RedisConfig, RedisMode, Secret};
use session_gateway::licensing::Pools;
use session_gateway::session::contract::StoreFuture;
use session_gateway::session::{
    AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityKey, PoolUsage, RedisStore,
    Revocation, Session, SessionFilter, Store, StoreError, SubjectKey,
};
use session_gateway_e2e::RedisServer;

/// The Redis store, owning the `redis-server` it talks to.
struct StoreWithServer {
    store: Arc<RedisStore>,
    _server: RedisServer,
}

/// The test configuration: the fast path off (every call reaches Redis, so
/// the suite checks the scripts), strict outage behaviour.
fn redis_config(url: String) -> RedisConfig {
    RedisConfig {
        mode: RedisMode::Standalone,
        urls: vec![Secret::new(url)],
        master_name: None,
        key_prefix: "contract".into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        grace_period: Duration::ZERO,
        touch_interval: Duration::ZERO,
    }
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
impl Store for StoreWithServer {
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
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.store.revoke(revocation).await
    }
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.store.revocations().await
    }
    async fn link_sid(
        &self,
        sid_key: &str,
        session_id: &str,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        self.store.link_sid(sid_key, session_id, until_ms).await
    }
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<String>, StoreError> {
        self.store.linked_sessions(sid_key).await
    }
    async fn first_use(&self, key: &str, until_ms: u64) -> Result<bool, StoreError> {
        self.store.first_use(key, until_ms).await
    }
}

mod contract {
    session_gateway::store_contract_tests!(super::redis_factory);
}

/// A close on one instance drops the cached lease on another through the
/// revocation channel, so the next call there goes to Redis (and opens a new
/// session) instead of reusing the closed one from its cache.
#[tokio::test]
async fn revocations_drop_cached_leases_on_other_instances() -> anyhow::Result<()> {
    use session_gateway::clock::SystemClock;
    use session_gateway::session::contract::{caller, pool};
    use session_gateway::session::{Admission, CloseReason};

    let server = RedisServer::start()?;
    let mut config = redis_config(server.url());
    // Long enough that only the revocation can drop the lease in this test.
    config.touch_interval = Duration::from_secs(600);
    let pools = Pools::new(vec![pool("p", 5)]);
    let a = RedisStore::new(&config, &pools, Arc::new(SystemClock))?;
    let b = RedisStore::new(&config, &pools, Arc::new(SystemClock))?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let listener = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.listen_for_revocations(shutdown).await }
    });

    let alice = caller("alice", "erp-web");
    let p = Arc::new(pool("p", 5));
    let request = AdmitRequest {
        pool: &p,
        identity: &alice.identity,
        reserved: None,
    };
    let opened = a.admit(&request).await?.admission;
    let id = opened.session().map(|s| s.id.clone()).unwrap_or_default();
    // B confirms the session in Redis and caches the lease.
    assert!(matches!(b.admit(&request).await?.admission, Admission::Reused(ref s) if s.id == id));
    assert_eq!(b.leases().len(), 1);

    // Wait until B's subscription is live (its lease survives until then).
    session_gateway_e2e::eventually("B subscribed", || async {
        Ok((server
            .cli(&["PUBSUB", "NUMSUB", "contract:revocations"])?
            .ends_with('1'))
        .then_some(()))
    })
    .await?;
    let closed = a.close(&id, CloseReason::Admin).await?;
    assert!(closed.is_some());
    session_gateway_e2e::eventually("the revocation reaching B", || async {
        Ok(b.leases().is_empty().then_some(()))
    })
    .await?;
    match b.admit(&request).await?.admission {
        Admission::Opened { session, .. } => assert_ne!(session.id, id),
        other => panic!("B reused a closed session: {other:?}"),
    }
    let _ = stop.send(true);
    listener.await?;
    Ok(())
}
