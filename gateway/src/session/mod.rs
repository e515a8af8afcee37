//! Sessions and the store that holds them.
//!
//! A session is the accounting record one session identity holds in one pool
//! while it uses the ERP: opening it takes a seat, closing it frees the seat.
//! The [`Store`] trait is the only way the proxy reaches session state, so the
//! memory store (one instance) and the Redis store (a fleet) are
//! interchangeable. Every store runs the same contract suite
//! ([`contract`], behind the `contract-tests` feature).

pub mod identity;
pub mod memory;
pub mod redis;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::UnixMillis;
use crate::licensing::{Bucket, Pool, Pools};

pub use identity::{IdentityKey, IdentityRule, SessionIdentity, SubjectKey};
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// The random, unguessable id of a session (32 lowercase hex digits).
pub type SessionId = String;

/// One open session: one seat of one pool held by one session identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Random id, shown to the backend as `X-Session-Id`.
    pub id: SessionId,
    /// The pool whose seat it holds.
    pub pool: String,
    /// The bucket of the pool (shared or a reserved group) the seat came from.
    pub bucket: Bucket,
    /// The session identity key.
    #[serde(serialize_with = "serialize_digest")]
    pub identity: IdentityKey,
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The client (`client_id` / `azp`), if the token named one.
    pub client: Option<String>,
    /// Issuer + subject, for per-subject caps.
    #[serde(skip)]
    pub subject_key: SubjectKey,
    /// When it was opened.
    pub created_ms: UnixMillis,
    /// When a call last used it.
    pub last_seen_ms: UnixMillis,
    /// When it closes unless a call slides it (`last_seen + idle timeout`).
    pub idle_expires_ms: UnixMillis,
    /// When it closes whatever happens (`created + absolute timeout`).
    pub absolute_expires_ms: UnixMillis,
}

fn serialize_digest<S: serde::Serializer>(d: &IdentityKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

impl Session {
    /// The moment the session closes by time alone: the earlier of its idle
    /// and absolute expiry.
    pub fn expires_ms(&self) -> UnixMillis {
        self.idle_expires_ms.min(self.absolute_expires_ms)
    }

    /// Whether it has closed by time at `now`.
    pub fn is_expired_at(&self, now: UnixMillis) -> bool {
        now >= self.expires_ms()
    }

    /// The public JSON view of the session (`GET /.gateway/session` and the
    /// admin API), with RFC 3339 timestamps in UTC with milliseconds.
    pub fn view(&self) -> SessionView {
        let at = crate::clock::rfc3339_ms;
        SessionView {
            session_id: self.id.clone(),
            pool: self.pool.clone(),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            client: self.client.clone(),
            created: at(self.created_ms),
            last_seen: at(self.last_seen_ms),
            idle_expires: at(self.idle_expires_ms),
            absolute_expires: at(self.absolute_expires_ms),
            expires: at(self.expires_ms()),
        }
    }
}

/// A session as the gateway shows it over HTTP ([`Session::view`]); the
/// identity key and seat bucket stay internal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionView {
    /// The session id.
    pub session_id: SessionId,
    /// The pool whose seat it holds.
    pub pool: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The issuer (`iss`).
    pub issuer: String,
    /// The client (`client_id` / `azp`), if any.
    pub client: Option<String>,
    /// When it was opened.
    pub created: String,
    /// When a call last used it.
    pub last_seen: String,
    /// When it closes unless a call slides it.
    pub idle_expires: String,
    /// When it closes whatever happens.
    pub absolute_expires: String,
    /// The earlier of the two expiries.
    pub expires: String,
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// No call within the idle timeout.
    Idle,
    /// The absolute lifetime ran out.
    Absolute,
    /// The user logged out through the gateway.
    Logout,
    /// The issuer sent a back-channel logout.
    Backchannel,
    /// An operator closed it.
    Admin,
    /// The subject's cap evicted it for a newer session (`replace_oldest`).
    Replaced,
}

impl CloseReason {
    /// The stable name used in logs, metrics and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Absolute => "absolute",
            CloseReason::Logout => "logout",
            CloseReason::Backchannel => "backchannel",
            CloseReason::Admin => "admin",
            CloseReason::Replaced => "replaced",
        }
    }

    /// The reason a session closed by time at `now` (absolute wins a tie,
    /// since it cannot be slid).
    pub fn of_expiry(session: &Session) -> Self {
        if session.absolute_expires_ms <= session.idle_expires_ms {
            CloseReason::Absolute
        } else {
            CloseReason::Idle
        }
    }
}

