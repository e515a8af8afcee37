//! The [`SessionStore`](session_gateway::session::SessionStore) cases:
//! admission, reuse, seats, caps, expiry, closing, listing, usage,
//! sweeping, and concurrent admissions.

use super::*;

/// The first admission of an identity opens a session with every field set
/// from the clock and the pool's own timeouts.
pub async fn first_admit_opens(factory: &dyn StoreFactory) {
    let short = with_timeouts(
        pool("system", 2),
        Duration::from_secs(5 * 60),
        Duration::from_secs(3600),
    );
    let t = StoreUnderTest::new(factory, vec![pool("p", 3), short]).await;
    let alice = caller("alice", "erp-web");
    let session = t.open("p", &alice).await;
    // Each store spells its ids (32 hex digits in memory, 38 base64url
    // characters in Redis); any of them passes the admin API's id check.
    assert!((32..=64).contains(&session.id.len()), "id {}", session.id);
    assert!(
        session
            .id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(session.pool, "p");
    assert_eq!(session.bucket, SHARED);
    assert_eq!(session.identity, alice.identity.key);
    assert_eq!(session.issuer, ISSUER);
    assert_eq!(session.subject, "alice");
    assert_eq!(session.client.as_deref(), Some("erp-web"));
    assert_eq!(session.subject_key, alice.identity.subject_key);
    assert_eq!(session.created_ms, T0);
    assert_eq!(session.last_seen_ms, T0);
    assert_eq!(session.idle_expires_ms, T0 + ms(IDLE));
    assert_eq!(session.absolute_expires_ms, T0 + ms(ABSOLUTE));
    assert_eq!(t.in_use("p").await, 1);
    assert_eq!(t.in_use("system").await, 0);
    assert_eq!(t.list_all().await, vec![session.clone()]);
    assert_eq!(t.store.get(&session.id).await.expect("get"), Some(session));

    // Each pool applies its own timeouts.
    t.advance_ms(1_500);
    let bot = caller("night-batch", "erp-batch");
    let system = t.open("system", &bot).await;
    assert_eq!(system.created_ms, T0 + 1_500);
    assert_eq!(system.idle_expires_ms, T0 + 1_500 + 5 * 60_000);
    assert_eq!(system.absolute_expires_ms, T0 + 1_500 + 3_600_000);
    assert_eq!(t.in_use("system").await, 1);
}

/// A second admission of the same identity (a refreshed token) reuses the
/// session: same id, no new seat, last seen now, idle expiry slid exactly,
/// absolute expiry unchanged.
pub async fn same_identity_reuses_and_slides(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let opened = t.open("p", &alice).await;
    t.advance_ms(7 * 60_000 + 333);
    let reused = t.reuse("p", &alice).await;
    let now = T0 + 7 * 60_000 + 333;
    assert_eq!(reused.id, opened.id);
    assert_eq!(reused.created_ms, T0);
    assert_eq!(reused.last_seen_ms, now);
    assert_eq!(reused.idle_expires_ms, now + ms(IDLE));
    assert_eq!(reused.absolute_expires_ms, opened.absolute_expires_ms);
    assert_eq!(reused.bucket, opened.bucket);
    assert_eq!(t.in_use("p").await, 1);
    // The slide is stored, not only returned.
    assert_eq!(
        t.store.get(&opened.id).await.expect("get"),
        Some(reused.clone())
    );
    // Past the original idle expiry, the slid session is still open.
    t.advance(IDLE - Duration::from_millis(1));
    let again = t.reuse("p", &alice).await;
    assert_eq!(again.id, opened.id);
    assert_eq!(t.sweep().await, vec![]);
}

/// The same subject through another client is another identity and takes
/// another seat.
pub async fn other_client_of_same_subject_takes_second_seat(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let a = t.open("p", &web).await;
    let b = t.open("p", &desk).await;
    assert_ne!(a.id, b.id);
    assert_ne!(a.identity, b.identity);
    assert_eq!(a.subject_key, b.subject_key);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.reuse("p", &web).await.id, a.id);
    assert_eq!(t.reuse("p", &desk).await.id, b.id);
    assert_eq!(t.in_use("p").await, 2);
}

