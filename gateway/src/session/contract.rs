//! The store contract suite: what every [`Store`] must do, as tests that any
//! implementation can run.
//!
//! The memory store runs it here (`cargo test -p session-gateway --lib
//! contract`); the Redis store runs it from the end-to-end crate against a
//! real `redis-server`, through the `contract-tests` feature:
//!
//! ```ignore
//! fn redis_factory(pools: Pools, clock: ManualClock) -> StoreFuture {
//!     Box::pin(async move { /* build the store on `clock` */ })
//! }
//!
//! mod redis_store {
//!     session_gateway::store_contract_tests!(super::redis_factory);
//! }
//! ```
//!
//! Each case is one `pub async fn` taking the factory; the
//! [`store_contract_tests!`](crate::store_contract_tests) macro turns every
//! case into a `#[tokio::test]`. A factory gets the pools and a
//! [`ManualClock`] and must build a fresh, empty store that reads all its time
//! from that clock: the suite moves time only with [`ManualClock::advance`],
//! so every expiry and `Retry-After` below is exact, never timed.
//!
//! Semantics the cases pin down beyond the trait's docs:
//!
//! * a session expires at `now >= min(idle expiry, absolute expiry)`;
//! * a session closed by time is reported exactly once, by `admit` (for its
//!   pool) or `sweep`, whichever finds it first; `find`, `get`, `list`,
//!   `usage`, `close` and `close_subject` treat it as absent without
//!   swallowing that report;
//! * `Retry-After` values are whole seconds rounded up, at least one;
//! * `replace_oldest` evicts the subject's least recently used session only
//!   when the new session then gets a seat; if the freed seat is one the
//!   caller may not take (a reserved seat of another group) and no other seat
//!   is free, the answer is `PoolFull` and nothing is evicted.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityRule, IdpSession,
    PoolUsage, Refusal, Session, SessionFilter, SessionIdentity, Store,
};
use crate::auth::Claims;
use crate::clock::{Clock, ManualClock, UnixMillis};
use crate::licensing::{
    ClaimMatch, Pool, Pools, ReservedSeats, SHARED, SubjectLimit, SubjectLimitPolicy,
};

/// What a factory returns: a future building the store under test.
pub type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>>;

/// Builds a fresh, empty store for the given pools, reading time from the
/// given clock. Any `fn(Pools, ManualClock) -> StoreFuture` is one.
pub trait StoreFactory: Fn(Pools, ManualClock) -> StoreFuture + Sync {}

impl<F> StoreFactory for F where F: Fn(Pools, ManualClock) -> StoreFuture + Sync {}

/// The factory of the memory store.
pub fn memory_store_factory(pools: Pools, clock: ManualClock) -> StoreFuture {
    Box::pin(async move {
        let store: Arc<dyn Store> = Arc::new(super::MemoryStore::new(&pools, Arc::new(clock)));
        store
    })
}

/// The time every case starts at (a realistic epoch time with a millisecond
/// part, so rounding mistakes show).
pub const T0: UnixMillis = 1_700_000_000_250;

/// The issuer of the suite's callers.
pub const ISSUER: &str = "https://idp.contract.test";

/// The idle timeout of the helper pools.
pub const IDLE: Duration = Duration::from_secs(20 * 60);

/// The absolute lifetime of the helper pools.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);

/// A pool with no rule, no cap, no reserved seats, [`IDLE`] and [`ABSOLUTE`].
pub fn pool(name: &str, limit: u32) -> Pool {
    Pool {
        name: name.into(),
        limit,
        rule: None,
        subject_limit: None,
        reserved: Vec::new(),
        idle_timeout: IDLE,
        absolute_timeout: ABSOLUTE,
    }
}

/// The pool with a per-subject cap.
pub fn with_subject_limit(mut pool: Pool, max: u32, policy: SubjectLimitPolicy) -> Pool {
    pool.subject_limit = Some(SubjectLimit { max, policy });
    pool
}

/// The pool with one more reserved group: `seats` seats for tokens whose
/// `claim` is one of `values`.
pub fn with_reserved(mut pool: Pool, claim: &str, values: &[&str], seats: u32) -> Pool {
    pool.reserved.push(ReservedSeats {
        rule: ClaimMatch::new(claim.into(), values.iter().map(|v| v.to_string())),
        seats,
    });
    pool
}

/// The pool with other timeouts.
pub fn with_timeouts(mut pool: Pool, idle: Duration, absolute: Duration) -> Pool {
    pool.idle_timeout = idle;
    pool.absolute_timeout = absolute;
    pool
}

/// A token holder: the claims (for reserved-group matching) and the session
/// identity the default rule derives from them.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's claims.
    pub claims: Claims,
    /// Its session identity (`iss`, `sub`, `client_id|azp`).
    pub identity: SessionIdentity,
}

/// A caller of [`ISSUER`] with a subject and a client.
pub fn caller(subject: &str, client: &str) -> Caller {
    caller_of(ISSUER, subject, client)
}

/// A caller of any issuer.
pub fn caller_of(issuer: &str, subject: &str, client: &str) -> Caller {
    let value = json!({ "iss": issuer, "sub": subject, "client_id": client });
    let claims = Claims::from_map(value.as_object().cloned().unwrap_or_default());
    let rule = IdentityRule::new(vec![
        vec!["iss".into()],
        vec!["sub".into()],
        vec!["client_id".into(), "azp".into()],
    ]);
    let identity = rule
        .derive(&claims)
        .expect("the suite's claims carry every identity claim");
    Caller { claims, identity }
}

/// A store built by a factory, with its clock and pools.
pub struct StoreUnderTest {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock it reads; only the suite moves it.
    pub clock: ManualClock,
    /// Its pools.
    pub pools: Pools,
}

impl StoreUnderTest {
    /// Builds a store on the pools with the clock at [`T0`].
    pub async fn new(factory: &dyn StoreFactory, pools: Vec<Pool>) -> Self {
        let clock = ManualClock::starting_at(T0);
        let pools = Pools::new(pools);
        let store = factory(pools.clone(), clock.clone()).await;
        Self {
            store,
            clock,
            pools,
        }
    }

