//! Revoked tokens: tokens that verify but must be refused anyway, because
//! their user logged out or an operator revoked them.
//!
//! The list is shared through the session store (so it holds across the
//! fleet) and mirrored in each instance, where the hot path checks it without
//! any I/O. An instance applies its own revocations at once and picks up the
//! others' on its next sync (every `sessions.sweep_interval`).
//!
//! An instance never lets a sync drop a revocation it made itself: if the
//! store no longer has one (FLUSHALL, a Redis restart without persistence, a
//! failover to a replica that had not received it) and no operator deleted
//! it, the sync keeps it and hands it back to be written again, so an
//! acknowledged logout cannot be undone by a loss of Redis data.

use parking_lot::RwLock;

use super::Principal;
use crate::clock::UnixMillis;
use crate::session::identity::subject_key;
use crate::session::{Revocation, SubjectKey};

// The key is an identity concept and lives with the session identity; this
// path stays for the callers that still name it here.
pub use crate::session::identity::sid_key;

/// The revocations this instance knows, ready for lookups.
#[derive(Debug, Default)]
pub struct RevocationList {
    inner: RwLock<Vec<Revocation>>,
    /// The revocations this instance made, until they lapse or are deleted.
    own: parking_lot::Mutex<Vec<Revocation>>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one revocation now (this instance made it).
    pub fn add(&self, revocation: Revocation) {
        {
            let mut own = self.own.lock();
            if !own.contains(&revocation) {
                own.push(revocation.clone());
            }
        }
        let mut list = self.inner.write();
        if !list.contains(&revocation) {
            list.push(revocation);
        }
    }

    /// Applies a revocation another instance made (heard on the store's
    /// channel) now, instead of at the next sync.
    pub fn add_heard(&self, revocation: Revocation) {
        let mut list = self.inner.write();
        if !list.contains(&revocation) {
            list.push(revocation);
        }
    }

    /// Removes the revocations whose [`Revocation::id`] is `id` now (an
    /// operator deleted them); how many were removed. Other instances drop
    /// them at their next sync.
    pub fn remove(&self, id: &str) -> usize {
        self.own.lock().retain(|r| r.id() != id);
        let mut list = self.inner.write();
        let before = list.len();
        list.retain(|r| r.id() != id);
        before - list.len()
    }

    /// Takes the store's revocations (the periodic sync), keeping this
    /// instance's own that have not lapsed at `now` and were not deleted
    /// (their ids are in `deleted`). Returns the kept ones the store lacks:
    /// they were lost with its data and must be written again.
    pub fn sync(
        &self,
        store: Vec<Revocation>,
        deleted: &[String],
        now: UnixMillis,
    ) -> Vec<Revocation> {
        let missing: Vec<Revocation> = {
            let mut own = self.own.lock();
            own.retain(|r| r.until_ms() > now && !deleted.iter().any(|id| *id == r.id()));
            own.iter().filter(|r| !store.contains(r)).cloned().collect()
        };
        let mut list = store;
        list.extend(missing.iter().cloned());
        *self.inner.write() = list;
        missing
    }

    /// Whether a verified token is revoked at `now`. `token_key` is the
    /// token's `jti`, or the hex SHA-256 of the token when it has none.
    pub fn is_revoked(&self, principal: &Principal, token_key: &str, now: UnixMillis) -> bool {
        let list = self.inner.read();
        if list.is_empty() {
            return false;
        }
        let subject: Option<SubjectKey> =
            match (principal.claims.issuer(), principal.claims.subject()) {
                (Some(iss), Some(sub)) => Some(subject_key(iss, sub)),
                _ => None,
            };
        // A token without `iat` cannot prove it was issued after a
        // subject-wide revocation, so it counts as issued before.
        let issued_ms = principal
            .issued_at
            .map_or(0, |s| u64::try_from(s).unwrap_or(0).saturating_mul(1000));
        let sid = match (principal.claims.issuer(), principal.claims.str("sid")) {
            (Some(iss), Some(sid)) => Some(format!("sid:{}", sid_key(iss, sid))),
            _ => None,
        };
        let issued = principal.issued_at.map(|_| issued_ms);
        list.iter()
            .filter(|r| r.until_ms() > now)
            .any(|r| r.refuses(token_key, sid.as_deref(), subject.as_ref(), issued))
    }

