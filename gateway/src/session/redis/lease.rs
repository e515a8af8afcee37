//! The local lease cache of one gateway instance (docs/architecture.md §5).
//!
//! A session this instance confirmed in Redis is reused without a round
//! trip for as long as that is safe: until its idle or absolute end as Redis
//! stated them at the confirmation, until a close of it is heard on the
//! channel, until the end of the epoch (below), and at most
//! `lease_revalidate` after the confirmation (the safety net). Its idle
//! timer is slid in Redis by an asynchronous touch, at most one per lease
//! and so per session per `touch_interval`; a touch's answer confirms the
//! lease again, so a session in steady use costs one batched touch per
//! `touch_interval` whatever its request rate, and never a blocking round
//! trip. Closes made anywhere in the fleet are published and drop the lease
//! on every instance. Messages can only be lost
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

use crate::clock::SharedClock;

use crate::session::{IdentityKey, Session};

/// A cached confirmation of one session. Shared, so marking a touch as sent
/// never writes the entry back (which could resurrect a revoked lease).
#[derive(Debug)]
struct Lease {
    session: Session,
    /// When the call that Redis answered with this confirmation was made
    /// (before it was sent, so every bound below errs on the short side).
    confirmed: LeaseTime,
    /// How long after `confirmed` the session reaches its absolute end:
    /// taken from Redis's own times (absolute end minus the last-seen time
    /// Redis just wrote), so a skewed local clock changes nothing.
    lives_for: Duration,
    /// How long after `confirmed` the session idles out in Redis unless a
    /// touch or an admission slides it (idle end minus last seen).
    idle_for: Duration,
    /// The epoch in which Redis confirmed it.
    epoch: u64,
    /// When the last touch was sent, in ms after `confirmed`.
    touch_sent_ms: AtomicU64,
}

/// A moment on the clock leases are aged by ([`LeaseCache::now`]), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseTime(u64);

/// A close published by some instance: drop the lease of this identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseDrop {
    /// The pool.
    pub pool: String,
    /// The identity whose session closed.
    pub identity: IdentityKey,
}

impl LeaseDrop {
    /// Parses a revocation message (`<pool> <identity>`, the identity in
    /// base64url, or in hex from sessions of store layout 1).
    pub fn parse(message: &str) -> Option<Self> {
        let (pool, identity) = message.split_once(' ')?;
        Some(Self {
            pool: pool.to_string(),
            identity: crate::session::identity::Digest32::parse(identity)?,
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
    /// This host's monotonic clock, from the cache's creation on: leases
    /// never compare the local wall clock with Redis's times.
    origin: Instant,
    /// A manual clock instead (tests, where the store's time is manual too,
    /// so a lease ages with the sessions it caches).
    manual: Option<SharedClock>,
    touch_interval: Duration,
    revalidate: Duration,
    grace: Duration,
    /// Even while revocation messages are heard (or no listener has
    /// reported yet), odd while the subscription is broken.
    epoch: AtomicU64,
    leases: quick_cache::sync::Cache<(String, IdentityKey), Arc<Lease>>,
    /// When each recently dropped lease was dropped: an answer to a call
    /// asked before that moment is not cached. The close message and the
    /// answer come on different connections in no set order, so without
    /// this an admission or touch answered just before a close elsewhere
    /// could cache the closed session again, after its drop, for up to
    /// `revalidate`.
    dropped: quick_cache::sync::Cache<(String, IdentityKey), LeaseTime>,
}

/// How many recent drops are remembered: far more than the calls that can
/// be in flight while a close message arrives.
const REMEMBERED_DROPS: usize = 50_000;

impl std::fmt::Debug for LeaseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCache")
            .field("touch_interval", &self.touch_interval)
            .field("revalidate", &self.revalidate)
            .field("entries", &self.leases.len())
            .finish()
    }
}

impl LeaseCache {
    /// A cache whose leases are touched at most once per `touch_interval`
    /// and re-confirmed at least once per `revalidate`; a zero
    /// `touch_interval` or `revalidate` disables the fast path (every call
    /// goes to Redis).
    /// Leases age on this host's monotonic clock, or on `manual` when given.
    pub fn new(
        touch_interval: Duration,
        revalidate: Duration,
        grace: Duration,
        manual: Option<SharedClock>,
    ) -> Self {
        Self {
            origin: Instant::now(),
            manual,
            touch_interval,
            revalidate,
            grace,
            epoch: AtomicU64::new(0),
            leases: quick_cache::sync::Cache::new(200_000),
            dropped: quick_cache::sync::Cache::new(REMEMBERED_DROPS),
        }
    }

