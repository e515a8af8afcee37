//! The sessions and seats of each pool, as the memory store keeps them
//! under its one lock: the open sessions by identity, the seat count per
//! bucket, and the indexes by expiry and by subject, so purging expired
//! sessions and computing `Retry-After` only touch the sessions that matter.
//!
//! Every map is a B-tree, not a hash map: a hash table doubles by moving
//! every entry in one go, and under the store's lock that step stalled every
//! proxy thread for up to 100 ms once a pool held ~115,000 sessions (see
//! docs/performance.md). A B-tree grows one node at a time, so no insert
//! costs more than O(log n); the keys are digests and session ids, cheap to
//! compare.
//!
//! Nothing here locks or awaits: [`State`] is what the store's mutex guards,
//! and every method is one step of a store call made while holding it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{UnixMillis, whole_seconds};
use crate::digest::Digest32;
use crate::licensing::{Bucket, Pool, SubjectLimitPolicy};
use crate::session::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityKey, Refusal,
    Session, SessionId, SubjectKey,
};
use crate::usage::{LedgerSnapshot, PoolLedger, Step, UsageRetention};

use super::holds::Hold;
use super::queue::Waitline;

/// Everything the store knows, guarded by one lock.
#[derive(Debug)]
pub(super) struct State {
    /// One entry per pool, in configuration order.
    pub(super) pools: Vec<PoolState>,
    /// Where each open session lives: pool position and identity key.
    pub(super) by_id: BTreeMap<SessionId, (usize, IdentityKey)>,
    /// How long the pools' usage history is kept.
    pub(super) usage: UsageRetention,
}

/// The sessions of one pool.
#[derive(Debug)]
pub(super) struct PoolState {
    /// The pool as configured (limit and reserved seats for `usage`).
    pub(super) pool: Arc<Pool>,
    /// Whether the configuration in force names the pool; a pool a reload
    /// removed keeps its open sessions (listed, closable, swept) but is no
    /// longer reported by `usage`.
    pub(super) configured: bool,
    /// Open sessions by identity.
    pub(super) sessions: BTreeMap<IdentityKey, Session>,
    /// Seats held per bucket (index = bucket).
    pub(super) per_bucket: Vec<u32>,
    /// Every session's identity keyed by `(expires_ms, id)`, earliest first.
    pub(super) by_expiry: BTreeMap<(UnixMillis, SessionId), IdentityKey>,
    /// Every session's `(subject, identity)`, so a subject's sessions are
    /// one range, for per-subject caps (one set: no allocation per subject).
    pub(super) by_subject: BTreeSet<(SubjectKey, IdentityKey)>,
    /// The pool's usage history, written at every seat change.
    pub(super) ledger: PoolLedger,
    /// The usage history of each reserved bucket (its sessions only).
    pub(super) bucket_ledgers: BTreeMap<Bucket, PoolLedger>,
    /// What a bucket whose history has no write yet reads as.
    pub(super) ledger_unwritten: PoolLedger,
    /// Seats kept for identities whose sessions closed (`linger`,
    /// `min_hold`); counted in `per_bucket` until they end.
    pub(super) holds: BTreeMap<IdentityKey, Hold>,
    /// Every hold's `(end, identity)`, earliest first.
    pub(super) hold_ends: BTreeSet<(UnixMillis, IdentityKey)>,
    /// Callers waiting for a seat (`queue`).
    pub(super) waitline: Waitline,
}

