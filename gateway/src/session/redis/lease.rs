//! The local lease cache of one gateway instance (docs/architecture.md §5).
//!
//! A session this instance confirmed in Redis less than `touch_interval`
//! ago is reused without a round trip; its idle timer is slid in Redis by an
//! asynchronous touch once the lease is three quarters of `touch_interval`
//! old, so steady traffic of one session costs about one touch per
//! `touch_interval` whatever its request rate. The touch is answered (and
//! the lease confirmed again) before the lease runs out; if it is late, the
//! next call simply asks Redis itself. Closes made anywhere in the fleet are
//! published and drop the lease on every instance. Messages can only be lost
//! while the subscription is broken, so leases are tied to an *epoch*: a
//! break starts a deaf epoch in which no lease is fresh (every call asks
//! Redis), and the next subscription starts a new one, in which only leases
//! confirmed from then on are fresh. A lost message therefore cannot keep a
//! closed session usable, whatever `touch_interval` is.
//!
//! When Redis is unreachable, a lease confirmed within `grace_period` keeps
//! its session working (default 0: strict, no grace).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::session::{IdentityKey, Session};

/// A cached confirmation of one session. Shared, so marking a touch as sent
/// never writes the entry back (which could resurrect a revoked lease).
#[derive(Debug)]
struct Lease {
    session: Session,
    confirmed: Instant,
    /// How long after `confirmed` the session reaches its absolute end:
    /// taken from Redis's own times (absolute end minus the last-seen time
    /// Redis just wrote), so a skewed local clock changes nothing.
    lives_for: Duration,
    /// The epoch in which Redis confirmed it.
    epoch: u64,
    /// When the last touch was sent, in ms after `confirmed`.
    touch_sent_ms: AtomicU64,
}

/// A close published by some instance: drop the lease of this identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseDrop {
    /// The pool.
    pub pool: String,
    /// The identity whose session closed.
    pub identity: IdentityKey,
}

impl LeaseDrop {
    /// Parses a revocation message (`<pool> <identity hex>`).
    pub fn parse(message: &str) -> Option<Self> {
        let (pool, identity) = message.split_once(' ')?;
        Some(Self {
            pool: pool.to_string(),
            identity: crate::session::identity::Digest32::from_hex(identity)?,
        })
    }
}

/// What [`LeaseCache::fresh`] found.
#[derive(Debug, Clone)]
pub struct FreshLease {
    /// The session to reuse.
    pub session: Session,
    /// Whether the caller should send the asynchronous touch now.
    pub touch_due: bool,
}

/// The cache, bounded in entries.
pub struct LeaseCache {
    touch_interval: Duration,
    grace: Duration,
    /// Even while revocation messages are heard (or no listener has
    /// reported yet), odd while the subscription is broken.
    epoch: AtomicU64,
    leases: quick_cache::sync::Cache<(String, IdentityKey), Arc<Lease>>,
}

impl std::fmt::Debug for LeaseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCache")
            .field("touch_interval", &self.touch_interval)
            .field("entries", &self.leases.len())
            .finish()
    }
}

impl LeaseCache {
    /// A cache; a zero `touch_interval` disables the fast path (every call
    /// goes to Redis).
    pub fn new(touch_interval: Duration, grace: Duration) -> Self {
        Self {
            touch_interval,
            grace,
            epoch: AtomicU64::new(0),
            leases: quick_cache::sync::Cache::new(200_000),
        }
    }