/// A session that has closed, with its reason (for audit and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSession {
    /// The session as it was last seen.
    pub session: Session,
    /// Why it closed.
    pub reason: CloseReason,
}

/// One audit event for a store's trail: field names and values, in order.
pub type AuditEvent = Vec<(&'static str, String)>;

/// What the proxy asks of the store on a call of a `session` route.
#[derive(Debug, Clone)]
pub struct AdmitRequest<'a> {
    /// The pool the token maps to.
    pub pool: &'a Arc<Pool>,
    /// The token's session identity.
    pub identity: &'a SessionIdentity,
    /// The token's reserved group in that pool, if any.
    pub reserved: Option<Bucket>,
    /// The identity provider session (`sid`) the token names, if any. The
    /// session this call opens or reuses is linked to it, in the same store
    /// call, so a back-channel logout naming that `sid` finds the session
    /// even when a token of a later identity provider session (a new login
    /// of the same user and client) reuses it; the link lapses with the
    /// session's absolute lifetime. A refused call links nothing.
    pub sid: Option<IdpSession<'a>>,
    /// The presented token, checked against the fleet's revocations inside
    /// the admission itself, so no instance opens or reuses a session for a
    /// revoked token or identity even while it has missed the revocation
    /// message. `None` skips the check (store tests).
    pub token: Option<PresentedToken<'a>>,
}

/// What a shared store hears about revocations.
#[derive(Debug, Clone)]
pub enum RevocationNews {
    /// An instance recorded this revocation.
    Revoked(Revocation),
    /// The store (re)subscribed to the revocation channel: messages may have
    /// been missed meanwhile, so the list should be fetched again.
    Resubscribed,
}

/// Who hears [`RevocationNews`]; called on the store's own runtime, so it
/// must not block.
pub type RevocationListener = Arc<dyn Fn(RevocationNews) + Send + Sync>;

/// What an admission checks of the presented token against revocations.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken<'a> {
    /// Its revocation key (its `jti`, or the digest of its signed part).
    pub key: &'a str,
    /// When it was issued (`iat`), if it says; a token without one counts
    /// as issued before any subject revocation.
    pub issued_ms: Option<UnixMillis>,
}

/// An identity provider session as a token names it: its issuer and `sid`.
#[derive(Debug, Clone, Copy)]
pub struct IdpSession<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `sid`.
    pub sid: &'a str,
}

impl IdpSession<'_> {
    /// The key links are stored and looked up under.
    pub fn key(&self) -> String {
        identity::sid_key(self.issuer, self.sid)
    }
}

/// Why a new session was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every seat the caller may use is held.
    PoolFull {
        /// The pool's limit.
        limit: u32,
        /// Seats held now.
        in_use: u32,
        /// Time until the earliest seat the caller could use frees by expiry.
        retry_after: Duration,
    },
    /// The token, its identity provider session or its subject is revoked
    /// (a revocation this instance may not have heard of yet).
    Revoked,
    /// The subject already holds its maximum number of sessions (`deny`).
    SubjectLimit {
        /// The per-subject cap.
        limit: u32,
        /// Time until the subject's earliest session expires.
        retry_after: Duration,
    },
}

/// The decision of one admission.
// A short-lived value on the stack of one request; boxing the larger
// variant would cost an allocation on every new session instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The identity's open session was reused and its idle timer slid.
    Reused(Session),
    /// A new session was opened and took a seat.
    Opened {
        /// The new session.
        session: Session,
        /// The session evicted for it under `replace_oldest`, if any.
        replaced: Option<ClosedSession>,
    },
    /// No session: nothing may be forwarded.
    Refused(Refusal),
}

impl Admission {
    /// The session the call may use, if admitted.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Admission::Reused(s) | Admission::Opened { session: s, .. } => Some(s),
            Admission::Refused(_) => None,
        }
    }
}

/// The result of [`Store::admit`]: the decision plus sessions the store
/// found expired on the way (so they are audited exactly once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitOutcome {
    /// The decision.
    pub admission: Admission,
    /// Sessions closed by time while admitting.
    pub expired: Vec<ClosedSession>,
}

/// Seat use of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Seat limit.
    pub limit: u32,
    /// Seats reserved for named groups.
    pub reserved: u32,
    /// Open sessions.
    pub in_use: u32,
}

/// Filters for [`Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions of this pool.
    pub pool: Option<String>,
    /// Only sessions of this subject (`sub`).
    pub subject: Option<String>,
}

