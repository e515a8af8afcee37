//! `GET /admin/v1/usage…`: the pools' usage history (license
//! administration). Every answer is JSON, or CSV with `format=csv` or
//! `Accept: text/csv`; times are RFC 3339 UTC.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /usage?pool=&group=&step=&from=&to=&format=` | [`UsageReport`]: every interval |
//! | `GET /usage/peaks?pool=&group=&step=&from=&to=&top=&format=` | [`UsageReport`]: the `top` busiest intervals |
//! | `GET /usage/summary?pool=&month=` | [`MonthSummary`]: a month for a true-up |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::api::{Api, json, params};
use super::error::AdminError;
use crate::access::{UsageError, UsageHistory};
use crate::clock::{UnixMillis, rfc3339_ms};
use crate::usage::report::{MonthSummary, top_peaks};
use crate::usage::{Month, Step, UsageInterval};

/// The most intervals one answer holds: a day of minutes is 1,440, a
/// quarter of hours 2,184.
pub const MAX_INTERVALS: u64 = 10_000;
/// `top` of `GET /usage/peaks` without it.
pub const DEFAULT_TOP: usize = 10;

/// `GET /usage` and `GET /usage/peaks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The pool.
    pub pool: String,
    /// Whose seats these are when not the whole pool's: a reserved group
    /// (`1`, `2`, … in the pool's `reserved` order) or `overdraft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `minute`, `hour` or `day`.
    pub step: String,
    /// The range asked for (start inclusive, end exclusive).
    pub from: String,
    /// See `from`.
    pub to: String,
    /// The start of the oldest interval still kept: nothing before it can
    /// be reported.
    pub kept_from: String,
    /// The store's time of the read; an interval that has not ended counts
    /// up to it.
    pub now: String,
    /// The intervals, oldest first (peaks: busiest first).
    pub intervals: Vec<IntervalView>,
}

/// One interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalView {
    /// Its start.
    pub start: String,
    /// Its end (exclusive).
    pub end: String,
    /// Whether it has ended.
    pub complete: bool,
    /// The most seats held at any moment of it.
    pub peak: u32,
    /// Seats held at its start.
    pub held_at_start: u32,
    /// Seat-time in hours.
    pub seat_hours: f64,
    /// Seat-time in ms (exact).
    pub seat_ms: u64,
    /// Sessions opened.
    pub opened: u64,
    /// Sessions closed, by reason (`expired`: by time, not purged yet).
    pub closed: BTreeMap<String, u64>,
    /// Admissions refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Distinct subjects that held a seat (step `day` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<u64>,
}

impl From<&UsageInterval> for IntervalView {
    fn from(i: &UsageInterval) -> Self {
        Self {
            start: rfc3339_ms(i.start_ms),
            end: rfc3339_ms(i.end_ms),
            complete: i.complete,
            peak: i.peak,
            held_at_start: i.held_at_start,
            seat_hours: seat_hours(i.seat_ms),
            seat_ms: i.seat_ms,
            opened: i.opened,
            closed: i.closed.clone(),
            refused: i.refused.clone(),
            subjects: i.subjects,
        }
    }
}

/// Seat-time in hours, to the millisecond's precision that JSON numbers keep.
fn seat_hours(ms: u64) -> f64 {
    (ms as f64 / 3_600.0).round() / 1_000.0
}

/// `GET /usage`.
pub(super) async fn history(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let query = RangeQuery::parse(query.as_deref(), &headers, &api, &[])?;
    let history = query.read(&api).await?;
    Ok(query.answer(&history, &history.intervals))
}

/// `GET /usage/peaks`.
pub(super) async fn peaks(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let mut query = RangeQuery::parse(query.as_deref(), &headers, &api, &["top"])?;
    let top = match query.extra.remove("top") {
        None => DEFAULT_TOP,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                AdminError::bad_parameter("top", "must be a whole number from 1 to 1000")
            })?,
    };
    let history = query.read(&api).await?;
    let busiest = top_peaks(&history.intervals, top);
    Ok(query.answer(&history, &busiest))
}

/// `GET /usage/summary`.
pub(super) async fn summary(
    State(api): State<Arc<Api>>,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let mut params = params(query.as_deref(), &["pool", "month"])?;
    let pool = pool_param(params.remove("pool"), &api)?;
    let month = match params.remove("month") {
        None => Month::of(api.access.clock().now_ms()),
        Some(text) => Month::parse(&text).ok_or_else(|| {
            AdminError::bad_parameter("month", format!("`{text}` is not a month; write YYYY-MM"))
        })?,
    };
    let summary: MonthSummary = api
        .access
        .month_summary(&pool, month)
        .await
        .map_err(usage_error)?;
    Ok(json(&SummaryView { pool, summary }))
}

