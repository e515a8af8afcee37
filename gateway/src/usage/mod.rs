//! The usage history of the license pools: per pool and per minute, hour
//! and day, the most seats held, the seat-time, the sessions opened, closed
//! (by reason) and refused (by reason), and the distinct subjects per day
//! and month. Both stores keep it exactly, at the moment of every seat
//! change and inside the same atomic step (no sampling, no extra round
//! trip); this module holds what they share:
//!
//! * [`Tally`]: what a store writes per interval, and [`LedgerSnapshot`],
//!   what it reads back;
//! * [`rebuild`]: the seats held at each interval's start, derived from the
//!   seats held now and the changes since, and from them each interval's
//!   peak and seat-time ([`UsageInterval`]);
//! * [`PoolLedger`]: the memory store's writer of tallies;
//! * [`report`]: the peaks and the monthly summary built on top;
//! * [`calendar`]: minutes, hours, days and calendar months (UTC).
//!
//! Why the level at an interval's start is derived, not written: a session
//! that expires is only found (purged) later, by the next call of its pool
//! or the sweeper. Its close is then written into the interval it happened
//! in, after the fact, and every later interval's start level comes out
//! right without rewriting any of them.

pub mod calendar;
pub mod ledger;
pub mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use calendar::{Month, Step};
pub use ledger::PoolLedger;

use crate::clock::UnixMillis;

/// How long each step's intervals are kept after they end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRetention {
    /// Minutes (default 2 days).
    pub minutes: Duration,
    /// Hours (default 90 days).
    pub hours: Duration,
    /// Days, and the months' distinct subjects (default 3 years: 1,096 days).
    pub days: Duration,
}

impl Default for UsageRetention {
    fn default() -> Self {
        Self {
            minutes: Duration::from_secs(2 * 86_400),
            hours: Duration::from_secs(90 * 86_400),
            days: Duration::from_secs(1_096 * 86_400),
        }
    }
}

impl UsageRetention {
    /// How long intervals of `step` are kept (zero: not kept at all).
    pub fn of(&self, step: Step) -> Duration {
        match step {
            Step::Minute => self.minutes,
            Step::Hour => self.hours,
            Step::Day => self.days,
        }
    }

    /// The first interval of `step` still kept at `now`, given when the
    /// history began; `None` when the step is not kept.
    pub fn first_kept(&self, step: Step, now: UnixMillis, began: UnixMillis) -> Option<u64> {
        let keep = u64::try_from(self.of(step).as_millis()).unwrap_or(u64::MAX);
        if keep == 0 {
            return None;
        }
        // Interval i is kept while its end plus the retention lies ahead;
        // the one on the boundary may already be gone, so it is left out.
        let by_age = step.index(now.saturating_sub(keep)).saturating_add(1);
        let by_start = step.index(began);
        Some(by_age.max(by_start).min(step.index(now)))
    }
}

/// What a store writes for one pool and interval. Opens and closes are
/// written into the interval they happened in (a close found late goes back
/// to its own interval), so the net seat change is `opened - closed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sum over the interval's seat changes (+1 open, -1 close) of
    /// change × (interval end − time of the change), in ms: with the seats
    /// held at the start, this gives the seat-time exactly.
    pub weighted_ms: i64,
    /// The most seats held right after a session opened in the interval.
    pub peak_after_open: u32,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions closed, by reason (`idle`, `absolute`, `logout`, …).
    pub closed: BTreeMap<String, u64>,
    /// Admissions refused, by reason (`pool_full`, `subject_limit`, `revoked`).
    pub refused: BTreeMap<String, u64>,
    /// Distinct subjects that held a seat (days only).
    pub subjects: u64,
}

impl Tally {
    /// Sessions closed, all reasons.
    pub fn closed_total(&self) -> u64 {
        self.closed.values().sum()
    }

    /// The net change of the seats held over the interval.
    pub fn seat_change(&self) -> i64 {
        self.opened as i64 - self.closed_total() as i64
    }

    /// Records an open at `at` in the interval ending at `end`, after which
    /// `held` seats were held.
    pub fn open(&mut self, at: UnixMillis, end: UnixMillis, held: u32) {
        self.opened += 1;
        self.weighted_ms += end.saturating_sub(at) as i64;
        self.peak_after_open = self.peak_after_open.max(held);
    }

    /// Records a close at `at` in the interval ending at `end`.
    pub fn close(&mut self, at: UnixMillis, end: UnixMillis, reason: &str) {
        *self.closed.entry(reason.to_string()).or_default() += 1;
        self.weighted_ms -= end.saturating_sub(at) as i64;
    }

