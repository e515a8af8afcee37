//! Model-based test of the session stores: random sequences of operations
//! are applied both to a plain reference model of the session semantics and
//! to a real store, every answer is compared, and the seat invariants are
//! checked after every step.
//!
//! The model ([`Model`]) is written from the semantics the contract suite
//! (`session::contract`) pins down, as directly as possible: a list of held
//! sessions, linear scans, no indexes, nothing shared with the stores.
//!
//! * A session expires at `now >= min(idle expiry, absolute expiry)`; it is
//!   then reported exactly once, by an `admit` of its pool or by a `sweep`,
//!   and until then every other operation treats it as absent.
//! * `Retry-After` is whole seconds rounded up, at least one; with no seat
//!   the caller could ever use freeing by time, it is the idle timeout.
//! * A member of a reserved group takes its group's seat while one is free,
//!   then a shared seat; everyone else only shared seats.
//! * `replace_oldest` evicts the subject's least recently used session only
//!   when the new session then gets a seat.
//! * With a queue (`p`), a caller that finds no seat gets a ticket at the
//!   end of the line (or `queue_full`); shared and overdraft seats go to the
//!   callers ahead first, so a caller takes one only while more are free
//!   than wait before it; every answer but another wait takes its ticket out
//!   of line; a ticket lapses at `max_wait` and then gets no seat, even a
//!   free one.
//!
//! Stores under test: the memory store, and a fleet of two or three
//! `RedisStore`s on one real `redis-server` (one server per case) and one
//! [`ManualClock`], each operation running on a randomly chosen instance.
//! The Redis lease cache is off (`touch_interval` zero), so every call runs
//! a Lua script. Time moves only when a step advances the manual clock.
//!
//! Inputs come from `proptest` with a fixed seed (so CI runs the same
//! sequences every time); `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore
//! others. A failure prints the shrunk sequence, the seed and a trace of
//! every step with what the store answered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use session_gateway::clock::ManualClock;
use session_gateway::config::RedisConfig;
use session_gateway::licensing::{Pool, Pools, SeatQueuePolicy, SubjectLimitPolicy};
use session_gateway::session::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, MemoryStore, PoolUsage,
    QueueExit, RedisStore, Refusal, Session, SessionFilter, Store, SubjectKey, Ticket,
};
use session_gateway_e2e::RedisServer;
use session_gateway_e2e::contract::{
    Caller, ISSUER, T0, caller_of, pool, with_reserved, with_subject_limit, with_timeouts,
};

// ---------------------------------------------------------------------------
// The scenario: pools and callers.

/// Pool `p`: 3 seats, one reserved for subject `cfo`, a per-subject cap of 2.
const P_LIMIT: u32 = 3;
const P_IDLE_MS: u64 = 10_000;
const P_ABSOLUTE_MS: u64 = 35_000;
const P_SUBJECT_CAP: u32 = 2;

/// Pool `q`: 2 seats, one reserved for the client `erp-mobile`, a
/// per-subject cap of 1, short timeouts (the absolute lifetime often wins).
/// A subject's mobile session holds a seat its other clients may not take,
/// so `replace_oldest` sometimes must not evict.
const Q_LIMIT: u32 = 2;
const Q_IDLE_MS: u64 = 6_000;
const Q_ABSOLUTE_MS: u64 = 7_000;
const Q_SUBJECT_CAP: u32 = 1;
/// After a close by the user or by time, a seat of `q` stays with its
/// identity this long (`linger`); a seat of `p` is held at least this long
/// after it opened (`min_hold`).
const Q_LINGER_MS: u64 = 2_000;
const P_MIN_HOLD_MS: u64 = 3_000;
/// Callers that find no seat in `p` wait for one, at most two at once and
/// for at most this long (`queue`).
const P_QUEUE_WAIT_MS: u64 = 8_000;
const P_QUEUE_LENGTH: u32 = 2;

const POOL_NAMES: [&str; 2] = ["p", "q"];

/// The subjects: `(issuer, sub, short name)`. The last one is another
/// issuer's `alice`, another subject for caps and `close_subject`.
const SUBJECTS: [(&str, &str, &str); 4] = [
    (ISSUER, "alice", "alice"),
    (ISSUER, "bob", "bob"),
    (ISSUER, "cfo", "cfo"),
    ("https://other.idp.test", "alice", "alice@other"),
];

/// Each subject calls through three clients (one more than the cap).
const CLIENTS: [&str; 3] = ["erp-web", "erp-desktop", "erp-mobile"];

const CALLERS: usize = SUBJECTS.len() * CLIENTS.len();

/// The subject (index into [`SUBJECTS`]) of a caller.
fn subject_of(who: usize) -> usize {
    who / CLIENTS.len()
}

fn caller_name(who: usize) -> String {
    format!(
        "{}/{}",
        SUBJECTS[subject_of(who)].2,
        CLIENTS[who % CLIENTS.len()]
    )
}

fn callers() -> Vec<Caller> {
    (0..CALLERS)
        .map(|who| {
            let (issuer, sub, _) = SUBJECTS[subject_of(who)];
            caller_of(issuer, sub, CLIENTS[who % CLIENTS.len()])
        })
        .collect()
}

/// The pools as the stores get them.
fn store_pools(policy: SubjectLimitPolicy) -> Vec<Pool> {
    let p = with_timeouts(
        pool("p", P_LIMIT),
        Duration::from_millis(P_IDLE_MS),
        Duration::from_millis(P_ABSOLUTE_MS),
    );
    let p = with_reserved(p, "sub", &["cfo"], 1);
    let mut p = with_subject_limit(p, P_SUBJECT_CAP, policy);
    // One session beyond the limit (bucket 2, after the reserved group).
    p.overdraft = 1;
    p.min_hold = Duration::from_millis(P_MIN_HOLD_MS);
    p.queue = Some(SeatQueuePolicy {
        max_wait: Duration::from_millis(P_QUEUE_WAIT_MS),
        max_length: P_QUEUE_LENGTH,
    });
    let q = with_timeouts(
        pool("q", Q_LIMIT),
        Duration::from_millis(Q_IDLE_MS),
        Duration::from_millis(Q_ABSOLUTE_MS),
    );
    let q = with_reserved(q, "client_id", &["erp-mobile"], 1);
    let mut q = with_subject_limit(q, Q_SUBJECT_CAP, policy);
    q.linger = Duration::from_millis(Q_LINGER_MS);
    vec![p, q]
}

/// The same pools as the model reads them.
fn model_rules(policy: SubjectLimitPolicy) -> Vec<Rules> {
    vec![
        Rules {
            limit: P_LIMIT,
            idle_ms: P_IDLE_MS,
            absolute_ms: P_ABSOLUTE_MS,
            // Bucket 0: the shared seats; bucket 1: cfo's reserved seat;
            // bucket 2: the one overdraft seat.
            bucket_caps: vec![P_LIMIT - 1, 1, 1],
            in_reserved_group: |who| SUBJECTS[subject_of(who)].1 == "cfo",
            subject_cap: Some((P_SUBJECT_CAP, policy)),
            overdraft: Some(2),
            linger_ms: 0,
            min_hold_ms: P_MIN_HOLD_MS,
            queue: Some((P_QUEUE_WAIT_MS, P_QUEUE_LENGTH)),
        },
        Rules {
            limit: Q_LIMIT,
            idle_ms: Q_IDLE_MS,
            absolute_ms: Q_ABSOLUTE_MS,
            // Bucket 0: the shared seat; bucket 1: the mobile client's seat.
            bucket_caps: vec![Q_LIMIT - 1, 1],
            in_reserved_group: |who| CLIENTS[who % CLIENTS.len()] == "erp-mobile",
            subject_cap: Some((Q_SUBJECT_CAP, policy)),
            overdraft: None,
            linger_ms: Q_LINGER_MS,
            min_hold_ms: 0,
            queue: None,
        },
    ]
}

// ---------------------------------------------------------------------------
// The reference model.

/// The seat rules of one pool, as the model knows them.
#[derive(Debug, Clone)]
struct Rules {
    limit: u32,
    idle_ms: u64,
    absolute_ms: u64,
    /// Seats per bucket (0 shared, 1.. reserved groups).
    bucket_caps: Vec<u32>,
    /// Whether a caller belongs to the reserved group (bucket 1).
    in_reserved_group: fn(usize) -> bool,
    subject_cap: Option<(u32, SubjectLimitPolicy)>,
    /// The bucket of the sessions beyond the limit, when the pool has an
    /// overdraft (its capacity is in `bucket_caps`).
    overdraft: Option<usize>,
    /// `linger` and `min_hold`, in ms.
    linger_ms: u64,
    min_hold_ms: u64,
    /// `queue`: `(max_wait ms, max_length)`.
    queue: Option<(u64, u32)>,
}