/// A full pool refuses with its limit, its use and the exact time until the
/// earliest seat frees, and the refusal changes nothing.
pub async fn pool_full_refuses_exactly_and_changes_nothing(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("other", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let carol = caller("carol", "erp-web");
    let a = t.open("p", &alice).await;
    t.advance_ms(100_500);
    let b = t.open("p", &bob).await;
    t.advance_ms(1_000);

    // Earliest expiry: alice at T0 + 1200 s; now T0 + 101.5 s → 1098.5 s → 1099 s.
    let usage_before = t.usage().await;
    let list_before = t.list_all().await;
    assert_eq!(t.refuse("p", &carol).await, pool_full(2, 2, 1_099));
    assert_eq!(t.usage().await, usage_before);
    assert_eq!(t.list_all().await, list_before);
    assert_eq!(
        t.store.find("p", &carol.identity.key).await.expect("find"),
        None
    );

    // After alice slides, bob's is the earliest: T0 + 1300.5 s; now T0 + 103.5 s → 1197 s exactly.
    t.advance_ms(2_000);
    assert_eq!(t.reuse("p", &alice).await.id, a.id);
    assert_eq!(t.refuse("p", &carol).await, pool_full(2, 2, 1_197));
    assert_eq!(t.list_all().await.len(), 2);
    assert_eq!(t.in_use("p").await, 2);
    // Refusal in one pool does not concern another.
    t.open("other", &carol).await;
    // The holders still reuse their sessions.
    assert_eq!(t.reuse("p", &bob).await.id, b.id);
}

/// After the idle timeout the seat is free: the next admission opens a new
/// session and reports the expired one, with reason `idle`, exactly once.
pub async fn idle_expiry_frees_the_seat_and_is_reported_once(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let a = t.open("p", &alice).await;
    assert_eq!(t.refuse("p", &bob).await, pool_full(1, 1, ms(IDLE) / 1000));

    t.advance(IDLE);
    assert_eq!(t.in_use("p").await, 0, "an expired session holds no seat");
    let outcome = t.admit("p", &bob).await;
    let Admission::Opened {
        session: b,
        replaced: None,
    } = outcome.admission
    else {
        panic!("bob should get the freed seat, got {:?}", outcome.admission);
    };
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: a.clone(),
            reason: CloseReason::Idle
        }]
    );
    assert_ne!(b.id, a.id);
    assert_eq!(t.sweep().await, vec![], "already reported by admit");
    assert_eq!(t.in_use("p").await, 1);
    // Alice's valid token now finds the pool full.
    assert_eq!(
        t.refuse("p", &alice).await,
        pool_full(1, 1, ms(IDLE) / 1000)
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
}

/// Sliding cannot extend a session past its absolute lifetime: it closes with
/// reason `absolute` and the identity gets a new session.
pub async fn absolute_lifetime_ends_an_active_session(factory: &dyn StoreFactory) {
    let hour = Duration::from_secs(3600);
    let t = StoreUnderTest::new(factory, vec![with_timeouts(pool("p", 1), IDLE, hour)]).await;
    let alice = caller("alice", "erp-web");
    let first = t.open("p", &alice).await;
    for _ in 0..3 {
        t.advance(Duration::from_secs(15 * 60));
        assert_eq!(t.reuse("p", &alice).await.id, first.id);
    }
    // At T0 + 45 min the idle expiry is T0 + 65 min, but it ends at T0 + 60 min.
    let slid = t.store.get(&first.id).await.expect("get").expect("open");
    assert_eq!(slid.idle_expires_ms, T0 + 65 * 60_000);
    assert_eq!(slid.expires_ms(), T0 + 60 * 60_000);
    t.advance(Duration::from_secs(15 * 60) - Duration::from_millis(1));
    assert_eq!(t.reuse("p", &alice).await.id, first.id);

    t.advance_ms(1);
    let outcome = t.admit("p", &alice).await;
    assert_eq!(outcome.expired.len(), 1);
    assert_eq!(outcome.expired[0].session.id, first.id);
    assert_eq!(outcome.expired[0].reason, CloseReason::Absolute);
    let Admission::Opened {
        session: second,
        replaced: None,
    } = outcome.admission
    else {
        panic!("a new session was expected, got {:?}", outcome.admission);
    };
    assert_ne!(second.id, first.id);
    assert_eq!(second.created_ms, T0 + 60 * 60_000);
    assert_eq!(second.absolute_expires_ms, T0 + 120 * 60_000);
    assert_eq!(t.in_use("p").await, 1);
    assert_eq!(t.sweep().await, vec![]);
}

/// The idle boundary is exact: 1 ms before the expiry the session is reused,
/// at the expiry it is closed.
pub async fn idle_expiry_boundary_is_exact(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let first = t.open("p", &alice).await;
    t.advance(IDLE - Duration::from_millis(1));
    let slid = t.reuse("p", &alice).await;
    assert_eq!(slid.id, first.id);
    assert_eq!(slid.idle_expires_ms, T0 + 2 * ms(IDLE) - 1);

    t.advance(IDLE);
    assert_eq!(t.now(), slid.idle_expires_ms);
    assert_eq!(
        t.store.find("p", &alice.identity.key).await.expect("find"),
        None
    );
    assert_eq!(t.store.get(&first.id).await.expect("get"), None);
    let outcome = t.admit("p", &alice).await;
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: slid,
            reason: CloseReason::Idle
        }]
    );
    let session = outcome.admission.session().expect("a seat is free");
    assert!(matches!(outcome.admission, Admission::Opened { .. }));
    assert_ne!(session.id, first.id);
}