    /// A session confirmed less than `touch_interval` ago, if any.
    pub fn fresh(&self, pool: &str, identity: &IdentityKey) -> Option<FreshLease> {
        if self.touch_interval.is_zero() {
            return None;
        }
        let lease = self.leases.get(&(pool.to_string(), *identity))?;
        let age = lease.confirmed.elapsed();
        let epoch = self.epoch.load(Ordering::Acquire);
        if age >= self.touch_interval
            || age >= lease.lives_for
            || epoch % 2 == 1
            || lease.epoch != epoch
        {
            return None;
        }
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        let due_after =
            u64::try_from((self.touch_interval * 3 / 4).as_millis()).unwrap_or(u64::MAX);
        let sent = lease.touch_sent_ms.load(Ordering::Relaxed);
        // One caller wins the right to send the touch of this lease; a touch
        // already sent (`sent` > 0) is not repeated while it is under way.
        let touch_due = sent == 0
            && age_ms >= due_after
            && lease
                .touch_sent_ms
                .compare_exchange(sent, age_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        Some(FreshLease {
            session: lease.session.clone(),
            touch_due,
        })
    }

    /// The current epoch: take it before asking Redis, and confirm with it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The revocation subscription broke: until [`Self::subscribed`], no
    /// lease is fresh, because closes published meanwhile go unheard.
    /// Leases still count for the grace period while Redis is unreachable.
    pub fn subscription_lost(&self) {
        let _ = self
            .epoch
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                (e % 2 == 0).then_some(e + 1)
            });
    }

    /// The revocation subscription is live (again): a new epoch, in which
    /// only leases confirmed from now on are fresh.
    pub fn subscribed(&self) {
        let _ = self
            .epoch
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                Some(if e % 2 == 1 { e + 1 } else { e + 2 })
            });
    }

    /// Records that Redis confirmed this session in epoch `epoch` (taken
    /// before the call, so an answer that straddles a new epoch is not
    /// fresh in it).
    pub fn confirm(&self, session: Session, epoch: u64) {
        if self.touch_interval.is_zero() && self.grace.is_zero() {
            return;
        }
        self.leases.insert(
            (session.pool.clone(), session.identity),
            Arc::new(Lease {
                lives_for: Duration::from_millis(
                    session
                        .absolute_expires_ms
                        .saturating_sub(session.last_seen_ms),
                ),
                session,
                confirmed: Instant::now(),
                epoch,
                touch_sent_ms: AtomicU64::new(0),
            }),
        );
    }

    /// Drops a lease (its session closed).
    pub fn forget(&self, pool: &str, identity: &IdentityKey) {
        self.leases.remove(&(pool.to_string(), *identity));
    }

    /// A session confirmed within the grace period (Redis unreachable).
    pub fn within_grace(&self, pool: &str, identity: &IdentityKey) -> Option<Session> {
        if self.grace.is_zero() {
            return None;
        }
        let lease = self.leases.get(&(pool.to_string(), *identity))?;
        let age = lease.confirmed.elapsed();
        (age < lease.lives_for && age < self.grace).then(|| lease.session.clone())
    }

    /// Number of cached leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is cached.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::identity::Digest32;

    fn session(identity: IdentityKey) -> Session {
        Session {
            id: "a".repeat(32),
            pool: "p".into(),
            bucket: 0,
            identity,
            issuer: "i".into(),
            subject: "s".into(),
            client: None,
            subject_key: identity,
            created_ms: 0,
            last_seen_ms: 0,
            idle_expires_ms: u64::MAX,
            absolute_expires_ms: u64::MAX,
        }
    }

    /// A lease is judged on this instance's monotonic clock from the moment
    /// Redis confirmed it, never by comparing the local wall clock with
    /// Redis's times: a skewed instance's cache used to miss (clock ahead)
    /// or serve sessions past their end (clock behind).
    #[test]
    fn freshness_does_not_depend_on_the_local_wall_clock() {
        let cache = LeaseCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        // Redis's clock far behind this instance's: its times look long past.
        let mut s = session(id);
        s.last_seen_ms = 1_000;
        s.absolute_expires_ms = 3_600_000;
        cache.confirm(s.clone(), cache.epoch());
        assert!(
            cache.fresh("p", &id).is_some(),
            "an hour of life left by Redis's clock"
        );
        assert!(cache.within_grace("p", &id).is_some());
        // A session at its absolute end when confirmed is never fresh.
        s.absolute_expires_ms = s.last_seen_ms;
        cache.confirm(s, cache.epoch());
        assert!(cache.fresh("p", &id).is_none());
        assert!(cache.within_grace("p", &id).is_none());
    }

    #[test]
    fn confirmed_leases_are_fresh_until_forgotten() {
        let cache = LeaseCache::new(Duration::from_secs(60), Duration::ZERO);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        assert!(cache.fresh("p", &id).is_none());
        cache.confirm(session(id), cache.epoch());
        let hit = cache.fresh("p", &id).expect("fresh");
        assert!(!hit.touch_due, "just confirmed");
        cache.forget("p", &id);
        assert!(cache.fresh("p", &id).is_none());
    }

    #[test]
    fn no_lease_is_fresh_while_deaf_and_only_new_ones_after() {
        let cache = LeaseCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let before = cache.epoch();
        cache.confirm(session(id), before);
        assert!(
            cache.fresh("p", &id).is_some(),
            "before any listener reports"
        );
        cache.subscription_lost();
        assert!(
            cache.fresh("p", &id).is_none(),
            "confirmed before the break"
        );
        assert!(cache.within_grace("p", &id).is_some(), "still within grace");
        // Confirmed while deaf: not fresh now, nor after the resubscription.
        cache.confirm(session(id), cache.epoch());
        assert!(cache.fresh("p", &id).is_none());
        cache.subscribed();
        assert!(cache.fresh("p", &id).is_none());
        // An answer to a call made before the new epoch is not fresh either.
        cache.confirm(session(id), before);
        assert!(cache.fresh("p", &id).is_none());
        cache.confirm(session(id), cache.epoch());
        assert!(cache.fresh("p", &id).is_some());
        // A first subscription also starts a new epoch.
        let first = LeaseCache::new(Duration::from_secs(60), Duration::ZERO);
        first.confirm(session(id), first.epoch());
        first.subscribed();
        assert!(first.fresh("p", &id).is_none());
    }

    #[test]
    fn a_zero_interval_disables_the_cache_and_grace_needs_a_period() {
        let cache = LeaseCache::new(Duration::ZERO, Duration::ZERO);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        cache.confirm(session(id), cache.epoch());
        assert!(cache.fresh("p", &id).is_none());
        assert!(cache.within_grace("p", &id).is_none());
        let cache = LeaseCache::new(Duration::ZERO, Duration::from_secs(60));
        cache.confirm(session(id), cache.epoch());
        assert!(cache.within_grace("p", &id).is_some());
    }

    #[test]
    fn revocations_parse() {
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let r = LeaseDrop::parse(&format!("pool {}", id.to_hex())).unwrap();
        assert_eq!(r.pool, "pool");
        assert_eq!(r.identity, id);
        assert!(LeaseDrop::parse("nonsense").is_none());
    }
}
