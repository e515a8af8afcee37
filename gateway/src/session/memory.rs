//! The memory store: every session of one gateway instance, held in process.
//!
//! This is the embedded default (`store = "memory"`) for a single instance
//! and for `session-gateway dev`. It implements the same store traits
//! ([`Store`](super::Store)) as the Redis store, and passes the same
//! contract suite (`tests/src/contract/`, run by
//! `tests/tests/memory_store.rs`), so the proxy cannot tell them apart.
//!
//! All state sits behind one mutex. Every operation is a short, synchronous
//! critical section (no `.await` while the lock is held), which makes each
//! store call atomic with respect to every other one, exactly as the Redis
//! store's Lua scripts are.
//!
//! Per pool the store keeps the open sessions by identity key, the seat count
//! per bucket, and an index ordered by expiry, so purging expired sessions
//! and computing `Retry-After` only touch the sessions that matter.
//!
//! Sessions that expired by time are reported exactly once, by whichever of
//! [`SessionStore::admit`] (for its pool) or [`SessionStore::sweep`] finds them first.
//! The read-only operations (`find`, `get`, `list`, `usage`) and the closing
//! ones (`close`, `close_subject`) treat them as absent but leave them in
//! place, so their `idle` / `absolute` close is never lost from the audit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    Admission, AdmitOutcome, AdmitRequest, AuditSink, CloseReason, ClosedSession, IdentityKey,
    LogoutLedger, PoolUsage, Refusal, Revocation, RevocationStore, Session, SessionFilter,
    SessionId, SessionStore, StoreError, SubjectKey,
};
use crate::clock::{SharedClock, UnixMillis};
use crate::licensing::{Bucket, Pool, Pools, SubjectLimitPolicy};

/// A [`Store`](super::Store) for a single gateway instance, holding
/// sessions in memory.
#[derive(Debug)]
pub struct MemoryStore {
    clock: SharedClock,
    state: Mutex<State>,
    /// Revocations in force (a separate lock: never taken with `state`).
    revocations: Mutex<Vec<Revocation>>,
    /// Ids of deleted revocations, until they would have lapsed.
    tombstones: Mutex<Vec<(String, UnixMillis)>>,
    /// Identity provider sessions → linked session ids, with their lapse.
    sids: Mutex<HashMap<String, Vec<(SessionId, UnixMillis)>>>,
    /// One-time token ids seen, with their lapse.
    used: Mutex<HashMap<String, UnixMillis>>,
}

/// Everything the store knows, guarded by one lock.
#[derive(Debug)]
struct State {
    /// One entry per pool, in configuration order.
    pools: Vec<PoolState>,
    /// Where each open session lives: pool position and identity key.
    by_id: HashMap<SessionId, (usize, IdentityKey)>,
}

/// The sessions of one pool.
#[derive(Debug)]
struct PoolState {
    /// The pool as configured (limit and reserved seats for `usage`).
    pool: Arc<Pool>,
    /// Whether the configuration in force names the pool; a pool a reload
    /// removed keeps its open sessions (listed, closable, swept) but is no
    /// longer reported by `usage`.
    configured: bool,
    /// Open sessions by identity.
    sessions: HashMap<IdentityKey, Session>,
    /// Seats held per bucket (index = bucket).
    per_bucket: Vec<u32>,
    /// Every session's identity keyed by `(expires_ms, id)`, earliest first.
    by_expiry: BTreeMap<(UnixMillis, SessionId), IdentityKey>,
    /// Identities of each subject in this pool, for per-subject caps.
    by_subject: HashMap<SubjectKey, HashSet<IdentityKey>>,
}