/// Reserved seats: members take their group's seat first and shared seats
/// after; others never take a reserved seat, and their `Retry-After` only
/// counts seats they could use.
pub async fn reserved_seats_are_kept_for_their_group(factory: &dyn StoreFactory) {
    let p = with_reserved(pool("p", 2), "sub", &["cfo"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let cfo = caller("cfo", "erp-web");
    let cfo_desk = caller("cfo", "erp-desktop");
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");

    let c = t.open("p", &cfo).await;
    assert_eq!(c.bucket, 1, "the member takes the reserved seat first");
    t.advance(Duration::from_secs(10));
    let a = t.open("p", &alice).await;
    assert_eq!(a.bucket, SHARED);
    t.advance(Duration::from_secs(10));
    // Bob may only wait for alice's shared seat (T0 + 1210 s), not the cfo's.
    assert_eq!(t.refuse("p", &bob).await, pool_full(2, 2, 1_190));
    // The cfo's second client may use either: the cfo's frees first.
    assert_eq!(t.refuse("p", &cfo_desk).await, pool_full(2, 2, 1_180));

    // With the shared seat free, a member may take it.
    let closed = t
        .store
        .close(&a.id, CloseReason::Admin)
        .await
        .expect("close");
    assert_eq!(closed.map(|c| c.session.id), Some(a.id));
    let d = t.open("p", &cfo_desk).await;
    assert_eq!(d.bucket, SHARED);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.refuse("p", &bob).await, pool_full(2, 2, 1_200));

    // A fresh pool: two ordinary users cannot both get in, the member can.
    let p = with_reserved(pool("q", 2), "sub", &["cfo"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    t.open("q", &alice).await;
    assert_eq!(t.refuse("q", &bob).await, pool_full(2, 1, 1_200));
    assert_eq!(t.open("q", &cfo).await.bucket, 1);
    assert_eq!(
        t.usage().await,
        vec![usage_of("q", 2, 1, 2)],
        "usage reports the reserved seats"
    );
}

/// Per-subject cap with `deny`: one session more is refused with the cap and
/// the time until the subject's earliest session expires; reuse is never capped.
pub async fn subject_limit_deny(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 10), 2, SubjectLimitPolicy::Deny);
    let t = StoreUnderTest::new(factory, vec![p, pool("other", 10)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let mobile = caller("alice", "erp-mobile");
    let w = t.open("p", &web).await;
    t.advance_ms(5_000);
    t.open("p", &desk).await;
    t.advance_ms(2_500);
    // Earliest: web at T0 + 1200 s; now T0 + 7.5 s → 1192.5 s → 1193 s.
    let before = t.list_all().await;
    assert_eq!(
        t.refuse("p", &mobile).await,
        Refusal::SubjectLimit {
            limit: 2,
            retry_after: Duration::from_secs(1_193)
        }
    );
    assert_eq!(t.list_all().await, before);
    assert_eq!(t.in_use("p").await, 2);
    // Others and other pools are not concerned; reuse at the cap is fine.
    t.open("p", &caller("bob", "erp-web")).await;
    t.open("other", &mobile).await;
    assert_eq!(t.reuse("p", &web).await.id, w.id);
    // Another issuer's alice is another subject.
    t.open("p", &caller_of("https://other.idp", "alice", "erp-mobile"))
        .await;
    // Closing one of alice's sessions makes room.
    t.store
        .close(&w.id, CloseReason::Logout)
        .await
        .expect("close");
    t.open("p", &mobile).await;
}

/// Per-subject cap with `replace_oldest`: the subject's least recently used
/// session is closed with reason `replaced` and reported, and the new one
/// takes its seat, even when the pool is otherwise full.
pub async fn subject_limit_replace_oldest(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 3), 2, SubjectLimitPolicy::ReplaceOldest);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let mobile = caller("alice", "erp-mobile");
    let bob = caller("bob", "erp-web");
    let w = t.open("p", &web).await;
    t.advance_ms(1_000);
    let d = t.open("p", &desk).await;
    t.advance_ms(500);
    let b = t.open("p", &bob).await;
    t.advance_ms(500);
    // Web is older but used more recently than desk.
    let w = {
        let slid = t.reuse("p", &web).await;
        assert_eq!(slid.id, w.id);
        slid
    };
    t.advance_ms(1_000);

    let outcome = t.admit("p", &mobile).await;
    assert_eq!(outcome.expired, vec![]);
    let Admission::Opened {
        session: m,
        replaced: Some(replaced),
    } = outcome.admission
    else {
        panic!(
            "expected a new session replacing one, got {:?}",
            outcome.admission
        );
    };
    assert_eq!(
        replaced,
        ClosedSession {
            session: d.clone(),
            reason: CloseReason::Replaced
        }
    );
    assert_eq!(m.created_ms, T0 + 3_000);
    assert_eq!(
        t.in_use("p").await,
        3,
        "the replaced seat went to the new session"
    );
    assert_eq!(t.store.get(&d.id).await.expect("get"), None);
    assert_eq!(
        t.store.find("p", &desk.identity.key).await.expect("find"),
        None
    );
    let mut open: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    open.sort();
    let mut expected = vec![w.id.clone(), b.id.clone(), m.id.clone()];
    expected.sort();
    assert_eq!(open, expected);
    // A replaced session is not reported again.
    assert_eq!(t.sweep().await, vec![]);
    // Desk coming back replaces the least recently used one now: web.
    t.advance_ms(1_000);
    let outcome = t.admit("p", &desk).await;
    match outcome.admission {
        Admission::Opened {
            replaced: Some(r), ..
        } => {
            assert_eq!(r.session.id, w.id);
            assert_eq!(r.reason, CloseReason::Replaced);
        }
        other => panic!("expected web to be replaced, got {other:?}"),
    }
    assert_eq!(t.in_use("p").await, 3);
}

/// `replace_oldest` evicts only when the new session then gets a seat. Here
/// the subject's only session holds a seat reserved for a client the new
/// token does not use, and the shared seat is taken: freeing the reserved
/// seat would not seat the newcomer, so the answer is `PoolFull` and the old
/// session stays. (Refusing with `SubjectLimit` instead would be wrong: the
/// policy is to replace, and what is missing is a seat.)
pub async fn subject_limit_replace_oldest_never_evicts_without_a_seat(factory: &dyn StoreFactory) {
    let p = with_subject_limit(pool("p", 2), 1, SubjectLimitPolicy::ReplaceOldest);
    let p = with_reserved(p, "client_id", &["night-batch"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let batch = caller("alice", "night-batch");
    let web = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    let a = t.open("p", &batch).await;
    assert_eq!(a.bucket, 1);
    t.advance_ms(2_000);
    let b = t.open("p", &bob).await;
    assert_eq!(b.bucket, SHARED);
    t.advance_ms(1_000);

    let before = t.list_all().await;
    // Only bob's shared seat is usable by alice's web client: T0 + 1202 s, now T0 + 3 s.
    assert_eq!(t.refuse("p", &web).await, pool_full(2, 2, 1_199));
    assert_eq!(t.list_all().await, before, "nothing was evicted");

    // Once a shared seat is free, the replacement happens.
    t.store
        .close(&b.id, CloseReason::Logout)
        .await
        .expect("close");
    let outcome = t.admit("p", &web).await;
    match outcome.admission {
        Admission::Opened {
            session,
            replaced: Some(r),
        } => {
            assert_eq!(session.bucket, SHARED);
            assert_eq!(r.session.id, a.id);
            assert_eq!(r.reason, CloseReason::Replaced);
        }
        other => panic!("expected the batch session to be replaced, got {other:?}"),
    }
    assert_eq!(t.in_use("p").await, 1);
}

/// Closing by id frees the seat and reports the session as last seen; a
/// second close finds nothing. An expired session cannot be closed by id
/// (it already closed by time) and is still reported by the sweep.
pub async fn close_by_id_frees_the_seat_once(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 1)]).await;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    t.open("p", &alice).await;
    t.advance_ms(4_000);
    let a = t.reuse("p", &alice).await;
    let closed = t
        .store
        .close(&a.id, CloseReason::Logout)
        .await
        .expect("close");
    assert_eq!(
        closed,
        Some(ClosedSession {
            session: a.clone(),
            reason: CloseReason::Logout
        })
    );
    assert_eq!(
        t.store
            .close(&a.id, CloseReason::Logout)
            .await
            .expect("close"),
        None
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
    assert_eq!(t.in_use("p").await, 0);
    assert_eq!(
        t.store
            .close("00000000000000000000000000000000", CloseReason::Admin)
            .await
            .expect("close"),
        None
    );

    let b = t.open("p", &bob).await;
    // Alice's valid token now finds bob in the seat.
    assert!(matches!(
        t.refuse("p", &alice).await,
        Refusal::PoolFull { .. }
    ));

    t.advance(IDLE);
    assert_eq!(
        t.store
            .close(&b.id, CloseReason::Admin)
            .await
            .expect("close"),
        None,
        "an expired session is no longer open"
    );
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(b.id.clone(), CloseReason::Idle)])
    );
    assert_eq!(t.sweep().await, vec![]);
}