/// `GET /usage/summary`: the month, and the pool it is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryView {
    /// The pool.
    pub pool: String,
    /// The month's figures.
    #[serde(flatten)]
    pub summary: MonthSummary,
}

/// The parameters shared by `GET /usage` and `GET /usage/peaks`.
struct RangeQuery {
    pool: String,
    group: Option<usize>,
    /// The pool's overdraft bucket, if it has one.
    overdraft: Option<usize>,
    step: Step,
    from: UnixMillis,
    to: UnixMillis,
    csv: bool,
    extra: BTreeMap<String, String>,
}

impl RangeQuery {
    fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        api: &Api,
        extra: &[&str],
    ) -> Result<Self, AdminError> {
        let mut known = vec!["pool", "group", "step", "from", "to", "format"];
        known.extend_from_slice(extra);
        let mut params = params(query, &known)?;
        let pool = pool_param(params.remove("pool"), api)?;
        let group = params
            .remove("group")
            .map(|text| group_bucket(&text, &pool, api))
            .transpose()?;
        let step = match params.remove("step") {
            None => Step::Hour,
            Some(text) => Step::parse(&text).ok_or_else(|| {
                AdminError::bad_parameter(
                    "step",
                    format!("`{text}` is not a step; use minute, hour or day"),
                )
            })?,
        };
        let now = api.access.clock().now_ms();
        let to = match params.remove("to") {
            None => step.end(step.index(now)),
            Some(text) => super::api::time_ms("to", &text)?,
        };
        let from = match params.remove("from") {
            None => to.saturating_sub(default_span(step)),
            Some(text) => super::api::time_ms("from", &text)?,
        };
        if from >= to {
            return Err(AdminError::bad_parameter("from", "must lie before `to`"));
        }
        let count = step.index(to - 1) - step.index(from) + 1;
        if count > MAX_INTERVALS {
            return Err(AdminError::bad_parameter(
                "from",
                format!(
                    "the range holds {count} intervals of one {}; at most {MAX_INTERVALS} per request (use a longer step or a shorter range)",
                    step.as_str()
                ),
            ));
        }
        let csv = match params.remove("format").as_deref() {
            None => accepts_csv(headers),
            Some("json") => false,
            Some("csv") => true,
            Some(other) => {
                return Err(AdminError::bad_parameter(
                    "format",
                    format!("`{other}` is not a format; use json or csv"),
                ));
            }
        };
        let overdraft = api
            .access
            .pools()
            .get(&pool)
            .and_then(|p| p.overdraft_bucket());
        Ok(Self {
            pool,
            group,
            overdraft,
            step,
            from,
            to,
            csv,
            extra: params,
        })
    }

    async fn read(&self, api: &Api) -> Result<UsageHistory, AdminError> {
        api.access
            .usage_history(&self.pool, self.group, self.step, self.from, self.to)
            .await
            .map_err(usage_error)
    }

    fn answer(&self, history: &UsageHistory, intervals: &[UsageInterval]) -> Response {
        let report = UsageReport {
            pool: history.pool.clone(),
            group: history.group.map(|bucket| {
                if self.overdraft == Some(bucket) {
                    "overdraft".to_string()
                } else {
                    bucket.to_string()
                }
            }),
            step: self.step.as_str().into(),
            from: rfc3339_ms(self.from),
            to: rfc3339_ms(self.to),
            kept_from: rfc3339_ms(history.kept_from_ms),
            now: rfc3339_ms(history.now_ms),
            intervals: intervals.iter().map(IntervalView::from).collect(),
        };
        if self.csv {
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                csv(&report),
            )
                .into_response()
        } else {
            json(&report)
        }
    }
}

/// How far back a range reaches without `from`: an hour of minutes, a day
/// of hours, 30 days of days.
fn default_span(step: Step) -> u64 {
    match step {
        Step::Minute => 3_600_000,
        Step::Hour => 86_400_000,
        Step::Day => 30 * 86_400_000,
    }
}

/// The bucket of a `group` parameter: a reserved group's number, or
/// `overdraft` for the seats beyond the limit.
fn group_bucket(text: &str, pool: &str, api: &Api) -> Result<usize, AdminError> {
    if text == "overdraft" {
        return api
            .access
            .pools()
            .get(pool)
            .and_then(|p| p.overdraft_bucket())
            .ok_or_else(|| {
                AdminError::bad_parameter("group", format!("pool `{pool}` has no overdraft"))
            });
    }
    text.parse::<usize>()
        .ok()
        .filter(|g| *g >= 1)
        .ok_or_else(|| {
            AdminError::bad_parameter(
                "group",
                "must be the number of a reserved group of the pool (1, 2, …) or `overdraft`",
            )
        })
}