impl MemoryStore {
    /// An empty store for the configured pools, reading time from `clock`.
    pub fn new(pools: &Pools, clock: SharedClock) -> Self {
        let pools = pools
            .iter()
            .map(|p| PoolState::new(Arc::clone(p)))
            .collect();
        Self {
            clock,
            state: Mutex::new(State {
                pools,
                by_id: HashMap::new(),
            }),
            revocations: Mutex::new(Vec::new()),
            tombstones: Mutex::new(Vec::new()),
            sids: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Links a session to an identity provider session until `until_ms`.
    fn link_sid(&self, sid_key: &str, session_id: &str, until_ms: UnixMillis, now: UnixMillis) {
        // Only this sid's links are pruned here; the others at the next
        // sweep, so a session open never costs a scan of every sid.
        let mut sids = self.sids.lock();
        let links = sids.entry(sid_key.to_string()).or_default();
        links.retain(|(id, until)| id != session_id && *until > now);
        links.push((session_id.to_string(), until_ms));
    }
}

impl State {
    /// The position of a pool by name.
    fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.pool.name == name)
    }

    /// Purges the request's pool, then reuses, opens or refuses, keeping
    /// the id index in step. A pool the store was built without is added
    /// (its seats are then counted from zero).
    fn admit(&mut self, request: &AdmitRequest<'_>, now: UnixMillis) -> AdmitOutcome {
        let index = match self.pool_index(&request.pool.name) {
            Some(index) => index,
            None => {
                self.pools.push(PoolState::new(Arc::clone(request.pool)));
                self.pools.len() - 1
            }
        };
        let pool = &mut self.pools[index];
        let expired = pool.purge(now);
        let admission = pool.admit(request, now);
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
        AdmitOutcome { admission, expired }
    }

    /// An open session by id, with its pool position.
    fn locate(&self, id: &str, now: UnixMillis) -> Option<(usize, &Session)> {
        let (index, identity) = self.by_id.get(id)?;
        let session = self.pools.get(*index)?.sessions.get(identity)?;
        (!session.is_expired_at(now)).then_some((*index, session))
    }

    /// Removes a session of a pool and returns it.
    fn remove(&mut self, index: usize, identity: &IdentityKey) -> Option<Session> {
        let session = self.pools.get_mut(index)?.remove(identity)?;
        self.by_id.remove(&session.id);
        Some(session)
    }

    /// Closes the expired sessions of every pool, earliest first per pool.
    fn sweep(&mut self, now: UnixMillis) -> Vec<ClosedSession> {
        let mut closed = Vec::new();
        for pool in &mut self.pools {
            closed.extend(pool.purge(now));
        }
        for c in &closed {
            self.by_id.remove(&c.session.id);
        }
        closed
    }
}

impl PoolState {
    /// An empty pool.
    fn new(pool: Arc<Pool>) -> Self {
        Self {
            per_bucket: vec![0; pool.bucket_count()],
            pool,
            configured: true,
            sessions: HashMap::new(),
            by_expiry: BTreeMap::new(),
            by_subject: HashMap::new(),
        }
    }

    /// Takes a new definition of the pool, folding sessions of buckets it
    /// no longer has into the shared bucket (0).
    fn reconfigure(&mut self, pool: Arc<Pool>) {
        let buckets = pool.bucket_count().max(1);
        for session in self.sessions.values_mut() {
            if session.bucket >= buckets {
                session.bucket = 0;
            }
        }
        let folded: u32 = self.per_bucket.iter().skip(buckets).sum();
        self.per_bucket.resize(buckets, 0);
        self.per_bucket[0] += folded;
        self.pool = pool;
        self.configured = true;
    }