/// Closing a subject closes all its sessions in every pool, and nobody else's.
pub async fn close_subject_closes_every_pool_and_nobody_else(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 5), pool("b", 5)]).await;
    let web = caller("alice", "erp-web");
    let desk = caller("alice", "erp-desktop");
    let bob = caller("bob", "erp-web");
    let other_alice = caller_of("https://other.idp", "alice", "erp-web");
    let s1 = t.open("a", &web).await;
    t.advance_ms(10);
    let s2 = t.open("a", &desk).await;
    t.advance_ms(10);
    let s3 = t.open("b", &web).await;
    let kept_bob = t.open("a", &bob).await;
    let kept_other = t.open("b", &other_alice).await;

    let closed = t
        .store
        .close_subject(&web.identity.subject_key, CloseReason::Backchannel)
        .await
        .expect("close_subject");
    assert_eq!(
        closed_ids(&closed),
        BTreeMap::from([
            (s1.id.clone(), CloseReason::Backchannel),
            (s2.id.clone(), CloseReason::Backchannel),
            (s3.id.clone(), CloseReason::Backchannel),
        ])
    );
    assert_eq!(closed.len(), 3);
    assert_eq!(t.in_use("a").await, 1);
    assert_eq!(t.in_use("b").await, 1);
    let mut open: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    open.sort();
    let mut expected = vec![kept_bob.id, kept_other.id];
    expected.sort();
    assert_eq!(open, expected);
    assert_eq!(
        t.store
            .close_subject(&web.identity.subject_key, CloseReason::Backchannel)
            .await
            .expect("close_subject"),
        vec![]
    );
    // The subject may come back with a new session.
    let back = t.open("a", &web).await;
    assert_ne!(back.id, s1.id);
}