    /// The clock's time.
    pub fn now(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Moves time forward by whole milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    /// A pool by name.
    pub fn pool(&self, name: &str) -> Arc<Pool> {
        Arc::clone(self.pools.get(name).expect("the case configured this pool"))
    }

    /// Admits a caller to a pool (its reserved group as the pool matches it).
    pub async fn admit(&self, pool: &str, who: &Caller) -> AdmitOutcome {
        self.admit_under_sid(pool, who, None).await
    }

    /// Admits a caller whose token names an identity provider session.
    pub async fn admit_under_sid(
        &self,
        pool: &str,
        who: &Caller,
        sid: Option<&str>,
    ) -> AdmitOutcome {
        let pool = self.pool(pool);
        let request = AdmitRequest {
            pool: &pool,
            identity: &who.identity,
            reserved: pool.reserved_bucket(&who.claims),
            sid: sid.map(|sid| IdpSession {
                issuer: ISSUER,
                sid,
            }),
            token: None,
        };
        self.store.admit(&request).await.expect("admit")
    }

    /// Admits a caller that must get a new session, with nothing expired on the way.
    pub async fn open(&self, pool: &str, who: &Caller) -> Session {
        let outcome = self.admit(pool, who).await;
        assert_eq!(outcome.expired, vec![], "nothing expired before this open");
        match outcome.admission {
            Admission::Opened {
                session,
                replaced: None,
            } => session,
            other => panic!("expected a new session for {who:?}, got {other:?}"),
        }
    }

    /// Admits a caller that must reuse its session, with nothing expired on the way.
    pub async fn reuse(&self, pool: &str, who: &Caller) -> Session {
        let outcome = self.admit(pool, who).await;
        assert_eq!(outcome.expired, vec![], "nothing expired before this reuse");
        match outcome.admission {
            Admission::Reused(session) => session,
            other => panic!("expected a reused session for {who:?}, got {other:?}"),
        }
    }

    /// Admits a caller that must be refused, with nothing expired on the way.
    pub async fn refuse(&self, pool: &str, who: &Caller) -> Refusal {
        let outcome = self.admit(pool, who).await;
        assert_eq!(
            outcome.expired,
            vec![],
            "nothing expired before this refusal"
        );
        match outcome.admission {
            Admission::Refused(refusal) => refusal,
            other => panic!("expected a refusal for {who:?}, got {other:?}"),
        }
    }

    /// Usage of every pool.
    pub async fn usage(&self) -> Vec<PoolUsage> {
        self.store.usage().await.expect("usage")
    }

    /// Seats in use in one pool.
    pub async fn in_use(&self, pool: &str) -> u32 {
        self.usage()
            .await
            .into_iter()
            .find(|u| u.pool == pool)
            .map(|u| u.in_use)
            .expect("usage lists every pool")
    }

    /// Every open session, oldest first.
    pub async fn list_all(&self) -> Vec<Session> {
        self.store
            .list(&SessionFilter::default())
            .await
            .expect("list")
    }

    /// Sessions matching a filter.
    pub async fn list(&self, pool: Option<&str>, subject: Option<&str>) -> Vec<Session> {
        let filter = SessionFilter {
            pool: pool.map(str::to_string),
            subject: subject.map(str::to_string),
        };
        self.store.list(&filter).await.expect("list")
    }

    /// Sweeps expired sessions.
    pub async fn sweep(&self) -> Vec<ClosedSession> {
        self.store.sweep().await.expect("sweep")
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).expect("test durations fit in u64")
}

fn ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.id.as_str()).collect()
}

fn closed_ids(closed: &[ClosedSession]) -> BTreeMap<String, CloseReason> {
    closed
        .iter()
        .map(|c| (c.session.id.clone(), c.reason))
        .collect()
}

fn usage_of(pool: &str, limit: u32, reserved: u32, in_use: u32) -> PoolUsage {
    PoolUsage {
        pool: pool.into(),
        limit,
        reserved,
        in_use,
    }
}

fn pool_full(limit: u32, in_use: u32, retry_after_secs: u64) -> Refusal {
    Refusal::PoolFull {
        limit,
        in_use,
        retry_after: Duration::from_secs(retry_after_secs),
    }
}

/// The first admission of an identity opens a session with every field set
/// from the clock and the pool's own timeouts.
pub async fn first_admit_opens(factory: &dyn StoreFactory) {
    let short = with_timeouts(
        pool("system", 2),
        Duration::from_secs(5 * 60),
        Duration::from_secs(3600),
    );
    let t = StoreUnderTest::new(factory, vec![pool("p", 3), short]).await;
    let alice = caller("alice", "erp-web");
    let session = t.open("p", &alice).await;
    assert_eq!(session.id.len(), 32, "a session id is 32 hex digits");
    assert!(session.id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(session.pool, "p");
    assert_eq!(session.bucket, SHARED);
    assert_eq!(session.identity, alice.identity.key);
    assert_eq!(session.issuer, ISSUER);
    assert_eq!(session.subject, "alice");
    assert_eq!(session.client.as_deref(), Some("erp-web"));
    assert_eq!(session.subject_key, alice.identity.subject_key);
    assert_eq!(session.created_ms, T0);
    assert_eq!(session.last_seen_ms, T0);
    assert_eq!(session.idle_expires_ms, T0 + ms(IDLE));
    assert_eq!(session.absolute_expires_ms, T0 + ms(ABSOLUTE));
    assert_eq!(t.in_use("p").await, 1);
    assert_eq!(t.in_use("system").await, 0);
    assert_eq!(t.list_all().await, vec![session.clone()]);
    assert_eq!(t.store.get(&session.id).await.expect("get"), Some(session));

    // Each pool applies its own timeouts.
    t.advance_ms(1_500);
    let bot = caller("night-batch", "erp-batch");
    let system = t.open("system", &bot).await;
    assert_eq!(system.created_ms, T0 + 1_500);
    assert_eq!(system.idle_expires_ms, T0 + 1_500 + 5 * 60_000);
    assert_eq!(system.absolute_expires_ms, T0 + 1_500 + 3_600_000);
    assert_eq!(t.in_use("system").await, 1);
}

/// A second admission of the same identity (a refreshed token) reuses the
/// session: same id, no new seat, last seen now, idle expiry slid exactly,
/// absolute expiry unchanged.
pub async fn same_identity_reuses_and_slides(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let opened = t.open("p", &alice).await;
    t.advance_ms(7 * 60_000 + 333);
    let reused = t.reuse("p", &alice).await;
    let now = T0 + 7 * 60_000 + 333;
    assert_eq!(reused.id, opened.id);
    assert_eq!(reused.created_ms, T0);
    assert_eq!(reused.last_seen_ms, now);
    assert_eq!(reused.idle_expires_ms, now + ms(IDLE));
    assert_eq!(reused.absolute_expires_ms, opened.absolute_expires_ms);
    assert_eq!(reused.bucket, opened.bucket);
    assert_eq!(t.in_use("p").await, 1);
    // The slide is stored, not only returned.
    assert_eq!(
        t.store.get(&opened.id).await.expect("get"),
        Some(reused.clone())
    );
    // Past the original idle expiry, the slid session is still open.
    t.advance(IDLE - Duration::from_millis(1));
    let again = t.reuse("p", &alice).await;
    assert_eq!(again.id, opened.id);
    assert_eq!(t.sweep().await, vec![]);
}

/// The same subject through another client is another identity and takes
/// another seat.
pub async fn other_client_of_same_subject_takes_second_seat(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let a = t.open("p", &web).await;
    let b = t.open("p", &desk).await;
    assert_ne!(a.id, b.id);
    assert_ne!(a.identity, b.identity);
    assert_eq!(a.subject_key, b.subject_key);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.reuse("p", &web).await.id, a.id);
    assert_eq!(t.reuse("p", &desk).await.id, b.id);
    assert_eq!(t.in_use("p").await, 2);
}