    /// Number of revocations known.
    pub fn len(&self) -> usize {
        self.inner.read().len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.inner.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use serde_json::json;

    fn principal(iat: i64) -> Principal {
        Principal {
            claims: Claims::from_map(
                json!({"iss": "https://idp", "sub": "alice"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
            issuer: 0,
            expires_at: iat + 300,
            not_before: None,
            issued_at: Some(iat),
            token_key: String::new(),
        }
    }

    #[test]
    fn token_revocations_match_their_key_until_they_lapse() {
        let list = RevocationList::new();
        let p = principal(1_000);
        assert!(!list.is_revoked(&p, "jti-1", 1_000_000));
        list.add(Revocation::Token {
            key: "jti-1".into(),
            until_ms: 2_000_000,
        });
        assert!(list.is_revoked(&p, "jti-1", 1_000_000));
        assert!(!list.is_revoked(&p, "jti-2", 1_000_000));
        assert!(!list.is_revoked(&p, "jti-1", 2_000_000), "lapsed");
    }

    #[test]
    fn subject_revocations_refuse_tokens_issued_before() {
        let list = RevocationList::new();
        list.add(Revocation::of_subject(
            "https://idp",
            "alice",
            1_500_000,
            9_000_000,
        ));
        assert!(list.is_revoked(&principal(1_000), "x", 2_000_000));
        assert!(!list.is_revoked(&principal(1_600), "x", 2_000_000));
        let mut bob = principal(1_000);
        bob.claims = Claims::from_map(
            json!({"iss": "https://idp", "sub": "bob"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert!(!list.is_revoked(&bob, "x", 2_000_000));
        // Without `iat` a token cannot prove it is newer than the revocation.
        let undated = Principal {
            issued_at: None,
            ..principal(1_600)
        };
        assert!(list.is_revoked(&undated, "x", 2_000_000));
    }

    #[test]
    fn a_sync_keeps_own_revocations_the_store_lost_but_not_deleted_ones() {
        let list = RevocationList::new();
        let p = principal(1_000);
        let own = |key: &str| Revocation::Token {
            key: key.into(),
            until_ms: 5_000_000,
        };
        list.add(own("mine"));
        list.add(own("deleted-elsewhere"));
        list.add(Revocation::Token {
            key: "lapsing".into(),
            until_ms: 1_500_000,
        });
        let theirs = own("theirs");
        // The store lost everything (FLUSHALL) but knows one deletion.
        let missing = list.sync(
            vec![theirs.clone()],
            &["deleted-elsewhere".to_string()],
            2_000_000,
        );
        assert_eq!(
            missing,
            vec![own("mine")],
            "handed back to be written again"
        );
        assert!(list.is_revoked(&p, "mine", 2_000_000));
        assert!(list.is_revoked(&p, "theirs", 2_000_000));
        assert!(!list.is_revoked(&p, "deleted-elsewhere", 2_000_000));
        // Once written again, nothing is missing; others' go with the store.
        assert_eq!(list.sync(vec![own("mine")], &[], 2_000_000), vec![]);
        assert!(!list.is_revoked(&p, "theirs", 2_000_000));
        assert!(list.is_revoked(&p, "mine", 2_000_000));
    }

    #[test]
    fn revocations_survive_their_text_form() {
        for r in [
            Revocation::Token {
                key: "a|b".into(),
                until_ms: 5,
            },
            Revocation::Subject {
                subject: subject_key("i", "s"),
                named: None,
                not_before_ms: 3,
                until_ms: 9,
            },
            Revocation::of_subject("https://idp|x", "al|ice ü", 3, 9),
            Revocation::of_subject("", "", 3, 9),
        ] {
            assert_eq!(Revocation::decode(&r.encode()), Some(r));
        }
        assert_eq!(Revocation::decode("x|1|y"), None);
    }

    #[test]
    fn subject_revocations_stored_without_names_still_decode() {
        // The form written before the issuer and subject were kept.
        let key = subject_key("https://idp", "alice");
        assert_eq!(
            Revocation::decode(&format!("s|9000|{}|1500", key.to_hex())),
            Some(Revocation::Subject {
                subject: key,
                named: None,
                not_before_ms: 1500,
                until_ms: 9000,
            })
        );
        // Names that are not the key's are not shown as if they were.
        let forged = format!("s|9000|{}|1500|11|https://idpmallory", key.to_hex());
        assert!(matches!(
            Revocation::decode(&forged),
            Some(Revocation::Subject { named: None, .. })
        ));
        let truncated = format!("s|9000|{}|1500|11", key.to_hex());
        assert_eq!(Revocation::decode(&truncated), None);
    }

    #[test]
    fn revocations_are_removed_by_id() {
        let list = RevocationList::new();
        // Issued after the subject revocation's `not_before`: only the token
        // revocations concern it.
        let p = principal(1_600);
        list.add(Revocation::Token {
            key: "jti-1".into(),
            until_ms: 2_000_000,
        });
        list.add(Revocation::Token {
            key: "jti-1".into(),
            until_ms: 3_000_000,
        });
        list.add(Revocation::of_subject(
            "https://idp",
            "alice",
            1_500_000,
            9_000_000,
        ));
        assert!(list.is_revoked(&p, "jti-1", 1_000_000));
        assert_eq!(list.remove("jti-2"), 0);
        assert_eq!(list.remove("jti-1"), 2, "both times of one token");
        assert!(!list.is_revoked(&p, "jti-1", 1_000_000));
        assert!(
            list.is_revoked(&principal(1_000), "x", 1_000_000),
            "the subject's remains"
        );
        let id = format!("subject:{}", subject_key("https://idp", "alice").to_hex());
        assert_eq!(list.remove(&id), 1);
        assert!(list.is_empty());
    }
}
