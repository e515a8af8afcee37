//! What a session is: the record a store holds for one seat, how it ends,
//! and how it is shown over HTTP.
//!
//! These are plain values; the stores ([`super::MemoryStore`],
//! [`super::RedisStore`]) create and return them, the proxy and the admin API
//! read them.

use serde::Serialize;

use super::identity::{IdentityKey, SubjectKey};
use crate::clock::UnixMillis;
use crate::licensing::Bucket;

/// The random, unguessable id of a session: 32 lowercase hex digits from the
/// memory store, 38 base64url characters from the Redis store (the
/// identity's slot and 96 random bits), or 32 hex digits for sessions an
/// earlier Redis store opened.
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

    /// Whether a close for this reason keeps the seat for the identity in a
    /// pool with `linger` or `min_hold`: the user's own closes and closes by
    /// time do; an operator's, a replacement's and an abandoned admission's
    /// free it at once.
    pub fn keeps_seat(self) -> bool {
        matches!(
            self,
            CloseReason::Logout
                | CloseReason::Backchannel
                | CloseReason::Idle
                | CloseReason::Absolute
        )
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

/// A new random session id.
pub fn new_session_id() -> SessionId {
    uuid::Uuid::new_v4().simple().to_string()
}