impl State {
    /// The position of a pool by name.
    pub(super) fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.pool.name == name)
    }

    /// Purges the request's pool, then reuses, opens or refuses, keeping
    /// the id index in step. A pool the store was built without is added
    /// (its seats are then counted from zero).
    pub(super) fn admit(&mut self, request: &AdmitRequest<'_>, now: UnixMillis) -> AdmitOutcome {
        let index = match self.pool_index(&request.pool.name) {
            Some(index) => index,
            None => {
                self.pools
                    .push(PoolState::new(Arc::clone(request.pool), now));
                self.pools.len() - 1
            }
        };
        let keep = self.usage;
        let pool = &mut self.pools[index];
        let expired = pool.purge(now, &keep);
        for lapse in pool.waitline.purge(now) {
            pool.ledger.refused(lapse, "queue_timeout", now, &keep);
        }
        let admission = pool.admit(request, now, &keep);
        // Every answer but a wait takes the caller's ticket out of line.
        if let Some(ticket) = request.ticket
            && !matches!(admission, Admission::Queued { .. })
        {
            pool.waitline.remove(&ticket.id);
        }
        for closed in &expired {
            self.by_id.remove(&closed.session.id);
        }
        if let Admission::Opened { session, replaced } = &admission {
            if let Some(replaced) = replaced {
                self.by_id.remove(&replaced.session.id);
            }
            self.by_id
                .insert(session.id.clone(), (index, session.identity));
        }
        // A session given back from its held seat is known by its id again.
        if let Admission::Reused(session) = &admission
            && self.pools[index].pool.holds_seats()
            && !self.by_id.contains_key(&session.id)
        {
            self.by_id
                .insert(session.id.clone(), (index, session.identity));
        }
        let pool = &mut self.pools[index];
        let seats_held = match &admission {
            Admission::Opened { session, replaced } => {
                if let Some(replaced) = replaced {
                    pool.record_closed(&replaced.session, now, replaced.reason, now, &keep);
                }
                Some(pool.record_opened(session, now, &keep))
            }
            // A lapsed ticket was written when it lapsed.
            Admission::Refused(Refusal::QueueTimeout { .. }) => None,
            Admission::Refused(refusal) => {
                pool.ledger.refused(now, refusal.as_str(), now, &keep);
                None
            }
            Admission::Reused(_) | Admission::Queued { .. } => None,
        };
        AdmitOutcome {
            admission,
            expired,
            seats_held,
        }
    }

    /// Whether a caller waits in a pool's line while a seat anyone may take
    /// is free (so the waiters should look again). Purged pools only.
    pub(super) fn seat_free_for_waiters(&self, pool: &str) -> bool {
        self.pool_index(pool)
            .and_then(|i| self.pools.get(i))
            .is_some_and(|p| p.waitline.len() > 0 && p.pool.common_free(&p.per_bucket) > 0)
    }

    /// Takes a ticket out of a pool's line, written into the usage history
    /// as a refusal when it timed out; whether it was there.
    pub(super) fn leave_queue(
        &mut self,
        pool: &str,
        ticket: &str,
        timed_out: bool,
        now: UnixMillis,
    ) -> bool {
        let keep = self.usage;
        let Some(index) = self.pool_index(pool) else {
            return false;
        };
        let pool = &mut self.pools[index];
        let removed = pool.waitline.remove(ticket);
        if removed && timed_out {
            pool.ledger.refused(now, "queue_timeout", now, &keep);
        }
        removed
    }

    /// An open session by id, with its pool position.
    pub(super) fn locate(&self, id: &str, now: UnixMillis) -> Option<(usize, &Session)> {
        let (index, identity) = self.by_id.get(id)?;
        let session = self.pools.get(*index)?.sessions.get(identity)?;
        (!session.is_expired_at(now)).then_some((*index, session))
    }

    /// Closes a session of a pool at `now` and returns it.
    pub(super) fn close(
        &mut self,
        index: usize,
        identity: &IdentityKey,
        reason: CloseReason,
        now: UnixMillis,
    ) -> Option<ClosedSession> {
        let keep = self.usage;
        let pool = self.pools.get_mut(index)?;
        let created = pool.sessions.get(identity)?.created_ms;
        let session = match pool.pool.hold_until(created, now, reason.keeps_seat()) {
            // The seat stays with the identity: the history goes on counting it.
            Some(until) => pool.hold_seat(identity, until, reason)?,
            None => {
                let session = pool.remove(identity)?;
                pool.record_closed(&session, now, reason, now, &keep);
                session
            }
        };
        self.by_id.remove(&session.id);
        Some(ClosedSession { session, reason })
    }

    /// A refusal the store decided before reaching the pool (a revocation).
    pub(super) fn refused(&mut self, pool: &str, reason: &str, now: UnixMillis) {
        let keep = self.usage;
        if let Some(index) = self.pool_index(pool) {
            self.pools[index].ledger.refused(now, reason, now, &keep);
        }
    }

    /// One pool's usage history (or one reserved bucket's) at `step` from
    /// interval `from` on.
    pub(super) fn ledger(
        &self,
        pool: &str,
        bucket: Option<Bucket>,
        step: Step,
        from: u64,
        now: UnixMillis,
    ) -> Option<LedgerSnapshot> {
        let pool = &self.pools[self.pool_index(pool)?];
        let in_bucket = |identity: &IdentityKey| {
            bucket.is_none_or(|b| pool.sessions.get(identity).is_some_and(|s| s.bucket == b))
        };
        let unpurged: Vec<UnixMillis> = pool
            .by_expiry
            .iter()
            .take_while(|((expires, _), _)| *expires <= now)
            .filter(|(_, identity)| in_bucket(identity))
            .map(|((expires, _), _)| *expires)
            .collect();
        let (ledger, held) = match bucket {
            None => (&pool.ledger, pool.sessions.len()),
            Some(b) => (
                pool.bucket_ledgers
                    .get(&b)
                    .unwrap_or(&pool.ledger_unwritten),
                pool.per_bucket.get(b).copied().unwrap_or(0) as usize,
            ),
        };
        let live = held.saturating_sub(unpurged.len()) as u64;
        Some(ledger.snapshot(step, from, now, live, unpurged))
    }

    /// Closes the expired sessions of every pool, earliest first per pool,
    /// and drops usage history past its retention.
    pub(super) fn sweep(&mut self, now: UnixMillis) -> Vec<ClosedSession> {
        let keep = self.usage;
        let mut closed = Vec::new();
        for pool in &mut self.pools {
            closed.extend(pool.purge(now, &keep));
            let linger = millis(pool.pool.absolute_timeout);
            pool.ledger.prune(now, &keep, linger);
            for ledger in pool.bucket_ledgers.values_mut() {
                ledger.prune(now, &keep, linger);
            }
        }
        for c in &closed {
            self.by_id.remove(&c.session.id);
        }
        closed
    }
}

