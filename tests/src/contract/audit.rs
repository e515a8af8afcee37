//! The [`AuditSink`](session_gateway::session::AuditSink) case: queuing an
//! audit event is fire-and-forget, whether the store keeps a trail (Redis:
//! a stream, checked in `tests/tests/redis_store.rs`) or not (memory).

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