/// A full pool refuses with its limit, its use and the exact time until the
/// earliest seat frees, and the refusal changes nothing.
pub async fn pool_full_refuses_exactly_and_changes_nothing(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("other", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let carol = caller("carol", "erp-web");
    let a = t.open("p", &alice).await;
    t.advance_ms(100_500);
    let b = t.open("p", &bob).await;
    t.advance_ms(1_000);

    // Earliest expiry: alice at T0 + 1200 s; now T0 + 101.5 s → 1098.5 s → 1099 s.
    let usage_before = t.usage().await;
    let list_before = t.list_all().await;
    assert_eq!(t.refuse("p", &carol).await, pool_full(2, 2, 1_099));
    assert_eq!(t.usage().await, usage_before);
    assert_eq!(t.list_all().await, list_before);
    assert_eq!(
        t.store.find("p", &carol.identity.key).await.expect("find"),
        None
    );

    // After alice slides, bob's is the earliest: T0 + 1300.5 s; now T0 + 103.5 s → 1197 s exactly.
    t.advance_ms(2_000);
    assert_eq!(t.reuse("p", &alice).await.id, a.id);
    assert_eq!(t.refuse("p", &carol).await, pool_full(2, 2, 1_197));
    assert_eq!(t.list_all().await.len(), 2);
    assert_eq!(t.in_use("p").await, 2);
    // Refusal in one pool does not concern another.
    t.open("other", &carol).await;
    // The holders still reuse their sessions.
    assert_eq!(t.reuse("p", &bob).await.id, b.id);
}

/// After the idle timeout the seat is free: the next admission opens a new
/// session and reports the expired one, with reason `idle`, exactly once.
pub async fn idle_expiry_frees_the_seat_and_is_reported_once(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let a = t.open("p", &alice).await;
    assert_eq!(t.refuse("p", &bob).await, pool_full(1, 1, ms(IDLE) / 1000));

    t.advance(IDLE);
    assert_eq!(t.in_use("p").await, 0, "an expired session holds no seat");
    let outcome = t.admit("p", &bob).await;
    let Admission::Opened {
        session: b,
        replaced: None,
    } = outcome.admission
    else {
        panic!("bob should get the freed seat, got {:?}", outcome.admission);
    };
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: a.clone(),
            reason: CloseReason::Idle
        }]
    );
    assert_ne!(b.id, a.id);
    assert_eq!(t.sweep().await, vec![], "already reported by admit");
    assert_eq!(t.in_use("p").await, 1);
    // Alice's valid token now finds the pool full.
    assert_eq!(
        t.refuse("p", &alice).await,
        pool_full(1, 1, ms(IDLE) / 1000)
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
}

/// Sliding cannot extend a session past its absolute lifetime: it closes with
/// reason `absolute` and the identity gets a new session.
pub async fn absolute_lifetime_ends_an_active_session(factory: &dyn StoreFactory) {
    let hour = Duration::from_secs(3600);
    let t = StoreUnderTest::new(factory, vec![with_timeouts(pool("p", 1), IDLE, hour)]).await;
    let alice = caller("alice", "erp-web");
    let first = t.open("p", &alice).await;
    for _ in 0..3 {
        t.advance(Duration::from_secs(15 * 60));
        assert_eq!(t.reuse("p", &alice).await.id, first.id);
    }
    // At T0 + 45 min the idle expiry is T0 + 65 min, but it ends at T0 + 60 min.
    let slid = t.store.get(&first.id).await.expect("get").expect("open");
    assert_eq!(slid.idle_expires_ms, T0 + 65 * 60_000);
    assert_eq!(slid.expires_ms(), T0 + 60 * 60_000);
    t.advance(Duration::from_secs(15 * 60) - Duration::from_millis(1));
    assert_eq!(t.reuse("p", &alice).await.id, first.id);

    t.advance_ms(1);
    let outcome = t.admit("p", &alice).await;
    assert_eq!(outcome.expired.len(), 1);
    assert_eq!(outcome.expired[0].session.id, first.id);
    assert_eq!(outcome.expired[0].reason, CloseReason::Absolute);
    let Admission::Opened {
        session: second,
        replaced: None,
    } = outcome.admission
    else {
        panic!("a new session was expected, got {:?}", outcome.admission);
    };
    assert_ne!(second.id, first.id);
    assert_eq!(second.created_ms, T0 + 60 * 60_000);
    assert_eq!(second.absolute_expires_ms, T0 + 120 * 60_000);
    assert_eq!(t.in_use("p").await, 1);
    assert_eq!(t.sweep().await, vec![]);
}

/// The idle boundary is exact: 1 ms before the expiry the session is reused,
/// at the expiry it is closed.
pub async fn idle_expiry_boundary_is_exact(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let first = t.open("p", &alice).await;
    t.advance(IDLE - Duration::from_millis(1));
    let slid = t.reuse("p", &alice).await;
    assert_eq!(slid.id, first.id);
    assert_eq!(slid.idle_expires_ms, T0 + 2 * ms(IDLE) - 1);

    t.advance(IDLE);
    assert_eq!(t.now(), slid.idle_expires_ms);
    assert_eq!(
        t.store.find("p", &alice.identity.key).await.expect("find"),
        None
    );
    assert_eq!(t.store.get(&first.id).await.expect("get"), None);
    let outcome = t.admit("p", &alice).await;
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: slid,
            reason: CloseReason::Idle
        }]
    );
    let session = outcome.admission.session().expect("a seat is free");
    assert!(matches!(outcome.admission, Admission::Opened { .. }));
    assert_ne!(session.id, first.id);
}