impl PoolState {
    /// An empty pool whose history begins at `now`.
    pub(super) fn new(pool: Arc<Pool>, now: UnixMillis) -> Self {
        Self {
            ledger: PoolLedger::new(now),
            bucket_ledgers: BTreeMap::new(),
            ledger_unwritten: PoolLedger::new(now),
            holds: BTreeMap::new(),
            hold_ends: BTreeSet::new(),
            waitline: Waitline::default(),
            per_bucket: vec![0; pool.bucket_count()],
            pool,
            configured: true,
            sessions: BTreeMap::new(),
            by_expiry: BTreeMap::new(),
            by_subject: BTreeSet::new(),
        }
    }

    /// Takes a new definition of the pool, folding sessions of buckets it
    /// no longer has into the shared bucket (0).
    pub(super) fn reconfigure(&mut self, pool: Arc<Pool>) {
        let buckets = pool.bucket_count().max(1);
        let folded: u32 = self.per_bucket.iter().skip(buckets).sum();
        // Only a reload that drops a group holding seats pays for a pass
        // over the sessions; the usual reload touches none.
        if folded > 0 {
            for session in self.sessions.values_mut() {
                if session.bucket >= buckets {
                    session.bucket = 0;
                }
            }
        }
        self.per_bucket.resize(buckets, 0);
        self.per_bucket[0] += folded;
        self.pool = pool;
        self.configured = true;
    }

