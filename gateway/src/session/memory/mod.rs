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

mod audit;
mod clients;
mod holds;
mod pools;
mod queue;

pub use audit::MEMORY_AUDIT_CAP;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityKey, LogoutLedger,
    PoolUsage, Refusal, Revocation, RevocationStore, Session, SessionFilter, SessionId,
    SessionStore, StoreError, SubjectKey, UsageLedger,
};
use super::{ClientBound, ClientCounts, ClientLedger, ClientSighting};
use super::{QueueExit, SeatListener, SeatNews, SeatQueue, Ticket};
use crate::clock::{SharedClock, UnixMillis};
use crate::licensing::{Bucket, Pool, Pools};
use crate::usage::{LedgerSnapshot, Step};
use pools::{PoolState, State};

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
    /// (B-trees, like the session maps: they grow on the proxy path too,
    /// and a B-tree never rebuilds itself in one step.)
    sids: Mutex<BTreeMap<String, Vec<(SessionId, UnixMillis)>>>,
    /// One-time token ids seen, with their lapse.
    used: Mutex<BTreeMap<String, UnixMillis>>,
    /// The most recent audit events.
    audit: Mutex<audit::AuditRing>,
    /// Where each session was used from (shared-token detection).
    clients: Mutex<clients::ClientSightings>,
    /// Who hears that a seat may have freed (waiting callers).
    seats: SeatNews,
}

impl MemoryStore {
    /// An empty store for the configured pools, reading time from `clock`.
    pub fn new(pools: &Pools, clock: SharedClock) -> Self {
        let now = clock.now_ms();
        let usage = pools.usage_retention();
        let pools = pools
            .iter()
            .map(|p| PoolState::new(Arc::clone(p), now))
            .collect();
        Self {
            clock,
            state: Mutex::new(State {
                pools,
                by_id: BTreeMap::new(),
                usage,
            }),
            revocations: Mutex::new(Vec::new()),
            tombstones: Mutex::new(Vec::new()),
            sids: Mutex::new(BTreeMap::new()),
            used: Mutex::new(BTreeMap::new()),
            audit: Mutex::new(audit::AuditRing::default()),
            clients: Mutex::new(clients::ClientSightings::default()),
            seats: SeatNews::default(),
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
                self.state
                    .lock()
                    .refused(&request.pool.name, Refusal::Revoked.as_str(), now);
                return Ok(AdmitOutcome {
                    admission: Admission::Refused(Refusal::Revoked),
                    expired: Vec::new(),
                    seats_held: None,
                });
            }
        }
        let (outcome, wake) = {
            let mut state = self.state.lock();
            let outcome = state.admit(request, now);
            // A waiter that got its seat: the next in line may find one too.
            let wake = request.ticket.is_some()
                && matches!(outcome.admission, Admission::Opened { .. })
                && state.seat_free_for_waiters(&request.pool.name);
            (outcome, wake)
        };
        if wake {
            self.seats.tell(&request.pool.name);
        }
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
        let closed = state.close(index, &identity, reason, now);
        drop(state);
        if let Some(closed) = &closed {
            self.seats.tell(&closed.session.pool);
        }
        Ok(closed)
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
            .filter_map(|(index, key)| state.close(index, &key, reason, now))
            .collect();
        closed.sort_by(|a, b| {
            (a.session.created_ms, &a.session.id).cmp(&(b.session.created_ms, &b.session.id))
        });
        drop(state);
        let pools: std::collections::BTreeSet<&str> =
            closed.iter().map(|c| c.session.pool.as_str()).collect();
        for pool in pools {
            self.seats.tell(pool);
        }
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
                waiting: p.waitline.waiting_at(now),
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
        self.clients.lock().prune(now);
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
        let now = self.clock.now_ms();
        let mut state = self.state.lock();
        state.usage = pools.usage_retention();
        for existing in &mut state.pools {
            existing.configured = false;
        }
        for pool in pools.iter() {
            match state.pool_index(&pool.name) {
                Some(index) => state.pools[index].reconfigure(Arc::clone(pool)),
                None => state.pools.push(PoolState::new(Arc::clone(pool), now)),
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

#[async_trait]
impl ClientLedger for MemoryStore {
    async fn note_client(
        &self,
        pool: &str,
        session_id: &str,
        sighting: &ClientSighting,
        window: std::time::Duration,
        refuse_beyond: Option<ClientBound>,
    ) -> Result<ClientCounts, StoreError> {
        let now = self.clock.now_ms();
        Ok(self
            .clients
            .lock()
            .note(pool, session_id, sighting, window, refuse_beyond, now))
    }
}

#[async_trait]
impl UsageLedger for MemoryStore {
    async fn usage_ledger(
        &self,
        pool: &str,
        bucket: Option<Bucket>,
        step: Step,
        from: u64,
    ) -> Result<Option<LedgerSnapshot>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.state.lock().ledger(pool, bucket, step, from, now))
    }
}

#[async_trait]
impl SeatQueue for MemoryStore {
    async fn leave_queue(
        &self,
        pool: &Pool,
        ticket: &Ticket,
        exit: QueueExit,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let (removed, wake) = {
            let mut state = self.state.lock();
            let removed =
                state.leave_queue(&pool.name, &ticket.id, exit == QueueExit::TimedOut, now);
            (removed, removed && state.seat_free_for_waiters(&pool.name))
        };
        if wake {
            self.seats.tell(&pool.name);
        }
        Ok(removed)
    }

    fn on_seat_freed(&self, listener: SeatListener) {
        self.seats.listen(listener);
    }
}

#[cfg(test)]
mod tests;
