//! `[sessions]`: the store kind, session timeouts, the identity rule that
//! says which claims make one session, and the status of a refused seat.

use super::Check;
use std::time::Duration;

use crate::config::{ConfigError, DEFAULT_TOUCH_INTERVAL, FileConfig, SessionSettings, StoreKind};

pub(super) fn sessions(c: &Check, file: &FileConfig) -> Result<SessionSettings, ConfigError> {
    let s = &file.sessions;
    let store = match s.store.as_str() {
        "memory" => StoreKind::Memory,
        "redis" => StoreKind::Redis,
        other => {
            return c.fail(
                "sessions.store",
                format!("`{other}` is not a store; use \"memory\" or \"redis\""),
            );
        }
    };
    let idle_timeout = c.positive_duration("sessions.idle_timeout", &s.idle_timeout)?;
    let absolute_timeout = c.positive_duration("sessions.absolute_timeout", &s.absolute_timeout)?;
    let touch_interval = match &s.touch_interval {
        Some(text) => {
            let interval = c.positive_duration("sessions.touch_interval", text)?;
            if interval >= idle_timeout {
                return c.fail(
                    "sessions.touch_interval",
                    "must be shorter than sessions.idle_timeout",
                );
            }
            interval
        }
        None => default_touch_interval(file, idle_timeout),
    };
    let lease_revalidate = c.positive_duration("sessions.lease_revalidate", &s.lease_revalidate)?;
    if s.identity.is_empty() {
        return c.fail(
            "sessions.identity",
            "must list at least one claim, e.g. [\"iss\", \"sub\"]",
        );
    }
    let mut components = Vec::new();
    for (i, entry) in s.identity.iter().enumerate() {
        let alternatives: Vec<String> = entry.split('|').map(|a| a.trim().to_string()).collect();
        if alternatives.iter().any(|a| a.is_empty()) {
            return c.fail(
                format!("sessions.identity[{i}]"),
                format!("`{entry}` must be a claim name or alternatives like \"client_id|azp\""),
            );
        }
        components.push(alternatives);
    }
    if !(400..=599).contains(&s.license_unavailable_status) {
        return c.fail(
            "sessions.license_unavailable_status",
            "must be an HTTP error status (400-599)",
        );
    }
    Ok(SessionSettings {
        store,
        idle_timeout,
        absolute_timeout,
        identity: components,
        touch_interval,
        lease_revalidate,
        sweep_interval: c.positive_duration("sessions.sweep_interval", &s.sweep_interval)?,
        license_unavailable_status: s.license_unavailable_status,
    })
}

/// The touch interval of a configuration that sets none: the default, or a
/// quarter of the shortest idle timeout (of `[sessions]` and of every pool
/// that sets its own) when that is shorter, so every idle timeout stays
/// well longer than it. A pool timeout that does not parse is left to the
/// pool's own check.
fn default_touch_interval(file: &FileConfig, idle_timeout: Duration) -> Duration {
    let shortest = file
        .pools
        .iter()
        .filter_map(|p| p.idle_timeout.as_deref())
        .filter_map(|t| super::parse_duration(t).ok())
        .filter(|t| !t.is_zero())
        .fold(idle_timeout, Duration::min);
    DEFAULT_TOUCH_INTERVAL.min(shortest / 4)
}