    /// Reuses the identity's session, or opens one if the subject's cap and
    /// a seat allow, or refuses (changing nothing). Expired sessions must
    /// have been purged first.
    pub(super) fn admit(
        &mut self,
        request: &AdmitRequest<'_>,
        now: UnixMillis,
        keep: &UsageRetention,
    ) -> Admission {
        let pool = request.pool;
        let identity = request.identity;
        if let Some(session) = self.slide(&identity.key, now, pool.idle_timeout) {
            return Admission::Reused(session);
        }
        // The identity's held seat: its session comes back, unless its
        // absolute lifetime is over or its subject is at its cap (then the
        // seat frees, and the admission below applies the cap).
        if let Some(hold) = self.end_hold(&identity.key) {
            let below_cap = pool.subject_limit.is_none_or(|cap| {
                self.subject_sessions(&identity.subject_key).len() < cap.max as usize
            });
            if hold.session.absolute_expires_ms > now && below_cap {
                let mut session = hold.session;
                session.last_seen_ms = now;
                session.idle_expires_ms = now.saturating_add(millis(pool.idle_timeout));
                self.index(session.clone());
                return Admission::Reused(session);
            }
            self.free_held_seat(&hold, now, now, keep);
        }

        // Callers waiting ahead of this one: its place in line, or (a
        // newcomer) the whole line. Shared and overdraft seats go to them
        // first. A ticket no longer in line lapsed: no seat, even a free one.
        let ahead = match request.ticket {
            Some(ticket) => match self.waitline.ahead_of(&ticket.id) {
                Some(ahead) => ahead,
                None => {
                    let earliest = self.earliest_expiry_in(pool.usable_buckets(request.reserved));
                    return Admission::Refused(Refusal::QueueTimeout {
                        limit: pool.limit,
                        retry_after: retry_after(earliest, now, pool.idle_timeout),
                    });
                }
            },
            None if pool.queue.is_some() => self.waitline.len(),
            None => 0,
        };

        // The subject's cap: refuse, or pick the session to replace.
        let mut evict: Option<IdentityKey> = None;
        if let Some(cap) = pool.subject_limit {
            let held = self.subject_sessions(&identity.subject_key);
            if held.len() >= cap.max as usize {
                match cap.policy {
                    SubjectLimitPolicy::Deny => {
                        let earliest = held.iter().map(|s| s.expires_ms()).min();
                        return Admission::Refused(Refusal::SubjectLimit {
                            limit: cap.max,
                            retry_after: retry_after(earliest, now, pool.idle_timeout),
                        });
                    }
                    SubjectLimitPolicy::ReplaceOldest => {
                        evict = held
                            .iter()
                            .min_by_key(|s| (s.last_seen_ms, s.created_ms, &s.id))
                            .map(|s| s.identity);
                    }
                }
            }
        }

        // A seat, counting the replaced session's seat as free.
        let mut in_use = self.per_bucket.clone();
        if let Some(victim) = evict.as_ref().and_then(|key| self.sessions.get(key))
            && let Some(count) = in_use.get_mut(victim.bucket)
        {
            *count = count.saturating_sub(1);
        }
        let Some(bucket) = pool.choose_bucket(request.reserved, &in_use, ahead) else {
            let earliest = self.earliest_expiry_in(pool.usable_buckets(request.reserved));
            let retry = retry_after(earliest, now, pool.idle_timeout);
            let in_use = self.in_use_at(now);
            // A waiter's own timer: exact, not rounded like `Retry-After`.
            let seat_frees_in = earliest.map(|at| Duration::from_millis(at.saturating_sub(now)));
            if let Some(ticket) = request.ticket {
                return Admission::Queued {
                    ticket: ticket.clone(),
                    ahead,
                    retry_after: seat_frees_in,
                };
            }
            return match pool.queue {
                Some(queue) if ahead < queue.max_length => {
                    let lapse = now.saturating_add(millis(queue.max_wait));
                    Admission::Queued {
                        ticket: self.waitline.push(lapse),
                        ahead,
                        retry_after: seat_frees_in,
                    }
                }
                Some(_) => Admission::Refused(Refusal::QueueFull {
                    limit: pool.limit,
                    in_use,
                    waiting: ahead,
                    retry_after: retry,
                }),
                None => Admission::Refused(Refusal::PoolFull {
                    limit: pool.limit,
                    in_use,
                    retry_after: retry,
                }),
            };
        };

        let replaced = evict
            .and_then(|key| self.remove(&key))
            .map(|session| ClosedSession {
                session,
                reason: CloseReason::Replaced,
            });
        let session = Session {
            id: crate::session::new_session_id(),
            pool: pool.name.clone(),
            bucket,
            identity: identity.key,
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            client: identity.client.clone(),
            subject_key: identity.subject_key,
            created_ms: now,
            last_seen_ms: now,
            idle_expires_ms: now.saturating_add(millis(pool.idle_timeout)),
            absolute_expires_ms: now.saturating_add(millis(pool.absolute_timeout)),
        };
        self.insert(session.clone());
        Admission::Opened { session, replaced }
    }

