//! [`rebuild`] against a brute-force count over a random timeline whose
//! closes are written late, in random order, or not at all yet.

use super::*;
use crate::digest::Digest32;

/// One session of a timeline: when it opened and when (if) it closed.
#[derive(Debug, Clone, Copy)]
struct Held {
    open: UnixMillis,
    close: Option<UnixMillis>,
}

fn level_at(sessions: &[Held], t: UnixMillis) -> u32 {
    sessions
        .iter()
        .filter(|s| s.open <= t && s.close.is_none_or(|c| c > t))
        .count() as u32
}

/// Peak and seat-time of [start, min(end, now)) counted directly.
fn brute(sessions: &[Held], start: UnixMillis, end: UnixMillis, now: UnixMillis) -> (u32, u64) {
    let upto = end.min(now);
    let mut peak = level_at(sessions, start);
    for s in sessions {
        if s.open >= start && s.open < upto {
            peak = peak.max(level_at(sessions, s.open));
        }
    }
    let seat_ms = sessions
        .iter()
        .map(|s| {
            let from = s.open.max(start);
            let to = s.close.unwrap_or(u64::MAX).min(upto);
            to.saturating_sub(from)
        })
        .sum();
    (peak, seat_ms)
}

#[test]
fn rebuilt_intervals_match_a_direct_count() {
    let keep = UsageRetention::default();
    let subject = Digest32([7; 32]);
    for seed in 0..40 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let begin: UnixMillis = 1_800_000_000_000 + rng.u64(0..3_600_000);
        let now = begin + 3 * 3_600_000 + rng.u64(0..600_000);
        let mut sessions: Vec<Held> = Vec::new();
        let mut t = begin;
        while t < now {
            t += rng.u64(1..120_000);
            if t >= now {
                break;
            }
            let lifetime = rng.u64(1..2 * 3_600_000);
            let close = (t + lifetime < now || rng.bool()).then_some(t + lifetime);
            sessions.push(Held { open: t, close });
        }
        let mut ledger = PoolLedger::new(begin);
        // Opens are written as they happen, with the true level after them.
        for s in &sessions {
            let held = level_at(&sessions, s.open);
            ledger.opened(s.open, held, Some(subject), s.open, &keep);
        }
        // Closes by time are found late, in random order, or not yet.
        let mut closes: Vec<UnixMillis> = sessions
            .iter()
            .filter_map(|s| s.close)
            .filter(|c| *c <= now)
            .collect();
        rng.shuffle(&mut closes);
        let unpurged = closes.split_off(closes.len() / 3 * 2);
        for &c in &closes {
            ledger.closed(c, "idle", c, Some(subject), now, &keep);
        }
        let live = level_at(&sessions, now) as u64;
        for step in [Step::Minute, Step::Hour] {
            let from = step.index(begin);
            let snapshot = ledger.snapshot(step, from, now, live, unpurged.clone());
            let rebuilt = rebuild(&snapshot, step, from, step.index(now));
            assert_eq!(rebuilt.len() as u64, step.index(now) - from + 1);
            for interval in &rebuilt {
                let (peak, seat_ms) = brute(&sessions, interval.start_ms, interval.end_ms, now);
                assert_eq!(
                    (interval.peak, interval.seat_ms),
                    (peak, seat_ms),
                    "seed {seed}, {} at {}",
                    step.as_str(),
                    interval.start_ms
                );
                assert_eq!(
                    interval.held_at_start,
                    level_at(&sessions, interval.start_ms)
                );
                assert_eq!(interval.complete, interval.end_ms <= now);
            }
        }
    }
}

#[test]
fn a_day_counts_each_subject_once_and_sessions_across_midnight_count_for_both_days() {
    let keep = UsageRetention::default();
    let day = 20_000u64;
    let midnight = Step::Day.start(day + 1);
    let (alice, bob) = (Digest32([1; 32]), Digest32([2; 32]));
    let mut ledger = PoolLedger::new(Step::Day.start(day));
    let evening = midnight - 3_600_000;
    ledger.opened(evening, 1, Some(alice), evening, &keep);
    ledger.opened(evening + 1, 2, Some(alice), evening + 1, &keep);
    ledger.opened(evening + 2, 3, Some(bob), evening + 2, &keep);
    // Alice's first session lives past midnight and closes the next day.
    let morning = midnight + 3_600_000;
    ledger.closed(morning, "logout", evening, Some(alice), morning, &keep);
    let snapshot = ledger.snapshot(Step::Day, day, morning, 2, Vec::new());
    let days = rebuild(&snapshot, Step::Day, day, day + 1);
    assert_eq!(days[0].subjects, Some(2));
    assert_eq!(days[1].subjects, Some(1));
    assert_eq!(days[1].closed.get("logout"), Some(&1));
    assert_eq!(days[1].held_at_start, 3);
    assert_eq!(snapshot.month_subjects.values().sum::<u64>(), 2);
}

#[test]
fn nothing_is_written_past_its_retention_and_pruning_forgets_it() {
    let keep = UsageRetention {
        minutes: std::time::Duration::from_secs(600),
        hours: std::time::Duration::ZERO,
        days: std::time::Duration::from_secs(86_400),
    };
    let subject = Digest32([3; 32]);
    let mut ledger = PoolLedger::new(0);
    let now = 10 * 86_400_000;
    // A close found an hour late still lands in its minute; one found after
    // its minute's retention is not written to the minute at all.
    ledger.closed(now - 3_600_000, "idle", 0, Some(subject), now, &keep);
    ledger.closed(now - 60_000, "idle", 0, Some(subject), now, &keep);
    assert_eq!(
        ledger
            .snapshot(Step::Minute, 0, now, 0, Vec::new())
            .tallies
            .len(),
        1
    );
    assert!(
        ledger
            .snapshot(Step::Hour, 0, now, 0, Vec::new())
            .tallies
            .is_empty()
    );
    assert_eq!(
        ledger
            .snapshot(Step::Day, 0, now, 0, Vec::new())
            .tallies
            .len(),
        1
    );
    ledger.prune(now + 2 * 86_400_000, &keep, 0);
    assert!(
        ledger
            .snapshot(Step::Minute, 0, now, 0, Vec::new())
            .tallies
            .is_empty()
    );
    assert!(
        ledger
            .snapshot(Step::Day, 0, now, 0, Vec::new())
            .tallies
            .is_empty()
    );
    assert_eq!(keep.first_kept(Step::Hour, now, 0), None);
    assert_eq!(
        keep.first_kept(Step::Minute, now, 0),
        Some(Step::Minute.index(now) - 9)
    );
}
