//! Contract cases of the seat queue (`[[pools]] queue`): the tickets
//! [`SessionStore::admit`](session_gateway::session::SessionStore::admit)
//! hands out and honours, and
//! [`SeatQueue`](session_gateway::session::SeatQueue).

use std::time::Duration;

use session_gateway::licensing::{Pool, SeatQueuePolicy};
use session_gateway::session::{Admission, AdmitRequest, CloseReason, QueueExit, Refusal, Ticket};
use session_gateway::usage::Step;

use super::{Caller, StoreFactory, StoreUnderTest, T0, caller, history, pool};

/// How long a caller of [`queued_pool`] may wait.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A pool of `limit` seats whose callers wait up to [`MAX_WAIT`], at most
/// `length` of them.
fn queued_pool(limit: u32, length: u32) -> Pool {
    let mut p = pool("q", limit);
    p.queue = Some(SeatQueuePolicy {
        max_wait: MAX_WAIT,
        max_length: length,
    });
    p
}

impl StoreUnderTest {
    /// Admits a caller presenting its ticket, if it holds one.
    async fn admit_with(&self, who: &Caller, ticket: Option<&Ticket>) -> Admission {
        let pool = self.pool("q");
        let request = AdmitRequest {
            ticket,
            ..AdmitRequest::of(&pool, &who.identity)
        };
        self.store.admit(&request).await.expect("admit").admission
    }

    /// Admits a caller that must wait; its ticket and the callers ahead.
    async fn wait(&self, who: &Caller, ticket: Option<&Ticket>) -> (Ticket, u32) {
        match self.admit_with(who, ticket).await {
            Admission::Queued { ticket, ahead, .. } => (ticket, ahead),
            other => panic!("expected {who:?} to wait, got {other:?}"),
        }
    }

    /// Callers waiting in pool `q`.
    async fn waiting(&self) -> u32 {
        self.usage()
            .await
            .into_iter()
            .find(|u| u.pool == "q")
            .map(|u| u.waiting)
            .expect("usage lists every pool")
    }
}

/// Freed seats go to the waiting callers first come first served, before
/// any newcomer; a full line refuses at once; every answer but another wait
/// takes a ticket out of line.
pub async fn waiting_callers_get_freed_seats_first_come_first_served(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![queued_pool(1, 2)]).await;
    let (alice, bob, carol, dave) = (
        caller("alice", "erp-web"),
        caller("bob", "erp-web"),
        caller("carol", "erp-web"),
        caller("dave", "erp-web"),
    );
    let seat = t.open("q", &alice).await;
    let (bob_ticket, ahead) = t.wait(&bob, None).await;
    assert_eq!(ahead, 0);
    t.advance_ms(1);
    let (carol_ticket, ahead) = t.wait(&carol, None).await;
    assert_eq!(ahead, 1, "carol lines up behind bob");
    assert!(carol_ticket.seq > bob_ticket.seq);
    assert_eq!(t.waiting().await, 2);
    match t.admit_with(&dave, None).await {
        Admission::Refused(Refusal::QueueFull {
            limit: 1,
            in_use: 1,
            waiting: 2,
            ..
        }) => {}
        other => panic!("a full line refuses at once, got {other:?}"),
    }

    // Alice's seat frees: it is bob's, not carol's and not a newcomer's.
    t.store
        .close(&seat.id, CloseReason::Logout)
        .await
        .expect("close");
    let (again, ahead) = t.wait(&carol, Some(&carol_ticket)).await;
    assert_eq!((again.seq, ahead), (carol_ticket.seq, 1));
    assert!(
        matches!(
            t.admit_with(&dave, None).await,
            Admission::Refused(Refusal::QueueFull { .. })
        ),
        "a newcomer gets no seat that waiting callers are owed"
    );
    match t.admit_with(&bob, Some(&bob_ticket)).await {
        Admission::Opened { session, .. } => assert_eq!(session.subject, "bob"),
        other => panic!("the head of the line takes the freed seat, got {other:?}"),
    }
    assert_eq!(t.waiting().await, 1, "bob's ticket left the line");
    let (_, ahead) = t.wait(&carol, Some(&carol_ticket)).await;
    assert_eq!(ahead, 0, "carol moved up");

    // Carol's client goes away: she leaves the line once.
    let q = t.pool("q");
    assert!(
        t.store
            .leave_queue(&q, &carol_ticket, QueueExit::Left)
            .await
            .expect("leave")
    );
    assert!(
        !t.store
            .leave_queue(&q, &carol_ticket, QueueExit::Left)
            .await
            .expect("leave")
    );
    assert_eq!(t.waiting().await, 0);
}