impl Rules {
    /// Until when a closed session's seat stays with its identity, if past
    /// the close.
    fn hold_until(&self, s: &ModelSession, at: u64, reason: CloseReason) -> Option<u64> {
        if !reason.keeps_seat() {
            return None;
        }
        let until = (at + self.linger_ms).max(s.created + self.min_hold_ms);
        (until > at).then_some(until)
    }
}

/// A caller waiting in a pool's line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelTicket {
    pool: usize,
    who: usize,
    /// Its number: the pool's line is in number order.
    number: u64,
    /// When it lapses: handed out + max_wait.
    lapse: u64,
}

/// A seat kept for an identity after its session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeptSeat {
    until: u64,
    session: ModelSession,
}

/// A session the model holds (open, or expired and not yet reported).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelSession {
    /// The model's own id; the stores' random ids are mapped to it.
    mid: usize,
    pool: usize,
    who: usize,
    bucket: usize,
    created: u64,
    last_seen: u64,
    idle_exp: u64,
    abs_exp: u64,
}

impl ModelSession {
    fn expires(&self) -> u64 {
        self.idle_exp.min(self.abs_exp)
    }

    fn is_open_at(&self, now: u64) -> bool {
        now < self.expires()
    }

    fn expiry_reason(&self) -> CloseReason {
        if self.abs_exp <= self.idle_exp {
            CloseReason::Absolute
        } else {
            CloseReason::Idle
        }
    }
}

impl fmt::Display for ModelSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "m{} [{} {} bucket {} created +{} seen +{} idle +{} abs +{}]",
            self.mid,
            POOL_NAMES[self.pool],
            caller_name(self.who),
            self.bucket,
            self.created - T0,
            self.last_seen - T0,
            self.idle_exp - T0,
            self.abs_exp - T0,
        )
    }
}

/// What the model decides on an admission.
#[derive(Debug, Clone)]
enum Decision {
    Reused(ModelSession),
    Opened {
        session: ModelSession,
        replaced: Option<ModelSession>,
    },
    PoolFull {
        limit: u32,
        in_use: u32,
        retry_after_s: u64,
    },
    SubjectLimit {
        limit: u32,
        retry_after_s: u64,
    },
    /// In line with ticket `number`, `ahead` callers before it; the
    /// earliest usable seat frees by time in `retry_ms`, if any does.
    Queued {
        number: u64,
        ahead: u32,
        retry_ms: Option<u64>,
    },
    QueueFull {
        limit: u32,
        in_use: u32,
        waiting: u32,
        retry_after_s: u64,
    },
    QueueTimeout {
        limit: u32,
        retry_after_s: u64,
    },
}

/// One admission as the model answers it.
#[derive(Debug, Clone)]
struct ModelAdmit {
    decision: Decision,
    expired: Vec<(ModelSession, CloseReason)>,
}

/// Every session the stores should hold, and the time.
#[derive(Debug, Clone)]
struct Model {
    rules: Vec<Rules>,
    now: u64,
    held: Vec<ModelSession>,
    /// Seats of closed sessions still kept for their identities.
    kept: Vec<KeptSeat>,
    next_mid: usize,
    /// The pools' lines (only tickets neither lapsed-and-dropped nor gone).
    line: Vec<ModelTicket>,
    /// The last ticket number handed out, per pool.
    last_number: Vec<u64>,
    /// The ticket number each caller holds, by `(pool, who)`: what it
    /// presents with its next call, whether or not still in line.
    holding: BTreeMap<(usize, usize), u64>,
}

/// Whole seconds until `at`, rounded up, at least one; the idle timeout
/// when no such moment exists.
fn retry_after_s(at: Option<u64>, now: u64, idle_ms: u64) -> u64 {
    let ms = match at {
        Some(at) => at.saturating_sub(now),
        None => idle_ms,
    };
    ms.div_ceil(1000).max(1)
}

impl Model {
    fn new(rules: Vec<Rules>) -> Self {
        Self {
            rules,
            now: T0,
            held: Vec::new(),
            kept: Vec::new(),
            next_mid: 0,
            line: Vec::new(),
            last_number: vec![0; POOL_NAMES.len()],
            holding: BTreeMap::new(),
        }
    }

    /// Callers of a pool waiting at `now` (lapsed tickets not counted).
    fn waiting_in(&self, pool: usize) -> u32 {
        self.line
            .iter()
            .filter(|t| t.pool == pool && t.lapse > self.now)
            .count() as u32
    }

    /// Whether a ticket number is still in a pool's line.
    fn in_line(&self, pool: usize, number: u64) -> bool {
        self.line
            .iter()
            .any(|t| t.pool == pool && t.number == number)
    }

    /// A caller's call ended other than by waiting: its ticket goes.
    fn drop_ticket(&mut self, pool: usize, who: usize) {
        if let Some(number) = self.holding.remove(&(pool, who)) {
            self.line
                .retain(|t| !(t.pool == pool && t.number == number));
        }
    }

    /// A caller leaves the line (timed out, or its client left); whether
    /// its ticket was still there.
    fn leave(&mut self, pool: usize, who: usize) -> bool {
        let Some(number) = self.holding.get(&(pool, who)).copied() else {
            return false;
        };
        let was = self.in_line(pool, number);
        self.drop_ticket(pool, who);
        was
    }

    fn open_sessions(&self) -> Vec<&ModelSession> {
        self.held
            .iter()
            .filter(|s| s.is_open_at(self.now))
            .collect()
    }

    fn reserved_bucket(&self, pool: usize, who: usize) -> Option<usize> {
        (self.rules[pool].in_reserved_group)(who).then_some(1)
    }

    /// Removes and reports the expired sessions of one pool (or all).
    fn purge(&mut self, pool: Option<usize>) -> Vec<(ModelSession, CloseReason)> {
        let now = self.now;
        let (gone, kept): (Vec<ModelSession>, Vec<ModelSession>) = self
            .held
            .drain(..)
            .partition(|s| pool.is_none_or(|p| s.pool == p) && !s.is_open_at(now));
        self.held = kept;
        // Seats kept past their end free (within the purged pools).
        self.kept
            .retain(|k| !(pool.is_none_or(|p| k.session.pool == p) && k.until <= now));
        gone.into_iter()
            .map(|s| {
                let reason = s.expiry_reason();
                self.keep_seat(&s, s.expires(), reason);
                (s, reason)
            })
            .collect()
    }

    /// Keeps the seat of a session closed at `at`, while its pool holds it.
    fn keep_seat(&mut self, s: &ModelSession, at: u64, reason: CloseReason) {
        if let Some(until) = self.rules[s.pool].hold_until(s, at, reason)
            && until > self.now
        {
            self.kept.push(KeptSeat {
                until,
                session: s.clone(),
            });
        }
    }

    /// The kept seats of a pool that have not ended.
    fn kept_in(&self, pool: usize) -> impl Iterator<Item = &KeptSeat> {
        let now = self.now;
        self.kept
            .iter()
            .filter(move |k| k.session.pool == pool && k.until > now)
    }

    /// When the earliest seat a caller could use frees by time.
    fn earliest_usable(&self, pool: usize, who: usize) -> Option<u64> {
        let rules = &self.rules[pool];
        let reserved = self.reserved_bucket(pool, who);
        let usable = |bucket: usize| {
            bucket == 0 || Some(bucket) == reserved || Some(bucket) == rules.overdraft
        };
        self.held
            .iter()
            .filter(|s| s.pool == pool && usable(s.bucket))
            .map(ModelSession::expires)
            .chain(
                self.kept_in(pool)
                    .filter(|k| usable(k.session.bucket))
                    .map(|k| k.until),
            )
            .min()
    }