/// Reserved seats: members take their group's seat first and shared seats
/// after; others never take a reserved seat, and their `Retry-After` only
/// counts seats they could use.
pub async fn reserved_seats_are_kept_for_their_group(factory: &dyn StoreFactory) {
    let p = with_reserved(pool("p", 2), "sub", &["cfo"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let cfo = caller("cfo", "erp-web");
    let cfo_desk = caller("cfo", "erp-desktop");
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");

    let c = t.open("p", &cfo).await;
    assert_eq!(c.bucket, 1, "the member takes the reserved seat first");
    t.advance(Duration::from_secs(10));
    let a = t.open("p", &alice).await;
    assert_eq!(a.bucket, SHARED);
    t.advance(Duration::from_secs(10));
    // Bob may only wait for alice's shared seat (T0 + 1210 s), not the cfo's.
    assert_eq!(t.refuse("p", &bob).await, pool_full(2, 2, 1_190));
    // The cfo's second client may use either: the cfo's frees first.
    assert_eq!(t.refuse("p", &cfo_desk).await, pool_full(2, 2, 1_180));

    // With the shared seat free, a member may take it.
    let closed = t
        .store
        .close(&a.id, CloseReason::Admin)
        .await
        .expect("close");
    assert_eq!(closed.map(|c| c.session.id), Some(a.id));
    let d = t.open("p", &cfo_desk).await;
    assert_eq!(d.bucket, SHARED);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.refuse("p", &bob).await, pool_full(2, 2, 1_200));

    // A fresh pool: two ordinary users cannot both get in, the member can.
    let p = with_reserved(pool("q", 2), "sub", &["cfo"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    t.open("q", &alice).await;
    assert_eq!(t.refuse("q", &bob).await, pool_full(2, 1, 1_200));
    assert_eq!(t.open("q", &cfo).await.bucket, 1);
    assert_eq!(
        t.usage().await,
        vec![usage_of("q", 2, 1, 2)],
        "usage reports the reserved seats"
    );
}

/// Per-subject cap with `deny`: one session more is refused with the cap and
/// the time until the subject's earliest session expires; reuse is never capped.
pub async fn subject_limit_deny(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 10), 2, SubjectLimitPolicy::Deny);
    let t = StoreUnderTest::new(factory, vec![p, pool("other", 10)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let mobile = caller("alice", "erp-mobile");
    let w = t.open("p", &web).await;
    t.advance_ms(5_000);
    t.open("p", &desk).await;
    t.advance_ms(2_500);
    // Earliest: web at T0 + 1200 s; now T0 + 7.5 s → 1192.5 s → 1193 s.
    let before = t.list_all().await;
    assert_eq!(
        t.refuse("p", &mobile).await,
        Refusal::SubjectLimit {
            limit: 2,
            retry_after: Duration::from_secs(1_193)
        }
    );
    assert_eq!(t.list_all().await, before);
    assert_eq!(t.in_use("p").await, 2);
    // Others and other pools are not concerned; reuse at the cap is fine.
    t.open("p", &caller("bob", "erp-web")).await;
    t.open("other", &mobile).await;
    assert_eq!(t.reuse("p", &web).await.id, w.id);
    // Another issuer's alice is another subject.
    t.open("p", &caller_of("https://other.idp", "alice", "erp-mobile"))
        .await;
    // Closing one of alice's sessions makes room.
    t.store
        .close(&w.id, CloseReason::Logout)
        .await
        .expect("close");
    t.open("p", &mobile).await;
}

/// Per-subject cap with `replace_oldest`: the subject's least recently used
/// session is closed with reason `replaced` and reported, and the new one
/// takes its seat, even when the pool is otherwise full.
pub async fn subject_limit_replace_oldest(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 3), 2, SubjectLimitPolicy::ReplaceOldest);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let mobile = caller("alice", "erp-mobile");
    let bob = caller("bob", "erp-web");
    let w = t.open("p", &web).await;
    t.advance_ms(1_000);
    let d = t.open("p", &desk).await;
    t.advance_ms(500);
    let b = t.open("p", &bob).await;
    t.advance_ms(500);
    // Web is older but used more recently than desk.
    let w = {
        let slid = t.reuse("p", &web).await;
        assert_eq!(slid.id, w.id);
        slid
    };
    t.advance_ms(1_000);

    let outcome = t.admit("p", &mobile).await;
    assert_eq!(outcome.expired, vec![]);
    let Admission::Opened {
        session: m,
        replaced: Some(replaced),
    } = outcome.admission
    else {
        panic!(
            "expected a new session replacing one, got {:?}",
            outcome.admission
        );
    };
    assert_eq!(
        replaced,
        ClosedSession {
            session: d.clone(),
            reason: CloseReason::Replaced
        }
    );
    assert_eq!(m.created_ms, T0 + 3_000);
    assert_eq!(
        t.in_use("p").await,
        3,
        "the replaced seat went to the new session"
    );
    assert_eq!(t.store.get(&d.id).await.expect("get"), None);
    assert_eq!(
        t.store.find("p", &desk.identity.key).await.expect("find"),
        None
    );
    let mut open: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    open.sort();
    let mut expected = vec![w.id.clone(), b.id.clone(), m.id.clone()];
    expected.sort();
    assert_eq!(open, expected);
    // A replaced session is not reported again.
    assert_eq!(t.sweep().await, vec![]);
    // Desk coming back replaces the least recently used one now: web.
    t.advance_ms(1_000);
    let outcome = t.admit("p", &desk).await;
    match outcome.admission {
        Admission::Opened {
            replaced: Some(r), ..
        } => {
            assert_eq!(r.session.id, w.id);
            assert_eq!(r.reason, CloseReason::Replaced);
        }
        other => panic!("expected web to be replaced, got {other:?}"),
    }
    assert_eq!(t.in_use("p").await, 3);
}

/// `replace_oldest` evicts only when the new session then gets a seat. Here
/// the subject's only session holds a seat reserved for a client the new
/// token does not use, and the shared seat is taken: freeing the reserved
/// seat would not seat the newcomer, so the answer is `PoolFull` and the old
/// session stays. (Refusing with `SubjectLimit` instead would be wrong: the
/// policy is to replace, and what is missing is a seat.)
pub async fn subject_limit_replace_oldest_never_evicts_without_a_seat(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 2), 1, SubjectLimitPolicy::ReplaceOldest);
    let p = with_reserved(p, "client_id", &["night-batch"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let batch = caller("alice", "night-batch");
    let web = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let a = t.open("p", &batch).await;
    assert_eq!(a.bucket, 1);
    t.advance_ms(2_000);
    let b = t.open("p", &bob).await;
    assert_eq!(b.bucket, SHARED);
    t.advance_ms(1_000);

    let before = t.list_all().await;
    // Only bob's shared seat is usable by alice's web client: T0 + 1202 s, now T0 + 3 s.
    assert_eq!(t.refuse("p", &web).await, pool_full(2, 2, 1_199));
    assert_eq!(t.list_all().await, before, "nothing was evicted");

    // Once a shared seat is free, the replacement happens.
    t.store
        .close(&b.id, CloseReason::Logout)
        .await
        .expect("close");
    let outcome = t.admit("p", &web).await;
    match outcome.admission {
        Admission::Opened {
            session,
            replaced: Some(r),
        } => {
            assert_eq!(session.bucket, SHARED);
            assert_eq!(r.session.id, a.id);
            assert_eq!(r.reason, CloseReason::Replaced);
        }
        other => panic!("expected the batch session to be replaced, got {other:?}"),
    }
    assert_eq!(t.in_use("p").await, 1);
}

/// Closing by id frees the seat and reports the session as last seen; a
/// second close finds nothing. An expired session cannot be closed by id
/// (it already closed by time) and is still reported by the sweep.
pub async fn close_by_id_frees_the_seat_once(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    t.open("p", &alice).await;
    t.advance_ms(4_000);
    let a = t.reuse("p", &alice).await;
    let closed = t
        .store
        .close(&a.id, CloseReason::Logout)
        .await
        .expect("close");
    assert_eq!(
        closed,
        Some(ClosedSession {
            session: a.clone(),
            reason: CloseReason::Logout
        })
    );
    assert_eq!(
        t.store
            .close(&a.id, CloseReason::Logout)
            .await
            .expect("close"),
        None
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
    assert_eq!(t.in_use("p").await, 0);
    assert_eq!(
        t.store
            .close("00000000000000000000000000000000", CloseReason::Admin)
            .await
            .expect("close"),
        None
    );

    let b = t.open("p", &bob).await;
    // Alice's valid token now finds bob in the seat.
    assert!(matches!(
        t.refuse("p", &alice).await,
        Refusal::PoolFull { .. }
    ));

    t.advance(IDLE);
    assert_eq!(
        t.store
            .close(&b.id, CloseReason::Admin)
            .await
            .expect("close"),
        None,
        "an expired session is no longer open"
    );
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(b.id.clone(), CloseReason::Idle)])
    );
    assert_eq!(t.sweep().await, vec![]);
}

