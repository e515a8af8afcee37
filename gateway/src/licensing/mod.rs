//! License pools: which pool a token draws its seat from, and the seat rules
//! of each pool (limit, reserved seats, per-subject cap, session timeouts).
//!
//! This module decides *which* seats a token may use; the session store
//! counts them. A pool's seats fall into buckets: bucket 0 holds the shared
//! seats (`limit - reserved`), bucket `g + 1` the seats reserved for the
//! tokens matching reserved group `g`. A token of a reserved group takes its
//! group's seat while one is free and a shared seat otherwise; everyone else
//! only ever takes shared seats. So named users are guaranteed a seat and
//! the pool never holds more than `limit` sessions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::claims::Claims;
use crate::usage::UsageRetention;

/// A claim test: true when the claim's value, or one of its values for an
/// array claim, is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMatch {
    /// Claim name (dotted names walk into nested objects).
    pub claim: String,
    /// Accepted values.
    pub any_of: BTreeSet<String>,
}

impl ClaimMatch {
    /// A claim test.
    pub fn new(claim: String, any_of: impl IntoIterator<Item = String>) -> Self {
        Self {
            claim,
            any_of: any_of.into_iter().collect(),
        }
    }

    /// Whether the token's claims pass the test.
    pub fn matches(&self, claims: &Claims) -> bool {
        claims
            .values(&self.claim)
            .iter()
            .any(|v| self.any_of.contains(v))
    }
}

/// What happens when a subject asks for one session more than its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectLimitPolicy {
    /// Refuse the new session (`session_limit`).
    Deny,
    /// Close the subject's least recently used session and open the new one.
    ReplaceOldest,
}

/// A cap on the sessions one subject may hold in a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectLimit {
    /// Most sessions per subject.
    pub max: u32,
    /// What to do at the cap.
    pub policy: SubjectLimitPolicy,
}

/// Seats only matching tokens may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedSeats {
    /// Who may take them.
    pub rule: ClaimMatch,
    /// How many.
    pub seats: u32,
}

/// One license pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Name (in headers, metrics, store keys).
    pub name: String,
    /// Most open sessions at once, reserved seats included.
    pub limit: u32,
    /// Which tokens belong here; `None` catches all (last pool only).
    pub rule: Option<ClaimMatch>,
    /// Per-subject cap.
    pub subject_limit: Option<SubjectLimit>,
    /// Reserved seat groups, in matching order.
    pub reserved: Vec<ReservedSeats>,
    /// Idle timeout of this pool's sessions.
    pub idle_timeout: Duration,
    /// Absolute lifetime of this pool's sessions.
    pub absolute_timeout: Duration,
    /// Sessions admitted beyond `limit` when no seat is free, at most this
    /// many at once (0: none). Each is marked overdraft for its life.
    pub overdraft: u32,
    /// Detection of one token used from more places than one user has.
    pub shared_token: Option<SharedTokenPolicy>,
    /// After a session closes (logout, back-channel logout, idle, absolute),
    /// its seat stays with its identity this long (zero: not at all).
    pub linger: Duration,
    /// A seat is held at least this long after its session opened, even if
    /// the session closes earlier (zero: not at all).
    pub min_hold: Duration,
    /// Callers that find no seat wait for one, first come first served
    /// across the fleet (`None`: they are refused at once).
    pub queue: Option<SeatQueuePolicy>,
}

/// How callers that find no seat wait for one (`[[pools]] queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatQueuePolicy {
    /// How long a caller waits at most; then it is refused as from a full
    /// pool.
    pub max_wait: Duration,
    /// How many callers may wait at once, fleet-wide; one more is refused
    /// at once.
    pub max_length: u32,
}

/// When a session counts as shared: more distinct client addresses or user
/// agents within `window` than one user plausibly has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedTokenPolicy {
    /// How far back sightings count.
    pub window: Duration,
    /// Distinct client addresses allowed within the window.
    pub max_addresses: u32,
    /// Distinct `User-Agent` values allowed within the window.
    pub max_user_agents: u32,
    /// What happens to the request that goes past either.
    pub on_shared: OnShared,
}

/// What a request of a shared session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShared {
    /// It passes; the sharing is audited and counted.
    Audit,
    /// It is refused (403 `token_shared`), audited and counted.
    Deny,
}

impl OnShared {
    /// The configuration's and the metrics' word.
    pub fn as_str(self) -> &'static str {
        match self {
            OnShared::Audit => "audit",
            OnShared::Deny => "deny",
        }
    }
}

/// Which bucket of a pool a seat is counted in: 0 shared, `g + 1` reserved
/// group `g`, and after the groups the overdraft bucket (when the pool has
/// an overdraft).
pub type Bucket = usize;

/// The shared bucket.
pub const SHARED: Bucket = 0;

impl Pool {
    /// Seats reserved across all groups.
    pub fn reserved_total(&self) -> u32 {
        self.reserved.iter().map(|r| r.seats).sum()
    }