    /// Every answer an admission may give, each with the model state after
    /// it. Usually one; `replace_oldest` with several sessions last used in
    /// the same millisecond may evict any of them.
    fn admit(&self, pool: usize, who: usize) -> Vec<(Model, ModelAdmit)> {
        let mut m = self.clone();
        let expired = m.purge(Some(pool));
        let rules = m.rules[pool].clone();
        let now = m.now;
        // Tickets that lapsed leave the line.
        m.line.retain(|t| !(t.pool == pool && t.lapse <= now));

        if let Some(s) = m.held.iter_mut().find(|s| s.pool == pool && s.who == who) {
            s.last_seen = now;
            s.idle_exp = now + rules.idle_ms;
            let decision = Decision::Reused(s.clone());
            m.drop_ticket(pool, who);
            return vec![(m, ModelAdmit { decision, expired })];
        }
        // The identity's kept seat: its session comes back while its
        // absolute lifetime lasts and its subject is below its cap;
        // otherwise the seat frees and the cap applies below.
        if let Some(at) = m
            .kept
            .iter()
            .position(|k| k.session.pool == pool && k.session.who == who && k.until > now)
        {
            let mut s = m.kept.remove(at).session;
            let subject_sessions = m
                .held
                .iter()
                .filter(|o| o.pool == pool && subject_of(o.who) == subject_of(who))
                .count();
            let below_cap = rules
                .subject_cap
                .is_none_or(|(cap, _)| subject_sessions < cap as usize);
            if s.abs_exp > now && below_cap {
                s.last_seen = now;
                s.idle_exp = now + rules.idle_ms;
                m.held.push(s.clone());
                let decision = Decision::Reused(s);
                m.drop_ticket(pool, who);
                return vec![(m, ModelAdmit { decision, expired })];
            }
        }

        // A ticket no longer in line lapsed: no seat, even a free one.
        let mine = m.holding.get(&(pool, who)).copied();
        if let Some(number) = mine
            && !m.in_line(pool, number)
        {
            let earliest = m.earliest_usable(pool, who);
            let decision = Decision::QueueTimeout {
                limit: rules.limit,
                retry_after_s: retry_after_s(earliest, now, rules.idle_ms),
            };
            m.drop_ticket(pool, who);
            return vec![(m, ModelAdmit { decision, expired })];
        }
        // Callers ahead: those before its ticket, or (a newcomer) the line.
        let ahead = match mine {
            Some(number) => m
                .line
                .iter()
                .filter(|t| t.pool == pool && t.number < number)
                .count() as u32,
            None if rules.queue.is_some() => {
                m.line.iter().filter(|t| t.pool == pool).count() as u32
            }
            None => 0,
        };

        let subjects: Vec<ModelSession> = m
            .held
            .iter()
            .filter(|s| s.pool == pool && subject_of(s.who) == subject_of(who))
            .cloned()
            .collect();
        let mut victims: Vec<Option<ModelSession>> = vec![None];
        if let Some((cap, policy)) = rules.subject_cap
            && subjects.len() >= cap as usize
        {
            match policy {
                SubjectLimitPolicy::Deny => {
                    let earliest = subjects.iter().map(ModelSession::expires).min();
                    let decision = Decision::SubjectLimit {
                        limit: cap,
                        retry_after_s: retry_after_s(earliest, now, rules.idle_ms),
                    };
                    m.drop_ticket(pool, who);
                    return vec![(m, ModelAdmit { decision, expired })];
                }
                SubjectLimitPolicy::ReplaceOldest => {
                    let lru = subjects.iter().map(|s| s.last_seen).min();
                    victims = subjects
                        .iter()
                        .filter(|s| Some(s.last_seen) == lru)
                        .cloned()
                        .map(Some)
                        .collect();
                }
            }
        }
        victims
            .into_iter()
            .map(|victim| {
                let mut next = m.clone();
                let decision = next.open_or_refuse(pool, who, victim, ahead);
                let expired = expired.clone();
                (next, ModelAdmit { decision, expired })
            })
            .collect()
    }

    /// Opens a session if a seat (counting the victim's as free) allows,
    /// evicting the victim; otherwise refuses and changes nothing.
    fn open_or_refuse(
        &mut self,
        pool: usize,
        who: usize,
        victim: Option<ModelSession>,
        ahead: u32,
    ) -> Decision {
        let rules = self.rules[pool].clone();
        let now = self.now;
        let mut used = vec![0u32; rules.bucket_caps.len()];
        for s in self.held.iter().filter(|s| s.pool == pool) {
            used[s.bucket] += 1;
        }
        for k in self.kept_in(pool) {
            used[k.session.bucket] += 1;
        }
        if let Some(v) = &victim {
            used[v.bucket] -= 1;
        }
        let reserved = self.reserved_bucket(pool, who);
        // Seats anyone may take go to the callers ahead first.
        let common_free = rules.bucket_caps[0].saturating_sub(used[0])
            + rules
                .overdraft
                .map_or(0, |o| rules.bucket_caps[o].saturating_sub(used[o]));
        let bucket = match reserved {
            Some(r) if used[r] < rules.bucket_caps[r] => Some(r),
            _ if common_free <= ahead => None,
            _ if used[0] < rules.bucket_caps[0] => Some(0),
            _ => rules.overdraft.filter(|o| used[*o] < rules.bucket_caps[*o]),
        };
        let Some(bucket) = bucket else {
            let in_pool: Vec<&ModelSession> = self.held.iter().filter(|s| s.pool == pool).collect();
            let usable = |bucket: usize| {
                bucket == 0 || Some(bucket) == reserved || Some(bucket) == rules.overdraft
            };
            let earliest = in_pool
                .iter()
                .filter(|s| usable(s.bucket))
                .map(|s| s.expires())
                .chain(
                    self.kept_in(pool)
                        .filter(|k| usable(k.session.bucket))
                        .map(|k| k.until),
                )
                .min();
            let in_use = (in_pool.len() + self.kept_in(pool).count()) as u32;
            let retry_ms = earliest.map(|at| at.saturating_sub(now));
            if let Some(number) = self.holding.get(&(pool, who)).copied() {
                return Decision::Queued {
                    number,
                    ahead,
                    retry_ms,
                };
            }
            return match rules.queue {
                Some((wait, length)) if ahead < length => {
                    self.last_number[pool] += 1;
                    let number = self.last_number[pool];
                    self.line.push(ModelTicket {
                        pool,
                        who,
                        number,
                        lapse: now + wait,
                    });
                    self.holding.insert((pool, who), number);
                    Decision::Queued {
                        number,
                        ahead,
                        retry_ms,
                    }
                }
                Some(_) => Decision::QueueFull {
                    limit: rules.limit,
                    in_use,
                    waiting: ahead,
                    retry_after_s: retry_after_s(earliest, now, rules.idle_ms),
                },
                None => Decision::PoolFull {
                    limit: rules.limit,
                    in_use,
                    retry_after_s: retry_after_s(earliest, now, rules.idle_ms),
                },
            };
        };
        self.drop_ticket(pool, who);
        if let Some(v) = &victim {
            self.held.retain(|s| s.mid != v.mid);
        }
        let session = ModelSession {
            mid: self.next_mid,
            pool,
            who,
            bucket,
            created: now,
            last_seen: now,
            idle_exp: now + rules.idle_ms,
            abs_exp: now + rules.absolute_ms,
        };
        self.next_mid += 1;
        self.held.push(session.clone());
        Decision::Opened {
            session,
            replaced: victim,
        }
    }

    /// Closes an open session by id; an expired one is left to be reported.
    fn close(&mut self, mid: usize, reason: CloseReason) -> Option<(ModelSession, CloseReason)> {
        let now = self.now;
        let at = self
            .held
            .iter()
            .position(|s| s.mid == mid && s.is_open_at(now))?;
        let s = self.held.remove(at);
        self.keep_seat(&s, now, reason);
        Some((s, reason))
    }

    /// Closes every open session of a subject, in every pool.
    fn close_subject(
        &mut self,
        subject: usize,
        reason: CloseReason,
    ) -> Vec<(ModelSession, CloseReason)> {
        let now = self.now;
        let (gone, kept): (Vec<ModelSession>, Vec<ModelSession>) = self
            .held
            .drain(..)
            .partition(|s| subject_of(s.who) == subject && s.is_open_at(now));
        self.held = kept;
        for s in &gone {
            self.keep_seat(s, now, reason);
        }
        gone.into_iter().map(|s| (s, reason)).collect()
    }

    fn sweep(&mut self) -> Vec<(ModelSession, CloseReason)> {
        self.purge(None)
    }
}

// ---------------------------------------------------------------------------
// Operations.