/// Closing a subject closes all its sessions in every pool, and nobody else's.
pub async fn close_subject_closes_every_pool_and_nobody_else(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 5), pool("b", 5)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let bob = caller("bob", "erp-web");
    let other_alice = caller_of("https://other.idp", "alice", "erp-web");
    let s1 = t.open("a", &web).await;
    t.advance_ms(10);
    let s2 = t.open("a", &desk).await;
    t.advance_ms(10);
    let s3 = t.open("b", &web).await;
    let kept_bob = t.open("a", &bob).await;
    let kept_other = t.open("b", &other_alice).await;

    let closed = t
        .store
        .close_subject(&web.identity.subject_key, CloseReason::Backchannel)
        .await
        .expect("close_subject");
    assert_eq!(
        closed_ids(&closed),
        BTreeMap::from([
            (s1.id.clone(), CloseReason::Backchannel),
            (s2.id.clone(), CloseReason::Backchannel),
            (s3.id.clone(), CloseReason::Backchannel),
        ])
    );
    assert_eq!(closed.len(), 3);
    assert_eq!(t.in_use("a").await, 1);
    assert_eq!(t.in_use("b").await, 1);
    let mut open: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    open.sort();
    let mut expected = vec![kept_bob.id, kept_other.id];
    expected.sort();
    assert_eq!(open, expected);
    assert_eq!(
        t.store
            .close_subject(&web.identity.subject_key, CloseReason::Backchannel)
            .await
            .expect("close_subject"),
        vec![]
    );
    // The subject may come back with a new session.
    let back = t.open("a", &web).await;
    assert_ne!(back.id, s1.id);
}

/// `find` and `get` neither slide a session nor return an expired one, and
/// do not swallow its expiry report.
pub async fn find_and_get_do_not_slide_or_return_expired(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("q", 2)]).await;
    let alice = caller("alice", "erp-web");
    let a = t.open("p", &alice).await;
    t.advance(Duration::from_secs(5 * 60));
    let found = t.store.find("p", &alice.identity.key).await.expect("find");
    assert_eq!(found, Some(a.clone()), "find returns it unchanged");
    assert_eq!(t.store.get(&a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(
        t.store.find("q", &alice.identity.key).await.expect("find"),
        None,
        "another pool holds no session for it"
    );
    assert_eq!(
        t.store
            .find("p", &caller("bob", "erp-web").identity.key)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        t.store
            .get("ffffffffffffffffffffffffffffffff")
            .await
            .expect("get"),
        None
    );

    // Not slid: it expires at its original idle expiry.
    t.advance(IDLE - Duration::from_secs(5 * 60));
    assert_eq!(
        t.store.find("p", &alice.identity.key).await.expect("find"),
        None
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
    let outcome = t.admit("p", &caller("bob", "erp-web")).await;
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: a,
            reason: CloseReason::Idle
        }],
        "the expiry is still reported once"
    );
}

/// `list` filters by pool and subject and orders oldest first (then by id),
/// without expired sessions.
pub async fn list_filters_and_orders_oldest_first(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 10), pool("b", 10)]).await;
    let s1 = t.open("a", &caller("alice", "erp-web")).await;
    t.advance_ms(1_000);
    let s2 = t.open("b", &caller("bob", "erp-web")).await;
    t.advance_ms(1_000);
    let s3 = t.open("b", &caller("alice", "erp-desktop")).await;
    t.advance_ms(1_000);
    let s4 = t.open("a", &caller("carol", "erp-web")).await;
    t.advance_ms(1_000);
    // Reuse moves last seen, not the order.
    t.reuse("a", &caller("alice", "erp-web")).await;

    assert_eq!(
        ids(&t.list_all().await),
        vec![&*s1.id, &*s2.id, &*s3.id, &*s4.id]
    );
    assert_eq!(ids(&t.list(Some("a"), None).await), vec![&*s1.id, &*s4.id]);
    assert_eq!(
        ids(&t.list(None, Some("alice")).await),
        vec![&*s1.id, &*s3.id]
    );
    assert_eq!(ids(&t.list(Some("b"), Some("alice")).await), vec![&*s3.id]);
    assert_eq!(t.list(None, Some("nobody")).await, vec![]);
    assert_eq!(t.list(Some("unknown"), None).await, vec![]);
    let listed = t.list(Some("a"), Some("alice")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen_ms, T0 + 4_000);

    // Sessions opened in the same millisecond come by id.
    let mut same: Vec<String> = Vec::new();
    for name in ["dave", "erin", "frank"] {
        same.push(t.open("a", &caller(name, "erp-web")).await.id);
    }
    same.sort();
    let tail: Vec<String> = t
        .list(Some("a"), None)
        .await
        .into_iter()
        .filter(|s| s.created_ms == T0 + 4_000)
        .map(|s| s.id)
        .collect();
    assert_eq!(tail, same);

    // Bob's expires first (T0 + 1201 s): it disappears from the list.
    t.advance_ms(1_201_000 - 4_000);
    let left = t.list_all().await;
    assert!(left.iter().all(|s| s.id != s2.id));
    assert_eq!(ids(&left)[..3], [&*s1.id, &*s3.id, &*s4.id]);
    assert_eq!(t.list(Some("b"), Some("bob")).await, vec![]);
}