    /// Reuses the identity's session, or opens one if the subject's cap and
    /// a seat allow, or refuses (changing nothing). Expired sessions must
    /// have been purged first.
    fn admit(&mut self, request: &AdmitRequest<'_>, now: UnixMillis) -> Admission {
        let pool = request.pool;
        let identity = request.identity;
        if let Some(session) = self.slide(&identity.key, now, pool.idle_timeout) {
            return Admission::Reused(session);
        }

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
        let Some(bucket) = pool.choose_bucket(request.reserved, &in_use) else {
            let earliest = self.earliest_expiry_in(pool.usable_buckets(request.reserved));
            return Admission::Refused(Refusal::PoolFull {
                limit: pool.limit,
                in_use: self.sessions.len() as u32,
                retry_after: retry_after(earliest, now, pool.idle_timeout),
            });
        };

        let replaced = evict
            .and_then(|key| self.remove(&key))
            .map(|session| ClosedSession {
                session,
                reason: CloseReason::Replaced,
            });
        let session = Session {
            id: super::new_session_id(),
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

    /// Open sessions at `now` (the held ones minus those already expired).
    fn in_use_at(&self, now: UnixMillis) -> u32 {
        let expired = self
            .by_expiry
            .keys()
            .take_while(|(expires, _)| *expires <= now)
            .count();
        self.sessions.len().saturating_sub(expired) as u32
    }

    /// Adds a session and indexes it.
    fn insert(&mut self, session: Session) {
        if self.per_bucket.len() <= session.bucket {
            self.per_bucket.resize(session.bucket + 1, 0);
        }
        if let Some(count) = self.per_bucket.get_mut(session.bucket) {
            *count += 1;
        }
        self.by_expiry
            .insert((session.expires_ms(), session.id.clone()), session.identity);
        self.by_subject
            .entry(session.subject_key)
            .or_default()
            .insert(session.identity);
        self.sessions.insert(session.identity, session);
    }

    /// Removes a session and its index entries.
    fn remove(&mut self, identity: &IdentityKey) -> Option<Session> {
        let session = self.sessions.remove(identity)?;
        if let Some(count) = self.per_bucket.get_mut(session.bucket) {
            *count = count.saturating_sub(1);
        }
        self.by_expiry
            .remove(&(session.expires_ms(), session.id.clone()));
        if let Some(keys) = self.by_subject.get_mut(&session.subject_key) {
            keys.remove(identity);
            if keys.is_empty() {
                self.by_subject.remove(&session.subject_key);
            }
        }
        Some(session)
    }

    /// Removes and returns the sessions expired at `now`, earliest first.
    fn purge(&mut self, now: UnixMillis) -> Vec<ClosedSession> {
        let mut closed = Vec::new();
        while let Some((key, identity)) = self.by_expiry.first_key_value() {
            if key.0 > now {
                break;
            }
            let (key, identity) = (key.clone(), *identity);
            match self.remove(&identity) {
                Some(session) => closed.push(ClosedSession {
                    reason: CloseReason::of_expiry(&session),
                    session,
                }),
                // An index entry without its session cannot happen; drop it
                // rather than loop on it.
                None => {
                    self.by_expiry.remove(&key);
                }
            }
        }
        closed
    }

    /// Reuses the identity's open session: last seen now, idle timer slid.
    fn slide(
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
    fn subject_sessions(&self, subject: &SubjectKey) -> Vec<&Session> {
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|key| self.sessions.get(key))
            .collect()
    }

    /// The earliest expiry among sessions of the given buckets.
    fn earliest_expiry_in(&self, buckets: impl Iterator<Item = Bucket>) -> Option<UnixMillis> {
        let buckets: Vec<Bucket> = buckets.collect();
        self.by_expiry
            .iter()
            .find(|(_, identity)| {
                self.sessions
                    .get(identity)
                    .is_some_and(|s| buckets.contains(&s.bucket))
            })
            .map(|((expires, _), _)| *expires)
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration rounded up to whole seconds, at least one.
fn whole_seconds(d: Duration) -> Duration {
    let ms = millis(d);
    Duration::from_secs(ms.div_ceil(1000).max(1))
}

/// Time until `earliest`, in whole seconds rounded up (at least 1 s). When no
/// seat the caller could use will ever free by time (e.g. a pool whose seats
/// are all reserved for others), the pool's idle timeout is the hint.
fn retry_after(earliest: Option<UnixMillis>, now: UnixMillis, idle: Duration) -> Duration {
    match earliest {
        Some(at) => whole_seconds(Duration::from_millis(at.saturating_sub(now))),
        None => whole_seconds(idle),
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError> {
        let now = self.clock.now_ms();
        if let Some(token) = &request.token {
            let sid = request.sid.map(|s| format!("sid:{}", s.key()));
            let subject = Some(&request.identity.subject_key);
            let revoked = self.revocations.lock().iter().any(|r| {
                r.until_ms() > now && r.refuses(token.key, sid.as_deref(), subject, token.issued_ms)
            });
            if revoked {
                return Ok(AdmitOutcome {
                    admission: Admission::Refused(Refusal::Revoked),
                    expired: Vec::new(),
                });
            }
        }
        let outcome = self.state.lock().admit(request, now);
        // Reused sessions are linked too: a token of a new identity provider
        // session may reuse a session opened under an older one.
        if let (Some(session), Some(sid)) = (outcome.admission.session(), request.sid) {
            self.link_sid(&sid.key(), &session.id, session.absolute_expires_ms, now);
        }
        Ok(outcome)
    }

    async fn find(
        &self,
        pool: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now_ms();
        let state = self.state.lock();
        Ok(state
            .pool_index(pool)
            .and_then(|index| state.pools.get(index))
            .and_then(|p| p.sessions.get(identity))
            .filter(|s| !s.is_expired_at(now))
            .cloned())
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now_ms();
        let state = self.state.lock();
        Ok(state.locate(id, now).map(|(_, s)| s.clone()))
    }

    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock();
        let Some((index, identity)) = state.locate(id, now).map(|(i, s)| (i, s.identity)) else {
            return Ok(None);
        };
        Ok(state
            .remove(index, &identity)
            .map(|session| ClosedSession { session, reason }))
    }

    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        let now = self.clock.now_ms();
        let mut state = self.state.lock();
        let mut targets: Vec<(usize, IdentityKey)> = Vec::new();
        for (index, pool) in state.pools.iter().enumerate() {
            for session in pool.subject_sessions(subject) {
                if !session.is_expired_at(now) {
                    targets.push((index, session.identity));
                }
            }
        }
        let mut closed: Vec<ClosedSession> = targets
            .into_iter()
            .filter_map(|(index, key)| state.remove(index, &key))
            .map(|session| ClosedSession { session, reason })
            .collect();
        closed.sort_by(|a, b| {
            (a.session.created_ms, &a.session.id).cmp(&(b.session.created_ms, &b.session.id))
        });
        Ok(closed)
    }

    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        let now = self.clock.now_ms();
        let state = self.state.lock();
        let mut sessions: Vec<Session> = state
            .pools
            .iter()
            .filter(|p| filter.pool.as_ref().is_none_or(|name| *name == p.pool.name))
            .flat_map(|p| p.sessions.values())
            .filter(|s| filter.subject.as_ref().is_none_or(|sub| *sub == s.subject))
            .filter(|s| !s.is_expired_at(now))
            .cloned()
            .collect();
        sessions.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(sessions)
    }

    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        let now = self.clock.now_ms();
        let state = self.state.lock();
        Ok(state
            .pools
            .iter()
            .filter(|p| p.configured)
            .map(|p| PoolUsage {
                pool: p.pool.name.clone(),
                limit: p.pool.limit,
                reserved: p.pool.reserved_total(),
                in_use: p.in_use_at(now),
            })
            .collect())
    }

    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError> {
        let now = self.clock.now_ms();
        self.sids.lock().retain(|_, links| {
            links.retain(|(_, until)| *until > now);
            !links.is_empty()
        });
        self.used.lock().retain(|_, until| *until > now);
        Ok(self.state.lock().sweep(now))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Takes the pools of a reloaded configuration: limits, matches,
    /// reserved seats, caps and timeouts apply from the next admission; open
    /// sessions stay. A session whose reserved group no longer exists counts
    /// against the shared seats.
    fn reconfigure(&self, pools: &Pools) {
        let mut state = self.state.lock();
        for existing in &mut state.pools {
            existing.configured = false;
        }
        for pool in pools.iter() {
            match state.pool_index(&pool.name) {
                Some(index) => state.pools[index].reconfigure(Arc::clone(pool)),
                None => state.pools.push(PoolState::new(Arc::clone(pool))),
            }
        }
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut revocations = self.revocations.lock();
        revocations.retain(|r| r.until_ms() > now && r != revocation);
        revocations.push(revocation.clone());
        Ok(())
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        let now = self.clock.now_ms();
        let mut revocations = self.revocations.lock();
        revocations.retain(|r| r.until_ms() > now);
        Ok(revocations.clone())
    }

    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError> {
        let now = self.clock.now_ms();
        let mut revocations = self.revocations.lock();
        revocations.retain(|r| r.until_ms() > now);
        let (deleted, kept): (Vec<Revocation>, Vec<Revocation>) = std::mem::take(&mut *revocations)
            .into_iter()
            .partition(|r| r.id() == id);
        *revocations = kept;
        if let Some(until) = deleted.iter().map(Revocation::until_ms).max() {
            let mut tombstones = self.tombstones.lock();
            tombstones.retain(|(_, lapse)| *lapse > now);
            tombstones.push((id.to_string(), until));
        }
        Ok(deleted)
    }

    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now_ms();
        let mut tombstones = self.tombstones.lock();
        tombstones.retain(|(_, lapse)| *lapse > now);
        Ok(tombstones.iter().map(|(id, _)| id.clone()).collect())
    }
}

#[async_trait]
impl LogoutLedger for MemoryStore {
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<SessionId>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self
            .sids
            .lock()
            .get(sid_key)
            .map_or_else(Vec::new, |links| {
                links
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(id, _)| id.clone())
                    .collect()
            }))
    }

    async fn first_use(&self, key: &str, until_ms: UnixMillis) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut used = self.used.lock();
        // A lapsed entry counts as unused; the sweep drops lapsed entries.
        match used.get_mut(key) {
            Some(until) if *until > now => Ok(false),
            Some(until) => {
                *until = until_ms;
                Ok(true)
            }
            None => {
                used.insert(key.to_string(), until_ms);
                Ok(true)
            }
        }
    }

    async fn release_use(&self, key: &str) -> Result<(), StoreError> {
        self.used.lock().remove(key);
        Ok(())
    }
}

