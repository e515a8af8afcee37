//! `[[pools]]`: the license pools, the claim rules that pick a token's
//! pool, per-subject limits, reserved seats and per-pool timeouts.

use std::collections::HashSet;
use std::time::Duration;

use super::Check;
use crate::config::file::{ClaimMatchSection, PoolSection, QueueSection, SharedTokenSection};
use crate::config::{ConfigError, FileConfig, SessionSettings};
use crate::licensing::{
    ClaimMatch, OnShared, Pool, ReservedSeats, SeatQueuePolicy, SharedTokenPolicy, SubjectLimit,
    SubjectLimitPolicy,
};

// Parsers of `Check` that only `[[pools]]` uses, kept beside the rules they serve.
impl Check<'_> {
    fn claim_match(
        &self,
        key: &str,
        section: &ClaimMatchSection,
    ) -> Result<ClaimMatch, ConfigError> {
        self.claim_rule(key, &section.claim, &section.any_of)
    }

    fn claim_rule(
        &self,
        key: &str,
        claim: &str,
        any_of: &[String],
    ) -> Result<ClaimMatch, ConfigError> {
        if claim.trim().is_empty() {
            return self.fail(format!("{key}.claim"), "must name a claim");
        }
        if any_of.is_empty() {
            return self.fail(format!("{key}.any_of"), "must list at least one value");
        }
        Ok(ClaimMatch::new(claim.to_string(), any_of.iter().cloned()))
    }
}

pub(super) fn pools(
    c: &Check,
    file: &FileConfig,
    sessions: &SessionSettings,
) -> Result<Vec<Pool>, ConfigError> {
    let mut pools = Vec::new();
    let mut names = HashSet::new();
    for (i, p) in file.pools.iter().enumerate() {
        let key = format!("pools[{i}]");
        pools.push(pool(c, &key, p, sessions)?);
        if !names.insert(p.name.clone()) {
            return c.fail(
                format!("{key}.name"),
                format!("pool `{}` is defined twice", p.name),
            );
        }
        if p.matcher.is_none() && i + 1 != file.pools.len() {
            return c.fail(
                format!("{key}.match"),
                "only the last pool may omit `match` (it catches every token the pools before it did not)",
            );
        }
    }
    Ok(pools)
}

fn pool(
    c: &Check,
    key: &str,
    p: &PoolSection,
    sessions: &SessionSettings,
) -> Result<Pool, ConfigError> {
    let valid_name = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    if !valid_name {
        return c.fail(
            format!("{key}.name"),
            "must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
        );
    }
    if p.limit == 0 {
        return c.fail(format!("{key}.limit"), "must be at least 1");
    }
    let rule = p
        .matcher
        .as_ref()
        .map(|m| c.claim_match(&format!("{key}.match"), m))
        .transpose()?;
    let policy = match p.on_subject_limit.as_str() {
        "deny" => SubjectLimitPolicy::Deny,
        "replace_oldest" => SubjectLimitPolicy::ReplaceOldest,
        other => {
            return c.fail(
                format!("{key}.on_subject_limit"),
                format!("`{other}` is not a policy; use \"deny\" or \"replace_oldest\""),
            );
        }
    };
    let subject_limit = match p.per_subject_limit {
        Some(0) => return c.fail(format!("{key}.per_subject_limit"), "must be at least 1"),
        Some(max) => Some(SubjectLimit { max, policy }),
        None => None,
    };
    let mut reserved = Vec::new();
    let mut total_reserved: u64 = 0;
    for (j, r) in p.reserved.iter().enumerate() {
        let rkey = format!("{key}.reserved[{j}]");
        if r.seats == 0 {
            return c.fail(format!("{rkey}.seats"), "must be at least 1");
        }
        total_reserved += u64::from(r.seats);
        reserved.push(ReservedSeats {
            rule: c.claim_rule(&rkey, &r.claim, &r.any_of)?,
            seats: r.seats,
        });
    }
    if total_reserved >= u64::from(p.limit) {
        return c.fail(
            format!("{key}.reserved"),
            format!(
                "reserved seats ({total_reserved}) must leave at least one shared seat of limit ({})",
                p.limit
            ),
        );
    }
    let idle_timeout = match &p.idle_timeout {
        Some(t) => c.positive_duration(&format!("{key}.idle_timeout"), t)?,
        None => sessions.idle_timeout,
    };
    if idle_timeout <= sessions.touch_interval {
        return c.fail(
            format!("{key}.idle_timeout"),
            "must be longer than sessions.touch_interval",
        );
    }
    let absolute_timeout = match &p.absolute_timeout {
        Some(t) => c.positive_duration(&format!("{key}.absolute_timeout"), t)?,
        None => sessions.absolute_timeout,
    };
    let overdraft = overdraft(
        c,
        &format!("{key}.overdraft"),
        p.overdraft.as_ref(),
        p.limit,
    )?;
    let shared_token = p
        .shared_token
        .as_ref()
        .map(|s| shared_token(c, &format!("{key}.shared_token"), s))
        .transpose()?;
    let hold = |name: &str, value: &Option<String>| -> Result<Duration, ConfigError> {
        let key = format!("{key}.{name}");
        let d = match value {
            Some(text) => c.duration(&key, text)?,
            None => Duration::ZERO,
        };
        if d > Duration::from_secs(86_400) {
            return c.fail(key, "must be at most 1 day");
        }
        Ok(d)
    };
    let linger = hold("linger", &p.linger)?;
    let min_hold = hold("min_hold", &p.min_hold)?;
    let queue = p
        .queue
        .as_ref()
        .map(|q| queue(c, &format!("{key}.queue"), q))
        .transpose()?;
    Ok(Pool {
        name: p.name.clone(),
        limit: p.limit,
        rule,
        subject_limit,
        reserved,
        idle_timeout,
        absolute_timeout,
        overdraft,
        shared_token,
        linger,
        min_hold,
        queue,
    })
}