/// `usage` lists every configured pool in order, empty ones included, and
/// never counts expired sessions.
pub async fn usage_lists_every_pool_in_order(factory: &dyn StoreFactory) {
    let interactive = with_reserved(pool("interactive", 5), "sub", &["cfo"], 1);
    let interactive = with_reserved(interactive, "client_id", &["night-batch"], 1);
    let t = StoreUnderTest::new(
        factory,
        vec![interactive, pool("batch", 2), pool("default", 3)],
    )
    .await;
    t.store.ping().await.expect("ping");
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 0),
            usage_of("default", 3, 0, 0),
        ]
    );
    t.open("batch", &caller("alice", "erp-web")).await;
    t.open("batch", &caller("bob", "erp-web")).await;
    t.advance_ms(1_000);
    t.open("default", &caller("carol", "erp-web")).await;
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 2),
            usage_of("default", 3, 0, 1),
        ]
    );
    // T0 + idle: the batch sessions end now, carol's a second later.
    t.advance(IDLE - Duration::from_millis(1_000));
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 0),
            usage_of("default", 3, 0, 1),
        ],
        "expired sessions hold no seat, swept or not"
    );
    assert_eq!(t.sweep().await.len(), 2);
}

/// `sweep` closes exactly the expired sessions, with their reason, each once.
pub async fn sweep_closes_only_expired_once(factory: &dyn StoreFactory) {
    let system = with_timeouts(pool("system", 5), IDLE, Duration::from_secs(10 * 60));
    let t = StoreUnderTest::new(factory, vec![pool("p", 5), system]).await;
    let alice = t.open("p", &caller("alice", "erp-web")).await;
    let dave = t.open("system", &caller("dave", "erp-batch")).await;
    t.advance(Duration::from_secs(10 * 60));
    let bob = t.open("p", &caller("bob", "erp-web")).await;
    t.advance(Duration::from_secs(5 * 60));
    let carol = t.open("p", &caller("carol", "erp-web")).await;
    t.advance(Duration::from_secs(5 * 60));

    // T0 + 20 min: alice idle; dave ended at T0 + 10 min (absolute).
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([
            (alice.id.clone(), CloseReason::Idle),
            (dave.id.clone(), CloseReason::Absolute),
        ])
    );
    assert_eq!(swept.len(), 2);
    let alice_closed = swept
        .iter()
        .find(|c| c.session.id == alice.id)
        .expect("alice swept");
    assert_eq!(alice_closed.session, alice);
    assert_eq!(t.sweep().await, vec![]);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.in_use("system").await, 0);

    // T0 + 30 min: bob idle, carol still open.
    t.advance(Duration::from_secs(10 * 60));
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(bob.id.clone(), CloseReason::Idle)])
    );
    assert_eq!(ids(&t.list_all().await), vec![&*carol.id]);
    let outcome = t.admit("p", &caller("erin", "erp-web")).await;
    assert_eq!(
        outcome.expired,
        vec![],
        "swept sessions are not reported again"
    );
}

/// A sweep right at the moment a session ends: an absolute end (`at ==
/// absolute`) closes it even though its idle timer would run longer.
pub async fn absolute_end_is_exact_for_sweep(factory: &dyn StoreFactory) {
    let system = with_timeouts(pool("system", 1), IDLE, Duration::from_secs(10 * 60));
    let t = StoreUnderTest::new(factory, vec![system]).await;
    let who = caller("dave", "erp-batch");
    let s = t.open("system", &who).await;
    t.advance(Duration::from_secs(9 * 60));
    t.reuse("system", &who).await;
    t.advance(Duration::from_secs(60) - Duration::from_millis(1));
    assert_eq!(t.sweep().await, vec![]);
    assert_eq!(t.in_use("system").await, 1);
    t.advance_ms(1);
    assert_eq!(t.in_use("system").await, 0);
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(s.id, CloseReason::Absolute)])
    );
}

/// The same identity holds one session per pool, each counted in its own pool.
pub async fn each_pool_counts_its_own_seats(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 1), pool("b", 1)]).await;
    let alice = caller("alice", "erp-web");
    let in_a = t.open("a", &alice).await;
    let in_b = t.open("b", &alice).await;
    assert_ne!(in_a.id, in_b.id);
    assert_eq!(in_b.pool, "b");
    assert_eq!(t.in_use("a").await, 1);
    assert_eq!(t.in_use("b").await, 1);
    assert_eq!(
        t.store.find("b", &alice.identity.key).await.expect("find"),
        Some(in_b.clone())
    );
    t.store
        .close(&in_a.id, CloseReason::Logout)
        .await
        .expect("close");
    assert_eq!(t.reuse("b", &alice).await.id, in_b.id);
    assert_eq!(t.in_use("a").await, 0);
}

/// Fifty identities racing for ten seats: exactly ten sessions open, every
/// other caller is refused with the pool's exact state.
pub async fn concurrent_admissions_never_exceed_the_limit(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 10)]).await;
    let pool = t.pool("p");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let store = Arc::clone(&t.store);
        let pool = Arc::clone(&pool);
        let who = caller(&format!("user-{n}"), "erp-web");
        tasks.spawn(async move {
            let request = AdmitRequest {
                pool: &pool,
                identity: &who.identity,
                reserved: None,
                sid: None,
                token: None,
            };
            store.admit(&request).await.expect("admit")
        });
    }
    let mut opened: Vec<Session> = Vec::new();
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("admit task");
        assert_eq!(outcome.expired, vec![]);
        match outcome.admission {
            Admission::Opened {
                session,
                replaced: None,
            } => opened.push(session),
            Admission::Refused(refusal) => {
                assert_eq!(refusal, pool_full(10, 10, ms(IDLE) / 1000));
                refused += 1;
            }
            other => panic!("unexpected admission {other:?}"),
        }
    }
    assert_eq!(opened.len(), 10);
    assert_eq!(refused, 40);
    assert_eq!(t.in_use("p").await, 10);
    let distinct: BTreeSet<_> = opened.iter().map(|s| s.identity).collect();
    assert_eq!(distinct.len(), 10);
    let mut listed: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    listed.sort();
    let mut ids: Vec<String> = opened.into_iter().map(|s| s.id).collect();
    ids.sort();
    assert_eq!(listed, ids);
}

