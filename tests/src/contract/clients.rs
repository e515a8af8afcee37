//! The [`ClientLedger`](session_gateway::session::ClientLedger) cases: the
//! clients of a session counted within a window, each once, bounded, and
//! a client beyond the caller's bound counted but not recorded.

use super::*;
use session_gateway::session::{CLIENT_SIGHTINGS_CAP, ClientBound, ClientCounts, ClientSighting};

const WINDOW: Duration = Duration::from_secs(600);

async fn note(
    t: &StoreUnderTest,
    session: &str,
    address: &str,
    agent: &str,
    bound: Option<ClientBound>,
) -> ClientCounts {
    t.store
        .note_client(
            "p",
            session,
            &ClientSighting::of(address, agent),
            WINDOW,
            bound,
        )
        .await
        .expect("note_client")
}

/// Distinct addresses and user agents are counted once each per session,
/// within the window only, and at most the cap.
pub async fn clients_of_a_session_are_counted_within_the_window(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2)]).await;
    let counts = |a, u| ClientCounts {
        addresses: a,
        user_agents: u,
        recorded: true,
    };
    assert_eq!(
        note(&t, "s1", "203.0.113.1", "erp-desktop/7", None).await,
        counts(1, 1)
    );
    assert_eq!(
        note(&t, "s1", "203.0.113.1", "erp-desktop/7", None).await,
        counts(1, 1)
    );
    assert_eq!(
        note(&t, "s1", "203.0.113.2", "erp-desktop/7", None).await,
        counts(2, 1)
    );
    t.advance(Duration::from_secs(300));
    assert_eq!(
        note(&t, "s1", "203.0.113.2", "curl/8", None).await,
        counts(2, 2)
    );
    // Another session has clients of its own.
    assert_eq!(
        note(&t, "s2", "203.0.113.1", "erp-desktop/7", None).await,
        counts(1, 1)
    );
    // 203.0.113.1 and erp-desktop/7 were last seen 300 s + 301 s ago.
    t.advance(Duration::from_secs(301));
    assert_eq!(
        note(&t, "s1", "203.0.113.3", "curl/8", None).await,
        counts(2, 1)
    );
    // However many a client sends, a session keeps at most the cap.
    for n in 0..(CLIENT_SIGHTINGS_CAP + 10) {
        note(&t, "s3", &format!("198.51.100.{n}"), "bot", None).await;
    }
    let last = note(&t, "s3", "198.51.100.250", "bot", None).await;
    assert_eq!(last.addresses as usize, CLIENT_SIGHTINGS_CAP);
}

/// With a bound, the client that would go past it is counted, refused and
/// not recorded: the session's earlier clients keep their places, and the
/// refused one stays refused while they do.
pub async fn a_client_beyond_the_bound_is_not_recorded(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2)]).await;
    let bound = Some(ClientBound {
        addresses: 2,
        user_agents: 5,
    });
    assert!(note(&t, "s1", "203.0.113.1", "a", bound).await.recorded);
    assert!(note(&t, "s1", "203.0.113.2", "a", bound).await.recorded);
    let third = note(&t, "s1", "203.0.113.3", "a", bound).await;
    assert_eq!((third.addresses, third.recorded), (3, false));
    assert!(!note(&t, "s1", "203.0.113.3", "a", bound).await.recorded);
    // The first two still pass; without a bound the third is recorded.
    assert!(note(&t, "s1", "203.0.113.1", "a", bound).await.recorded);
    assert_eq!(note(&t, "s1", "203.0.113.3", "a", None).await.addresses, 3);
}