    /// Seats in the shared bucket.
    pub fn shared_seats(&self) -> u32 {
        self.limit - self.reserved_total()
    }

    /// Number of buckets (shared, one per reserved group, and the
    /// overdraft bucket when the pool has one).
    pub fn bucket_count(&self) -> usize {
        1 + self.reserved.len() + usize::from(self.overdraft > 0)
    }

    /// The bucket of the sessions admitted beyond the limit, if the pool
    /// has an overdraft.
    pub fn overdraft_bucket(&self) -> Option<Bucket> {
        (self.overdraft > 0).then_some(1 + self.reserved.len())
    }

    /// Whether the pool keeps seats after their sessions close.
    pub fn holds_seats(&self) -> bool {
        !self.linger.is_zero() || !self.min_hold.is_zero()
    }

    /// Until when the seat of a session opened at `created_ms` and closed at
    /// `closed_ms` stays held for its identity (`linger`, `min_hold`), if
    /// past the close. Only a close by the user or by time keeps a seat: an
    /// operator's close, a replacement and an abandoned admission free it.
    pub fn hold_until(&self, created_ms: u64, closed_ms: u64, keeps_seat: bool) -> Option<u64> {
        if !keeps_seat {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let until = closed_ms
            .saturating_add(ms(self.linger))
            .max(created_ms.saturating_add(ms(self.min_hold)));
        (until > closed_ms).then_some(until)
    }

    /// Whether sessions of `bucket` were admitted beyond the limit.
    pub fn is_overdraft(&self, bucket: Bucket) -> bool {
        self.overdraft_bucket() == Some(bucket)
    }

    /// Capacity of a bucket.
    pub fn bucket_capacity(&self, bucket: Bucket) -> u32 {
        match bucket {
            SHARED => self.shared_seats(),
            b if self.is_overdraft(b) => self.overdraft,
            g => self.reserved.get(g - 1).map_or(0, |r| r.seats),
        }
    }

    /// The reserved group (as a bucket) a token belongs to, if any.
    pub fn reserved_bucket(&self, claims: &Claims) -> Option<Bucket> {
        self.reserved
            .iter()
            .position(|r| r.rule.matches(claims))
            .map(|g| g + 1)
    }

    /// The bucket a new session takes, given current use per bucket and
    /// the number of waiting callers that go first (`ahead`), or `None` when
    /// no seat the requester may use is free: its reserved group's, else a
    /// shared one, else (with an overdraft) one beyond the limit.
    ///
    /// Shared and overdraft seats go to waiting callers first: a requester
    /// takes one only while more are free than callers wait ahead of it. A
    /// reserved group's seat belongs to its group and never waits for
    /// anyone.
    pub fn choose_bucket(
        &self,
        reserved: Option<Bucket>,
        in_use: &[u32],
        ahead: u32,
    ) -> Option<Bucket> {
        let used = |b: Bucket| in_use.get(b).copied().unwrap_or(0);
        if let Some(b) = reserved
            && used(b) < self.bucket_capacity(b)
        {
            return Some(b);
        }
        if self.common_free(in_use) <= ahead {
            return None;
        }
        if used(SHARED) < self.shared_seats() {
            return Some(SHARED);
        }
        self.overdraft_bucket()
            .filter(|b| used(*b) < self.overdraft)
    }

    /// Free seats anyone may take: shared ones, and the overdraft's.
    pub fn common_free(&self, in_use: &[u32]) -> u32 {
        let used = |b: Bucket| in_use.get(b).copied().unwrap_or(0);
        let shared = self.shared_seats().saturating_sub(used(SHARED));
        let over = self
            .overdraft_bucket()
            .map_or(0, |b| self.overdraft.saturating_sub(used(b)));
        shared + over
    }

    /// The buckets whose freed seats a requester could take.
    pub fn usable_buckets(&self, reserved: Option<Bucket>) -> impl Iterator<Item = Bucket> {
        std::iter::once(SHARED)
            .chain(reserved)
            .chain(self.overdraft_bucket())
    }
}

/// The pool a token draws from and its reserved group there.
#[derive(Debug, Clone)]
pub struct PoolChoice {
    /// The pool.
    pub pool: Arc<Pool>,
    /// The token's reserved group as a bucket, if it has one.
    pub reserved: Option<Bucket>,
}

/// All pools, in matching order.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pools: Vec<Arc<Pool>>,
    usage: UsageRetention,
}

impl Pools {
    /// The configured pools, keeping their usage history for the default
    /// retention.
    pub fn new(pools: Vec<Pool>) -> Self {
        Self {
            pools: pools.into_iter().map(Arc::new).collect(),
            usage: UsageRetention::default(),
        }
    }

    /// The same pools, keeping their usage history for `retention`.
    pub fn with_usage_retention(mut self, retention: UsageRetention) -> Self {
        self.usage = retention;
        self
    }

