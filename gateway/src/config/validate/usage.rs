//! `[usage]`: how long the usage history is kept per step. Each is bounded,
//! so the history's memory per pool stays small (docs/operations.md,
//! "License administration").

use std::time::Duration;

use super::Check;
use crate::config::{ConfigError, FileConfig};
use crate::usage::UsageRetention;

/// The longest each step may be kept: 31 days of minutes (44,640 records),
/// 3 years of hours (26,304), 10 years of days (3,653).
const MOST: [(&str, u64); 3] = [
    ("minutes", 31 * 86_400),
    ("hours", 1_096 * 86_400),
    ("days", 3_653 * 86_400),
];

pub(super) fn usage(c: &Check, file: &FileConfig) -> Result<UsageRetention, ConfigError> {
    let u = &file.usage;
    let mut kept = [Duration::ZERO; 3];
    for (i, ((name, most), text)) in MOST.iter().zip([&u.minutes, &u.hours, &u.days]).enumerate() {
        let key = format!("usage.{name}");
        let d = c.duration(&key, text)?;
        if d > Duration::from_secs(*most) {
            return c.fail(
                key,
                format!("`{text}` is longer than the {} days allowed", most / 86_400),
            );
        }
        kept[i] = d;
    }
    Ok(UsageRetention {
        minutes: kept[0],
        hours: kept[1],
        days: kept[2],
    })
}