// The memory store keeps no trail of its own: its audit trail is the log.
impl AuditSink for MemoryStore {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::session::SessionIdentity;
    use crate::session::identity::{Digest32, subject_key};

    const T0: UnixMillis = 1_700_000_000_000;

    const ISSUER: &str = "https://idp.memory.test";

    /// A pool with no rule, no cap, no reserved seats and the contract
    /// suite's timeouts (20 minutes idle, 8 hours absolute).
    fn pool(name: &str, limit: u32) -> Pool {
        Pool {
            name: name.into(),
            limit,
            rule: None,
            subject_limit: None,
            reserved: Vec::new(),
            idle_timeout: Duration::from_secs(20 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
        }
    }

    /// The session identity the default rule (`iss`, `sub`, `client_id`)
    /// derives for a subject and client of one issuer; built directly, since
    /// these tests need no token.
    fn identity(subject: &str, client: &str) -> SessionIdentity {
        SessionIdentity {
            key: Digest32::of_parts(
                "identity",
                [ISSUER.as_bytes(), subject.as_bytes(), client.as_bytes()],
            ),
            issuer: ISSUER.into(),
            subject: subject.into(),
            client: Some(client.into()),
            subject_key: subject_key(ISSUER, subject),
        }
    }

    /// Every index agrees with the sessions it indexes.
    fn assert_consistent(store: &MemoryStore) {
        let state = store.state.lock();
        let mut total = 0;
        for (index, p) in state.pools.iter().enumerate() {
            total += p.sessions.len();
            let mut per_bucket = vec![0u32; p.per_bucket.len()];
            for (key, s) in &p.sessions {
                assert_eq!(*key, s.identity);
                assert_eq!(state.by_id.get(&s.id), Some(&(index, s.identity)));
                assert_eq!(p.by_expiry.get(&(s.expires_ms(), s.id.clone())), Some(key));
                assert!(p.by_subject[&s.subject_key].contains(key));
                per_bucket[s.bucket] += 1;
            }
            assert_eq!(
                per_bucket, p.per_bucket,
                "per-bucket counts of {}",
                p.pool.name
            );
            assert_eq!(p.by_expiry.len(), p.sessions.len());
            let indexed: usize = p.by_subject.values().map(HashSet::len).sum();
            assert_eq!(indexed, p.sessions.len());
        }
        assert_eq!(state.by_id.len(), total);
    }

    #[tokio::test]
    async fn indexes_stay_consistent_through_every_operation() {
        let clock = ManualClock::starting_at(T0);
        let pools = Pools::new(vec![pool("a", 3), pool("b", 2)]);
        let store = MemoryStore::new(&pools, Arc::new(clock.clone()));
        let a = Arc::clone(pools.get("a").expect("pool a"));
        let b = Arc::clone(pools.get("b").expect("pool b"));
        let people: Vec<_> = ["ann", "ben", "cat", "dan"]
            .iter()
            .map(|s| identity(s, "web"))
            .collect();
        for (round, who) in people.iter().cycle().take(12).enumerate() {
            let pool = if round % 3 == 0 { &b } else { &a };
            let request = AdmitRequest {
                pool,
                identity: who,
                reserved: None,
                sid: None,
                token: None,
            };
            store.admit(&request).await.expect("admit");
            assert_consistent(&store);
            clock.advance(Duration::from_secs(7 * 60));
        }
        let open = store.list(&SessionFilter::default()).await.expect("list");
        if let Some(first) = open.first() {
            store
                .close(&first.id, CloseReason::Admin)
                .await
                .expect("close");
        }
        assert_consistent(&store);
        store
            .close_subject(&people[1].subject_key, CloseReason::Admin)
            .await
            .expect("close subject");
        assert_consistent(&store);
        clock.advance(Duration::from_secs(3600));
        store.sweep().await.expect("sweep");
        assert_consistent(&store);
        assert!(store.state.lock().by_id.is_empty());
    }

    #[tokio::test]
    async fn a_pool_missing_from_the_configuration_is_counted_from_zero() {
        let clock = ManualClock::starting_at(T0);
        let store = MemoryStore::new(&Pools::new(vec![pool("known", 1)]), Arc::new(clock));
        let late = Arc::new(pool("late", 1));
        let who = identity("ann", "web");
        let request = AdmitRequest {
            pool: &late,
            identity: &who,
            reserved: None,
            sid: None,
            token: None,
        };
        let outcome = store.admit(&request).await.expect("admit");
        assert!(matches!(outcome.admission, Admission::Opened { .. }));
        let usage = store.usage().await.expect("usage");
        let names: Vec<_> = usage.iter().map(|u| (u.pool.as_str(), u.in_use)).collect();
        assert_eq!(names, [("known", 0), ("late", 1)]);
        assert_consistent(&store);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        let idle = Duration::from_secs(1200);
        assert_eq!(retry_after(Some(T0 + 1), T0, idle), Duration::from_secs(1));
        assert_eq!(
            retry_after(Some(T0 + 1000), T0, idle),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after(Some(T0 + 1001), T0, idle),
            Duration::from_secs(2)
        );
        assert_eq!(retry_after(Some(T0), T0, idle), Duration::from_secs(1));
        assert_eq!(retry_after(None, T0, idle), idle);
    }

    #[tokio::test]
    async fn lapsed_one_time_keys_count_as_unused_and_links_are_pruned_lazily() {
        let clock = ManualClock::starting_at(T0);
        let store = MemoryStore::new(&Pools::new(vec![pool("p", 1)]), Arc::new(clock.clone()));
        assert!(store.first_use("jti-1", T0 + 1_000).await.unwrap());
        assert!(!store.first_use("jti-1", T0 + 1_000).await.unwrap());
        clock.advance(std::time::Duration::from_secs(2));
        assert!(
            store.first_use("jti-1", T0 + 5_000).await.unwrap(),
            "lapsed"
        );
        assert!(!store.first_use("jti-1", T0 + 5_000).await.unwrap());

        store.link_sid("sid", "a", T0 + 2_500, T0 + 2_000);
        clock.advance(std::time::Duration::from_secs(1));
        store.link_sid("sid", "b", T0 + 9_000, T0 + 3_000);
        assert_eq!(
            store.linked_sessions("sid").await.unwrap(),
            vec!["b".to_string()]
        );
        store.sweep().await.unwrap();
        assert_eq!(store.sids.lock().get("sid").map(Vec::len), Some(1));
    }
}