/// `find` and `get` neither slide a session nor return an expired one, and
/// do not swallow its expiry report.
pub async fn find_and_get_do_not_slide_or_return_expired(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 2), pool("q", 2)]).await;
    let alice = caller("alice", "erp-web");
    let a = t.open("p", &alice).await;
    t.advance(Duration::from_secs(5 * 60));
    let found = t.store.find("p", &alice.identity.key).await.expect("find");
    assert_eq!(found, Some(a.clone()), "find returns it unchanged");
    assert_eq!(t.store.get(&a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(
        t.store.find("q", &alice.identity.key).await.expect("find"),
        None,
        "another pool holds no session for it"
    );
    assert_eq!(
        t.store
            .find("p", &caller("bob", "erp-web").identity.key)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        t.store
            .get("ffffffffffffffffffffffffffffffff")
            .await
            .expect("get"),
        None
    );

    // Not slid: it expires at its original idle expiry.
    t.advance(IDLE - Duration::from_secs(5 * 60));
    assert_eq!(
        t.store.find("p", &alice.identity.key).await.expect("find"),
        None
    );
    assert_eq!(t.store.get(&a.id).await.expect("get"), None);
    let outcome = t.admit("p", &caller("bob", "erp-web")).await;
    assert_eq!(
        outcome.expired,
        vec![ClosedSession {
            session: a,
            reason: CloseReason::Idle
        }],
        "the expiry is still reported once"
    );
}

/// `list` filters by pool and subject and orders oldest first (then by id),
/// without expired sessions.
pub async fn list_filters_and_orders_oldest_first(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 10), pool("b", 10)]).await;
    let s1 = t.open("a", &caller("alice", "erp-web")).await;
    t.advance_ms(1_000);
    let s2 = t.open("b", &caller("bob", "erp-web")).await;
    t.advance_ms(1_000);
    let s3 = t.open("b", &caller("alice", "erp-desktop")).await;
    t.advance_ms(1_000);
    let s4 = t.open("a", &caller("carol", "erp-web")).await;
    t.advance_ms(1_000);
    // Reuse moves last seen, not the order.
    t.reuse("a", &caller("alice", "erp-web")).await;

    assert_eq!(
        ids(&t.list_all().await),
        vec![&*s1.id, &*s2.id, &*s3.id, &*s4.id]
    );
    assert_eq!(ids(&t.list(Some("a"), None).await), vec![&*s1.id, &*s4.id]);
    assert_eq!(
        ids(&t.list(None, Some("alice")).await),
        vec![&*s1.id, &*s3.id]
    );
    assert_eq!(ids(&t.list(Some("b"), Some("alice")).await), vec![&*s3.id]);
    assert_eq!(t.list(None, Some("nobody")).await, vec![]);
    assert_eq!(t.list(Some("unknown"), None).await, vec![]);
    let listed = t.list(Some("a"), Some("alice")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen_ms, T0 + 4_000);

    // Sessions opened in the same millisecond come by id.
    let mut same: Vec<String> = Vec::new();
    for name in ["dave", "erin", "frank"] {
        same.push(t.open("a", &caller(name, "erp-web")).await.id);
    }
    same.sort();
    let tail: Vec<String> = t
        .list(Some("a"), None)
        .await
        .into_iter()
        .filter(|s| s.created_ms == T0 + 4_000)
        .map(|s| s.id)
        .collect();
    assert_eq!(tail, same);

    // Bob's expires first (T0 + 1201 s): it disappears from the list.
    t.advance_ms(1_201_000 - 4_000);
    let left = t.list_all().await;
    assert!(left.iter().all(|s| s.id != s2.id));
    assert_eq!(ids(&left)[..3], [&*s1.id, &*s3.id, &*s4.id]);
    assert_eq!(t.list(Some("b"), Some("bob")).await, vec![]);
}