/// A reserved group's seat never waits for anyone.
pub async fn reserved_seats_do_not_wait_for_the_line(factory: &dyn StoreFactory) {
    let p = super::with_reserved(queued_pool(2, 5), "sub", &["cfo"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let (alice, bob, cfo) = (
        caller("alice", "erp-web"),
        caller("bob", "erp-web"),
        caller("cfo", "erp-web"),
    );
    t.open("q", &alice).await;
    t.wait(&bob, None).await;
    let pool = t.pool("q");
    let request = AdmitRequest {
        reserved: pool.reserved_bucket(&cfo.claims),
        ..AdmitRequest::of(&pool, &cfo.identity)
    };
    match t.store.admit(&request).await.expect("admit").admission {
        Admission::Opened { session, .. } => assert_eq!(session.bucket, 1),
        other => panic!("a reserved seat is its group's, got {other:?}"),
    }
    assert_eq!(t.waiting().await, 1, "bob still waits for a shared seat");
}

/// A ticket lapses at `max_wait`: its caller gets no seat, even a free one,
/// it is written once into the usage history as a `queue_timeout` refusal,
/// and leaving afterwards finds nothing; a caller timing out by itself is
/// written once too.
pub async fn a_ticket_lapses_at_max_wait_and_gets_no_seat(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![queued_pool(1, 5)]).await;
    let (alice, bob, carol) = (
        caller("alice", "erp-web"),
        caller("bob", "erp-web"),
        caller("carol", "erp-web"),
    );
    let seat = t.open("q", &alice).await;
    let (bob_ticket, _) = t.wait(&bob, None).await;
    let (carol_ticket, _) = t.wait(&carol, None).await;
    t.advance(MAX_WAIT - Duration::from_millis(1));
    assert_eq!(t.waiting().await, 2, "one millisecond before the lapse");
    t.advance_ms(1);
    assert_eq!(t.waiting().await, 0, "lapsed at max_wait exactly");
    t.store
        .close(&seat.id, CloseReason::Logout)
        .await
        .expect("close");
    match t.admit_with(&bob, Some(&bob_ticket)).await {
        Admission::Refused(Refusal::QueueTimeout { limit: 1, .. }) => {}
        other => panic!("a lapsed ticket gets no seat, got {other:?}"),
    }
    let q = t.pool("q");
    assert!(
        !t.store
            .leave_queue(&q, &carol_ticket, QueueExit::TimedOut)
            .await
            .expect("leave"),
        "the admission above dropped every lapsed ticket"
    );
    // A newcomer now finds the free seat.
    t.open("q", &carol).await;

    // A caller that gives up by itself is written when it leaves.
    let dave = caller("dave", "erp-web");
    let (dave_ticket, _) = t.wait(&dave, None).await;
    assert!(
        t.store
            .leave_queue(&q, &dave_ticket, QueueExit::TimedOut)
            .await
            .expect("leave")
    );
    let erin = caller("erin", "erp-web");
    let (erin_ticket, _) = t.wait(&erin, None).await;
    assert!(
        t.store
            .leave_queue(&q, &erin_ticket, QueueExit::Left)
            .await
            .expect("leave")
    );

    let days = history(t.store.as_ref(), "q", Step::Day, T0).await;
    let timeouts: u64 = days
        .iter()
        .map(|d| d.refused.get("queue_timeout").copied().unwrap_or(0))
        .sum();
    assert_eq!(timeouts, 3, "bob, carol and dave timed out; erin left");
    let opened: u64 = days.iter().map(|d| d.opened).sum();
    assert_eq!(opened, 2);
}
