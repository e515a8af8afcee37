//! [`PoolLedger`]: one pool's usage history held in process, written at
//! every seat change under the memory store's lock. The Redis store writes
//! the same tallies with its scripts (`lua/common.lua`, "Usage history");
//! both are read back through [`LedgerSnapshot`] and [`super::rebuild`].

use std::collections::{BTreeMap, BTreeSet};

use super::{LedgerSnapshot, Month, Step, Tally, UsageRetention};
use crate::clock::UnixMillis;
use crate::digest::Digest32;

/// One pool's tallies per step, and the subjects seen per day and month.
#[derive(Debug, Clone, Default)]
pub struct PoolLedger {
    began_ms: UnixMillis,
    tallies: BTreeMap<Step, BTreeMap<u64, Tally>>,
    /// Subjects seen per day, while a session open that day can still close.
    day_subjects: BTreeMap<u64, BTreeSet<Digest32>>,
    /// Subjects seen per month, likewise, and the month's count (kept with
    /// the days).
    month_subjects: BTreeMap<Month, BTreeSet<Digest32>>,
    month_counts: BTreeMap<Month, u64>,
}

impl PoolLedger {
    /// An empty history beginning at `now`.
    pub fn new(now: UnixMillis) -> Self {
        Self {
            began_ms: now,
            ..Self::default()
        }
    }

    /// Calls `write` with each interval holding `at` that is still kept at
    /// `now`, and its end.
    fn each_interval(
        &mut self,
        at: UnixMillis,
        now: UnixMillis,
        keep: &UsageRetention,
        mut write: impl FnMut(&mut Tally, UnixMillis),
    ) {
        for step in Step::ALL {
            let kept = millis(keep.of(step));
            let index = step.index(at);
            let end = step.end(index);
            if kept > 0 && end.saturating_add(kept) > now {
                let tally = self
                    .tallies
                    .entry(step)
                    .or_default()
                    .entry(index)
                    .or_default();
                write(tally, end);
            }
        }
    }

    /// A session opened at `at`; `held` seats were held right after. Its
    /// subject is counted when given (a reserved bucket's history counts
    /// none: distinct subjects are the pool's).
    pub fn opened(
        &mut self,
        at: UnixMillis,
        held: u32,
        subject: Option<Digest32>,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        self.each_interval(at, now, keep, |tally, end| tally.open(at, end, held));
        if let Some(subject) = subject {
            self.count_subject(Step::Day.index(at), subject, now, keep);
        }
    }

    /// A session opened at `created` closed at `at` for `reason`. Its subject
    /// (when given) counts for every later day the session was open on too.
    pub fn closed(
        &mut self,
        at: UnixMillis,
        reason: &str,
        created: UnixMillis,
        subject: Option<Digest32>,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        self.each_interval(at, now, keep, |tally, end| tally.close(at, end, reason));
        if let Some(subject) = subject {
            for day in Step::Day.index(created) + 1..=Step::Day.index(at) {
                self.count_subject(day, subject, now, keep);
            }
        }
    }

    /// An admission refused at `at` for `reason`.
    pub fn refused(
        &mut self,
        at: UnixMillis,
        reason: &str,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        self.each_interval(at, now, keep, |tally, _| tally.refuse(reason));
    }

    fn count_subject(
        &mut self,
        day: u64,
        subject: Digest32,
        now: UnixMillis,
        keep: &UsageRetention,
    ) {
        let kept = millis(keep.days);
        if kept == 0 || Step::Day.end(day).saturating_add(kept) <= now {
            return;
        }
        if self.day_subjects.entry(day).or_default().insert(subject) {
            let tally = self
                .tallies
                .entry(Step::Day)
                .or_default()
                .entry(day)
                .or_default();
            tally.subjects += 1;
        }
        let month = Month::of_day(day);
        if self
            .month_subjects
            .entry(month)
            .or_default()
            .insert(subject)
        {
            *self.month_counts.entry(month).or_default() += 1;
        }
    }

    /// Drops what is past its retention, and the subject sets of days and
    /// months no session open in them can still close in (`linger`: the
    /// pool's absolute lifetime).
    pub fn prune(&mut self, now: UnixMillis, keep: &UsageRetention, linger: UnixMillis) {
        for (step, tallies) in &mut self.tallies {
            let kept = millis(keep.of(*step));
            tallies.retain(|index, _| step.end(*index).saturating_add(kept) > now);
        }
        let settled = |end: UnixMillis| end.saturating_add(linger).saturating_add(60_000) <= now;
        self.day_subjects
            .retain(|day, _| !settled(Step::Day.end(*day)));
        self.month_subjects
            .retain(|month, _| !settled(Step::Day.start(month.next().first_day())));
        let kept = millis(keep.days);
        self.month_counts.retain(|month, _| {
            Step::Day
                .start(month.next().first_day())
                .saturating_add(kept)
                > now
        });
    }

    /// What [`super::rebuild`] needs for `step` from interval `from` on.
    pub fn snapshot(
        &self,
        step: Step,
        from: u64,
        now: UnixMillis,
        live: u64,
        unpurged_expiries: Vec<UnixMillis>,
    ) -> LedgerSnapshot {
        LedgerSnapshot {
            now_ms: now,
            began_ms: self.began_ms,
            live,
            unpurged_expiries,
            tallies: self
                .tallies
                .get(&step)
                .map(|t| t.range(from..).map(|(i, t)| (*i, t.clone())).collect())
                .unwrap_or_default(),
            month_subjects: if step == Step::Day {
                self.month_counts.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