/// One step of a sequence. Indexes are taken modulo what exists when the
/// step runs, so every shrunk sequence is still a valid one.
#[derive(Clone)]
enum Op {
    /// A call of caller `who` on a `session` route of `pool`, on instance `on`.
    Admit { who: usize, pool: usize, on: usize },
    /// A refreshed token of an identity that has an open session (the
    /// `pick`-th one), or of caller `pick` in `p` when none has.
    Refresh { pick: usize, on: usize },
    /// The same user through another of its clients: the subject and pool
    /// of the `pick`-th open session, the client `1 + other % 2` places
    /// after its own (or caller `pick` in `p` when no session is open).
    Sibling {
        pick: usize,
        other: usize,
        on: usize,
    },
    /// Time passes.
    Advance { ms: u64 },
    /// An admin closes the `pick`-th session id ever opened (open or not).
    Close { pick: usize, on: usize },
    /// A back-channel logout closes every session of a subject.
    CloseSubject { subject: usize, on: usize },
    /// The sweeper runs.
    Sweep { on: usize },
    /// The `pick`-th caller holding a ticket asks again, as a waiting
    /// request does when woken (or caller `pick` in `p` when none holds one).
    Retry { pick: usize, on: usize },
    /// The `pick`-th caller holding a ticket leaves the line: it timed out,
    /// or its client went away.
    Leave {
        pick: usize,
        timed_out: bool,
        on: usize,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Admit { who, pool, on } => {
                write!(
                    f,
                    "admit({}, {}) on #{on}",
                    POOL_NAMES[*pool],
                    caller_name(*who)
                )
            }
            Op::Refresh { pick, on } => write!(f, "refresh(open #{pick}) on #{on}"),
            Op::Sibling { pick, other, on } => {
                write!(
                    f,
                    "sibling(open #{pick}, client +{}) on #{on}",
                    1 + other % 2
                )
            }
            Op::Advance { ms } => write!(f, "advance({ms} ms)"),
            Op::Close { pick, on } => write!(f, "close(known #{pick}, admin) on #{on}"),
            Op::CloseSubject { subject, on } => {
                write!(
                    f,
                    "close_subject({}, backchannel) on #{on}",
                    SUBJECTS[*subject].2
                )
            }
            Op::Sweep { on } => write!(f, "sweep on #{on}"),
            Op::Retry { pick, on } => write!(f, "retry(ticket #{pick}) on #{on}"),
            Op::Leave {
                pick,
                timed_out,
                on,
            } => write!(
                f,
                "leave(ticket #{pick}, {}) on #{on}",
                if *timed_out { "timed out" } else { "left" }
            ),
        }
    }
}

fn advance_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        // The exact boundaries: the same millisecond, one tick, each idle
        // timeout and its neighbours.
        1 => Just(0u64),
        1 => Just(1),
        1 => Just(P_IDLE_MS - 1),
        1 => Just(P_IDLE_MS),
        1 => Just(P_IDLE_MS + 1),
        1 => Just(Q_IDLE_MS - 1),
        1 => Just(Q_IDLE_MS),
        // Quarter and whole seconds land on earlier expiries exactly; short
        // steps let sessions live long enough to reach their absolute end.
        3 => (1..=12u64).prop_map(|q| q * 250),
        2 => (1..=15u64).prop_map(|s| s * 1_000),
        // Anything up to 1.5 × the longest idle timeout.
        2 => 0..=(P_IDLE_MS * 3 / 2),
    ]
}

/// A caller; alice calls most, so one subject often holds several
/// sessions and meets its cap.
fn caller_strategy() -> impl Strategy<Value = usize> {
    let subject =
        prop_oneof![4 => Just(0usize), 2 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)];
    (subject, 0..CLIENTS.len()).prop_map(|(subject, client)| subject * CLIENTS.len() + client)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let on = 0..3usize;
    let pool = prop_oneof![1 => Just(0usize), 1 => Just(1usize)];
    prop_oneof![
        8 => (caller_strategy(), pool, on.clone()).prop_map(|(who, pool, on)| Op::Admit { who, pool, on }),
        4 => (0..16usize, on.clone()).prop_map(|(pick, on)| Op::Refresh { pick, on }),
        3 => (0..16usize, 0..2usize, on.clone()).prop_map(|(pick, other, on)| Op::Sibling { pick, other, on }),
        7 => advance_strategy().prop_map(|ms| Op::Advance { ms }),
        2 => (0..64usize, on.clone()).prop_map(|(pick, on)| Op::Close { pick, on }),
        2 => (0..SUBJECTS.len(), on.clone()).prop_map(|(subject, on)| Op::CloseSubject { subject, on }),
        2 => on.clone().prop_map(|on| Op::Sweep { on }),
        5 => (0..4usize, on.clone()).prop_map(|(pick, on)| Op::Retry { pick, on }),
        2 => (0..4usize, any::<bool>(), on).prop_map(|(pick, timed_out, on)| Op::Leave { pick, timed_out, on }),
    ]
}

/// A fleet size and a sequence of up to 60 operations.
fn case_strategy(fleet_sizes: RangeInclusive<usize>) -> impl Strategy<Value = (usize, Vec<Op>)> {
    (
        fleet_sizes,
        proptest::collection::vec(op_strategy(), 1..=60),
    )
}

impl Op {
    /// The same operation with its instance taken modulo the fleet size.
    fn on_fleet_of(&self, n: usize) -> Op {
        let mut op = self.clone();
        match &mut op {
            Op::Admit { on, .. }
            | Op::Refresh { on, .. }
            | Op::Sibling { on, .. }
            | Op::Close { on, .. }
            | Op::CloseSubject { on, .. }
            | Op::Sweep { on }
            | Op::Retry { on, .. }
            | Op::Leave { on, .. } => *on %= n,
            Op::Advance { .. } => {}
        }
        op
    }
}

// ---------------------------------------------------------------------------
// The stores under test.

/// One or more store instances sharing one state and one manual clock.
struct Fleet {
    instances: Vec<Arc<dyn Store>>,
    clock: ManualClock,
    pools: Pools,
    /// The Redis server, killed when the fleet drops.
    _server: Option<RedisServer>,
}

fn memory_fleet(policy: SubjectLimitPolicy) -> Fleet {
    let clock = ManualClock::starting_at(T0);
    let pools = Pools::new(store_pools(policy));
    let store = MemoryStore::new(&pools, Arc::new(clock.clone()));
    Fleet {
        instances: vec![Arc::new(store)],
        clock,
        pools,
        _server: None,
    }
}

/// The fast path off (every call runs a script), strict outage behaviour.
fn redis_config(url: String) -> RedisConfig {
    session_gateway_e2e::store_config(url, "model")
}

fn redis_fleet(policy: SubjectLimitPolicy, size: usize) -> Result<Fleet, String> {
    let server = RedisServer::start().map_err(|e| format!("redis-server: {e:#}"))?;
    let clock = ManualClock::starting_at(T0);
    let pools = Pools::new(store_pools(policy));
    let config = redis_config(server.url());
    let mut instances: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..size {
        let store = RedisStore::new(&config, &pools, Arc::new(clock.clone()))
            .map_err(|e| format!("redis store: {e}"))?;
        instances.push(store);
    }
    Ok(Fleet {
        instances,
        clock,
        pools,
        _server: Some(server),
    })
}

// ---------------------------------------------------------------------------
// Comparing the store with the model.

/// Store session ids and model ids, both ways.
#[derive(Default)]
struct Ids {
    of_mid: HashMap<usize, String>,
    of_id: HashMap<String, usize>,
    /// The store's ticket each caller holds, by `(pool, who)`.
    tickets: HashMap<(usize, usize), Ticket>,
}

impl Ids {
    fn record(&mut self, mid: usize, id: &str) -> Result<(), String> {
        if !(32..=64).contains(&id.len())
            || !id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(format!("session id {id:?} is not an opaque id"));
        }
        if let Some(other) = self.of_id.get(id) {
            return Err(format!("session id {id} reused: it was m{other}'s"));
        }
        self.of_mid.insert(mid, id.to_string());
        self.of_id.insert(id.to_string(), mid);
        Ok(())
    }

    fn mid(&self, id: &str) -> Result<usize, String> {
        self.of_id
            .get(id)
            .copied()
            .ok_or_else(|| format!("the store named session {id}, which it never opened"))
    }

    fn id(&self, mid: usize) -> &str {
        self.of_mid.get(&mid).map_or("?", String::as_str)
    }
}

/// A store session, times relative to `T0`, for messages.
fn show(s: &Session) -> String {
    let subject = SUBJECTS
        .iter()
        .find(|(issuer, sub, _)| *issuer == s.issuer && *sub == s.subject)
        .map_or_else(
            || format!("{}@{}", s.subject, s.issuer),
            |(_, _, name)| name.to_string(),
        );
    format!(
        "{} [{} {subject}/{} bucket {} created +{} seen +{} idle +{} abs +{}]",
        &s.id[..s.id.len().min(8)],
        s.pool,
        s.client.as_deref().unwrap_or("-"),
        s.bucket,
        s.created_ms.wrapping_sub(T0),
        s.last_seen_ms.wrapping_sub(T0),
        s.idle_expires_ms.wrapping_sub(T0),
        s.absolute_expires_ms.wrapping_sub(T0),
    )
}