    /// Records a refusal.
    pub fn refuse(&mut self, reason: &str) {
        *self.refused.entry(reason.to_string()).or_default() += 1;
    }
}

/// One pool's history at one step, as a store reads it: every interval
/// from the first asked for through the one holding `now` (absent ones had
/// no change), and what is needed to derive the seats held at their starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// The store's time of the read.
    pub now_ms: UnixMillis,
    /// When the pool's history began (its first write, or the store's start).
    pub began_ms: UnixMillis,
    /// Seats held by sessions alive at `now_ms`.
    pub live: u64,
    /// Expiry times of sessions that expired by `now_ms` but are not purged
    /// yet: their closes are not written yet, so [`rebuild`] counts them
    /// where they happened.
    pub unpurged_expiries: Vec<UnixMillis>,
    /// The written intervals by index.
    pub tallies: BTreeMap<u64, Tally>,
    /// Distinct subjects per calendar month (read with the day step).
    pub month_subjects: BTreeMap<Month, u64>,
}

/// One interval of a pool's usage, as the reports show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageInterval {
    /// Its start (ms).
    pub start_ms: UnixMillis,
    /// Its end (ms, exclusive).
    pub end_ms: UnixMillis,
    /// Whether it has ended; an interval still running counts up to now.
    pub complete: bool,
    /// The most seats held at any moment of it.
    pub peak: u32,
    /// Seats held at its start.
    pub held_at_start: u32,
    /// Seat-time in ms (seats × time held, within the interval).
    pub seat_ms: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions closed, by reason.
    pub closed: BTreeMap<String, u64>,
    /// Admissions refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Distinct subjects that held a seat (day step only).
    pub subjects: Option<u64>,
}

impl UsageInterval {
    /// Admissions refused, all reasons.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Sessions closed, all reasons.
    pub fn closed_total(&self) -> u64 {
        self.closed.values().sum()
    }
}

/// Every interval of `step` from `from` through `to` (indexes, `to` at most
/// the interval holding the snapshot's `now_ms`), with the seats held at
/// each start derived backwards from the seats held now.
pub fn rebuild(snapshot: &LedgerSnapshot, step: Step, from: u64, to: u64) -> Vec<UsageInterval> {
    let now = snapshot.now_ms;
    let now_index = step.index(now);
    let to = to.min(now_index);
    if from > to {
        return Vec::new();
    }
    let mut tallies: BTreeMap<u64, Tally> = snapshot
        .tallies
        .range(from..=now_index)
        .map(|(i, t)| (*i, t.clone()))
        .collect();
    // The closes of sessions not purged yet, where they happened, as
    // `expired` (the store writes `idle` or `absolute` once it purges them).
    // Those before `from` change no level in range (they are not in `live`).
    for &expiry in &snapshot.unpurged_expiries {
        let index = step.index(expiry);
        if index >= from {
            tallies
                .entry(index)
                .or_default()
                .close(expiry, step.end(index), "expired");
        }
    }
    // Seats held at the start of interval i = held now − changes from i on.
    // Callers keep `from` within the retention, so this walks at most a few
    // thousand intervals.
    let mut level = snapshot.live as i64;
    let mut at_start: BTreeMap<u64, i64> = BTreeMap::new();
    for index in (from..=now_index).rev() {
        if let Some(t) = tallies.get(&index) {
            level -= t.seat_change();
        }
        if index <= to {
            at_start.insert(index, level);
        }
    }
    (from..=to)
        .map(|index| {
            let start = step.start(index);
            let end = step.end(index);
            let tally = tallies.get(&index).cloned().unwrap_or_default();
            let held = at_start.get(&index).copied().unwrap_or(0).max(0);
            let after = (held + tally.seat_change()).max(0);
            let upto = end.min(now.max(start));
            let seat_ms = held * step.ms() as i64 + tally.weighted_ms
                - after * end.saturating_sub(upto) as i64;
            UsageInterval {
                start_ms: start,
                end_ms: end,
                complete: end <= now,
                peak: held.max(i64::from(tally.peak_after_open)).max(0) as u32,
                held_at_start: held as u32,
                seat_ms: seat_ms.max(0) as u64,
                opened: tally.opened,
                closed: tally.closed,
                refused: tally.refused,
                subjects: (step == Step::Day).then_some(tally.subjects),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
