//! `session-gateway admin usage …`: the usage history from the command line.
//!
//! ```text
//! session-gateway admin … usage history [--pool P] [--group G] [--step minute|hour|day] [--from T] [--to T] [--csv]
//! session-gateway admin … usage peaks   [--pool P] [--group G] [--step …] [--from T] [--to T] [--top N]
//! session-gateway admin … usage summary [--pool P] [--month YYYY-MM]
//! ```
//!
//! `history` prints a sparkline of the peaks and a table of the intervals;
//! `--csv` prints the API's CSV instead, `--json` (global) its JSON.

use clap::{Args, Subcommand};

use super::command::{Align, Render, table};
use super::usage::{SummaryView, UsageReport};

/// `session-gateway admin usage …`.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Every interval of a range: a sparkline of the peaks and a table.
    History {
        /// The range.
        #[command(flatten)]
        range: UsageRange,
        /// Print CSV (one line per interval) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// The busiest intervals of a range, busiest first.
    Peaks {
        /// The range.
        #[command(flatten)]
        range: UsageRange,
        /// How many intervals (1 to 1000).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// One month for a license true-up: peak, 95th percentile of the hourly
    /// peaks, refusals, seat-hours, distinct users.
    Summary {
        /// The pool (may be left out when only one is configured).
        #[arg(long)]
        pool: Option<String>,
        /// The month, `YYYY-MM` (UTC; default: this month).
        #[arg(long)]
        month: Option<String>,
    },
}

/// Which pool, step and time range a report covers.
#[derive(Debug, Args)]
pub struct UsageRange {
    /// The pool (may be left out when only one is configured).
    #[arg(long)]
    pub pool: Option<String>,
    /// Only the seats of this reserved group of the pool (1, 2, … in the
    /// order of its `reserved` entries), or `overdraft`.
    #[arg(long)]
    pub group: Option<String>,
    /// The interval length: minute, hour or day.
    #[arg(long, default_value = "hour")]
    pub step: String,
    /// The range's start (RFC 3339; default: an hour of minutes, a day of
    /// hours or 30 days of days before `--to`).
    #[arg(long)]
    pub from: Option<String>,
    /// The range's end, exclusive (RFC 3339; default: the end of the
    /// interval running now).
    #[arg(long)]
    pub to: Option<String>,
}

impl UsageRange {
    /// The query parameters of the range.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("step", self.step.clone())];
        if let Some(group) = &self.group {
            params.push(("group", group.clone()));
        }
        for (name, value) in [("pool", &self.pool), ("from", &self.from), ("to", &self.to)] {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        params
    }
}

/// The bars of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled to the largest (a blank for zero).
pub fn sparkline(values: &[u32]) -> String {
    let most = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            if v == 0 || most == 0 {
                ' '
            } else {
                let level = (u64::from(v) * 8).div_ceil(u64::from(most)).clamp(1, 8);
                BARS[level as usize - 1]
            }
        })
        .collect()
}

/// `usage history` and `usage peaks` as a table.
impl Render for UsageReport {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        if self.intervals.is_empty() {
            return String::new();
        }
        let peaks: Vec<u32> = self.intervals.iter().map(|i| i.peak).collect();
        let most = peaks.iter().copied().max().unwrap_or(0);
        let rows: Vec<Vec<String>> = self
            .intervals
            .iter()
            .map(|i| {
                vec![
                    format!("{}{}", i.start, if i.complete { "" } else { " *" }),
                    i.peak.to_string(),
                    format!("{:.2}", i.seat_hours),
                    i.opened.to_string(),
                    i.closed.values().sum::<u64>().to_string(),
                    i.refused.values().sum::<u64>().to_string(),
                    i.subjects
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        format!(
            "peak {} max {most}\n{}",
            sparkline(&peaks),
            table(
                &[
                    ("START", Align::Left),
                    ("PEAK", Align::Right),
                    ("SEAT-H", Align::Right),
                    ("OPENED", Align::Right),
                    ("CLOSED", Align::Right),
                    ("REFUSED", Align::Right),
                    ("SUBJECTS", Align::Right),
                ],
                &rows,
            )
        )
    }

    fn notes(&self) -> Vec<String> {
        let whose = match self.group.as_deref() {
            Some("overdraft") => format!("the overdraft of pool {}", self.pool),
            Some(g) => format!("reserved group {g} of pool {}", self.pool),
            None => format!("pool {}", self.pool),
        };
        let mut notes = vec![format!(
            "{} interval(s) of one {} of {whose}",
            self.intervals.len(),
            self.step,
        )];
        if self.intervals.iter().any(|i| !i.complete) {
            notes.push(format!("* still running: counted up to {}", self.now));
        }
        if self.from < self.kept_from {
            notes.push(format!("nothing is kept before {}", self.kept_from));
        }
        notes
    }
}

/// `usage summary` as a table of one row.
impl Render for SummaryView {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        let s = &self.summary;
        table(
            &[
                ("POOL", Align::Left),
                ("MONTH", Align::Left),
                ("PEAK", Align::Right),
                ("P95 HOURLY", Align::Right),
                ("REFUSED", Align::Right),
                ("SEAT-H", Align::Right),
                ("USERS", Align::Right),
            ],
            &[vec![
                self.pool.clone(),
                format!("{}{}", s.month, if s.complete { "" } else { " *" }),
                s.peak.to_string(),
                s.p95_hourly_peak
                    .map_or_else(|| "-".into(), |p| p.to_string()),
                s.refused_total.to_string(),
                format!("{:.2}", s.seat_hours),
                s.distinct_subjects.to_string(),
            ]],
        )
    }

    fn notes(&self) -> Vec<String> {
        let s = &self.summary;
        let mut notes = Vec::new();
        if let Some(day) = &s.peak_day {
            notes.push(format!("peak first reached on {day}"));
        }
        notes.push(format!(
            "95th percentile over {} hour(s) kept",
            s.hours_counted
        ));
        if !s.complete {
            notes.push("* the month has not ended".into());
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_scales_to_its_largest_value() {
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&[0, 0]), "  ");
        assert_eq!(sparkline(&[0, 1, 4, 8]), " ▁▄█");
        assert_eq!(sparkline(&[3, 3]), "██");
        assert_eq!(sparkline(&[1, 100]), "▁█");
    }
}