/// The store's session must be the model's one, field by field (its id
/// only when the model's id is already mapped).
fn same_session(
    store: &Session,
    model: &ModelSession,
    ids: &Ids,
    callers: &[Caller],
) -> Result<(), String> {
    let who = &callers[model.who].identity;
    let mapped = ids.of_mid.get(&model.mid);
    let same = mapped.is_none_or(|id| *id == store.id)
        && store.pool == POOL_NAMES[model.pool]
        && store.bucket == model.bucket
        && store.identity == who.key
        && store.issuer == who.issuer
        && store.subject == who.subject
        && store.client == who.client
        && store.subject_key == who.subject_key
        && store.created_ms == model.created
        && store.last_seen_ms == model.last_seen
        && store.idle_expires_ms == model.idle_exp
        && store.absolute_expires_ms == model.abs_exp;
    if same {
        Ok(())
    } else {
        Err(format!(
            "expected {model} (id {}), store has {}",
            ids.id(model.mid),
            show(store)
        ))
    }
}

/// Closed sessions: the same sessions (by id), each with the same reason
/// and fields, none twice.
fn same_closed(
    what: &str,
    store: &[ClosedSession],
    model: &[(ModelSession, CloseReason)],
    ids: &Ids,
    callers: &[Caller],
) -> Result<(), String> {
    let mut got: BTreeMap<usize, (&Session, CloseReason)> = BTreeMap::new();
    for c in store {
        let mid = ids.mid(&c.session.id)?;
        if got.insert(mid, (&c.session, c.reason)).is_some() {
            return Err(format!("{what}: m{mid} reported twice"));
        }
    }
    let got_reasons: BTreeMap<usize, CloseReason> =
        got.iter().map(|(mid, (_, r))| (*mid, *r)).collect();
    let want_reasons: BTreeMap<usize, CloseReason> =
        model.iter().map(|(s, r)| (s.mid, *r)).collect();
    if got_reasons != want_reasons {
        let list = |m: &BTreeMap<usize, CloseReason>| {
            m.iter()
                .map(|(mid, r)| format!("m{mid}:{}", r.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "{what}: expected [{}], store reported [{}]",
            list(&want_reasons),
            list(&got_reasons)
        ));
    }
    for (session, _) in model {
        let (got, _) = got[&session.mid];
        same_session(got, session, ids, callers).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}

/// Compares an admission; on success returns the new session's store id.
fn same_admission(
    store: &AdmitOutcome,
    model: &ModelAdmit,
    ids: &Ids,
    callers: &[Caller],
) -> Result<Option<(usize, String)>, String> {
    same_closed("expired", &store.expired, &model.expired, ids, callers)?;
    let mismatch = || {
        format!(
            "expected {}, store answered {}",
            show_decision(&model.decision, ids),
            show_admission(&store.admission)
        )
    };
    match (&model.decision, &store.admission) {
        (Decision::Reused(m), Admission::Reused(s)) => {
            same_session(s, m, ids, callers)?;
            Ok(None)
        }
        (
            Decision::Opened {
                session: m,
                replaced: mr,
            },
            Admission::Opened {
                session: s,
                replaced: sr,
            },
        ) => {
            same_session(s, m, ids, callers)?;
            match (mr, sr) {
                (None, None) => {}
                (Some(mr), Some(sr)) => {
                    if sr.reason != CloseReason::Replaced || ids.mid(&sr.session.id)? != mr.mid {
                        return Err(mismatch());
                    }
                    same_session(&sr.session, mr, ids, callers)
                        .map_err(|e| format!("replaced: {e}"))?;
                }
                _ => return Err(mismatch()),
            }
            Ok(Some((m.mid, s.id.clone())))
        }
        (
            Decision::PoolFull {
                limit,
                in_use,
                retry_after_s,
            },
            Admission::Refused(Refusal::PoolFull {
                limit: l,
                in_use: u,
                retry_after: r,
            }),
        ) if limit == l && in_use == u && Duration::from_secs(*retry_after_s) == *r => Ok(None),
        (
            Decision::SubjectLimit {
                limit,
                retry_after_s,
            },
            Admission::Refused(Refusal::SubjectLimit {
                limit: l,
                retry_after: r,
            }),
        ) if limit == l && Duration::from_secs(*retry_after_s) == *r => Ok(None),
        (
            Decision::Queued {
                number,
                ahead,
                retry_ms,
            },
            Admission::Queued {
                ticket,
                ahead: a,
                retry_after: r,
            },
        ) if ticket.seq == *number && ahead == a && retry_ms.map(Duration::from_millis) == *r => {
            Ok(None)
        }
        (
            Decision::QueueFull {
                limit,
                in_use,
                waiting,
                retry_after_s,
            },
            Admission::Refused(Refusal::QueueFull {
                limit: l,
                in_use: u,
                waiting: w,
                retry_after: r,
            }),
        ) if limit == l
            && in_use == u
            && waiting == w
            && Duration::from_secs(*retry_after_s) == *r =>
        {
            Ok(None)
        }
        (
            Decision::QueueTimeout {
                limit,
                retry_after_s,
            },
            Admission::Refused(Refusal::QueueTimeout {
                limit: l,
                retry_after: r,
            }),
        ) if limit == l && Duration::from_secs(*retry_after_s) == *r => Ok(None),
        _ => Err(mismatch()),
    }
}

fn show_decision(d: &Decision, ids: &Ids) -> String {
    match d {
        Decision::Reused(s) => format!("reused {s} (id {})", ids.id(s.mid)),
        Decision::Opened { session, replaced } => match replaced {
            Some(r) => format!("opened {session} replacing {r}"),
            None => format!("opened {session}"),
        },
        Decision::PoolFull {
            limit,
            in_use,
            retry_after_s,
        } => {
            format!("pool full (limit {limit}, in use {in_use}, retry after {retry_after_s} s)")
        }
        Decision::SubjectLimit {
            limit,
            retry_after_s,
        } => {
            format!("subject limit (limit {limit}, retry after {retry_after_s} s)")
        }
        Decision::Queued {
            number,
            ahead,
            retry_ms,
        } => format!("queued (ticket {number}, {ahead} ahead, seat frees in {retry_ms:?} ms)"),
        Decision::QueueFull {
            limit,
            in_use,
            waiting,
            retry_after_s,
        } => format!(
            "queue full (limit {limit}, in use {in_use}, {waiting} waiting, retry after {retry_after_s} s)"
        ),
        Decision::QueueTimeout {
            limit,
            retry_after_s,
        } => format!("ticket lapsed (limit {limit}, retry after {retry_after_s} s)"),
    }
}

fn show_admission(a: &Admission) -> String {
    match a {
        Admission::Reused(s) => format!("reused {}", show(s)),
        Admission::Opened { session, replaced } => match replaced {
            Some(r) => format!(
                "opened {} replacing {} ({})",
                show(session),
                show(&r.session),
                r.reason.as_str()
            ),
            None => format!("opened {}", show(session)),
        },
        Admission::Refused(Refusal::PoolFull {
            limit,
            in_use,
            retry_after,
        }) => format!(
            "pool full (limit {limit}, in use {in_use}, retry after {} s)",
            retry_after.as_secs_f64()
        ),
        Admission::Refused(Refusal::Revoked) => "revoked".to_string(),
        Admission::Refused(Refusal::SubjectLimit { limit, retry_after }) => format!(
            "subject limit (limit {limit}, retry after {} s)",
            retry_after.as_secs_f64()
        ),
        Admission::Queued {
            ticket,
            ahead,
            retry_after,
        } => format!(
            "queued (ticket {}, {ahead} ahead, seat frees in {:?} ms)",
            ticket.seq,
            retry_after.map(|d| d.as_millis())
        ),
        Admission::Refused(Refusal::QueueFull {
            limit,
            in_use,
            waiting,
            retry_after,
        }) => format!(
            "queue full (limit {limit}, in use {in_use}, {waiting} waiting, retry after {} s)",
            retry_after.as_secs_f64()
        ),
        Admission::Refused(Refusal::QueueTimeout { limit, retry_after }) => format!(
            "ticket lapsed (limit {limit}, retry after {} s)",
            retry_after.as_secs_f64()
        ),
    }
}

fn show_closed(closed: &[ClosedSession], ids: &Ids) -> String {
    let items: Vec<String> = closed
        .iter()
        .map(|c| {
            let mid = ids
                .of_id
                .get(&c.session.id)
                .map_or("m?".into(), |m| format!("m{m}"));
            format!("{mid}:{}", c.reason.as_str())
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// After every step: what the store shows equals the model, and the seat
/// invariants hold on the store's own view.
async fn check_state(
    store: &dyn Store,
    model: &Model,
    ids: &Ids,
    callers: &[Caller],
    pools: &Pools,
) -> Result<(), String> {
    let open = model.open_sessions();

    // usage(): every pool, in order, with the model's open count.
    let usage = store.usage().await.map_err(|e| format!("usage: {e}"))?;
    let expected: Vec<PoolUsage> = pools
        .iter()
        .enumerate()
        .map(|(index, p)| PoolUsage {
            pool: p.name.clone(),
            limit: p.limit,
            reserved: p.reserved_total(),
            in_use: (open.iter().filter(|s| s.pool == index).count() + model.kept_in(index).count())
                as u32,
            waiting: model.waiting_in(index),
        })
        .collect();
    // The hard bound: the limit plus the pool's overdraft, whatever the model says.
    for (u, p) in usage.iter().zip(pools.iter()) {
        if u.in_use > u.limit + p.overdraft {
            return Err(format!(
                "usage: {} seats held in {} (limit {}, overdraft {})",
                u.in_use, u.pool, u.limit, p.overdraft
            ));
        }
    }
    if usage != expected {
        return Err(format!("usage: expected {expected:?}, store has {usage:?}"));
    }

    // list(): exactly the model's open sessions, oldest first.
    let listed = store
        .list(&SessionFilter::default())
        .await
        .map_err(|e| format!("list: {e}"))?;
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut identities = BTreeSet::new();
    let mut per_bucket: BTreeMap<(String, usize), u32> = BTreeMap::new();
    let mut per_subject: BTreeMap<(String, SubjectKey), u32> = BTreeMap::new();
    for s in &listed {
        let mid = ids.mid(&s.id).map_err(|e| format!("list: {e}"))?;
        if !seen.insert(mid) {
            return Err(format!("list: m{mid} listed twice"));
        }
        if !identities.insert((s.pool.clone(), s.identity)) {
            return Err(format!(
                "list: one identity holds two sessions in {}: {}",
                s.pool,
                show(s)
            ));
        }
        *per_bucket.entry((s.pool.clone(), s.bucket)).or_default() += 1;
        *per_subject
            .entry((s.pool.clone(), s.subject_key))
            .or_default() += 1;
    }
    let want: BTreeSet<usize> = open.iter().map(|s| s.mid).collect();
    if seen != want {
        let fmt = |set: &BTreeSet<usize>| {
            set.iter()
                .map(|m| format!("m{m}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "list: expected [{}], store lists [{}]",
            fmt(&want),
            fmt(&seen)
        ));
    }
    for s in &listed {
        let mid = ids.mid(&s.id)?;
        let m = open
            .iter()
            .find(|m| m.mid == mid)
            .expect("listed mids are open");
        same_session(s, m, ids, callers).map_err(|e| format!("list: {e}"))?;
    }
    if !listed
        .windows(2)
        .all(|w| (w[0].created_ms, &w[0].id) <= (w[1].created_ms, &w[1].id))
    {
        return Err("list: not ordered oldest first (then by id)".into());
    }
    for ((pool_name, bucket), held) in &per_bucket {
        let pool = pools
            .get(pool_name)
            .ok_or_else(|| format!("list: unknown pool {pool_name}"))?;
        if *held > pool.bucket_capacity(*bucket) {
            return Err(format!(
                "list: {held} seats in bucket {bucket} of {pool_name}"
            ));
        }
    }
    for ((pool_name, _), held) in &per_subject {
        let pool = pools
            .get(pool_name)
            .ok_or_else(|| format!("list: unknown pool {pool_name}"))?;
        if let Some(cap) = pool.subject_limit
            && *held > cap.max
        {
            return Err(format!(
                "list: a subject holds {held} sessions in {pool_name} (cap {})",
                cap.max
            ));
        }
    }

    // list() by pool and by `sub` (both issuers' alice).
    for (index, name) in POOL_NAMES.iter().enumerate() {
        let filter = SessionFilter {
            pool: Some((*name).into()),
            subject: None,
        };
        let got = listed_mids(store, &filter, ids).await?;
        let want: BTreeSet<usize> = open
            .iter()
            .filter(|s| s.pool == index)
            .map(|s| s.mid)
            .collect();
        if got != want {
            return Err(format!(
                "list(pool {name}): expected {want:?}, store lists {got:?}"
            ));
        }
    }
    let filter = SessionFilter {
        pool: None,
        subject: Some("alice".into()),
    };
    let got = listed_mids(store, &filter, ids).await?;
    let want: BTreeSet<usize> = open
        .iter()
        .filter(|s| SUBJECTS[subject_of(s.who)].1 == "alice")
        .map(|s| s.mid)
        .collect();
    if got != want {
        return Err(format!(
            "list(sub alice): expected {want:?}, store lists {got:?}"
        ));
    }

    // find(): every identity in every pool, without sliding.
    for (index, name) in POOL_NAMES.iter().enumerate() {
        for (who, caller) in callers.iter().enumerate() {
            let found = store
                .find(name, &caller.identity.key)
                .await
                .map_err(|e| format!("find: {e}"))?;
            let want = open.iter().find(|s| s.pool == index && s.who == who);
            match (found, want) {
                (None, None) => {}
                (Some(s), Some(m)) => {
                    same_session(&s, m, ids, callers).map_err(|e| format!("find: {e}"))?
                }
                (found, want) => {
                    return Err(format!(
                        "find({name}, {}): expected {}, store found {}",
                        caller_name(who),
                        want.map_or("nothing".into(), |m| m.to_string()),
                        found.as_ref().map_or("nothing".into(), show)
                    ));
                }
            }
        }
    }

    // get(): every id ever opened, open or not.
    let mut mids: Vec<&usize> = ids.of_mid.keys().collect();
    mids.sort();
    for mid in mids {
        let id = ids.id(*mid);
        let got = store.get(id).await.map_err(|e| format!("get: {e}"))?;
        let want = open.iter().find(|s| s.mid == *mid);
        match (got, want) {
            (None, None) => {}
            (Some(s), Some(m)) => {
                same_session(&s, m, ids, callers).map_err(|e| format!("get: {e}"))?
            }
            (got, _) => {
                return Err(format!(
                    "get(m{mid}): expected {}, store has {}",
                    want.map_or("nothing".into(), |m| m.to_string()),
                    got.as_ref().map_or("nothing".into(), show)
                ));
            }
        }
    }
    Ok(())
}

async fn listed_mids(
    store: &dyn Store,
    filter: &SessionFilter,
    ids: &Ids,
) -> Result<BTreeSet<usize>, String> {
    let listed = store.list(filter).await.map_err(|e| format!("list: {e}"))?;
    listed.iter().map(|s| ids.mid(&s.id)).collect()
}

// ---------------------------------------------------------------------------
// Running a sequence.

/// How often each situation worth testing occurred over all cases of a
/// test, so a generator that stops reaching one fails loudly instead of
/// passing vacuously.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<&'static str, u64>>);

impl Tally {
    fn count(&self, what: &'static str) {
        *self.0.lock().expect("tally lock").entry(what).or_default() += 1;
    }

    /// Prints the counts; fails unless every one of `required` occurred.
    fn report(&self, test: &str, required: &[&[&str]]) {
        let counts = self.0.lock().expect("tally lock");
        eprintln!("{test}: {counts:#?}");
        let missing: Vec<&&str> = required
            .iter()
            .flat_map(|group| group.iter())
            .filter(|what| counts.get(**what).copied().unwrap_or(0) == 0)
            .collect();
        assert!(
            missing.is_empty(),
            "{test}: the generated sequences never reached {missing:?}; counts: {counts:#?}"
        );
    }
}

/// Runs one sequence against the fleet and the model; the error carries a
/// trace of every step so far.
async fn run_sequence(
    fleet: &Fleet,
    policy: SubjectLimitPolicy,
    ops: &[Op],
    tally: &Tally,
) -> Result<(), String> {
    let callers = callers();
    let mut model = Model::new(model_rules(policy));
    let mut ids = Ids::default();
    let mut trace: Vec<String> = Vec::new();
    let n = fleet.instances.len();

    for (step, op) in ops.iter().enumerate() {
        let op = op.on_fleet_of(n);
        let result = run_step(fleet, &callers, &mut model, &mut ids, &op, tally).await;
        // Check through another instance than the one that acted.
        let check_on = (step + 1) % n;
        let failed = match result {
            Ok(line) => {
                trace.push(format!("#{step} {op:?} -> {line}"));
                let store = fleet.instances[check_on].as_ref();
                check_state(store, &model, &ids, &callers, &fleet.pools)
                    .await
                    .err()
                    .map(|e| (format!("the state check through instance #{check_on}"), e))
            }
            Err(e) => Some(("the step itself".to_string(), e)),
        };
        if let Some((part, e)) = failed {
            let held: Vec<String> = model
                .held
                .iter()
                .map(|s| {
                    let state = if s.is_open_at(model.now) {
                        "open"
                    } else {
                        "expired, unreported"
                    };
                    format!("  {s} (id {}, {state})", ids.id(s.mid))
                })
                .collect();
            return Err(format!(
                "step #{step} {op:?} at +{now} ms: {part} failed:\n  {e}\n\n\
                 fleet of {n}; trace:\n{}\n\nthe model holds (at +{now} ms):\n{}",
                trace.join("\n"),
                held.join("\n"),
                now = model.now - T0,
            ));
        }
    }
    Ok(())
}

/// Counts the boundaries an operation runs at: some held session expires
/// exactly now, or one millisecond from now.
fn count_boundaries(model: &Model, tally: &Tally) {
    if model.held.iter().any(|s| s.expires() == model.now) {
        tally.count("operation at a session's exact expiry");
    }
    if model.held.iter().any(|s| s.expires() == model.now + 1) {
        tally.count("operation 1 ms before a session's expiry");
    }
}

fn count_closed(closed: &[(ModelSession, CloseReason)], by: &'static str, tally: &Tally) {
    if !closed.is_empty() {
        tally.count(by);
    }
    for (_, reason) in closed {
        tally.count(match reason {
            CloseReason::Idle => "closed: idle",
            CloseReason::Absolute => "closed: absolute",
            CloseReason::Admin => "closed: admin",
            CloseReason::Backchannel => "closed: backchannel",
            _ => "closed: other",
        });
    }
}

/// Runs one operation on the store and the model and compares the answers;
/// returns a line for the trace.
async fn run_step(
    fleet: &Fleet,
    callers: &[Caller],
    model: &mut Model,
    ids: &mut Ids,
    op: &Op,
    tally: &Tally,
) -> Result<String, String> {
    if !matches!(op, Op::Advance { .. }) {
        count_boundaries(model, tally);
    }
    match *op {
        Op::Admit { who, pool, on } => {
            admit(fleet, callers, model, ids, (who, pool, on), tally).await
        }
        Op::Refresh { pick, on } => {
            let open = model.open_sessions();
            let (who, pool) = if open.is_empty() {
                (pick % CALLERS, 0)
            } else {
                let s = open[pick % open.len()];
                (s.who, s.pool)
            };
            admit(fleet, callers, model, ids, (who, pool, on), tally).await
        }
        Op::Sibling { pick, other, on } => {
            let open = model.open_sessions();
            let (who, pool) = if open.is_empty() {
                (pick % CALLERS, 0)
            } else {
                let s = open[pick % open.len()];
                let client = (s.who % CLIENTS.len() + 1 + other % 2) % CLIENTS.len();
                (subject_of(s.who) * CLIENTS.len() + client, s.pool)
            };
            admit(fleet, callers, model, ids, (who, pool, on), tally).await
        }
        Op::Advance { ms } => {
            fleet.clock.advance(Duration::from_millis(ms));
            model.now += ms;
            Ok(format!("now +{}", model.now - T0))
        }
        Op::Close { pick, on } => {
            // Any id ever opened (so closing a closed or expired one is
            // covered), or a never-issued one.
            let (mid, id) = if model.next_mid == 0 {
                (None, "0123456789abcdef0123456789abcdef".to_string())
            } else {
                let mid = pick % model.next_mid;
                (Some(mid), ids.id(mid).to_string())
            };
            let got = fleet.instances[on]
                .close(&id, CloseReason::Admin)
                .await
                .map_err(|e| format!("close: {e}"))?;
            let want = mid.and_then(|mid| model.close(mid, CloseReason::Admin));
            let got: Vec<ClosedSession> = got.into_iter().collect();
            let want: Vec<(ModelSession, CloseReason)> = want.into_iter().collect();
            same_closed("close", &got, &want, ids, callers)?;
            if want.is_empty() {
                tally.count("close of a session that is not open");
            }
            count_closed(&want, "close of an open session", tally);
            Ok(format!(
                "{} closed {}",
                mid.map_or("unknown id".into(), |m| format!("m{m}")),
                show_closed(&got, ids)
            ))
        }
        Op::CloseSubject { subject, on } => {
            let key = callers[subject * CLIENTS.len()].identity.subject_key;
            let got = fleet.instances[on]
                .close_subject(&key, CloseReason::Backchannel)
                .await
                .map_err(|e| format!("close_subject: {e}"))?;
            let want = model.close_subject(subject, CloseReason::Backchannel);
            same_closed("close_subject", &got, &want, ids, callers)?;
            if want
                .iter()
                .map(|(s, _)| s.pool)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
            {
                tally.count("close_subject across pools");
            }
            count_closed(&want, "close_subject closing some", tally);
            Ok(format!("closed {}", show_closed(&got, ids)))
        }
        Op::Retry { pick, on } => {
            let holders: Vec<(usize, usize)> = model.holding.keys().copied().collect();
            let (pool, who) = if holders.is_empty() {
                (0, pick % CALLERS)
            } else {
                holders[pick % holders.len()]
            };
            admit(fleet, callers, model, ids, (who, pool, on), tally).await
        }
        Op::Leave {
            pick,
            timed_out,
            on,
        } => {
            let holders: Vec<(usize, usize)> = model.holding.keys().copied().collect();
            if holders.is_empty() {
                return Ok("nobody holds a ticket".into());
            }
            let (pool, who) = holders[pick % holders.len()];
            let ticket = ids
                .tickets
                .remove(&(pool, who))
                .ok_or_else(|| format!("test setup: no store ticket for {}", caller_name(who)))?;
            let pool_config =
                Arc::clone(fleet.pools.get(POOL_NAMES[pool]).expect("configured pool"));
            let exit = if timed_out {
                QueueExit::TimedOut
            } else {
                QueueExit::Left
            };
            let got = fleet.instances[on]
                .leave_queue(&pool_config, &ticket, exit)
                .await
                .map_err(|e| format!("leave_queue: {e}"))?;
            let want = model.leave(pool, who);
            if got != want {
                return Err(format!(
                    "leave_queue: expected {want} (ticket still in line), store said {got}"
                ));
            }
            tally.count(if want {
                "left the line"
            } else {
                "left the line after its ticket lapsed"
            });
            Ok(format!("{} left the line: {got}", caller_name(who)))
        }
        Op::Sweep { on } => {
            let got = fleet.instances[on]
                .sweep()
                .await
                .map_err(|e| format!("sweep: {e}"))?;
            let want = model.sweep();
            same_closed("sweep", &got, &want, ids, callers)?;
            count_closed(&want, "sweep closing some", tally);
            Ok(format!("swept {}", show_closed(&got, ids)))
        }
    }
}

/// An admission of caller `who` to `pool` on instance `on`: every answer
/// the model allows is tried, the store's must be one of them.
async fn admit(
    fleet: &Fleet,
    callers: &[Caller],
    model: &mut Model,
    ids: &mut Ids,
    (who, pool, on): (usize, usize, usize),
    tally: &Tally,
) -> Result<String, String> {
    let caller = &callers[who];
    let pool_config = Arc::clone(fleet.pools.get(POOL_NAMES[pool]).expect("configured pool"));
    let reserved = pool_config.reserved_bucket(&caller.claims);
    if reserved != model.reserved_bucket(pool, who) {
        return Err(format!(
            "test setup: the pool puts {} in bucket {reserved:?}, the model in {:?}",
            caller_name(who),
            model.reserved_bucket(pool, who)
        ));
    }
    let ticket = ids.tickets.get(&(pool, who)).cloned();
    let request = AdmitRequest {
        pool: &pool_config,
        identity: &caller.identity,
        reserved,
        sid: None,
        token: None,
        ticket: ticket.as_ref(),
    };
    let outcome = fleet.instances[on]
        .admit(&request)
        .await
        .map_err(|e| format!("admit: {e}"))?;
    let answers = model.admit(pool, who);
    if answers.len() > 1 {
        tally.count("replace_oldest with a tie for least recently used");
    }
    let mut errors = Vec::new();
    for (next, expected) in answers {
        match same_admission(&outcome, &expected, ids, callers) {
            Ok(opened) => {
                if let Some((mid, id)) = opened {
                    ids.record(mid, &id)?;
                }
                match &outcome.admission {
                    Admission::Queued { ticket, .. } => {
                        ids.tickets.insert((pool, who), ticket.clone());
                    }
                    _ => {
                        ids.tickets.remove(&(pool, who));
                    }
                }
                count_admission(model, &expected, pool, who, tally);
                *model = next;
                return Ok(format!(
                    "{}; expired {}",
                    show_decision(&expected.decision, ids),
                    show_closed(&outcome.expired, ids)
                ));
            }
            Err(e) => errors.push(e),
        }
    }
    Err(format!("admit: {}", errors.join("\n  or: ")))
}

fn count_admission(before: &Model, answer: &ModelAdmit, pool: usize, who: usize, tally: &Tally) {
    count_closed(&answer.expired, "admit reporting expired sessions", tally);
    match &answer.decision {
        Decision::Reused(session) => {
            tally.count("reused");
            if !before.held.iter().any(|s| s.mid == session.mid) {
                tally.count("a session given back from its kept seat");
            }
        }
        Decision::Opened { session, replaced } => {
            tally.count("opened");
            if before.rules[pool].overdraft == Some(session.bucket) {
                tally.count("opened beyond the limit (overdraft)");
            } else if session.bucket != 0 {
                tally.count("opened in a reserved seat");
            } else if before.reserved_bucket(pool, who).is_some() {
                tally.count("reserved member opened in a shared seat");
            }
            if let Some(victim) = replaced {
                tally.count("opened replacing the least recently used");
                let more_recent = before.held.iter().any(|s| {
                    s.pool == pool
                        && subject_of(s.who) == subject_of(who)
                        && s.last_seen > victim.last_seen
                });
                if more_recent {
                    tally.count("replace_oldest passing over a more recently used session");
                }
            }
        }
        Decision::PoolFull { .. } => {
            tally.count("refused: pool full");
            if before.kept_in(pool).next().is_some() {
                tally.count("refused while a closed session's seat is kept");
            }
            let subject = subject_of(who);
            let mine = before
                .held
                .iter()
                .filter(|s| {
                    s.pool == pool && subject_of(s.who) == subject && s.is_open_at(before.now)
                })
                .count();
            if before.rules[pool].subject_cap.is_some_and(|(cap, policy)| {
                policy == SubjectLimitPolicy::ReplaceOldest && mine >= cap as usize
            }) {
                tally.count("replace_oldest refused: the freed seat is not usable");
            }
        }
        Decision::SubjectLimit { .. } => tally.count("refused: subject limit"),
        Decision::Queued { ahead, .. } => {
            if before.holding.contains_key(&(pool, who)) {
                tally.count("still waiting with a ticket");
            } else {
                tally.count("queued");
            }
            if *ahead > 0 {
                tally.count("queued behind another caller");
            }
        }
        Decision::QueueFull { .. } => tally.count("refused: queue full"),
        Decision::QueueTimeout { .. } => tally.count("refused: the ticket lapsed"),
    }
    if before.holding.contains_key(&(pool, who))
        && matches!(answer.decision, Decision::Opened { .. })
    {
        tally.count("a waiting caller got its seat");
    }
    if !before.holding.contains_key(&(pool, who))
        && before
            .line
            .iter()
            .any(|t| t.pool == pool && t.lapse > before.now)
        && matches!(answer.decision, Decision::Queued { .. })
        && before
            .open_sessions()
            .iter()
            .filter(|s| s.pool == pool)
            .count()
            + before.kept_in(pool).count()
            < (before.rules[pool].limit as usize)
    {
        tally.count("a newcomer waited behind callers while a seat was free");
    }
}

// ---------------------------------------------------------------------------
// The tests.

/// What every run must have reached, whatever the subject policy.
const ALWAYS: &[&str] = &[
    "opened",
    "reused",
    "opened in a reserved seat",
    "opened beyond the limit (overdraft)",
    "a session given back from its kept seat",
    "refused while a closed session's seat is kept",
    "reserved member opened in a shared seat",
    "refused: pool full",
    "admit reporting expired sessions",
    "sweep closing some",
    "closed: idle",
    "closed: absolute",
    "close of an open session",
    "close of a session that is not open",
    "close_subject closing some",
    "close_subject across pools",
    "operation at a session's exact expiry",
    "operation 1 ms before a session's expiry",
    "queued",
    "queued behind another caller",
    "still waiting with a ticket",
    "a waiting caller got its seat",
    "refused: queue full",
    "refused: the ticket lapsed",
    "left the line",
    "left the line after its ticket lapsed",
];

const DENY: &[&str] = &["refused: subject limit"];

const REPLACE: &[&str] = &[
    "opened replacing the least recently used",
    "replace_oldest passing over a more recently used session",
    "replace_oldest refused: the freed seat is not usable",
];

/// Runs `cases` random sequences (unless `PROPTEST_CASES` says otherwise)
/// from a fixed seed (unless `PROPTEST_RNG_SEED` says otherwise), then
/// checks that the situations `required` all occurred.
fn run_cases(
    test: &str,
    cases: u32,
    seed: u64,
    fleet_sizes: RangeInclusive<usize>,
    required: &[&[&str]],
    case: impl Fn(usize, &[Op], &Tally) -> Result<(), String>,
) {
    let defaults = Config::default();
    let exploring = ["PROPTEST_CASES", "PROPTEST_RNG_SEED"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    let config = Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            defaults.cases
        } else {
            cases
        },
        rng_seed: match defaults.rng_seed {
            RngSeed::Random => RngSeed::Fixed(seed),
            fixed => fixed,
        },
        failure_persistence: None,
        // A Redis case starts a server: keep shrinking bounded.
        max_shrink_iters: 500,
        ..defaults
    };
    let seed = config.rng_seed;
    let tally = Tally::default();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case_strategy(fleet_sizes), |(size, ops)| {
        case(size, &ops, &tally).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (size, ops))) => {
            let ops: Vec<Op> = ops.iter().map(|op| op.on_fleet_of(size)).collect();
            panic!(
                "{test}: the store disagrees with the model \
                 (seed {seed}; rerun with PROPTEST_RNG_SEED={seed}).\n\
                 minimal sequence (fleet of {size}, {} steps): {ops:#?}\n\n{reason}",
                ops.len()
            )
        }
        Err(TestError::Abort(reason)) => panic!("{test}: aborted: {reason}"),
    }
    // The default run must reach every situation; an exploring run with
    // other cases or another seed only reports what it reached.
    tally.report(test, if exploring { &[] } else { required });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn memory_case(policy: SubjectLimitPolicy) -> impl Fn(usize, &[Op], &Tally) -> Result<(), String> {
    move |_, ops, tally| {
        let fleet = memory_fleet(policy);
        runtime().block_on(run_sequence(&fleet, policy, ops, tally))
    }
}

fn redis_case(policy: SubjectLimitPolicy) -> impl Fn(usize, &[Op], &Tally) -> Result<(), String> {
    move |size, ops, tally| {
        let rt = runtime();
        let fleet = redis_fleet(policy, size)?;
        let result = rt.block_on(run_sequence(&fleet, policy, ops, tally));
        // The stores' connections end with the runtime, then the server.
        drop(fleet);
        drop(rt);
        result
    }
}

#[test]
fn memory_store_follows_the_model_with_subject_cap_deny() {
    run_cases(
        "memory, deny",
        256,
        0x5e55_10de_0001,
        1..=1,
        &[ALWAYS, DENY],
        memory_case(SubjectLimitPolicy::Deny),
    );
}

#[test]
fn memory_store_follows_the_model_with_subject_cap_replace_oldest() {
    run_cases(
        "memory, replace_oldest",
        256,
        0x5e55_10de_0002,
        1..=1,
        &[ALWAYS, REPLACE],
        memory_case(SubjectLimitPolicy::ReplaceOldest),
    );
}

#[test]
fn redis_fleet_follows_the_model_with_subject_cap_deny() {
    run_cases(
        "redis fleet, deny",
        80,
        0x5e55_10de_0003,
        2..=3,
        &[ALWAYS, DENY],
        redis_case(SubjectLimitPolicy::Deny),
    );
}

#[test]
fn redis_fleet_follows_the_model_with_subject_cap_replace_oldest() {
    run_cases(
        "redis fleet, replace_oldest",
        80,
        0x5e55_10de_0004,
        2..=3,
        &[ALWAYS, REPLACE],
        redis_case(SubjectLimitPolicy::ReplaceOldest),
    );
}
