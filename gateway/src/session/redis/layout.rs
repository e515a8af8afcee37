//! How the Redis store spells a session's names (layout 2, see
//! `lua/common.lua`): identities in base64url, a pool's sessions in one hash
//! whose fields are identity *slots*, and session ids that name their slot.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::session::identity::Digest32;
use crate::session::{Session, SessionId};

/// Characters of an identity's base64url spelling that name its slot in the
/// pool's session hash (132 bits).
pub(super) const SLOT: usize = 22;

/// Random bytes after the slot in a session id (16 base64url characters).
const ID_RANDOM_BYTES: usize = 12;

/// The slot of a key (an identity or subject key).
pub(super) fn slot(key: &Digest32) -> String {
    let mut text = key.to_base64();
    text.truncate(SLOT);
    text
}

/// A new session id for an identity: its slot, then 96 random bits.
pub(super) fn new_session_id(identity: &Digest32) -> SessionId {
    let random = uuid::Uuid::new_v4();
    let mut id = slot(identity);
    URL_SAFE_NO_PAD.encode_string(&random.as_bytes()[..ID_RANDOM_BYTES], &mut id);
    id
}

/// A session's identity as the store spells it: hex for sessions of layout
/// 1 (their ids are 32 hex digits), base64url otherwise.
pub(super) fn identity_text(session: &Session) -> String {
    if session.id.len() == 32 {
        session.identity.to_hex()
    } else {
        session.identity.to_base64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_names_its_identity_slot_and_differs_each_time() {
        let identity = Digest32::of_parts("t", [b"alice".as_slice()]);
        let a = new_session_id(&identity);
        let b = new_session_id(&identity);
        assert_eq!(a.len(), 38);
        assert!(a.starts_with(&slot(&identity)));
        assert!(identity.to_base64().starts_with(&a[..SLOT]));
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
