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
    Session, SessionFilter, Store, StoreError, SubjectKey,
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
}

mod contract {
    session_gateway::store_contract_tests!(super::redis_factory);
}
