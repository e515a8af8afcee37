//! Unit tests of the memory store's own bookkeeping: its indexes, pools a
//! reload adds, `Retry-After` rounding, lazy pruning. What every store must
//! do is the contract suite's (`tests/src/contract/`).

use std::sync::Arc;
use std::time::Duration;

use super::pools::retry_after;
use super::*;
use crate::clock::ManualClock;
use crate::licensing::Pool;
use crate::session::SessionIdentity;
use crate::session::identity::{Digest32, subject_key};

const T0: UnixMillis = 1_700_000_000_000;

const ISSUER: &str = "https://idp.memory.test";

/// A pool with no rule, no cap, no reserved seats and the contract
/// suite's timeouts (20 minutes idle, 8 hours absolute).
fn pool(name: &str, limit: u32) -> Pool {
    Pool {
        name: name.into(),
        limit,
        rule: None,
        subject_limit: None,
        reserved: Vec::new(),
        idle_timeout: Duration::from_secs(20 * 60),
        absolute_timeout: Duration::from_secs(8 * 3600),
        overdraft: 0,
        shared_token: None,
        linger: Duration::ZERO,
        min_hold: Duration::ZERO,
        queue: None,
    }
}

/// The session identity the default rule (`iss`, `sub`, `client_id`)
/// derives for a subject and client of one issuer; built directly, since
/// these tests need no token.
fn identity(subject: &str, client: &str) -> SessionIdentity {
    SessionIdentity {
        key: Digest32::of_parts(
            "identity",
            [ISSUER.as_bytes(), subject.as_bytes(), client.as_bytes()],
        ),
        issuer: ISSUER.into(),
        subject: subject.into(),
        client: Some(client.into()),
        subject_key: subject_key(ISSUER, subject),
    }
}

/// Every index agrees with the sessions it indexes.
fn assert_consistent(store: &MemoryStore) {
    let state = store.state.lock();
    let mut total = 0;
    for (index, p) in state.pools.iter().enumerate() {
        total += p.sessions.len();
        let mut per_bucket = vec![0u32; p.per_bucket.len()];
        for (key, s) in &p.sessions {
            assert_eq!(*key, s.identity);
            assert_eq!(state.by_id.get(&s.id), Some(&(index, s.identity)));
            assert_eq!(p.by_expiry.get(&(s.expires_ms(), s.id.clone())), Some(key));
            assert!(p.by_subject.contains(&(s.subject_key, *key)));
            per_bucket[s.bucket] += 1;
        }
        assert_eq!(
            per_bucket, p.per_bucket,
            "per-bucket counts of {}",
            p.pool.name
        );
        assert_eq!(p.by_expiry.len(), p.sessions.len());
        assert_eq!(p.by_subject.len(), p.sessions.len());
    }
    assert_eq!(state.by_id.len(), total);
}

#[tokio::test]
async fn indexes_stay_consistent_through_every_operation() {
    let clock = ManualClock::starting_at(T0);
    let pools = Pools::new(vec![pool("a", 3), pool("b", 2)]);
    let store = MemoryStore::new(&pools, Arc::new(clock.clone()));
    let a = Arc::clone(pools.get("a").expect("pool a"));
    let b = Arc::clone(pools.get("b").expect("pool b"));
    let people: Vec<_> = ["ann", "ben", "cat", "dan"]
        .iter()
        .map(|s| identity(s, "web"))
        .collect();
    for (round, who) in people.iter().cycle().take(12).enumerate() {
        let pool = if round % 3 == 0 { &b } else { &a };
        let request = AdmitRequest::of(pool, who);
        store.admit(&request).await.expect("admit");
        assert_consistent(&store);
        clock.advance(Duration::from_secs(7 * 60));
    }
    let open = store.list(&SessionFilter::default()).await.expect("list");
    if let Some(first) = open.first() {
        store
            .close(&first.id, CloseReason::Admin)
            .await
            .expect("close");
    }
    assert_consistent(&store);
    store
        .close_subject(&people[1].subject_key, CloseReason::Admin)
        .await
        .expect("close subject");
    assert_consistent(&store);
    clock.advance(Duration::from_secs(3600));
    store.sweep().await.expect("sweep");
    assert_consistent(&store);
    assert!(store.state.lock().by_id.is_empty());
}