/// `usage` lists every configured pool in order, empty ones included, and
/// never counts expired sessions.
pub async fn usage_lists_every_pool_in_order(factory: &dyn StoreFactory) {
    let interactive = with_reserved(pool("interactive", 5), "sub", &["cfo"], 1);
    let interactive = with_reserved(interactive, "client_id", &["night-batch"], 1);
    let t = StoreUnderTest::new(
        factory,
        vec![interactive, pool("batch", 2), pool("default", 3)],
    )
    .await;
    t.store.ping().await.expect("ping");
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 0),
            usage_of("default", 3, 0, 0),
        ]
    );
    t.open("batch", &caller("alice", "erp-web")).await;
    t.open("batch", &caller("bob", "erp-web")).await;
    t.advance_ms(1_000);
    t.open("default", &caller("carol", "erp-web")).await;
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 2),
            usage_of("default", 3, 0, 1),
        ]
    );
    // T0 + idle: the batch sessions end now, carol's a second later.
    t.advance(IDLE - Duration::from_millis(1_000));
    assert_eq!(
        t.usage().await,
        vec![
            usage_of("interactive", 5, 2, 0),
            usage_of("batch", 2, 0, 0),
            usage_of("default", 3, 0, 1),
        ],
        "expired sessions hold no seat, swept or not"
    );
    assert_eq!(t.sweep().await.len(), 2);
}

/// `sweep` closes exactly the expired sessions, with their reason, each once.
pub async fn sweep_closes_only_expired_once(factory: &dyn StoreFactory) {
    let system = with_timeouts(pool("system", 5), IDLE, Duration::from_secs(10 * 60));
    let t = StoreUnderTest::new(factory, vec![pool("p", 5), system]).await;
    let alice = t.open("p", &caller("alice", "erp-web")).await;
    let dave = t.open("system", &caller("dave", "erp-batch")).await;
    t.advance(Duration::from_secs(10 * 60));
    let bob = t.open("p", &caller("bob", "erp-web")).await;
    t.advance(Duration::from_secs(5 * 60));
    let carol = t.open("p", &caller("carol", "erp-web")).await;
    t.advance(Duration::from_secs(5 * 60));

    // T0 + 20 min: alice idle; dave ended at T0 + 10 min (absolute).
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([
            (alice.id.clone(), CloseReason::Idle),
            (dave.id.clone(), CloseReason::Absolute),
        ])
    );
    assert_eq!(swept.len(), 2);
    let alice_closed = swept
        .iter()
        .find(|c| c.session.id == alice.id)
        .expect("alice swept");
    assert_eq!(alice_closed.session, alice);
    assert_eq!(t.sweep().await, vec![]);
    assert_eq!(t.in_use("p").await, 2);
    assert_eq!(t.in_use("system").await, 0);

    // T0 + 30 min: bob idle, carol still open.
    t.advance(Duration::from_secs(10 * 60));
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(bob.id.clone(), CloseReason::Idle)])
    );
    assert_eq!(ids(&t.list_all().await), vec![&*carol.id]);
    let outcome = t.admit("p", &caller("erin", "erp-web")).await;
    assert_eq!(
        outcome.expired,
        vec![],
        "swept sessions are not reported again"
    );
}

/// A sweep right at the moment a session ends: an absolute end (`at ==
/// absolute`) closes it even though its idle timer would run longer.
pub async fn absolute_end_is_exact_for_sweep(factory: &dyn StoreFactory) {
    let system = with_timeouts(pool("system", 1), IDLE, Duration::from_secs(10 * 60));
    let t = StoreUnderTest::new(factory, vec![system]).await;
    let who = caller("dave", "erp-batch");
    let s = t.open("system", &who).await;
    t.advance(Duration::from_secs(9 * 60));
    t.reuse("system", &who).await;
    t.advance(Duration::from_secs(60) - Duration::from_millis(1));
    assert_eq!(t.sweep().await, vec![]);
    assert_eq!(t.in_use("system").await, 1);
    t.advance_ms(1);
    assert_eq!(t.in_use("system").await, 0);
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(s.id, CloseReason::Absolute)])
    );
}

/// The same identity holds one session per pool, each counted in its own pool.
pub async fn each_pool_counts_its_own_seats(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("a", 1), pool("b", 1)]).await;
    let alice = caller("alice", "erp-web");
    let in_a = t.open("a", &alice).await;
    let in_b = t.open("b", &alice).await;
    assert_ne!(in_a.id, in_b.id);
    assert_eq!(in_b.pool, "b");
    assert_eq!(t.in_use("a").await, 1);
    assert_eq!(t.in_use("b").await, 1);
    assert_eq!(
        t.store.find("b", &alice.identity.key).await.expect("find"),
        Some(in_b.clone())
    );
    t.store
        .close(&in_a.id, CloseReason::Logout)
        .await
        .expect("close");
    assert_eq!(t.reuse("b", &alice).await.id, in_b.id);
    assert_eq!(t.in_use("a").await, 0);
}

