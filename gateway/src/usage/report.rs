//! Reports built on a pool's rebuilt intervals: the busiest intervals, and
//! the monthly summary a license true-up asks for (peak, 95th percentile of
//! the hourly peaks, refusals, seat-hours, distinct users).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Month, UsageInterval};

/// The `n` intervals with the highest peaks, highest first (ties: earliest
/// first).
pub fn top_peaks(intervals: &[UsageInterval], n: usize) -> Vec<UsageInterval> {
    let mut sorted: Vec<&UsageInterval> = intervals.iter().collect();
    sorted.sort_by(|a, b| b.peak.cmp(&a.peak).then(a.start_ms.cmp(&b.start_ms)));
    sorted.into_iter().take(n).cloned().collect()
}

/// The `p`th percentile (0 < p ≤ 100) of `values` by the nearest-rank
/// method: the smallest value with at least p % of the values at or below
/// it, always one of the values. `None` for no values.
pub fn nearest_rank(values: &[u32], p: u32) -> Option<u32> {
    if values.is_empty() || p == 0 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (u64::from(p.min(100)) * sorted.len() as u64).div_ceil(100) as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// One pool's month, for a license true-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthSummary {
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Whether the month has ended.
    pub complete: bool,
    /// The most seats held at any moment of the month.
    pub peak: u32,
    /// The first day on which that peak was reached (RFC 3339 midnight).
    pub peak_day: Option<String>,
    /// The 95th percentile (nearest rank) of the month's hourly peaks, over
    /// the hours kept; `None` when no hour of the month is kept any more.
    pub p95_hourly_peak: Option<u32>,
    /// How many hours that percentile is taken over.
    pub hours_counted: usize,
    /// Sessions opened.
    pub opened: u64,
    /// Admissions refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Admissions refused, all reasons.
    pub refused_total: u64,
    /// Seat-time in hours.
    pub seat_hours: f64,
    /// Seat-time in ms (exact).
    pub seat_ms: u64,
    /// Distinct subjects that held a seat in the month.
    pub distinct_subjects: u64,
}

/// Summarizes a month from its days and (where still kept) its hours.
pub fn summarize_month(
    month: Month,
    days: &[UsageInterval],
    hours: &[UsageInterval],
    distinct_subjects: u64,
) -> MonthSummary {
    let peak_interval = top_peaks(days, 1).into_iter().next();
    let hourly: Vec<u32> = hours.iter().map(|h| h.peak).collect();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for day in days {
        for (reason, n) in &day.refused {
            *refused.entry(reason.clone()).or_default() += n;
        }
    }
    let seat_ms: u64 = days.iter().map(|d| d.seat_ms).sum();
    MonthSummary {
        month: month.to_string(),
        complete: !days.is_empty() && days.iter().all(|d| d.complete),
        peak: peak_interval.as_ref().map_or(0, |d| d.peak),
        peak_day: peak_interval.map(|d| crate::clock::rfc3339_ms(d.start_ms)),
        p95_hourly_peak: nearest_rank(&hourly, 95),
        hours_counted: hourly.len(),
        opened: days.iter().map(|d| d.opened).sum(),
        refused_total: refused.values().sum(),
        refused,
        seat_hours: seat_ms as f64 / 3_600_000.0,
        seat_ms,
        distinct_subjects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_one_of_the_values() {
        assert_eq!(nearest_rank(&[], 95), None);
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 95), Some(95));
        assert_eq!(nearest_rank(&hundred, 100), Some(100));
        // 20 values: rank ceil(19.0) = 19.
        let twenty: Vec<u32> = (1..=20).rev().collect();
        assert_eq!(nearest_rank(&twenty, 95), Some(19));
    }

    #[test]
    fn the_busiest_intervals_come_first_and_ties_keep_time_order() {
        let at = |start_ms, peak| UsageInterval {
            start_ms,
            peak,
            ..UsageInterval::default()
        };
        let top = top_peaks(&[at(0, 3), at(1, 5), at(2, 5), at(3, 1)], 3);
        let order: Vec<(u64, u32)> = top.iter().map(|i| (i.start_ms, i.peak)).collect();
        assert_eq!(order, vec![(1, 5), (2, 5), (0, 3)]);
    }
}