/// Parallel requests with one token share one session: one opens it, all
/// others reuse it.
pub async fn concurrent_same_identity_shares_one_session(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 5)]).await;
    let pool = t.pool("p");
    let who = caller("alice", "erp-web");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = Arc::clone(&t.store);
        let pool = Arc::clone(&pool);
        let identity = who.identity.clone();
        tasks.spawn(async move {
            let request = AdmitRequest {
                pool: &pool,
                identity: &identity,
                reserved: None,
                sid: None,
                token: None,
            };
            store.admit(&request).await.expect("admit")
        });
    }
    let mut opened = Vec::new();
    let mut reused = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("admit task").admission {
            Admission::Opened {
                session,
                replaced: None,
            } => opened.push(session),
            Admission::Reused(session) => reused.push(session),
            other => panic!("unexpected admission {other:?}"),
        }
    }
    assert_eq!(opened.len(), 1);
    assert_eq!(reused.len(), 19);
    assert!(reused.iter().all(|s| s.id == opened[0].id));
    assert_eq!(t.in_use("p").await, 1);
}

/// Declares one `#[tokio::test]` per contract case, each running the case
/// against the stores built by `$factory`: a path to a
/// `fn(Pools, ManualClock) -> StoreFuture` (see
/// [`session::contract`](crate::session::contract)). The calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// mod redis_store {
///     session_gateway::store_contract_tests!(super::redis_factory);
/// }
/// ```
/// Revocations are shared until they lapse, and recording one twice keeps
/// one.
pub async fn revocations_are_kept_until_they_lapse(factory: &dyn StoreFactory) {
    use crate::session::Revocation;
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let token = Revocation::Token {
        key: "jti-1".into(),
        until_ms: T0 + 60_000,
    };
    let subject = Revocation::of_subject(ISSUER, "alice", T0, T0 + 120_000);
    assert!(t.store.revocations().await.expect("revocations").is_empty());
    t.store.revoke(&token).await.expect("revoke");
    t.store.revoke(&subject).await.expect("revoke");
    t.store.revoke(&token).await.expect("revoke again");
    let mut now = t.store.revocations().await.expect("revocations");
    now.sort_by_key(Revocation::until_ms);
    assert_eq!(now, vec![token.clone(), subject.clone()]);
    t.advance_ms(60_000);
    assert_eq!(
        t.store.revocations().await.expect("revocations"),
        vec![subject.clone()],
        "the token revocation lapses exactly at its end"
    );
    t.advance_ms(60_000);
    assert!(t.store.revocations().await.expect("revocations").is_empty());
}

/// An admission refuses a revoked token, a token of a revoked identity
/// provider session and a token of a revoked subject issued before its
/// not-before, from the store's own record: an instance that has not heard
/// of a revocation yet still cannot reuse or open a session with it.
pub async fn admissions_refuse_revoked_tokens(factory: &dyn StoreFactory) {
    use crate::session::{IdpSession, PresentedToken, Revocation};
    let t = StoreUnderTest::new(factory, vec![pool("p", 3)]).await;
    async fn admit_token(
        t: &StoreUnderTest,
        who: &Caller,
        key: &str,
        issued_ms: Option<u64>,
        sid: Option<&str>,
    ) -> Admission {
        let pool = t.pool("p");
        let request = AdmitRequest {
            pool: &pool,
            identity: &who.identity,
            reserved: None,
            sid: sid.map(|sid| IdpSession {
                issuer: ISSUER,
                sid,
            }),
            token: Some(PresentedToken { key, issued_ms }),
        };
        t.store.admit(&request).await.expect("admit").admission
    }
    let (alice, bob, carol) = (
        caller("alice", "web"),
        caller("bob", "web"),
        caller("carol", "web"),
    );
    let admit = |who, key, issued, sid| admit_token(&t, who, key, issued, sid);
    assert!(
        admit(&alice, "t-1", Some(T0), None)
            .await
            .session()
            .is_some()
    );

    let revoked = |a: &Admission| matches!(a, Admission::Refused(Refusal::Revoked));
    t.store
        .revoke(&Revocation::Token {
            key: "t-1".into(),
            until_ms: T0 + 60_000,
        })
        .await
        .expect("revoke");
    assert!(
        revoked(&admit(&alice, "t-1", Some(T0), None).await),
        "the open session is not reused"
    );
    assert!(
        admit(&alice, "t-2", Some(T0), None)
            .await
            .session()
            .is_some(),
        "another token is fine"
    );

    let sid_key = IdpSession {
        issuer: ISSUER,
        sid: "s-1",
    }
    .key();
    t.store
        .revoke(&Revocation::Token {
            key: format!("sid:{sid_key}"),
            until_ms: T0 + 60_000,
        })
        .await
        .expect("revoke sid");
    assert!(revoked(&admit(&bob, "b-1", Some(T0), Some("s-1")).await));
    assert!(
        admit(&bob, "b-1", Some(T0), Some("s-2"))
            .await
            .session()
            .is_some()
    );

    t.store
        .revoke(&Revocation::of_subject(
            ISSUER,
            "carol",
            T0 + 5_000,
            T0 + 60_000,
        ))
        .await
        .expect("revoke subject");
    assert!(
        revoked(&admit(&carol, "c-1", Some(T0), None).await),
        "issued before"
    );
    assert!(
        revoked(&admit(&carol, "c-2", None, None).await),
        "undated counts as before"
    );
    assert!(
        admit(&carol, "c-3", Some(T0 + 5_000), None)
            .await
            .session()
            .is_some(),
        "issued at the not-before is fine"
    );

    let carol_revocation = Revocation::of_subject(ISSUER, "carol", T0, T0);
    t.store
        .delete_revocation(&carol_revocation.id())
        .await
        .expect("delete");
    assert!(
        admit(&carol, "c-1", Some(T0), None)
            .await
            .session()
            .is_some(),
        "a deleted revocation refuses nothing"
    );

    t.advance_ms(60_000);
    assert!(
        admit(&alice, "t-1", Some(T0), None)
            .await
            .session()
            .is_some(),
        "a lapsed revocation refuses nothing"
    );
}