#[tokio::test]
async fn a_pool_missing_from_the_configuration_is_counted_from_zero() {
    let clock = ManualClock::starting_at(T0);
    let store = MemoryStore::new(&Pools::new(vec![pool("known", 1)]), Arc::new(clock));
    let late = Arc::new(pool("late", 1));
    let who = identity("ann", "web");
    let request = AdmitRequest::of(&late, &who);
    let outcome = store.admit(&request).await.expect("admit");
    assert!(matches!(outcome.admission, Admission::Opened { .. }));
    let usage = store.usage().await.expect("usage");
    let names: Vec<_> = usage.iter().map(|u| (u.pool.as_str(), u.in_use)).collect();
    assert_eq!(names, [("known", 0), ("late", 1)]);
    assert_consistent(&store);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
    let idle = Duration::from_secs(1200);
    assert_eq!(retry_after(Some(T0 + 1), T0, idle), Duration::from_secs(1));
    assert_eq!(
        retry_after(Some(T0 + 1000), T0, idle),
        Duration::from_secs(1)
    );
    assert_eq!(
        retry_after(Some(T0 + 1001), T0, idle),
        Duration::from_secs(2)
    );
    assert_eq!(retry_after(Some(T0), T0, idle), Duration::from_secs(1));
    assert_eq!(retry_after(None, T0, idle), idle);
}

#[tokio::test]
async fn lapsed_one_time_keys_count_as_unused_and_links_are_pruned_lazily() {
    let clock = ManualClock::starting_at(T0);
    let store = MemoryStore::new(&Pools::new(vec![pool("p", 1)]), Arc::new(clock.clone()));
    assert!(store.first_use("jti-1", T0 + 1_000).await.unwrap());
    assert!(!store.first_use("jti-1", T0 + 1_000).await.unwrap());
    clock.advance(std::time::Duration::from_secs(2));
    assert!(
        store.first_use("jti-1", T0 + 5_000).await.unwrap(),
        "lapsed"
    );
    assert!(!store.first_use("jti-1", T0 + 5_000).await.unwrap());

    store.link_sid("sid", "a", T0 + 2_500, T0 + 2_000);
    clock.advance(std::time::Duration::from_secs(1));
    store.link_sid("sid", "b", T0 + 9_000, T0 + 3_000);
    assert_eq!(
        store.linked_sessions("sid").await.unwrap(),
        vec!["b".to_string()]
    );
    store.sweep().await.unwrap();
    assert_eq!(store.sids.lock().get("sid").map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_subjects_sessions_are_one_range_of_the_subject_index() {
    // The subject index is one ordered set of (subject, identity): a
    // subject's sessions must be exactly its range, whatever the subjects
    // that sort next to it hold.
    let clock = ManualClock::starting_at(T0);
    let pools = Pools::new(vec![pool("p", 100)]);
    let store = MemoryStore::new(&pools, Arc::new(clock));
    let p = Arc::clone(pools.get("p").expect("pool p"));
    let subjects = ["ann", "ben", "cat", "dan", "eve"];
    for (n, subject) in subjects.iter().enumerate() {
        for client in 0..=n {
            let who = identity(subject, &format!("client-{client}"));
            let request = AdmitRequest::of(&p, &who);
            store.admit(&request).await.expect("admit");
        }
    }
    assert_consistent(&store);
    let state = store.state.lock();
    let sessions = &state.pools[0];
    for (n, subject) in subjects.iter().enumerate() {
        let key = subject_key(ISSUER, subject);
        let held = sessions.subject_sessions(&key);
        assert_eq!(held.len(), n + 1, "{subject}");
        assert!(held.iter().all(|s| s.subject == *subject), "{subject}");
    }
    assert!(
        sessions
            .subject_sessions(&subject_key(ISSUER, "nobody"))
            .is_empty()
    );
}
