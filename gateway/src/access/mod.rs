//! The access decision: what the gateway decides about a token and a
//! session, free of HTTP and Pingora (docs/design.md §4 steps 2–4).
//!
//! One file per operation, each an `impl Access` block:
//!
//! * [`authenticate`]: bearer token → verified, unrevoked principal, and the
//!   route's scopes;
//! * [`admit`]: principal → session identity and pool → one store admission;
//! * [`queue`]: waiting for a seat in a pool with a queue;
//! * [`logout`]: the caller's own logout;
//! * [`backchannel`]: OpenID Connect Back-Channel Logout;
//! * [`revocations`]: recording, deleting and mirroring revocations (the
//!   mirror itself is [`revocation_list`]);
//! * [`operator`]: what the admin API does to sessions and seats;
//! * [`sweep`]: closing sessions that expired by time;
//! * [`tunnels`]: whether an upgraded connection's session still holds its
//!   seat;
//! * [`record`]: the audit and metric record of every session change.
//!
//! Every operation returns a domain outcome: [`Denial`] says why a request
//! is not let through, and `proxy::denial` words it as an HTTP problem. The
//! proxy and the admin API both call this layer; neither calls the store's
//! session or revocation operations itself.

pub mod admit;
pub mod authenticate;
pub mod backchannel;
pub mod denial;
pub mod logout;
pub mod operator;
pub mod queue;
pub mod record;
pub mod revocation_list;
pub mod revocations;
pub mod sharing;
pub mod sweep;
pub mod tunnels;
pub mod usage;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Verifier;
use crate::clock::SharedClock;
use crate::licensing::{Pool, Pools};
use crate::session::{IdentityRule, SharedStore, StoreError};
use crate::telemetry::Metrics;

pub use admit::Seated;
pub use backchannel::{BACKCHANNEL_LOGOUT_EVENT, BackchannelError};
pub use denial::Denial;
pub use revocation_list::RevocationList;
pub use tunnels::TunnelEnd;
pub use usage::{UsageError, UsageHistory};

/// The parts of the decision a live reload may replace: the issuers and
/// token rules, and the pools.
#[derive(Debug)]
pub struct AccessPolicy {
    /// Verifies tokens of the configured issuers.
    pub verifier: Arc<Verifier>,
    /// The license pools, in matching order.
    pub pools: Pools,
}

/// Everything the decision needs: the policy in force (swapped by a live
/// reload) and the parts that live as long as the process (store, metrics,
/// this instance's revocations, the identity rule).
pub struct Access {
    policy: ArcSwap<AccessPolicy>,
    identity: IdentityRule,
    store: SharedStore,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    revocations: RevocationList,
    /// One revocation sync at a time: the periodic one and one triggered by
    /// a new subscription must not both write back the same lost revocation.
    syncing: tokio::sync::Mutex<()>,
    /// This instance's last verdicts on sessions' clients (shared tokens).
    sightings: sharing::Sightings,
    /// This instance's requests waiting for a seat.
    waitlists: queue::Waitlists,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("pools", &self.policy.load().pools.len())
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The decision over these parts.
    pub fn new(
        policy: AccessPolicy,
        identity: IdentityRule,
        store: SharedStore,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            clock: Arc::clone(policy.verifier.clock()),
            policy: ArcSwap::from_pointee(policy),
            identity,
            store,
            metrics,
            revocations: RevocationList::new(),
            syncing: tokio::sync::Mutex::new(()),
            sightings: sharing::Sightings::default(),
            waitlists: queue::Waitlists::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// Puts a new policy in force for every decision that starts from now
    /// on (live reload). Sessions, seats and revocations are untouched.
    pub fn replace_policy(&self, policy: AccessPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// The verifier in force (for readiness and key refresh).
    pub fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.policy.load().verifier)
    }

    /// The pools in force.
    pub fn pools(&self) -> Pools {
        self.policy.load().pools.clone()
    }

    /// One pool in force by name, without copying the whole list (for the
    /// request path).
    fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.policy.load().pools.get(name).cloned()
    }

    /// The clock decisions are made by.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store, for what is not a decision: readiness pings and a
    /// reload's new pools.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Runs one store call, counted in the store metrics under `operation`.
    async fn timed<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = call.await;
        self.metrics
            .store_call(operation, started.elapsed(), &result);
        result
    }
}