/// A revocation is deleted by its id for everyone: every revocation of that
/// token or subject goes, whatever its times, and nothing else; an unknown
/// id or a lapsed revocation deletes nothing.
pub async fn revocations_are_deleted_by_id(factory: &dyn StoreFactory) {
    use crate::session::Revocation;
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let token = |key: &str, until_ms| Revocation::Token {
        key: key.into(),
        until_ms,
    };
    // Keys that look like other forms must not confuse the stores.
    let odd = token("a|b|subject:x", T0 + 90_000);
    let alice = Revocation::of_subject(ISSUER, "alice", T0, T0 + 120_000);
    let alice_again = Revocation::of_subject(ISSUER, "alice", T0 + 1, T0 + 150_000);
    let bob = Revocation::of_subject(ISSUER, "bob", T0, T0 + 120_000);
    for r in [
        &token("jti-1", T0 + 60_000),
        &token("jti-1", T0 + 70_000),
        &token("jti-2", T0 + 10_000),
        &odd,
        &alice,
        &alice_again,
        &bob,
    ] {
        t.store.revoke(r).await.expect("revoke");
    }
    let in_force = || async {
        let mut list = t.store.revocations().await.expect("revocations");
        list.sort_by_key(|r| (r.until_ms(), r.id()));
        list
    };

    let mut deleted = t.store.delete_revocation("jti-1").await.expect("delete");
    deleted.sort_by_key(Revocation::until_ms);
    assert_eq!(
        deleted,
        vec![token("jti-1", T0 + 60_000), token("jti-1", T0 + 70_000)]
    );
    assert_eq!(
        t.store.delete_revocation("jti-1").await.expect("again"),
        vec![],
        "deleting twice deletes nothing"
    );
    assert_eq!(
        t.store.delete_revocation("jti").await.expect("prefix"),
        vec![]
    );

    let mut deleted = t
        .store
        .delete_revocation(&alice.id())
        .await
        .expect("delete");
    deleted.sort_by_key(Revocation::until_ms);
    assert_eq!(deleted, vec![alice.clone(), alice_again.clone()]);
    assert_eq!(
        t.store.delete_revocation(&odd.id()).await.expect("delete"),
        vec![odd.clone()]
    );
    assert_eq!(
        in_force().await,
        vec![token("jti-2", T0 + 10_000), bob.clone()]
    );

    // Each deletion leaves the id until its revocation would have lapsed.
    let tombstones = || async {
        let mut ids = t.store.deleted_revocations().await.expect("tombstones");
        ids.sort();
        ids
    };
    let mut expected = vec!["jti-1".to_string(), alice.id(), odd.id()];
    expected.sort();
    assert_eq!(tombstones().await, expected);

    t.advance_ms(10_000);
    assert_eq!(
        t.store.delete_revocation("jti-2").await.expect("lapsed"),
        vec![],
        "a lapsed revocation is not deleted again"
    );
    assert_eq!(in_force().await, vec![bob]);
    // jti-1 (T0 + 70 s) and alice (T0 + 150 s) are still remembered, the
    // odd one until T0 + 90 s.
    t.advance_ms(75_000);
    let mut expected = vec![alice.id(), odd.id()];
    expected.sort();
    assert_eq!(tombstones().await, expected);
    t.advance_ms(80_000);
    assert_eq!(tombstones().await, Vec::<String>::new());
}

/// The admission that opens a session links it to the identity provider
/// session its token names, across pools; one that reuses it links it to
/// the (new) identity provider session of the reusing token too, keeping
/// the old link; refusing links nothing. One-time token ids (logout token
/// replay) hold until they lapse or are released.
pub async fn sid_links_and_one_time_ids_lapse(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("q", 1)]).await;
    let linked = |sid: &'static str| {
        let store = Arc::clone(&t.store);
        async move {
            let key = IdpSession {
                issuer: ISSUER,
                sid,
            }
            .key();
            let mut ids = store.linked_sessions(&key).await.expect("links");
            ids.sort();
            ids
        }
    };
    assert!(linked("sid-a").await.is_empty());
    let opened = |outcome: AdmitOutcome| match outcome.admission {
        Admission::Opened { session, .. } => session.id,
        other => panic!("expected a new session, got {other:?}"),
    };
    let alice = opened(
        t.admit_under_sid("p", &caller("alice", "web"), Some("sid-a"))
            .await,
    );
    let bob = opened(
        t.admit_under_sid("q", &caller("bob", "web"), Some("sid-a"))
            .await,
    );
    let carol = opened(
        t.admit_under_sid("p", &caller("carol", "web"), Some("sid-b"))
            .await,
    );
    // A reuse under a new identity provider session links it as well (a
    // new login of the same user and client); a refused admission links
    // nothing.
    let again = t
        .admit_under_sid("p", &caller("alice", "web"), Some("sid-c"))
        .await;
    assert!(matches!(again.admission, Admission::Reused(_)));
    let reused_again = t
        .admit_under_sid("p", &caller("alice", "web"), Some("sid-c"))
        .await;
    assert!(matches!(reused_again.admission, Admission::Reused(_)));
    let refused = t
        .admit_under_sid("q", &caller("dave", "web"), Some("sid-a"))
        .await;
    assert!(matches!(refused.admission, Admission::Refused(_)));

    let mut both = vec![alice.clone(), bob];
    both.sort();
    assert_eq!(linked("sid-a").await, both);
    assert_eq!(linked("sid-b").await, vec![carol]);
    assert_eq!(linked("sid-c").await, vec![alice.clone()], "linked once");
    assert!(linked("sid-d").await.is_empty());

    assert!(
        t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("first use")
    );
    assert!(
        !t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("replay")
    );
    assert!(
        t.store
            .first_use("jti-2", T0 + 60_000)
            .await
            .expect("another id")
    );
    // A released id counts as unused again; releasing an unknown id is
    // harmless; others are untouched.
    t.store.release_use("jti-1").await.expect("release");
    t.store.release_use("jti-unknown").await.expect("release");
    assert!(
        t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("released")
    );
    assert!(
        !t.store
            .first_use("jti-2", T0 + 60_000)
            .await
            .expect("still used")
    );
}

#[macro_export]
macro_rules! store_contract_tests {
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                $crate::session::contract::$case(&$factory).await;
            }
        )+
    };
    (@concurrent $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::session::contract::$case(&$factory).await;
            }
        )+
    };

    ($factory:expr) => {
        $crate::store_contract_tests!(@cases $factory;
            first_admit_opens,
            same_identity_reuses_and_slides,
            other_client_of_same_subject_takes_second_seat,
            pool_full_refuses_exactly_and_changes_nothing,
            idle_expiry_frees_the_seat_and_is_reported_once,
            absolute_lifetime_ends_an_active_session,
            idle_expiry_boundary_is_exact,
            reserved_seats_are_kept_for_their_group,
            subject_limit_deny,
            subject_limit_replace_oldest,
            subject_limit_replace_oldest_never_evicts_without_a_seat,
            close_by_id_frees_the_seat_once,
            close_subject_closes_every_pool_and_nobody_else,
            find_and_get_do_not_slide_or_return_expired,
            list_filters_and_orders_oldest_first,
            usage_lists_every_pool_in_order,
            sweep_closes_only_expired_once,
            absolute_end_is_exact_for_sweep,
            each_pool_counts_its_own_seats,
            revocations_are_kept_until_they_lapse,
            revocations_are_deleted_by_id,
            admissions_refuse_revoked_tokens,
            sid_links_and_one_time_ids_lapse,
        );
        $crate::store_contract_tests!(@concurrent $factory;
            concurrent_admissions_never_exceed_the_limit,
            concurrent_same_identity_shares_one_session,
        );
    };
}

#[cfg(test)]
mod memory_store {
    crate::store_contract_tests!(super::memory_store_factory);
}
