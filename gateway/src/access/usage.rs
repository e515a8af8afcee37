//! The usage history as the admin API reports it: a pool's intervals over a
//! range (clamped to what is kept), and the monthly summary of a true-up.

use crate::clock::UnixMillis;
use crate::session::StoreError;
use crate::usage::report::{MonthSummary, summarize_month};
use crate::usage::{Month, Step, UsageInterval, rebuild};

use super::Access;

/// Why a usage report cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The configuration names no such pool.
    #[error("no pool `{0}` is configured")]
    UnknownPool(String),
    /// The pool has no reserved group of this number (1, 2, … in the
    /// configuration's order), and it is not the pool's overdraft bucket.
    #[error("pool `{pool}` has no reserved group {group} (it has {groups})")]
    UnknownGroup {
        /// The pool.
        pool: String,
        /// The group asked for.
        group: usize,
        /// How many it has.
        groups: usize,
    },
    /// The configuration keeps no intervals of this step (`[usage]`).
    #[error("intervals of one {} are not kept (`usage.{}s` is 0)", .0.as_str(), .0.as_str())]
    NotKept(Step),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pool's intervals of one step over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageHistory {
    /// The pool.
    pub pool: String,
    /// The reserved group (its bucket), or `None` for the whole pool.
    pub group: Option<usize>,
    /// The step.
    pub step: Step,
    /// The start of the first interval still kept (or of the history).
    pub kept_from_ms: UnixMillis,
    /// The store's time of the read.
    pub now_ms: UnixMillis,
    /// The intervals that start in the range and are kept, oldest first.
    pub intervals: Vec<UsageInterval>,
}

impl Access {
    /// The intervals of `step` of a pool (or of one of its buckets above
    /// the shared one: a reserved group, 1-based, or the overdraft bucket;
    /// only the sessions holding its seats) that start in
    /// `[from_ms, to_ms)` and are still kept, the one running now included.
    pub async fn usage_history(
        &self,
        pool: &str,
        group: Option<usize>,
        step: Step,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> Result<UsageHistory, UsageError> {
        self.history_with_months(pool, group, step, from_ms, to_ms)
            .await
            .map(|(history, _)| history)
    }

    async fn history_with_months(
        &self,
        pool: &str,
        group: Option<usize>,
        step: Step,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> Result<(UsageHistory, std::collections::BTreeMap<Month, u64>), UsageError> {
        let pools = self.pools();
        let Some(configured) = pools.get(pool) else {
            return Err(UsageError::UnknownPool(pool.to_string()));
        };
        // Reserved group g holds the seats of bucket g (bucket 0 is shared);
        // the overdraft bucket follows the groups.
        if let Some(g) = group
            && !(1..configured.bucket_count()).contains(&g)
        {
            return Err(UsageError::UnknownGroup {
                pool: pool.to_string(),
                group: g,
                groups: configured.reserved.len(),
            });
        }
        let keep = pools.usage_retention();
        let now = self.clock.now_ms();
        // A first clamp by retention alone (the history's start is read
        // with it), so the store never reads intervals it no longer keeps.
        let kept = keep
            .first_kept(step, now, 0)
            .ok_or(UsageError::NotKept(step))?;
        let from = step.index(from_ms).max(kept);
        let snapshot = self
            .timed(
                "usage_ledger",
                self.store.usage_ledger(pool, group, step, from),
            )
            .await?
            .ok_or_else(|| UsageError::UnknownPool(pool.to_string()))?;
        let kept = keep
            .first_kept(step, snapshot.now_ms, snapshot.began_ms)
            .ok_or(UsageError::NotKept(step))?;
        let from = from.max(kept);
        let intervals = if to_ms == 0 {
            Vec::new()
        } else {
            rebuild(&snapshot, step, from, step.index(to_ms - 1))
        };
        Ok((
            UsageHistory {
                pool: pool.to_string(),
                group,
                step,
                kept_from_ms: step.start(kept),
                now_ms: snapshot.now_ms,
                intervals,
            },
            snapshot.month_subjects,
        ))
    }

    /// One pool's month for a license true-up: its days, and its hours
    /// where they are still kept.
    pub async fn month_summary(
        &self,
        pool: &str,
        month: Month,
    ) -> Result<MonthSummary, UsageError> {
        let start = Step::Day.start(month.first_day());
        let end = Step::Day.start(month.next().first_day());
        let (days, months) = self
            .history_with_months(pool, None, Step::Day, start, end)
            .await?;
        let hours = match self.usage_history(pool, None, Step::Hour, start, end).await {
            Ok(hours) => hours.intervals,
            Err(UsageError::NotKept(_)) => Vec::new(),
            Err(error) => return Err(error),
        };
        Ok(summarize_month(
            month,
            &days.intervals,
            &hours,
            months.get(&month).copied().unwrap_or(0),
        ))
    }
}