/// How long a subject-wide revocation stays in force: longer than any access
/// token lives, so every token issued before it has expired by then.
pub const SUBJECT_REVOCATION_TTL_MS: u64 = 24 * 3600 * 1000;

/// A refusal of tokens that are otherwise valid, shared by the fleet until
/// it lapses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// One token, by its `jti` (or the SHA-256 of the token when it has
    /// none), until it expires.
    Token {
        /// The token key.
        key: String,
        /// When the revocation lapses (the token's expiry).
        until_ms: UnixMillis,
    },
    /// Every token of a subject issued before `not_before_ms`.
    Subject {
        /// Issuer + subject: what tokens are matched by.
        subject: SubjectKey,
        /// The issuer and subject the key was derived from, so operators see
        /// whom the revocation concerns; `None` for revocations recorded by
        /// versions that stored only the key.
        named: Option<SubjectName>,
        /// Tokens issued (`iat`) before this are refused.
        not_before_ms: UnixMillis,
        /// When the revocation lapses.
        until_ms: UnixMillis,
    },
}

/// The issuer and subject (`iss`, `sub`) of a subject revocation, as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectName {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
}

/// How the [`Revocation::id`] of a subject revocation starts; the rest is
/// the hex subject key.
pub const SUBJECT_REVOCATION_ID_PREFIX: &str = "subject:";

impl Revocation {
    /// A revocation of every token of `subject` of `issuer` issued before
    /// `not_before_ms`, which keeps the names beside the key.
    pub fn of_subject(
        issuer: &str,
        subject: &str,
        not_before_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> Self {
        Revocation::Subject {
            subject: identity::subject_key(issuer, subject),
            named: Some(SubjectName {
                issuer: issuer.to_string(),
                subject: subject.to_string(),
            }),
            not_before_ms,
            until_ms,
        }
    }

    /// Whether it refuses a token: by the token's key, by the revocation key
    /// of its identity provider session (`sid:<sid key>`), or by its subject
    /// when it was issued before the subject's not-before (a token without
    /// `iat` counts as issued before). Lapse is the caller's to check.
    pub fn refuses(
        &self,
        token_key: &str,
        sid_revocation: Option<&str>,
        subject: Option<&SubjectKey>,
        issued_ms: Option<UnixMillis>,
    ) -> bool {
        match self {
            Revocation::Token { key, .. } => {
                key == token_key || sid_revocation == Some(key.as_str())
            }
            Revocation::Subject {
                subject: revoked,
                not_before_ms,
                ..
            } => subject == Some(revoked) && issued_ms.unwrap_or(0) < *not_before_ms,
        }
    }

    /// When it lapses.
    pub fn until_ms(&self) -> UnixMillis {
        match self {
            Revocation::Token { until_ms, .. } | Revocation::Subject { until_ms, .. } => *until_ms,
        }
    }

    /// The stable id an operator deletes it by: a token revocation's key, or
    /// `subject:` and the hex subject key. Revocations of the same token or
    /// subject share their id whatever their times, so deleting by id lifts
    /// the refusal completely. The Redis store's `delete_revocation.lua`
    /// derives the same id from the encoded form.
    pub fn id(&self) -> String {
        match self {
            Revocation::Token { key, .. } => key.clone(),
            Revocation::Subject { subject, .. } => {
                format!("{SUBJECT_REVOCATION_ID_PREFIX}{}", subject.to_hex())
            }
        }
    }

    /// A compact text form (stored by the Redis store):
    /// `t|<until>|<key>` or `s|<until>|<subject key>|<not before>`, the
    /// latter followed by `|<issuer length>|<issuer><subject>` when the names
    /// are known. The length prefix lets issuer and subject hold any
    /// character, `|` included.
    pub fn encode(&self) -> String {
        match self {
            Revocation::Token { key, until_ms } => format!("t|{until_ms}|{key}"),
            Revocation::Subject {
                subject,
                named,
                not_before_ms,
                until_ms,
            } => {
                let mut text = format!("s|{until_ms}|{}|{not_before_ms}", subject.to_hex());
                if let Some(SubjectName { issuer, subject }) = named {
                    text.push_str(&format!("|{}|{issuer}{subject}", issuer.len()));
                }
                text
            }
        }
    }

    /// Parses [`Revocation::encode`]'s form, old subject revocations (no
    /// names) included. Names that do not hash to the stored key are
    /// dropped rather than shown: the key is what is enforced.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '|');
        let kind = parts.next()?;
        let until_ms = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        match kind {
            "t" => Some(Revocation::Token {
                key: rest.to_string(),
                until_ms,
            }),
            "s" => {
                let mut fields = rest.splitn(4, '|');
                let subject = identity::Digest32::from_hex(fields.next()?)?;
                let not_before_ms = fields.next()?.parse().ok()?;
                let named = match (fields.next(), fields.next()) {
                    (None, _) => None,
                    (Some(length), Some(names)) => {
                        let length: usize = length.parse().ok()?;
                        let issuer = names.get(..length)?;
                        let sub = names.get(length..)?;
                        (identity::subject_key(issuer, sub) == subject).then(|| SubjectName {
                            issuer: issuer.to_string(),
                            subject: sub.to_string(),
                        })
                    }
                    (Some(_), None) => return None,
                };
                Some(Revocation::Subject {
                    subject,
                    named,
                    not_before_ms,
                    until_ms,
                })
            }
            _ => None,
        }
    }
}