/// Fifty identities racing for ten seats: exactly ten sessions open, every
/// other caller is refused with the pool's exact state.
pub async fn concurrent_admissions_never_exceed_the_limit(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 10)]).await;
    let pool = t.pool("p");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let store = Arc::clone(&t.store);
        let pool = Arc::clone(&pool);
        let who = caller(&format!("user-{n}"), "erp-web");
        tasks.spawn(async move {
            let request = AdmitRequest::of(&pool, &who.identity);
            store.admit(&request).await.expect("admit")
        });
    }
    let mut opened: Vec<Session> = Vec::new();
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.expect("admit task");
        assert_eq!(outcome.expired, vec![]);
        match outcome.admission {
            Admission::Opened {
                session,
                replaced: None,
            } => opened.push(session),
            Admission::Refused(refusal) => {
                assert_eq!(refusal, pool_full(10, 10, ms(IDLE) / 1000));
                refused += 1;
            }
            other => panic!("unexpected admission {other:?}"),
        }
    }
    assert_eq!(opened.len(), 10);
    assert_eq!(refused, 40);
    assert_eq!(t.in_use("p").await, 10);
    let distinct: BTreeSet<_> = opened.iter().map(|s| s.identity).collect();
    assert_eq!(distinct.len(), 10);
    let mut listed: Vec<String> = t.list_all().await.into_iter().map(|s| s.id).collect();
    listed.sort();
    let mut ids: Vec<String> = opened.into_iter().map(|s| s.id).collect();
    ids.sort();
    assert_eq!(listed, ids);
}

/// Parallel requests with one token share one session: one opens it, all
/// others reuse it.
pub async fn concurrent_same_identity_shares_one_session(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 5)]).await;
    let pool = t.pool("p");
    let who = caller("alice", "erp-web");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = Arc::clone(&t.store);
        let pool = Arc::clone(&pool);
        let identity = who.identity.clone();
        tasks.spawn(async move {
            let request = AdmitRequest::of(&pool, &identity);
            store.admit(&request).await.expect("admit")
        });
    }
    let mut opened = Vec::new();
    let mut reused = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("admit task").admission {
            Admission::Opened {
                session,
                replaced: None,
            } => opened.push(session),
            Admission::Reused(session) => reused.push(session),
            other => panic!("unexpected admission {other:?}"),
        }
    }
    assert_eq!(opened.len(), 1);
    assert_eq!(reused.len(), 19);
    assert!(reused.iter().all(|s| s.id == opened[0].id));
    assert_eq!(t.in_use("p").await, 1);
}

/// An overdraft admits sessions beyond the limit when no seat is free, at
/// most that many at once, each marked by its bucket for its whole life;
/// seats freed below the limit go to regular sessions first.
pub async fn overdraft_admits_beyond_the_limit_up_to_its_size(factory: &dyn StoreFactory) {
    let mut p = pool("p", 2);
    p.overdraft = 1;
    let over = p.overdraft_bucket().expect("an overdraft bucket");
    assert_eq!(
        over, 1,
        "no reserved groups: the bucket after the shared one"
    );
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let who = |name: &str| caller(name, "erp-web");
    let a = t.open("p", &who("alice")).await;
    assert_eq!(t.open("p", &who("bob")).await.bucket, SHARED);
    assert_eq!(a.bucket, SHARED);
    t.advance_ms(1_000);
    // The limit is reached: the next session is an overdraft one.
    let c = t.open("p", &who("carol")).await;
    assert_eq!(c.bucket, over);
    assert_eq!(t.in_use("p").await, 3);
    // The overdraft is used up: refused, counting every held seat; the
    // earliest seat to free is alice's (T0 + 20 min), 1199 s from now.
    assert_eq!(t.refuse("p", &who("dave")).await, pool_full(2, 3, 1_199));
    // A reused overdraft session stays one.
    assert_eq!(t.reuse("p", &who("carol")).await.bucket, over);
    // Alice leaves: her regular seat goes to the next caller, and carol
    // keeps her overdraft seat.
    assert!(
        t.store
            .close(&a.id, CloseReason::Logout)
            .await
            .expect("close")
            .is_some()
    );
    assert_eq!(t.open("p", &who("erin")).await.bucket, SHARED);
    assert_eq!(t.refuse("p", &who("dave")).await, pool_full(2, 3, 1_199));
    // Once carol's overdraft seat frees, it is there for the next one.
    assert!(
        t.store
            .close(&c.id, CloseReason::Admin)
            .await
            .expect("close")
            .is_some()
    );
    assert_eq!(t.open("p", &who("dave")).await.bucket, over);
    assert_eq!(t.in_use("p").await, 3);
    let mut buckets: Vec<usize> = t.list_all().await.iter().map(|s| s.bucket).collect();
    buckets.sort_unstable();
    assert_eq!(buckets, vec![SHARED, SHARED, over]);
}

