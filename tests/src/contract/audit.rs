//! The [`AuditSink`](session_gateway::session::AuditSink) cases: queuing an
//! audit event is fire-and-forget, and the trail reads back the same from
//! either store (Redis: a stream written in the background; memory: the
//! most recent events in process).

use super::*;

/// Queuing audit events never fails, never blocks the caller and changes no
/// session or seat: the audit trail is a side channel of the store.
pub async fn queued_audit_events_change_no_session(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let opened = t.open("p", &alice).await;
    for n in 0..1_000 {
        t.store
            .queue_audit(vec![("event", "contract".into()), ("n", n.to_string())]);
    }
    assert_eq!(t.reuse("p", &alice).await.id, opened.id);
    assert_eq!(t.in_use("p").await, 1);
    assert!(t.sweep().await.is_empty());
}

/// The trail reads back newest first in pages chained by `before`, filtered
/// by event, pool and subject, and oldest first after a position (what
/// `admin audit --follow` polls with).
pub async fn audit_events_read_back_newest_first_paged_filtered_and_followed(
    factory: &dyn StoreFactory,
) {
    use session_gateway::session::{AuditPage, AuditQuery};
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    for n in 0..30 {
        let event = if n % 3 == 0 {
            "session_closed"
        } else {
            "session_opened"
        };
        let pool = if n < 20 { "p" } else { "q" };
        t.store.queue_audit(vec![
            ("event", event.into()),
            ("pool", pool.into()),
            ("subject", format!("user-{}", n % 5)),
            ("n", n.to_string()),
        ]);
    }
    let numbers = |page: &AuditPage| -> Vec<u32> {
        page.events
            .iter()
            .map(|e| e.field("n").and_then(|n| n.parse().ok()).unwrap_or(999))
            .collect()
    };
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    // The Redis store appends in the background: wait until all are there.
    let newest = crate::eventually("the audit events to be readable", || async {
        let page = t.store.read_audit(&all).await?;
        Ok((page.events.len() >= 30).then_some(page))
    })
    .await
    .expect("audit trail");
    assert_eq!(numbers(&newest), (0..30).rev().collect::<Vec<_>>());
    assert_eq!(newest.next, None, "the whole trail fitted");

    let mut paged = Vec::new();
    let mut query = AuditQuery {
        limit: 7,
        ..AuditQuery::default()
    };
    for _ in 0..10 {
        let page = t.store.read_audit(&query).await.expect("page");
        paged.extend(numbers(&page));
        match page.next {
            Some(next) => query.before = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, (0..30).rev().collect::<Vec<_>>());

    let closed = t
        .store
        .read_audit(&AuditQuery {
            event: Some("session_closed".into()),
            ..all.clone()
        })
        .await
        .expect("filtered");
    assert_eq!(numbers(&closed), [27, 24, 21, 18, 15, 12, 9, 6, 3, 0]);
    let of_subject = t
        .store
        .read_audit(&AuditQuery {
            pool: Some("p".into()),
            subject: Some("user-1".into()),
            ..all.clone()
        })
        .await
        .expect("filtered");
    assert_eq!(numbers(&of_subject), [16, 11, 6, 1]);

    // Following: oldest first after the tenth oldest event.
    let tenth = newest.events[20].id;
    let followed = t
        .store
        .read_audit(&AuditQuery {
            after: Some(tenth),
            ..all.clone()
        })
        .await
        .expect("followed");
    assert_eq!(numbers(&followed), (10..30).collect::<Vec<_>>());
    assert_eq!(followed.next, Some(newest.events[0].id));
    let nothing_new = t
        .store
        .read_audit(&AuditQuery {
            after: followed.next,
            ..all
        })
        .await
        .expect("followed");
    assert!(nothing_new.events.is_empty());
    assert_eq!(nothing_new.next, followed.next);
}
