//! Why the access decision does not let a request through, in the domain's
//! terms. The proxy words each denial as an HTTP problem (`proxy::denial`);
//! no denial has changed any session or seat.

use crate::session::{Refusal, StoreError};

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No bearer token was presented.
    MissingToken,
    /// A token was presented but is not accepted: malformed, failing a
    /// check, or revoked. The reason names which, and never the token.
    InvalidToken(String),
    /// The token lacks scopes the route requires (all of these).
    InsufficientScope(Vec<String>),
    /// The signing keys of the token's issuer could not be loaded.
    IssuerUnavailable,
    /// No license pool accepts the token.
    NoPool,
    /// The store refused to open a session: no seat, or the subject's cap.
    Refused {
        /// The pool asked.
        pool: String,
        /// The store's reason.
        refusal: Refusal,
    },
    /// The session store failed; nothing was decided.
    StoreUnavailable,
    /// The session is used from more clients than its pool allows
    /// (`shared_token`, `on_shared = "deny"`); this client came last.
    TokenShared,
    /// The client went away while its request waited for a seat; it left
    /// the queue.
    ClientLeft,
}

impl Denial {
    /// The denial of a store call that failed, logged with what was being
    /// done (the log line is the operator's only trace of the cause).
    pub(crate) fn store(doing: &str, error: &StoreError) -> Self {
        tracing::error!(%error, "store {doing} failed");
        Denial::StoreUnavailable
    }
}
