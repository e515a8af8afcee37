//! The [`LogoutLedger`](session_gateway::session::LogoutLedger) cases:
//! `sid` links and one-time logout token ids, and when they lapse.

use super::*;

/// The admission that opens a session links it to the identity provider
/// session its token names, across pools; one that reuses it links it to
/// the (new) identity provider session of the reusing token too, keeping
/// the old link; refusing links nothing. One-time token ids (logout token
/// replay) hold until they lapse or are released.
pub async fn sid_links_and_one_time_ids_lapse(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("q", 1)]).await;
    let linked = |sid: &'static str| {
        let store = Arc::clone(&t.store);
        async move {
            let key = IdpSession {
                issuer: ISSUER,
                sid,
            }
            .key();
            let mut ids = store.linked_sessions(&key).await.expect("links");
            ids.sort();
            ids
        }
    };
    assert!(linked("sid-a").await.is_empty());
    let opened = |outcome: AdmitOutcome| match outcome.admission {
        Admission::Opened { session, .. } => session.id,
        other => panic!("expected a new session, got {other:?}"),
    };
    let alice = opened(
        t.admit_under_sid("p", &caller("alice", "web"), Some("sid-a"))
            .await,
    );
    let bob = opened(
        t.admit_under_sid("q", &caller("bob", "web"), Some("sid-a"))
            .await,
    );
    let carol = opened(
        t.admit_under_sid("p", &caller("carol", "web"), Some("sid-b"))
            .await,
    );
    // A reuse under a new identity provider session links it as well (a
    // new login of the same user and client); a refused admission links
    // nothing.
    let again = t
        .admit_under_sid("p", &caller("alice", "web"), Some("sid-c"))
        .await;
    assert!(matches!(again.admission, Admission::Reused(_)));
    let reused_again = t
        .admit_under_sid("p", &caller("alice", "web"), Some("sid-c"))
        .await;
    assert!(matches!(reused_again.admission, Admission::Reused(_)));
    let refused = t
        .admit_under_sid("q", &caller("dave", "web"), Some("sid-a"))
        .await;
    assert!(matches!(refused.admission, Admission::Refused(_)));

    let mut both = vec![alice.clone(), bob];
    both.sort();
    assert_eq!(linked("sid-a").await, both);
    assert_eq!(linked("sid-b").await, vec![carol]);
    assert_eq!(linked("sid-c").await, vec![alice.clone()], "linked once");
    assert!(linked("sid-d").await.is_empty());

    assert!(
        t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("first use")
    );
    assert!(
        !t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("replay")
    );
    assert!(
        t.store
            .first_use("jti-2", T0 + 60_000)
            .await
            .expect("another id")
    );
    // A released id counts as unused again; releasing an unknown id is
    // harmless; others are untouched.
    t.store.release_use("jti-1").await.expect("release");
    t.store.release_use("jti-unknown").await.expect("release");
    assert!(
        t.store
            .first_use("jti-1", T0 + 60_000)
            .await
            .expect("released")
    );
    assert!(
        !t.store
            .first_use("jti-2", T0 + 60_000)
            .await
            .expect("still used")
    );
}
