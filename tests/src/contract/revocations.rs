//! The [`RevocationStore`](session_gateway::session::RevocationStore)
//! cases: revocations kept until they lapse, enforced inside admissions,
//! deleted by id.

use super::*;

/// Revocations are shared until they lapse, and recording one twice keeps
/// one.
pub async fn revocations_are_kept_until_they_lapse(factory: &dyn StoreFactory) {
    use session_gateway::session::Revocation;
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let token = Revocation::Token {
        key: "jti-1".into(),
        until_ms: T0 + 60_000,
    };
    let subject = Revocation::of_subject(ISSUER, "alice", T0, T0 + 120_000);
    assert!(t.store.revocations().await.expect("revocations").is_empty());
    t.store.revoke(&token).await.expect("revoke");
    t.store.revoke(&subject).await.expect("revoke");
    t.store.revoke(&token).await.expect("revoke again");
    let mut now = t.store.revocations().await.expect("revocations");
    now.sort_by_key(Revocation::until_ms);
    assert_eq!(now, vec![token.clone(), subject.clone()]);
    t.advance_ms(60_000);
    assert_eq!(
        t.store.revocations().await.expect("revocations"),
        vec![subject.clone()],
        "the token revocation lapses exactly at its end"
    );
    t.advance_ms(60_000);
    assert!(t.store.revocations().await.expect("revocations").is_empty());
}

/// An admission refuses a revoked token, a token of a revoked identity
/// provider session and a token of a revoked subject issued before its
/// not-before, from the store's own record: an instance that has not heard
/// of a revocation yet still cannot reuse or open a session with it.
pub async fn admissions_refuse_revoked_tokens(factory: &dyn StoreFactory) {
    use session_gateway::session::{IdpSession, PresentedToken, Revocation};
    let t = StoreUnderTest::new(factory, vec![pool("p", 3)]).await;
    async fn admit_token(
        t: &StoreUnderTest,
        who: &Caller,
        key: &str,
        issued_ms: Option<u64>,
        sid: Option<&str>,
    ) -> Admission {
        let pool = t.pool("p");
        let request = AdmitRequest {
            pool: &pool,
            identity: &who.identity,
            reserved: None,
            sid: sid.map(|sid| IdpSession {
                issuer: ISSUER,
                sid,
            }),
            token: Some(PresentedToken { key, issued_ms }),
            ticket: None,
        };
        t.store.admit(&request).await.expect("admit").admission
    }
    let (alice, bob, carol) = (
        caller("alice", "web"),
        caller("bob", "web"),
        caller("carol", "web"),
    );
    let admit = |who, key, issued, sid| admit_token(&t, who, key, issued, sid);
    assert!(
        admit(&alice, "t-1", Some(T0), None)
            .await
            .session()
            .is_some()
    );

    let revoked = |a: &Admission| matches!(a, Admission::Refused(Refusal::Revoked));
    t.store
        .revoke(&Revocation::Token {
            key: "t-1".into(),
            until_ms: T0 + 60_000,
        })
        .await
        .expect("revoke");
    assert!(
        revoked(&admit(&alice, "t-1", Some(T0), None).await),
        "the open session is not reused"
    );
    assert!(
        admit(&alice, "t-2", Some(T0), None)
            .await
            .session()
            .is_some(),
        "another token is fine"
    );

    let sid_key = IdpSession {
        issuer: ISSUER,
        sid: "s-1",
    }
    .key();
    t.store
        .revoke(&Revocation::Token {
            key: format!("sid:{sid_key}"),
            until_ms: T0 + 60_000,
        })
        .await
        .expect("revoke sid");
    assert!(revoked(&admit(&bob, "b-1", Some(T0), Some("s-1")).await));
    assert!(
        admit(&bob, "b-1", Some(T0), Some("s-2"))
            .await
            .session()
            .is_some()
    );

    t.store
        .revoke(&Revocation::of_subject(
            ISSUER,
            "carol",
            T0 + 5_000,
            T0 + 60_000,
        ))
        .await
        .expect("revoke subject");
    assert!(
        revoked(&admit(&carol, "c-1", Some(T0), None).await),
        "issued before"
    );
    assert!(
        revoked(&admit(&carol, "c-2", None, None).await),
        "undated counts as before"
    );
    assert!(
        admit(&carol, "c-3", Some(T0 + 5_000), None)
            .await
            .session()
            .is_some(),
        "issued at the not-before is fine"
    );

    let carol_revocation = Revocation::of_subject(ISSUER, "carol", T0, T0);
    t.store
        .delete_revocation(&carol_revocation.id())
        .await
        .expect("delete");
    assert!(
        admit(&carol, "c-1", Some(T0), None)
            .await
            .session()
            .is_some(),
        "a deleted revocation refuses nothing"
    );

    t.advance_ms(60_000);
    assert!(
        admit(&alice, "t-1", Some(T0), None)
            .await
            .session()
            .is_some(),
        "a lapsed revocation refuses nothing"
    );
}