    /// Writes an open (at `now`) into the pool's history and its reserved
    /// bucket's; the seats held in the pool right after.
    fn record_opened(&mut self, session: &Session, now: UnixMillis, keep: &UsageRetention) -> u32 {
        let held = self.in_use_at(now);
        self.ledger
            .opened(now, held, Some(session.subject_key), now, keep);
        if session.bucket > 0 {
            let stale = self
                .by_expiry
                .iter()
                .take_while(|((expires, _), _)| *expires <= now)
                .filter(|(_, id)| {
                    self.sessions
                        .get(id)
                        .is_some_and(|s| s.bucket == session.bucket)
                })
                .count() as u32;
            let in_bucket = self.per_bucket.get(session.bucket).copied().unwrap_or(0);
            self.bucket_ledgers
                .entry(session.bucket)
                .or_insert_with(|| PoolLedger::new(now))
                .opened(now, in_bucket.saturating_sub(stale), None, now, keep);
        }
        held
    }

    /// Writes a close (at `at`) into the pool's history and its reserved
    /// bucket's.
    pub(super) fn record_closed(
        &mut self,
        session: &Session,
        at: UnixMillis,
        reason: CloseReason,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        let (reason, created) = (reason.as_str(), session.created_ms);
        self.ledger
            .closed(at, reason, created, Some(session.subject_key), now, keep);
        if session.bucket > 0 {
            self.bucket_ledgers
                .entry(session.bucket)
                .or_insert_with(|| PoolLedger::new(now))
                .closed(at, reason, created, None, now, keep);
        }
    }

    /// Open sessions at `now` (the held ones minus those already expired).
    pub(super) fn in_use_at(&self, now: UnixMillis) -> u32 {
        let expired = self
            .by_expiry
            .keys()
            .take_while(|(expires, _)| *expires <= now)
            .count();
        let holds_ended = self
            .hold_ends
            .iter()
            .take_while(|(until, _)| *until <= now)
            .count();
        (self.sessions.len() + self.holds.len()).saturating_sub(expired + holds_ended) as u32
    }

    /// Adds a session and indexes it.
    pub(super) fn insert(&mut self, session: Session) {
        if self.per_bucket.len() <= session.bucket {
            self.per_bucket.resize(session.bucket + 1, 0);
        }
        if let Some(count) = self.per_bucket.get_mut(session.bucket) {
            *count += 1;
        }
        self.by_expiry
            .insert((session.expires_ms(), session.id.clone()), session.identity);
        self.by_subject
            .insert((session.subject_key, session.identity));
        self.sessions.insert(session.identity, session);
    }

    /// Removes a session and its index entries.
    pub(super) fn remove(&mut self, identity: &IdentityKey) -> Option<Session> {
        let session = self.sessions.remove(identity)?;
        if let Some(count) = self.per_bucket.get_mut(session.bucket) {
            *count = count.saturating_sub(1);
        }
        self.by_expiry
            .remove(&(session.expires_ms(), session.id.clone()));
        self.by_subject.remove(&(session.subject_key, *identity));
        Some(session)
    }