/// `linger` keeps a closed session's seat for its identity (its session
/// comes back under its id), `min_hold` keeps a seat at least so long after
/// it opened; an operator's close frees the seat at once. Refusals wait for
/// the hold, and the usage history counts the held time as seat time.
pub async fn held_seats_stay_with_their_identity(factory: &dyn StoreFactory) {
    let mut p = pool("p", 1);
    p.linger = Duration::from_secs(300);
    let mut q = pool("q", 1);
    q.min_hold = Duration::from_secs(900);
    let t = StoreUnderTest::new(factory, vec![p, q]).await;
    let min = |m: u64| Duration::from_secs(m * 60);
    let at = |m: u64| T0 + ms(min(m));
    let who = |name: &str| caller(name, "erp-web");

    let alice = t.open("p", &who("alice")).await;
    t.clock.set(at(1));
    let closed = t
        .store
        .close(&alice.id, CloseReason::Logout)
        .await
        .expect("close");
    assert!(closed.is_some());
    // Logged out, and still her seat: bob waits for its end (4 min on).
    assert_eq!(t.refuse("p", &who("bob")).await, pool_full(1, 1, 300));
    assert_eq!(t.in_use("p").await, 1);
    assert_eq!(t.list(Some("p"), None).await, vec![], "no open session");
    assert_eq!(t.store.get(&alice.id).await.expect("get"), None);
    // Alice comes back within it: her session, under its id.
    t.clock.set(at(3));
    let back = t.reuse("p", &who("alice")).await;
    assert_eq!(
        (back.id.as_str(), back.created_ms, back.last_seen_ms),
        (alice.id.as_str(), T0, at(3))
    );
    assert_eq!(
        t.store.get(&alice.id).await.expect("get").map(|s| s.id),
        Some(alice.id.clone())
    );
    t.clock.set(at(4));
    assert!(
        t.store
            .close(&alice.id, CloseReason::Logout)
            .await
            .expect("close")
            .is_some()
    );
    // The seat frees when the hold ends.
    t.clock.set(at(9));
    let bob = t.open("p", &who("bob")).await;
    // An operator's close frees it at once.
    t.clock.set(at(10));
    assert!(
        t.store
            .close(&bob.id, CloseReason::Admin)
            .await
            .expect("close")
            .is_some()
    );
    let carol = t.open("p", &who("carol")).await;
    // An idle close lingers too: carol idles out at 30, her seat is hers until 35.
    t.clock.set(at(31));
    let swept = t.sweep().await;
    assert_eq!(
        closed_ids(&swept),
        BTreeMap::from([(carol.id.clone(), CloseReason::Idle)])
    );
    assert_eq!(t.refuse("p", &who("dave")).await, pool_full(1, 1, 240));
    t.clock.set(at(35));
    t.open("p", &who("dave")).await;

    // min_hold: erin's seat in q is held 15 min after it opened.
    t.clock.set(at(36));
    let erin = t.open("q", &who("erin")).await;
    t.clock.set(at(38));
    assert!(
        t.store
            .close(&erin.id, CloseReason::Logout)
            .await
            .expect("close")
            .is_some()
    );
    assert_eq!(t.refuse("q", &who("frank")).await, pool_full(1, 1, 13 * 60));
    t.clock.set(at(51));
    t.open("q", &who("frank")).await;

    // The history of p: seats held 0-9 (alice, sessions and holds), 9-10
    // (bob), 10-35 (carol), 35-40 (dave); read at 40 min.
    t.clock.set(at(40));
    let hours = history(
        t.store.as_ref(),
        "p",
        session_gateway::usage::Step::Hour,
        T0,
    )
    .await;
    assert_eq!(hours.iter().map(|h| h.seat_ms).sum::<u64>(), ms(min(40)));
    assert_eq!(
        hours.iter().map(|h| h.opened).sum::<u64>(),
        4,
        "a session given back is no new open"
    );
    let mut closed: BTreeMap<String, u64> = BTreeMap::new();
    for h in &hours {
        for (reason, n) in &h.closed {
            *closed.entry(reason.clone()).or_default() += n;
        }
    }
    let expected: BTreeMap<String, u64> = [
        ("logout".to_string(), 1),
        ("admin".to_string(), 1),
        ("idle".to_string(), 1),
    ]
    .into();
    assert_eq!(closed, expected);
    assert_eq!(hours.iter().map(|h| h.peak).max(), Some(1));
}