/// The longest a request may be held waiting for a seat: beyond a few
/// minutes, clients, load balancers and the backend's own timeouts give up
/// first, and a held request holds a connection.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(300);

/// The most callers one pool's queue may hold.
const MAX_QUEUE_LENGTH: u32 = 100_000;

/// `queue`: a positive wait of at most five minutes and a length of 1 to
/// 100,000.
fn queue(c: &Check, key: &str, q: &QueueSection) -> Result<SeatQueuePolicy, ConfigError> {
    let max_wait = c.positive_duration(&format!("{key}.max_wait"), &q.max_wait)?;
    if max_wait > MAX_QUEUE_WAIT {
        return c.fail(format!("{key}.max_wait"), "must be at most 5 minutes");
    }
    if q.max_length == 0 || q.max_length > MAX_QUEUE_LENGTH {
        return c.fail(
            format!("{key}.max_length"),
            format!("must be between 1 and {MAX_QUEUE_LENGTH}"),
        );
    }
    Ok(SeatQueuePolicy {
        max_wait,
        max_length: q.max_length,
    })
}

/// `shared_token`: a window of at most a day, and at least one address and
/// one user agent allowed (0 would refuse every session at its first call).
fn shared_token(
    c: &Check,
    key: &str,
    s: &SharedTokenSection,
) -> Result<SharedTokenPolicy, ConfigError> {
    let window = c.positive_duration(&format!("{key}.window"), &s.window)?;
    if window > Duration::from_secs(86_400) {
        return c.fail(format!("{key}.window"), "must be at most 1 day");
    }
    for (name, n) in [
        ("max_addresses", s.max_addresses),
        ("max_user_agents", s.max_user_agents),
    ] {
        if n == 0 {
            return c.fail(
                format!("{key}.{name}"),
                "must be at least 1 (one user has at least one)",
            );
        }
    }
    let on_shared = match s.on_shared.as_str() {
        "audit" => OnShared::Audit,
        "deny" => OnShared::Deny,
        other => {
            return c.fail(
                format!("{key}.on_shared"),
                format!("`{other}` is not an action; use \"audit\" or \"deny\""),
            );
        }
    };
    Ok(SharedTokenPolicy {
        window,
        max_addresses: s.max_addresses,
        max_user_agents: s.max_user_agents,
        on_shared,
    })
}

/// `overdraft`: a number of seats (at most the limit), or a whole
/// percentage of the limit, `"10%"`, rounded down (and then at least one
/// seat, or the setting would silently do nothing).
fn overdraft(
    c: &Check,
    key: &str,
    value: Option<&toml::Value>,
    limit: u32,
) -> Result<u32, ConfigError> {
    let hint =
        "write a number of seats (`overdraft = 2`) or a share of the limit (`overdraft = \"10%\"`)";
    let seats = match value {
        None => return Ok(0),
        Some(toml::Value::Integer(n)) => match u32::try_from(*n) {
            Ok(n) => n,
            Err(_) => return c.fail(key, format!("`{n}` is negative or too large; {hint}")),
        },
        Some(toml::Value::String(text)) => {
            let percent = text
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|n| *n <= 100);
            let Some(percent) = percent else {
                return c.fail(
                    key,
                    format!("`{text}` is not a percentage from 0% to 100%; {hint}"),
                );
            };
            let seats = (u64::from(limit) * u64::from(percent) / 100) as u32;
            if percent > 0 && seats == 0 {
                return c.fail(
                    key,
                    format!(
                        "`{text}` of limit {limit} rounds down to no seat; give a number of seats"
                    ),
                );
            }
            seats
        }
        Some(other) => {
            return c.fail(
                key,
                format!("`{other}` is neither a number nor a percentage; {hint}"),
            );
        }
    };
    if seats > limit {
        return c.fail(
            key,
            format!("{seats} seats is more than the pool's limit ({limit}); an overdraft is a margin, not a second license"),
        );
    }
    Ok(seats)
}
