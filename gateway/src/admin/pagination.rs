//! Pagination of the session list: pages of sessions in the order
//! (created, id), oldest first, each page after an opaque cursor.
//!
//! A cursor names a position, not a session: it is the (created, id) of the
//! last session of the previous page. So a page is correct even when that
//! session closed meanwhile, no session is shown twice, and a session
//! opened during the walk appears on a later page (it is newer than any
//! cursor). The encoding (base64url of `v1.<created_ms>.<id>`) is not a
//! contract; clients pass `next_cursor` back unchanged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::UnixMillis;
use crate::session::Session;

/// A position in the session order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    created_ms: UnixMillis,
    id: String,
}

impl Cursor {
    /// The position just after `session`.
    pub fn after(session: &Session) -> Self {
        Self {
            created_ms: session.created_ms,
            id: session.id.clone(),
        }
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1.{}.{}", self.created_ms, self.id))
    }

    /// Parses [`Cursor::encode`]'s output; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix("v1.")?;
        let (created, id) = rest.split_once('.')?;
        if id.is_empty() {
            return None;
        }
        Some(Self {
            created_ms: created.parse().ok()?,
            id: id.to_string(),
        })
    }

    fn is_before(&self, session: &Session) -> bool {
        (self.created_ms, self.id.as_str()) < (session.created_ms, session.id.as_str())
    }
}

/// One page of sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most `limit` sessions, oldest first.
    pub sessions: Vec<Session>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// The page of at most `limit` sessions after `cursor` (from the start
/// without one), out of every matching session in any order.
pub fn page(mut sessions: Vec<Session>, cursor: Option<&Cursor>, limit: usize) -> Page {
    sessions.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    if let Some(cursor) = cursor {
        sessions.retain(|s| cursor.is_before(s));
    }
    let next = if sessions.len() > limit {
        sessions.truncate(limit);
        sessions.last().map(Cursor::after)
    } else {
        None
    };
    Page { sessions, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::identity::Digest32;

    fn session(id: &str, created_ms: u64) -> Session {
        Session {
            id: id.to_string(),
            pool: "default".into(),
            bucket: 0,
            identity: Digest32([0; 32]),
            issuer: "https://idp".into(),
            subject: "alice".into(),
            client: None,
            subject_key: Digest32([0; 32]),
            created_ms,
            last_seen_ms: created_ms,
            idle_expires_ms: created_ms + 1000,
            absolute_expires_ms: created_ms + 2000,
        }
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.sessions.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor::after(&session("ab12", 1_700_000_000_123));
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "!!",
            "djEu",
            &URL_SAFE_NO_PAD.encode("v1.x.ab"),
            &URL_SAFE_NO_PAD.encode("v1.12."),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_walk_every_session_once_in_order() {
        // Two sessions share a millisecond: the id breaks the tie.
        let all = vec![
            session("e", 30),
            session("b", 10),
            session("d", 20),
            session("a", 10),
            session("c", 20),
        ];
        let first = page(all.clone(), None, 2);
        assert_eq!(ids(&first), ["a", "b"]);
        let second = page(all.clone(), first.next.as_ref(), 2);
        assert_eq!(ids(&second), ["c", "d"]);
        let third = page(all.clone(), second.next.as_ref(), 2);
        assert_eq!(ids(&third), ["e"]);
        assert_eq!(third.next, None);
        // An exact fit ends without a further (empty) page.
        assert_eq!(page(all.clone(), None, 5).next, None);
    }

    #[test]
    fn a_cursor_survives_its_session_closing() {
        let all = vec![session("a", 10), session("b", 20), session("c", 30)];
        let first = page(all, None, 2);
        let remaining = vec![session("a", 10), session("c", 30)];
        assert_eq!(ids(&page(remaining, first.next.as_ref(), 2)), ["c"]);
    }
}
