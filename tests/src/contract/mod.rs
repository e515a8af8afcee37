//! The store contract suite: what every store must do, as tests that any
//! implementation can run. One file per store trait:
//!
//! * [`SessionStore`](session_gateway::session::SessionStore) in
//!   [`sessions`];
//! * [`RevocationStore`](session_gateway::session::RevocationStore) in
//!   [`revocations`];
//! * [`LogoutLedger`](session_gateway::session::LogoutLedger) in
//!   [`logout_ledger`];
//! * [`AuditSink`](session_gateway::session::AuditSink) in [`audit`];
//! * [`UsageLedger`](session_gateway::session::UsageLedger) in [`usage`];
//! * [`ClientLedger`](session_gateway::session::ClientLedger) in [`clients`];
//! * [`SeatQueue`](session_gateway::session::SeatQueue), with the tickets of
//!   the admission, in [`queue`].
//!
//! It lives in the end-to-end crate, not in the gateway, so the gateway
//! ships no test code and needs no feature for it. The memory store runs it
//! in `tests/tests/memory_store.rs`, the Redis store in
//! `tests/tests/redis_store.rs` against a real `redis-server`:
//!
//! ```ignore
//! fn redis_factory(pools: Pools, clock: ManualClock) -> StoreFuture {
//!     Box::pin(async move { /* build the store on `clock` */ })
//! }
//!
//! mod redis_store {
//!     session_gateway_e2e::store_contract_tests!(super::redis_factory);
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
//! A new store trait gets its own file here, its cases listed in the macro.
//!
//! Semantics the cases pin down beyond the traits' docs:
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

pub mod audit;
pub mod clients;
pub mod logout_ledger;
pub mod queue;
pub mod revocations;
pub mod sessions;
pub mod usage;

pub use audit::*;
pub use clients::*;
pub use logout_ledger::*;
pub use queue::*;
pub use revocations::*;
pub use sessions::*;
pub use usage::*;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use session_gateway::session::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityRule, IdpSession,
    MemoryStore, PoolUsage, Refusal, Session, SessionFilter, SessionIdentity, Store,
};

use session_gateway::auth::Claims;
use session_gateway::clock::{Clock, ManualClock, UnixMillis};
use session_gateway::licensing::{
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
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(&pools, Arc::new(clock)));
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
        overdraft: 0,
        shared_token: None,
        linger: Duration::ZERO,
        min_hold: Duration::ZERO,
        queue: None,
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
            ticket: None,
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
        waiting: 0,
    }
}

fn pool_full(limit: u32, in_use: u32, retry_after_secs: u64) -> Refusal {
    Refusal::PoolFull {
        limit,
        in_use,
        retry_after: Duration::from_secs(retry_after_secs),
    }
}

/// Declares one `#[tokio::test]` per contract case, each running the case
/// against the stores built by `$factory`: a path to a
/// `fn(Pools, ManualClock) -> StoreFuture` (see [`contract`](crate::contract)).
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
///
/// ```ignore
/// mod redis_store {
///     session_gateway_e2e::store_contract_tests!(super::redis_factory);
/// }
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                $crate::contract::$case(&$factory).await;
            }
        )+
    };
    (@concurrent $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::contract::$case(&$factory).await;
            }
        )+
    };

    ($factory:expr) => {
        $crate::store_contract_tests!(@cases $factory;
            first_admit_opens,
            same_identity_reuses_and_slides,
            other_client_of_same_subject_takes_second_seat,
            pool_full_refuses_exactly_and_changes_nothing,
            overdraft_admits_beyond_the_limit_up_to_its_size,
            held_seats_stay_with_their_identity,
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
            queued_audit_events_change_no_session,
            audit_events_read_back_newest_first_paged_filtered_and_followed,
            usage_history_of_a_scripted_day_is_exact,
            usage_history_of_a_reserved_group_counts_its_seats_only,
            clients_of_a_session_are_counted_within_the_window,
            a_client_beyond_the_bound_is_not_recorded,
            waiting_callers_get_freed_seats_first_come_first_served,
            reserved_seats_do_not_wait_for_the_line,
            a_ticket_lapses_at_max_wait_and_gets_no_seat,
        );
        $crate::store_contract_tests!(@concurrent $factory;
            concurrent_admissions_never_exceed_the_limit,
            concurrent_same_identity_shares_one_session,
        );
    };
}