/// Failures of the store itself (never of the caller's input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this version does not understand.
    #[error("session store protocol error: {0}")]
    Protocol(String),
}

/// Where sessions live. All methods are atomic with respect to each other:
/// no interleaving of calls, on one instance or many, can put more sessions
/// in a pool than its limit or give one identity two seats in one pool.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reuse-and-slide the identity's session in the pool, or open one if a
    /// seat (and the subject's cap) allows, or refuse. Refusal changes nothing.
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError>;

    /// The identity's open session in a pool, without opening or sliding it.
    async fn find(&self, pool: &str, identity: &IdentityKey)
    -> Result<Option<Session>, StoreError>;

    /// An open session by id.
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError>;

    /// Closes a session by id and frees its seat; `None` if it was not open.
    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError>;

    /// Closes every open session of a subject (all pools).
    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError>;

    /// Open sessions matching a filter, oldest first.
    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError>;

    /// Seat use of every configured pool, in configuration order.
    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError>;

    /// Closes every session that has expired by time and returns them.
    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the pools of a reloaded configuration: their limits, matches,
    /// reserved seats, caps and timeouts apply from the next call on; open
    /// sessions stay open and keep their seats. A pool the new configuration
    /// no longer names keeps its open sessions (listed, closable, swept) until
    /// they close, but is no longer reported by [`Store::usage`].
    fn reconfigure(&self, pools: &Pools);

    /// Records a revocation for the whole fleet, until it lapses.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;

    /// The revocations in force now.
    async fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;

    /// Deletes, for the whole fleet, the revocations in force whose
    /// [`Revocation::id`] is `id`, and returns them (none: nothing matched).
    async fn delete_revocation(&self, id: &str) -> Result<Vec<Revocation>, StoreError>;

    /// Registers who hears revocations the rest of the fleet publishes (and
    /// when the store may have missed some). A store that is not shared
    /// (memory) has nothing to tell.
    fn on_revocation_news(&self, _listener: RevocationListener) {}

    /// The ids of revocations deleted by [`Store::delete_revocation`] that
    /// would still be in force, so an instance that keeps its own
    /// revocations through a loss of store data does not bring a deleted one
    /// back.
    async fn deleted_revocations(&self) -> Result<Vec<String>, StoreError>;

    /// The sessions linked to an identity provider session (`sid` key) by
    /// the admissions that opened or reused them, unless the links lapsed.
    async fn linked_sessions(&self, sid_key: &str) -> Result<Vec<SessionId>, StoreError>;

    /// Queues an audit event for the store's own trail, where it has one
    /// (the Redis store: a capped stream, written in the background). The
    /// memory store keeps none: its audit trail is the log.
    fn queue_audit(&self, _event: AuditEvent) {}

    /// Records a one-time token id (a logout token's `jti`) until `until_ms`;
    /// `false` when it was recorded before — a replay.
    async fn first_use(&self, key: &str, until_ms: UnixMillis) -> Result<bool, StoreError>;

    /// Forgets a one-time token id recorded by [`Store::first_use`], so the
    /// token counts as unused again: a back-channel logout reserves the
    /// logout token's `jti` before it acts, and releases it when the store
    /// failed half-way, so the identity provider's retry is not a replay.
    async fn release_use(&self, key: &str) -> Result<(), StoreError>;
}

/// A store shared by the proxy, the sweeper and the admin API.
pub type SharedStore = Arc<dyn Store>;

/// A new random session id.
pub fn new_session_id() -> SessionId {
    uuid::Uuid::new_v4().simple().to_string()
}
