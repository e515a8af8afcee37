//! [`UsageLedger`] for the Redis store: one script reads a pool's usage
//! history at one step (`lua/history.lua`); the scripts that open, close and
//! refuse write it (`lua/common.lua`, "Usage history").

use async_trait::async_trait;

use super::RedisStore;
use super::decode::{array, int, protocol, text};
use crate::licensing::Bucket;
use crate::session::{StoreError, UsageLedger};
use crate::usage::{LedgerSnapshot, Month, Step, Tally};

#[async_trait]
impl UsageLedger for RedisStore {
    async fn usage_ledger(
        &self,
        pool: &str,
        bucket: Option<Bucket>,
        step: Step,
        from: u64,
    ) -> Result<Option<LedgerSnapshot>, StoreError> {
        let Ok(pool) = self.pool(pool) else {
            return Ok(None);
        };
        let tag = self.tag(&pool.name);
        // Months come with the pool's days (the script knows its now).
        let months = step == Step::Day && bucket.is_none();
        let value = self
            .run(
                &self.scripts.history,
                &[format!("{tag}:s")],
                &[
                    self.now_arg(),
                    tag,
                    step.letter().to_string(),
                    step.ms().to_string(),
                    from.to_string(),
                    pool.bucket_count().to_string(),
                    if months { "1" } else { "0" }.to_string(),
                    bucket.unwrap_or(0).to_string(),
                ],
            )
            .await?;
        decode_snapshot(&value).map(Some)
    }
}

fn decode_snapshot(value: &redis::Value) -> Result<LedgerSnapshot, StoreError> {
    let parts = array(value)?;
    let [now, began, live, unpurged, intervals, months] = parts else {
        return Err(protocol("history reply has the wrong shape"));
    };
    let now = non_negative(int(now)?);
    let began = int(began)?;
    let mut snapshot = LedgerSnapshot {
        now_ms: now,
        // No write yet: the history begins now.
        began_ms: if began < 0 { now } else { began as u64 },
        live: non_negative(int(live)?),
        ..LedgerSnapshot::default()
    };
    for score in array(unpurged)? {
        snapshot.unpurged_expiries.push(score_ms(&text(score)?)?);
    }
    for pair in array(intervals)?.chunks(2) {
        let [index, fields] = pair else {
            return Err(protocol("history interval without fields"));
        };
        let index = non_negative(int(index)?);
        snapshot.tallies.insert(index, tally(array(fields)?)?);
    }
    for pair in array(months)?.chunks(2) {
        let [month, subjects] = pair else {
            return Err(protocol("history month without a count"));
        };
        snapshot
            .month_subjects
            .insert(Month(int(month)?), non_negative(int(subjects)?));
    }
    Ok(snapshot)
}

/// One interval's HGETALL, field by field (unknown fields are skipped, so a
/// newer writer does not break an older reader).
fn tally(fields: &[redis::Value]) -> Result<Tally, StoreError> {
    let mut tally = Tally::default();
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(protocol("history field without a value"));
        };
        let name = text(name)?;
        let value = int(value)?;
        match name.as_str() {
            "w" => tally.weighted_ms = value,
            "p" => tally.peak_after_open = u32::try_from(value).unwrap_or(0),
            "o" => tally.opened = non_negative(value),
            "u" => tally.subjects = non_negative(value),
            other => {
                if let Some(reason) = other.strip_prefix("c:") {
                    tally.closed.insert(reason.to_string(), non_negative(value));
                } else if let Some(reason) = other.strip_prefix("r:") {
                    tally
                        .refused
                        .insert(reason.to_string(), non_negative(value));
                }
            }
        }
    }
    Ok(tally)
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A seat score (an expiry in ms, which Redis may print as a double).
fn score_ms(text: &str) -> Result<u64, StoreError> {
    text.parse::<u64>()
        .or_else(|_| text.parse::<f64>().map(|f| f.max(0.0) as u64))
        .map_err(|_| protocol("history: a seat score is not a number"))
}