    /// How long the stores keep the pools' usage history.
    pub fn usage_retention(&self) -> UsageRetention {
        self.usage
    }

    /// The first pool whose rule the token passes.
    pub fn select(&self, claims: &Claims) -> Option<PoolChoice> {
        let pool = self
            .pools
            .iter()
            .find(|p| p.rule.as_ref().is_none_or(|r| r.matches(claims)))?;
        Some(PoolChoice {
            reserved: pool.reserved_bucket(claims),
            pool: Arc::clone(pool),
        })
    }

    /// A pool by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Position of a pool, by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// All pools.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.iter()
    }

    /// Number of pools.
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        Claims::from_map(v.as_object().cloned().unwrap())
    }

    fn pool(
        name: &str,
        limit: u32,
        rule: Option<ClaimMatch>,
        reserved: Vec<ReservedSeats>,
    ) -> Pool {
        Pool {
            name: name.into(),
            limit,
            rule,
            subject_limit: None,
            reserved,
            idle_timeout: Duration::from_secs(60),
            absolute_timeout: Duration::from_secs(3600),
            overdraft: 0,
            shared_token: None,
            linger: Duration::ZERO,
            min_hold: Duration::ZERO,
            queue: None,
        }
    }

    fn rule(claim: &str, values: &[&str]) -> ClaimMatch {
        ClaimMatch::new(claim.into(), values.iter().map(|s| s.to_string()))
    }

    #[test]
    fn first_matching_pool_wins_and_catch_all_takes_the_rest() {
        let pools = Pools::new(vec![
            pool(
                "interactive",
                5,
                Some(rule("client_id", &["erp-web"])),
                vec![],
            ),
            pool("batch", 2, Some(rule("roles", &["batch"])), vec![]),
            pool("default", 1, None, vec![]),
        ]);
        let pick = |v| pools.select(&claims(v)).map(|c| c.pool.name.clone());
        assert_eq!(
            pick(json!({"client_id": "erp-web"})).as_deref(),
            Some("interactive")
        );
        assert_eq!(
            pick(json!({"roles": ["x", "batch"]})).as_deref(),
            Some("batch")
        );
        assert_eq!(
            pick(json!({"client_id": "other"})).as_deref(),
            Some("default")
        );
    }

    #[test]
    fn no_pool_when_nothing_matches_and_there_is_no_catch_all() {
        let pools = Pools::new(vec![pool(
            "only",
            1,
            Some(rule("client_id", &["a"])),
            vec![],
        )]);
        assert!(pools.select(&claims(json!({"client_id": "b"}))).is_none());
    }

    #[test]
    fn reserved_members_take_their_seat_then_shared_ones() {
        let p = pool(
            "p",
            4,
            None,
            vec![ReservedSeats {
                rule: rule("sub", &["cfo"]),
                seats: 1,
            }],
        );
        assert_eq!(p.shared_seats(), 3);
        let cfo = p.reserved_bucket(&claims(json!({"sub": "cfo"})));
        assert_eq!(cfo, Some(1));
        assert_eq!(p.reserved_bucket(&claims(json!({"sub": "bob"}))), None);
        // Reserved seat free: cfo takes it even with shared seats full.
        assert_eq!(p.choose_bucket(cfo, &[3, 0], 0), Some(1));
        // Reserved seat held: cfo falls back to a shared seat.
        assert_eq!(p.choose_bucket(cfo, &[2, 1], 0), Some(SHARED));
        assert_eq!(p.choose_bucket(cfo, &[3, 1], 0), None);
        // Others never touch the reserved seat.
        assert_eq!(p.choose_bucket(None, &[3, 0], 0), None);
        assert_eq!(p.choose_bucket(None, &[2, 0], 0), Some(SHARED));
    }

    #[test]
    fn waiting_callers_go_first_for_shared_and_overdraft_seats_only() {
        let mut p = pool(
            "p",
            4,
            None,
            vec![ReservedSeats {
                rule: rule("sub", &["cfo"]),
                seats: 1,
            }],
        );
        p.overdraft = 1;
        let cfo = Some(1);
        // One shared seat and the overdraft seat free: two waiting.
        let in_use = [2, 0, 0];
        assert_eq!(p.common_free(&in_use), 2);
        assert_eq!(p.choose_bucket(None, &in_use, 2), None);
        assert_eq!(p.choose_bucket(None, &in_use, 1), Some(SHARED));
        assert_eq!(p.choose_bucket(None, &[3, 0, 0], 1), None);
        assert_eq!(p.choose_bucket(None, &[3, 0, 0], 0), Some(2));
        // A reserved seat never waits for anyone.
        assert_eq!(p.choose_bucket(cfo, &[3, 0, 1], 5), Some(1));
        assert_eq!(p.choose_bucket(cfo, &[3, 1, 0], 1), None);
    }
}