/// A revocation is deleted by its id for everyone: every revocation of that
/// token or subject goes, whatever its times, and nothing else; an unknown
/// id or a lapsed revocation deletes nothing.
pub async fn revocations_are_deleted_by_id(factory: &dyn StoreFactory) {
    use session_gateway::session::Revocation;
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let token = |key: &str, until_ms| Revocation::Token {
        key: key.into(),
        until_ms,
    };
    // Keys that look like other forms must not confuse the stores.
    let odd = token("a|b|subject:x", T0 + 90_000);
    let alice = Revocation::of_subject(ISSUER, "alice", T0, T0 + 120_000);
    let alice_again = Revocation::of_subject(ISSUER, "alice", T0 + 1, T0 + 150_000);
    let bob = Revocation::of_subject(ISSUER, "bob", T0, T0 + 120_000);
    for r in [
        &token("jti-1", T0 + 60_000),
        &token("jti-1", T0 + 70_000),
        &token("jti-2", T0 + 10_000),
        &odd,
        &alice,
        &alice_again,
        &bob,
    ] {
        t.store.revoke(r).await.expect("revoke");
    }
    let in_force = || async {
        let mut list = t.store.revocations().await.expect("revocations");
        list.sort_by_key(|r| (r.until_ms(), r.id()));
        list
    };

    let mut deleted = t.store.delete_revocation("jti-1").await.expect("delete");
    deleted.sort_by_key(Revocation::until_ms);
    assert_eq!(
        deleted,
        vec![token("jti-1", T0 + 60_000), token("jti-1", T0 + 70_000)]
    );
    assert_eq!(
        t.store.delete_revocation("jti-1").await.expect("again"),
        vec![],
        "deleting twice deletes nothing"
    );
    assert_eq!(
        t.store.delete_revocation("jti").await.expect("prefix"),
        vec![]
    );

    let mut deleted = t
        .store
        .delete_revocation(&alice.id())
        .await
        .expect("delete");
    deleted.sort_by_key(Revocation::until_ms);
    assert_eq!(deleted, vec![alice.clone(), alice_again.clone()]);
    assert_eq!(
        t.store.delete_revocation(&odd.id()).await.expect("delete"),
        vec![odd.clone()]
    );
    assert_eq!(
        in_force().await,
        vec![token("jti-2", T0 + 10_000), bob.clone()]
    );

    // Each deletion leaves the id until its revocation would have lapsed.
    let tombstones = || async {
        let mut ids = t.store.deleted_revocations().await.expect("tombstones");
        ids.sort();
        ids
    };
    let mut expected = vec!["jti-1".to_string(), alice.id(), odd.id()];
    expected.sort();
    assert_eq!(tombstones().await, expected);

    t.advance_ms(10_000);
    assert_eq!(
        t.store.delete_revocation("jti-2").await.expect("lapsed"),
        vec![],
        "a lapsed revocation is not deleted again"
    );
    assert_eq!(in_force().await, vec![bob]);
    // jti-1 (T0 + 70 s) and alice (T0 + 150 s) are still remembered, the
    // odd one until T0 + 90 s.
    t.advance_ms(75_000);
    let mut expected = vec![alice.id(), odd.id()];
    expected.sort();
    assert_eq!(tombstones().await, expected);
    t.advance_ms(80_000);
    assert_eq!(tombstones().await, Vec::<String>::new());
}
