//! Property test of the Redis store's lease cache with long-lived leases:
//! random sequences of calls, closes, sweeps and clock moves on a fleet of
//! two `RedisStore`s (leases on, each listening on the close channel) on
//! one real `redis-server`, checked after every step against Redis itself
//! through a third store whose lease cache is off (the oracle).
//!
//! The safety properties, whatever the sequence:
//!
//! * every session a call is served, from a lease or not, is open in Redis
//!   at that moment and is its identity's session there (never one that
//!   idled out, ran out of absolute time or was closed);
//! * once a close has been published and heard, no instance serves the
//!   closed session (each close waits until no instance would, then the
//!   next calls are checked by the first property);
//! * seats in Redis never exceed the limit.
//!
//! Time is a [`ManualClock`] shared by the stores (Redis's scripts and the
//! leases both age by it), so leases live long in "time" while the test runs
//! in milliseconds. Inputs come from `proptest` with a fixed seed;
//! `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore others.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use session_gateway::clock::{Clock as _, ManualClock};
use session_gateway::config::RedisConfig;
use session_gateway::licensing::{Pool, Pools};
use session_gateway::session::{AdmitRequest, CloseReason, RedisStore, SessionStore};
use session_gateway_e2e::contract::{Caller, T0, caller, pool, with_timeouts};
use session_gateway_e2e::{RedisServer, eventually};

const LIMIT: u32 = 2;
const IDLE: Duration = Duration::from_secs(10);
const ABSOLUTE: Duration = Duration::from_secs(35);
const CALLERS: usize = 4;

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Op {
    /// A call of caller `who` on instance `on`.
    Call { on: usize, who: usize },
    /// An operator closes `who`'s session through instance `on`.
    Close { on: usize, who: usize },
    /// Instance `on` sweeps expired sessions.
    Sweep { on: usize },
    /// Time passes.
    Advance { ms: u64 },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..CALLERS).prop_map(|(on, who)| Op::Call { on, who }),
        2 => (0..2usize, 0..CALLERS).prop_map(|(on, who)| Op::Close { on, who }),
        1 => (0..2usize).prop_map(|on| Op::Sweep { on }),
        3 => prop_oneof![
            Just(1u64),
            500..2_000u64,
            Just(9_999),
            Just(10_000),
            5_000..15_000u64,
        ]
        .prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The stores of one case.
struct Fleet {
    instances: Vec<Arc<RedisStore>>,
    oracle: Arc<RedisStore>,
    clock: ManualClock,
    pool: Arc<Pool>,
    callers: Vec<Caller>,
    stop: tokio::sync::watch::Sender<bool>,
    _server: RedisServer,
}

fn config(url: String, leases: bool) -> RedisConfig {
    let mut config = session_gateway_e2e::store_config(url, "leases");
    // Leases that outlive every idle timeout of the case: only the idle and
    // absolute ends Redis stated, and the close channel, end them.
    if leases {
        config.touch_interval = Duration::from_secs(3);
        config.lease_revalidate = Duration::from_secs(600);
    }
    config
}

async fn fleet() -> Result<Fleet, String> {
    let server = RedisServer::start().map_err(|e| format!("redis-server: {e:#}"))?;
    let clock = ManualClock::starting_at(T0);
    let the_pool = with_timeouts(pool("p", LIMIT), IDLE, ABSOLUTE);
    let pools = Pools::new(vec![the_pool.clone()]);
    let store = |leases| {
        RedisStore::new(
            &config(server.url(), leases),
            &pools,
            Arc::new(clock.clone()),
        )
        .map_err(|e| format!("redis store: {e}"))
    };
    let instances = vec![store(true)?, store(true)?];
    let oracle = store(false)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    for instance in &instances {
        let (instance, shutdown) = (Arc::clone(instance), shutdown.clone());
        tokio::spawn(async move { instance.listen_for_revocations(shutdown).await });
    }
    // Every instance subscribed: its leases are of a heard epoch.
    eventually("both instances listening", || async {
        Ok(instances
            .iter()
            .all(|i| {
                let epoch = i.leases().epoch();
                epoch > 0 && epoch % 2 == 0
            })
            .then_some(()))
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(Fleet {
        instances,
        oracle,
        clock,
        pool: Arc::new(the_pool),
        callers: (0..CALLERS)
            .map(|n| caller(&format!("user-{n}"), "erp-web"))
            .collect(),
        stop,
        _server: server,
    })
}

impl Fleet {
    fn request(&self, who: usize) -> AdmitRequest<'_> {
        AdmitRequest::of(&self.pool, &self.callers[who].identity)
    }

    /// Waits until no instance would serve `who` from a lease.
    async fn no_lease_serves(&self, who: usize) -> Result<(), String> {
        let key = self.callers[who].identity.key;
        eventually("the close to reach every instance", || async {
            Ok(self
                .instances
                .iter()
                .all(|i| !i.leases().serves("p", &key))
                .then_some(()))
        })
        .await
        .map_err(|e| e.to_string())
    }

    async fn step(&self, op: &Op) -> Result<(), String> {
        let failed = |e: session_gateway::session::StoreError| format!("{op:?}: {e}");
        match *op {
            Op::Call { on, who } => {
                let outcome = self.instances[on]
                    .admit(&self.request(who))
                    .await
                    .map_err(failed)?;
                if let Some(served) = outcome.admission.session() {
                    let in_redis = self
                        .oracle
                        .find("p", &self.callers[who].identity.key)
                        .await
                        .map_err(failed)?;
                    if in_redis.as_ref().map(|s| &s.id) != Some(&served.id) {
                        return Err(format!(
                            "{op:?} was served session {} at {} ms, but Redis holds {:?} for that identity",
                            served.id,
                            self.clock.now_ms() - T0,
                            in_redis.map(|s| s.id)
                        ));
                    }
                }
            }
            Op::Close { on, who } => {
                let instance = &self.instances[on];
                let found = self
                    .oracle
                    .find("p", &self.callers[who].identity.key)
                    .await
                    .map_err(failed)?;
                if let Some(session) = found {
                    instance
                        .close(&session.id, CloseReason::Admin)
                        .await
                        .map_err(failed)?;
                    self.no_lease_serves(who).await?;
                }
            }
            Op::Sweep { on } => {
                self.instances[on].sweep().await.map_err(failed)?;
            }
            Op::Advance { ms } => self.clock.advance(Duration::from_millis(ms)),
        }
        let usage = self.oracle.usage().await.map_err(failed)?;
        if usage.iter().any(|u| u.in_use > u.limit) {
            return Err(format!("after {op:?}: seats over the limit: {usage:?}"));
        }
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let fleet = fleet().await?;
        let mut result = Ok(());
        for (n, op) in ops.iter().enumerate() {
            if let Err(e) = fleet.step(op).await {
                result = Err(format!("step {n}: {e}"));
                break;
            }
        }
        let _ = fleet.stop.send(true);
        result
    })
}

#[test]
fn long_lived_leases_never_serve_a_session_redis_no_longer_holds() {
    let defaults = Config::default();
    let config = Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            defaults.cases
        } else {
            24
        },
        rng_seed: match defaults.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x1ea5e),
            fixed => fixed,
        },
        failure_persistence: None,
        max_shrink_iters: 200,
        ..defaults
    };
    let seed = config.rng_seed;
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op_strategy(), 10..40), |ops| {
        run(&ops).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "a lease served what Redis no longer holds (seed {seed:?}).\n\
             minimal sequence: {ops:#?}\n\n{reason}"
        ),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
}