    /// Removes and returns the sessions expired at `now`, earliest first,
    /// each written into the usage history when it expired.
    pub(super) fn purge(&mut self, now: UnixMillis, keep: &UsageRetention) -> Vec<ClosedSession> {
        let mut closed = Vec::new();
        while let Some((key, identity)) = self.by_expiry.first_key_value() {
            if key.0 > now {
                break;
            }
            let (key, identity) = (key.clone(), *identity);
            // An index entry without its session cannot happen; drop it
            // rather than loop on it.
            let Some(session) = self.sessions.get(&identity) else {
                self.by_expiry.remove(&key);
                continue;
            };
            let reason = CloseReason::of_expiry(session);
            let at = session.expires_ms();
            let until = self
                .pool
                .hold_until(session.created_ms, at, reason.keeps_seat());
            let session = match until {
                // Still held: reported closed, the seat stays counted.
                Some(until) if until > now => self.hold_seat(&identity, until, reason),
                // Freed, at the end of a hold that ended before this purge.
                _ => {
                    let removed = self.remove(&identity);
                    if let Some(session) = &removed {
                        self.record_closed(session, until.unwrap_or(at), reason, now, keep);
                    }
                    removed
                }
            };
            if let Some(session) = session {
                closed.push(ClosedSession { reason, session });
            }
        }
        // Holds that ended free their seats, each at its end.
        while let Some((until, identity)) = self.hold_ends.first().copied() {
            if until > now {
                break;
            }
            if let Some(hold) = self.end_hold(&identity) {
                self.free_held_seat(&hold, until, now, keep);
            }
        }
        closed
    }

    /// Reuses the identity's open session: last seen now, idle timer slid.
    pub(super) fn slide(
        &mut self,
        identity: &IdentityKey,
        now: UnixMillis,
        idle: Duration,
    ) -> Option<Session> {
        let session = self.sessions.get_mut(identity)?;
        let old_key = (session.expires_ms(), session.id.clone());
        session.last_seen_ms = now;
        session.idle_expires_ms = now.saturating_add(millis(idle));
        let new_key = (session.expires_ms(), session.id.clone());
        let session = session.clone();
        self.by_expiry.remove(&old_key);
        self.by_expiry.insert(new_key, *identity);
        Some(session)
    }

    /// The subject's sessions in this pool.
    pub(super) fn subject_sessions(&self, subject: &SubjectKey) -> Vec<&Session> {
        let all = (*subject, Digest32([0; 32]))..=(*subject, Digest32([u8::MAX; 32]));
        self.by_subject
            .range(all)
            .filter_map(|(_, key)| self.sessions.get(key))
            .collect()
    }

    /// The earliest expiry among sessions of the given buckets.
    pub(super) fn earliest_expiry_in(
        &self,
        buckets: impl Iterator<Item = Bucket>,
    ) -> Option<UnixMillis> {
        let buckets: Vec<Bucket> = buckets.collect();
        let session = self
            .by_expiry
            .iter()
            .find(|(_, identity)| {
                self.sessions
                    .get(identity)
                    .is_some_and(|s| buckets.contains(&s.bucket))
            })
            .map(|((expires, _), _)| *expires);
        let held = self
            .hold_ends
            .iter()
            .find(|(_, identity)| {
                self.holds
                    .get(identity)
                    .is_some_and(|h| buckets.contains(&h.session.bucket))
            })
            .map(|(until, _)| *until);
        session.into_iter().chain(held).min()
    }
}

/// A duration in whole milliseconds, saturating.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Time until `earliest`, in whole seconds rounded up (at least 1 s). When no
/// seat the caller could use will ever free by time (e.g. a pool whose seats
/// are all reserved for others), the pool's idle timeout is the hint.
pub(super) fn retry_after(
    earliest: Option<UnixMillis>,
    now: UnixMillis,
    idle: Duration,
) -> Duration {
    match earliest {
        Some(at) => whole_seconds(Duration::from_millis(at.saturating_sub(now))),
        None => whole_seconds(idle),
    }
}