    /// Whether a call of this identity would be served from the cache now
    /// (for observers: unlike [`Self::fresh`], it claims no touch).
    pub fn serves(&self, pool: &str, identity: &IdentityKey) -> bool {
        self.servable(pool, identity).is_some()
    }

    /// The lease of this identity and its age, if it may be served.
    fn servable(&self, pool: &str, identity: &IdentityKey) -> Option<(Arc<Lease>, Duration)> {
        if !self.enabled() {
            return None;
        }
        let lease = self.leases.get(&(pool.to_string(), *identity))?;
        let age = self.since(lease.confirmed);
        let epoch = self.epoch.load(Ordering::Acquire);
        let stale = age >= self.revalidate
            || age >= lease.lives_for
            || age >= lease.idle_for
            || epoch % 2 == 1
            || lease.epoch != epoch;
        (!stale).then_some((lease, age))
    }

    /// Now, on the clock leases are aged by: take it before asking Redis,
    /// and confirm with it.
    pub fn now(&self) -> LeaseTime {
        LeaseTime(match &self.manual {
            Some(clock) => clock.now_ms(),
            None => u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// How long ago `then` was.
    fn since(&self, then: LeaseTime) -> Duration {
        Duration::from_millis(self.now().0.saturating_sub(then.0))
    }

    /// Whether the fast path is on.
    fn enabled(&self) -> bool {
        !self.touch_interval.is_zero() && !self.revalidate.is_zero()
    }

    /// The session of a lease that is still safe to serve, if any: within
    /// its idle and absolute ends and `revalidate` of its confirmation, in
    /// the epoch it was confirmed in, and not deaf.
    pub fn fresh(&self, pool: &str, identity: &IdentityKey) -> Option<FreshLease> {
        let (lease, age) = self.servable(pool, identity)?;
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        // One touch per `touch_interval`, but early enough that its answer
        // re-confirms the lease before `revalidate` makes it stale.
        let due_after = u64::try_from(self.touch_interval.min(self.revalidate * 3 / 4).as_millis())
            .unwrap_or(u64::MAX);
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

    /// Records that Redis confirmed this session, answering a call made at
    /// `asked_at` in epoch `epoch` (both taken before the call, so an answer
    /// that straddles a new epoch is not fresh in it, and the lease's ends
    /// count from before Redis set them).
    pub fn confirm(&self, session: Session, epoch: u64, asked_at: LeaseTime) {
        if !self.enabled() && self.grace.is_zero() {
            return;
        }
        let key = (session.pool.clone(), session.identity);
        if self.dropped.get(&key).is_some_and(|at| at >= asked_at) {
            // Dropped since the call was asked: the answer may predate the
            // close that dropped it.
            return;
        }
        let after_last_seen =
            |end: u64| Duration::from_millis(end.saturating_sub(session.last_seen_ms));
        self.leases.insert(
            key,
            Arc::new(Lease {
                lives_for: after_last_seen(session.absolute_expires_ms),
                idle_for: after_last_seen(session.idle_expires_ms),
                session,
                confirmed: asked_at,
                epoch,
                touch_sent_ms: AtomicU64::new(0),
            }),
        );
    }

    /// Drops a lease (its session closed), and refuses answers to calls
    /// asked until now.
    pub fn forget(&self, pool: &str, identity: &IdentityKey) {
        let key = (pool.to_string(), *identity);
        self.dropped.insert(key.clone(), self.now());
        self.leases.remove(&key);
    }

    /// A session confirmed within the grace period (Redis unreachable).
    pub fn within_grace(&self, pool: &str, identity: &IdentityKey) -> Option<Session> {
        if self.grace.is_zero() {
            return None;
        }
        let lease = self.leases.get(&(pool.to_string(), *identity))?;
        let age = self.since(lease.confirmed);
        (age < lease.lives_for && age < lease.idle_for && age < self.grace)
            .then(|| lease.session.clone())
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
    use crate::clock::ManualClock;
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
        let cache = LeaseCache::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
            None,
        );
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        // Redis's clock far behind this instance's: its times look long past.
        let mut s = session(id);
        s.last_seen_ms = 1_000;
        s.absolute_expires_ms = 3_600_000;
        cache.confirm(s.clone(), cache.epoch(), cache.now());
        assert!(
            cache.fresh("p", &id).is_some(),
            "an hour of life left by Redis's clock"
        );
        assert!(cache.within_grace("p", &id).is_some());
        // A session at its absolute end when confirmed is never fresh.
        s.absolute_expires_ms = s.last_seen_ms;
        cache.confirm(s, cache.epoch(), cache.now());
        assert!(cache.fresh("p", &id).is_none());
        assert!(cache.within_grace("p", &id).is_none());
    }

    /// A cache aged by a manual clock, and that clock.
    fn manual_cache(touch: u64, revalidate: u64, grace: u64) -> (LeaseCache, ManualClock) {
        let clock = ManualClock::starting_at(1_000_000);
        let secs = Duration::from_secs;
        let cache = LeaseCache::new(
            secs(touch),
            secs(revalidate),
            secs(grace),
            Some(Arc::new(clock.clone())),
        );
        (cache, clock)
    }

    #[test]
    fn a_lease_outlives_the_touch_interval_until_revalidation_is_due() {
        let (cache, clock) = manual_cache(1, 30, 0);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        cache.confirm(session(id), cache.epoch(), cache.now());
        clock.advance(Duration::from_secs(5));
        let hit = cache
            .fresh("p", &id)
            .expect("five seconds old, thirty allowed");
        assert!(hit.touch_due, "one touch per touch_interval");
        assert!(
            !cache.fresh("p", &id).expect("still fresh").touch_due,
            "and only one while it is under way"
        );
        clock.advance(Duration::from_secs(25));
        assert!(cache.fresh("p", &id).is_none(), "lease_revalidate reached");
    }

    #[test]
    fn a_lease_ends_with_the_idle_end_redis_stated() {
        let (cache, clock) = manual_cache(1, 60, 60);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let mut s = session(id);
        s.last_seen_ms = 50_000;
        s.idle_expires_ms = 60_000;
        cache.confirm(s, cache.epoch(), cache.now());
        clock.advance(Duration::from_millis(9_999));
        assert!(cache.fresh("p", &id).is_some(), "1 ms of idle left");
        clock.advance(Duration::from_millis(1));
        assert!(cache.fresh("p", &id).is_none(), "idled out in Redis");
        assert!(cache.within_grace("p", &id).is_none(), "not even in grace");
    }

    #[test]
    fn a_touch_falls_due_early_enough_to_beat_revalidation() {
        // A touch interval longer than revalidation: the touch is due at
        // three quarters of `revalidate`, so its answer comes before the
        // lease goes stale.
        let (cache, clock) = manual_cache(60, 20, 0);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        cache.confirm(session(id), cache.epoch(), cache.now());
        clock.advance(Duration::from_secs(14));
        assert!(!cache.fresh("p", &id).expect("fresh").touch_due);
        clock.advance(Duration::from_secs(1));
        assert!(cache.fresh("p", &id).expect("fresh").touch_due);
    }

    #[test]
    fn a_lease_counts_from_when_redis_was_asked() {
        let (cache, clock) = manual_cache(1, 30, 0);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let asked = cache.now();
        clock.advance(Duration::from_secs(29));
        // The answer took 29 s to arrive: one second of the lease is left.
        cache.confirm(session(id), cache.epoch(), asked);
        assert!(cache.fresh("p", &id).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(cache.fresh("p", &id).is_none());
    }

    #[test]
    fn an_answer_asked_before_a_drop_does_not_cache_the_session_again() {
        let (cache, clock) = manual_cache(1, 30, 0);
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let asked = cache.now();
        // The close message arrives while the admission is in flight.
        clock.advance(Duration::from_millis(5));
        cache.forget("p", &id);
        cache.confirm(session(id), cache.epoch(), asked);
        assert!(
            cache.fresh("p", &id).is_none(),
            "the answer may predate the close"
        );
        // A call asked after the drop is cached as usual.
        clock.advance(Duration::from_millis(1));
        cache.confirm(session(id), cache.epoch(), cache.now());
        assert!(cache.fresh("p", &id).is_some());
    }

    #[test]
    fn confirmed_leases_are_fresh_until_forgotten() {
        let cache = LeaseCache::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
            None,
        );
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        assert!(cache.fresh("p", &id).is_none());
        cache.confirm(session(id), cache.epoch(), cache.now());
        let hit = cache.fresh("p", &id).expect("fresh");
        assert!(!hit.touch_due, "just confirmed");
        cache.forget("p", &id);
        assert!(cache.fresh("p", &id).is_none());
    }

    #[test]
    fn no_lease_is_fresh_while_deaf_and_only_new_ones_after() {
        let cache = LeaseCache::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
            None,
        );
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let before = cache.epoch();
        cache.confirm(session(id), before, cache.now());
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
        cache.confirm(session(id), cache.epoch(), cache.now());
        assert!(cache.fresh("p", &id).is_none());
        cache.subscribed();
        assert!(cache.fresh("p", &id).is_none());
        // An answer to a call made before the new epoch is not fresh either.
        cache.confirm(session(id), before, cache.now());
        assert!(cache.fresh("p", &id).is_none());
        cache.confirm(session(id), cache.epoch(), cache.now());
        assert!(cache.fresh("p", &id).is_some());
        // A first subscription also starts a new epoch.
        let first = LeaseCache::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::ZERO,
            None,
        );
        first.confirm(session(id), first.epoch(), first.now());
        first.subscribed();
        assert!(first.fresh("p", &id).is_none());
    }

    #[test]
    fn a_zero_interval_disables_the_cache_and_grace_needs_a_period() {
        let cache = LeaseCache::new(
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::ZERO,
            None,
        );
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        cache.confirm(session(id), cache.epoch(), cache.now());
        assert!(cache.fresh("p", &id).is_none());
        assert!(cache.within_grace("p", &id).is_none());
        let cache = LeaseCache::new(
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(60),
            None,
        );
        cache.confirm(session(id), cache.epoch(), cache.now());
        assert!(cache.within_grace("p", &id).is_some());
    }

    #[test]
    fn revocations_parse() {
        let id = Digest32::of_parts("t", [b"x".as_slice()]);
        let r = LeaseDrop::parse(&format!("pool {}", id.to_hex())).unwrap();
        assert_eq!(r.pool, "pool");
        assert_eq!(r.identity, id);
        let r = LeaseDrop::parse(&format!("pool {}", id.to_base64())).unwrap();
        assert_eq!(r.identity, id);
        assert!(LeaseDrop::parse("nonsense").is_none());
        assert!(LeaseDrop::parse(&format!("pool {}", &id.to_base64()[..42])).is_none());
    }
}