/// The pool parameter; it may be left out when only one is configured.
fn pool_param(pool: Option<String>, api: &Api) -> Result<String, AdminError> {
    let pools = api.access.pools();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    match pool {
        Some(pool) if names.contains(&pool.as_str()) => Ok(pool),
        Some(pool) => Err(AdminError::bad_parameter(
            "pool",
            format!(
                "no pool `{pool}` is configured; configured: {}",
                names.join(", ")
            ),
        )),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(AdminError::bad_parameter(
            "pool",
            format!(
                "required when several pools are configured ({})",
                names.join(", ")
            ),
        )),
    }
}

fn usage_error(error: UsageError) -> AdminError {
    match error {
        UsageError::UnknownPool(_) => AdminError::bad_parameter("pool", error.to_string()),
        UsageError::UnknownGroup { .. } => AdminError::bad_parameter("group", error.to_string()),
        UsageError::NotKept(_) => AdminError::bad_parameter("step", error.to_string()),
        UsageError::Store(error) => AdminError::Store(error),
    }
}

/// Whether the client asked for CSV (and not JSON first).
fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|v| v == "text/csv" || v == "application/json")
        .is_some_and(|v| v == "text/csv")
}

/// The close and refusal reasons CSV has a column for, in column order.
pub const CLOSE_REASONS: [&str; 8] = [
    "idle",
    "absolute",
    "logout",
    "backchannel",
    "admin",
    "replaced",
    "abandoned",
    "expired",
];
/// See [`CLOSE_REASONS`].
pub const REFUSAL_REASONS: [&str; 3] = ["pool_full", "subject_limit", "revoked"];

/// The report as CSV: one header line, one line per interval. Every value
/// is a time, a number or a boolean, so nothing needs quoting.
pub fn csv(report: &UsageReport) -> String {
    let mut out = String::from(
        "pool,step,start,end,complete,peak,held_at_start,seat_hours,seat_ms,opened,closed,refused,subjects",
    );
    for reason in CLOSE_REASONS {
        let _ = write!(out, ",closed_{reason}");
    }
    for reason in REFUSAL_REASONS {
        let _ = write!(out, ",refused_{reason}");
    }
    out.push('\n');
    for i in &report.intervals {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            report.pool,
            report.step,
            i.start,
            i.end,
            i.complete,
            i.peak,
            i.held_at_start,
            i.seat_hours,
            i.seat_ms,
            i.opened,
            i.closed.values().sum::<u64>(),
            i.refused.values().sum::<u64>(),
            i.subjects.map(|n| n.to_string()).unwrap_or_default(),
        );
        for reason in CLOSE_REASONS {
            let _ = write!(out, ",{}", i.closed.get(reason).copied().unwrap_or(0));
        }
        for reason in REFUSAL_REASONS {
            let _ = write!(out, ",{}", i.refused.get(reason).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_asked_for_by_accept_unless_json_comes_first() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, accept.parse().expect("header"));
            accepts_csv(&h)
        };
        assert!(with("text/csv"));
        assert!(with("text/csv;q=0.9, application/json;q=0.5"));
        assert!(!with("application/json, text/csv"));
        assert!(!with("*/*"));
        assert!(!accepts_csv(&HeaderMap::new()));
    }

    #[test]
    fn csv_has_a_column_per_known_reason() {
        let report = UsageReport {
            pool: "erp".into(),
            group: None,
            step: "hour".into(),
            from: String::new(),
            to: String::new(),
            kept_from: String::new(),
            now: String::new(),
            intervals: vec![IntervalView::from(&UsageInterval {
                start_ms: 0,
                end_ms: 3_600_000,
                complete: true,
                peak: 2,
                held_at_start: 1,
                seat_ms: 5_400_000,
                opened: 1,
                closed: [("logout".to_string(), 1)].into(),
                refused: [("pool_full".to_string(), 3)].into(),
                subjects: None,
            })],
        };
        let text = csv(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let header: Vec<&str> = lines[0].split(',').collect();
        let row: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(header.len(), row.len());
        let cell = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
        assert_eq!(cell("start"), "1970-01-01T00:00:00.000Z");
        assert_eq!(cell("seat_hours"), "1.5");
        assert_eq!(cell("closed_logout"), "1");
        assert_eq!(cell("refused_pool_full"), "3");
        assert_eq!(cell("refused"), "3");
        assert_eq!(cell("subjects"), "");
    }
}
