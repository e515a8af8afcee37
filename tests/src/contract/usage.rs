//! The [`UsageLedger`](session_gateway::session::UsageLedger) cases: a
//! scripted stretch of a day (across midnight, with closes of every kind and
//! expiries found late or not at all yet) yields the exact peaks, seat-time
//! and counts per minute, hour and day that the case computes on its own.
//! [`scripted_day`] takes any number of stores over the same state, so the
//! Redis suite also runs it across a two-instance fleet.

use super::*;
use session_gateway::usage::{Step, UsageInterval, rebuild};

/// One session as the case itself keeps it.
#[derive(Debug, Clone)]
struct Held {
    subject: String,
    open: UnixMillis,
    close: Option<(UnixMillis, &'static str)>,
}

/// What the case expects, kept beside the stores.
#[derive(Debug, Default)]
struct Model {
    sessions: Vec<Held>,
    refusals: Vec<(UnixMillis, &'static str)>,
}

impl Model {
    fn level_at(&self, t: UnixMillis) -> u32 {
        self.sessions
            .iter()
            .filter(|s| s.open <= t && s.close.is_none_or(|(c, _)| c > t))
            .count() as u32
    }

    /// The interval [start, end) as it should read at `now`.
    fn interval(&self, step: Step, index: u64, now: UnixMillis) -> UsageInterval {
        let (start, end) = (step.start(index), step.end(index));
        let upto = end.min(now);
        let mut peak = self.level_at(start);
        let mut interval = UsageInterval {
            start_ms: start,
            end_ms: end,
            complete: end <= now,
            held_at_start: self.level_at(start),
            ..UsageInterval::default()
        };
        let mut subjects = BTreeSet::new();
        for s in &self.sessions {
            if (start..upto).contains(&s.open) {
                peak = peak.max(self.level_at(s.open));
                interval.opened += 1;
            }
            if let Some((at, reason)) = s.close
                && (start..upto).contains(&at)
            {
                *interval.closed.entry(reason.to_string()).or_default() += 1;
            }
            let until = s.close.map_or(u64::MAX, |(c, _)| c).min(upto);
            interval.seat_ms += until.saturating_sub(s.open.max(start));
            if s.open < upto && s.close.is_none_or(|(c, _)| c > start) {
                subjects.insert(s.subject.clone());
            }
        }
        for (at, reason) in &self.refusals {
            if (start..upto).contains(at) {
                *interval.refused.entry(reason.to_string()).or_default() += 1;
            }
        }
        interval.peak = peak;
        interval.subjects = (step == Step::Day).then_some(subjects.len() as u64);
        interval
    }
}

/// A pool's history at `step` from `from` through now, as the admin API
/// reads it: the store's snapshot, rebuilt.
pub async fn history(
    store: &dyn Store,
    pool: &str,
    step: Step,
    from: UnixMillis,
) -> Vec<UsageInterval> {
    bucket_history(store, pool, None, step, from).await
}

/// [`history`] of one reserved bucket of a pool, or of the whole pool.
pub async fn bucket_history(
    store: &dyn Store,
    pool: &str,
    bucket: Option<usize>,
    step: Step,
    from: UnixMillis,
) -> Vec<UsageInterval> {
    let from = step.index(from);
    let snapshot = store
        .usage_ledger(pool, bucket, step, from)
        .await
        .expect("usage ledger")
        .expect("a configured pool");
    rebuild(&snapshot, step, from, step.index(snapshot.now_ms))
}

/// The history of a scripted stretch of a day is exact, for one store.
pub async fn usage_history_of_a_scripted_day_is_exact(factory: &dyn StoreFactory) {
    let t = StoreUnderTest::new(factory, vec![pool("p", 3)]).await;
    scripted_day(&[Arc::clone(&t.store)], &t.clock, &t.pools).await;
}

async fn admit_on(store: &dyn Store, pools: &Pools, who: &Caller) -> AdmitOutcome {
    let pool = Arc::clone(pools.get("p").expect("pool p"));
    let request = AdmitRequest {
        pool: &pool,
        identity: &who.identity,
        reserved: None,
        sid: None,
        token: None,
        ticket: None,
    };
    store.admit(&request).await.expect("admit")
}

/// Runs the scripted stretch on `stores` in turn (one store, or several
/// instances over one Redis) with pool `p` of 3 seats, [`IDLE`] and
/// [`ABSOLUTE`], starting at [`T0`] (22:13:20.250 UTC), and checks every
/// minute, hour and day against the case's own count.
pub async fn scripted_day(stores: &[Arc<dyn Store>], clock: &ManualClock, pools: &Pools) {
    let store = |n: usize| stores[n % stores.len()].as_ref();
    let at = |offset: Duration| T0 + ms(offset);
    let set = |offset: Duration| clock.set(at(offset));
    let (min, sec) = (|m: u64| Duration::from_secs(m * 60), Duration::from_secs);
    let mut model = Model::default();
    let mut opened = BTreeMap::new();
    let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let who: BTreeMap<&str, Caller> = names.iter().map(|n| (*n, caller(n, "erp-web"))).collect();

    // Three seats fill within two minutes; the fourth caller is refused.
    for (n, (name, offset)) in [("alice", sec(0)), ("bob", sec(10)), ("carol", sec(70))]
        .into_iter()
        .enumerate()
    {
        set(offset);
        let outcome = admit_on(store(n), pools, &who[name]).await;
        let Admission::Opened { session, .. } = outcome.admission else {
            panic!("{name} opens: {outcome:?}");
        };
        assert_eq!(outcome.seats_held, Some(n as u32 + 1));
        opened.insert(name, (model.sessions.len(), session.id));
        model.sessions.push(Held {
            subject: name.into(),
            open: at(offset),
            close: None,
        });
    }
    set(sec(80));
    let refused = admit_on(store(1), pools, &who["dave"]).await;
    assert!(matches!(
        refused.admission,
        Admission::Refused(Refusal::PoolFull { .. })
    ));
    model.refusals.push((at(sec(80)), "pool_full"));

    // Alice calls again (her idle end moves to 25 min); Bob logs out; Dave
    // gets Bob's seat.
    set(min(5));
    assert!(matches!(
        admit_on(store(0), pools, &who["alice"]).await.admission,
        Admission::Reused(_)
    ));
    set(min(6));
    let bob = &opened["bob"];
    assert!(
        store(1)
            .close(&bob.1, CloseReason::Logout)
            .await
            .expect("close")
            .is_some()
    );
    model.sessions[bob.0].close = Some((at(min(6)), "logout"));
    set(min(7));
    let dave = admit_on(store(0), pools, &who["dave"]).await;
    assert!(matches!(dave.admission, Admission::Opened { .. }));
    model.sessions.push(Held {
        subject: "dave".into(),
        open: at(min(7)),
        close: None,
    });

    // Carol (idle since 70 s), Alice (since 5 min) and Dave (since 7 min)
    // idle out; the sweep finds them at 30 min, each written where it ended.
    set(min(30));
    let swept = store(1).sweep().await.expect("sweep");
    assert_eq!(swept.len(), 3, "{swept:?}");
    model.sessions[opened["carol"].0].close = Some((at(sec(70) + IDLE), "idle"));
    model.sessions[opened["alice"].0].close = Some((at(min(5) + IDLE), "idle"));
    model.sessions[3].close = Some((at(min(7) + IDLE), "idle"));

    // Erin holds a seat for 30 s until an operator closes it.
    set(min(40));
    let Admission::Opened { session: erin, .. } =
        admit_on(store(0), pools, &who["erin"]).await.admission
    else {
        panic!("erin opens");
    };
    set(min(40) + sec(30));
    assert!(
        store(1)
            .close(&erin.id, CloseReason::Admin)
            .await
            .expect("close")
            .is_some()
    );
    model.sessions.push(Held {
        subject: "erin".into(),
        open: at(min(40)),
        close: Some((at(min(40) + sec(30)), "admin")),
    });

    // Frank opens at 23:58:20 and calls again after midnight; Grace opens
    // after midnight. Both idle out, and nobody purges them before the read.
    set(min(105));
    assert!(matches!(
        admit_on(store(0), pools, &who["frank"]).await.admission,
        Admission::Opened { .. }
    ));
    set(min(117));
    assert!(matches!(
        admit_on(store(1), pools, &who["frank"]).await.admission,
        Admission::Reused(_)
    ));
    set(min(118));
    assert!(matches!(
        admit_on(store(0), pools, &who["grace"]).await.admission,
        Admission::Opened { .. }
    ));
    model.sessions.push(Held {
        subject: "frank".into(),
        open: at(min(105)),
        close: Some((at(min(117) + IDLE), "idle")),
    });
    model.sessions.push(Held {
        subject: "grace".into(),
        open: at(min(118)),
        close: Some((at(min(118) + IDLE), "idle")),
    });

    set(min(180) + sec(7));
    let now = clock.now_ms();
    let check = |step: Step, read: &[UsageInterval], unpurged: bool| {
        let first = step.index(T0);
        assert_eq!(
            read.len() as u64,
            step.index(now) - first + 1,
            "{}",
            step.as_str()
        );
        for interval in read {
            let mut expected = model.interval(step, step.index(interval.start_ms), now);
            if unpurged {
                // Not purged yet: the history knows they expired, not why.
                for held in &model.sessions[5..] {
                    let (c, _) = held.close.expect("closed by time");
                    if (interval.start_ms..interval.end_ms).contains(&c) {
                        let idle = expected.closed.entry("idle".into()).or_default();
                        *idle -= 1;
                        if *idle == 0 {
                            expected.closed.remove("idle");
                        }
                        *expected.closed.entry("expired".into()).or_default() += 1;
                    }
                }
                // Frank's session across midnight counts for the new day
                // once it closes.
                if step == Step::Day && interval.start_ms > T0 {
                    expected.subjects = expected.subjects.map(|n| n - 1);
                }
            }
            assert_eq!(
                interval,
                &expected,
                "{} at {}",
                step.as_str(),
                interval.start_ms
            );
        }
    };
    for step in Step::ALL {
        check(step, &history(store(0), "p", step, T0).await, true);
    }
    assert_eq!(store(1).sweep().await.expect("sweep").len(), 2);
    for step in Step::ALL {
        check(step, &history(store(1), "p", step, T0).await, false);
    }
    // The busiest minute and the two days, as a true-up reads them.
    let days = history(store(0), "p", Step::Day, T0).await;
    assert_eq!(days.iter().map(|d| d.peak).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(
        days.iter().map(|d| d.subjects).collect::<Vec<_>>(),
        vec![Some(6), Some(2)]
    );
    let snapshot = store(0)
        .usage_ledger("p", None, Step::Day, Step::Day.index(T0))
        .await
        .expect("ledger")
        .expect("pool");
    assert_eq!(
        snapshot
            .month_subjects
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![7]
    );
}

/// A reserved group's history holds its own seats only: the sessions that
/// took them, their closes and expiries, its own peak.
pub async fn usage_history_of_a_reserved_group_counts_its_seats_only(factory: &dyn StoreFactory) {
    let p = with_reserved(pool("p", 3), "client_id", &["night-batch"], 1);
    let t = StoreUnderTest::new(factory, vec![p]).await;
    let (min, sec) = (|m: u64| Duration::from_secs(m * 60), Duration::from_secs);
    let at = |offset: Duration| T0 + ms(offset);
    let mut group = Model::default();

    let first = t.open("p", &caller("batch-1", "night-batch")).await;
    assert_eq!(first.bucket, 1);
    group.sessions.push(Held {
        subject: "batch-1".into(),
        open: T0,
        close: None,
    });
    t.clock.set(at(sec(30)));
    assert_eq!(
        t.open("p", &caller("alice", "erp-web")).await.bucket,
        SHARED
    );
    // The group's seat is taken: the second batch job takes a shared one.
    t.clock.set(at(sec(90)));
    assert_eq!(
        t.open("p", &caller("batch-2", "night-batch")).await.bucket,
        SHARED
    );
    t.clock.set(at(min(3)));
    assert!(
        t.store
            .close(&first.id, CloseReason::Logout)
            .await
            .expect("close")
            .is_some()
    );
    group.sessions[0].close = Some((at(min(3)), "logout"));
    t.clock.set(at(min(4)));
    assert_eq!(
        t.open("p", &caller("batch-3", "night-batch")).await.bucket,
        1
    );
    group.sessions.push(Held {
        subject: "batch-3".into(),
        open: at(min(4)),
        close: Some((at(min(4) + IDLE), "idle")),
    });

    // Read before and after the sweep finds batch-3 idle.
    t.clock.set(at(min(30)));
    let now = t.now();
    for swept in [false, true] {
        if swept {
            assert_eq!(t.sweep().await.len(), 3);
        }
        for step in [Step::Minute, Step::Hour] {
            let read = bucket_history(t.store.as_ref(), "p", Some(1), step, T0).await;
            assert_eq!(read.len() as u64, step.index(now) - step.index(T0) + 1);
            for interval in &read {
                let mut expected = group.interval(step, step.index(interval.start_ms), now);
                if !swept && let Some(idle) = expected.closed.remove("idle") {
                    expected.closed.insert("expired".into(), idle);
                }
                assert_eq!(
                    interval,
                    &expected,
                    "{} at {}",
                    step.as_str(),
                    interval.start_ms
                );
            }
        }
    }
    let whole = history(t.store.as_ref(), "p", Step::Hour, T0).await;
    assert_eq!(whole.iter().map(|i| i.opened).sum::<u64>(), 4);
    assert_eq!(whole.iter().map(|i| i.peak).max(), Some(3));
}
