//! [`FileConfig`] → [`Config`]: every check that needs more than a type.
//!
//! Each refusal names its key path (`routes[2].upstream`) and says what would
//! be accepted, so an operator can fix the file from the message alone.
//!
//! [`validate`] checks the sections in dependency order (sessions before
//! redis and pools, upstreams and server before routes) and then the checks
//! that span sections; each section's own checks live in the submodule
//! named after it. [`Check`] carries the origin and the value parsers every
//! section shares.

mod admin;
mod cors;
mod headers;
mod issuers;
mod logging;
mod pools;
mod redis;
mod routes;
mod server;
mod sessions;
mod tls_files;
mod tokens;
mod upstreams;
mod usage;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use self::redis::redis;
use super::file::FileConfig;
use super::*;
use admin::admin;
use headers::headers;
use issuers::issuer;
use logging::{logging, tracing};
use pools::pools;
use routes::route;
use server::server;
use sessions::sessions;
use tokens::tokens;
use upstreams::upstreams;
use usage::usage;

/// Collects the origin so every error can name the file.
struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn fail<T>(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.into(),
            message: message.into(),
        })
    }

    fn duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        parse_duration(text).or_else(|e| self.fail(key, format!("`{text}` {e}")))
    }

    fn positive_duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(key, text)?;
        if d.is_zero() {
            return self.fail(key, "must be longer than zero");
        }
        Ok(d)
    }

    fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        SocketAddr::from_str(text.trim()).or_else(|_| {
            self.fail(
                key,
                format!("`{text}` is not an IP address with a port, e.g. \"0.0.0.0:8080\" or \"[::1]:8080\""),
            )
        })
    }
}

pub(super) fn validate(
    file: FileConfig,
    origin: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let c = Check { origin };

    let server = server(&c, &file, base_dir)?;
    let tokens = tokens(&c, &file)?;
    let sessions = sessions(&c, &file)?;
    // The effective configuration names the touch interval it derived.
    let mut file = file;
    file.sessions.touch_interval =
        Some(humantime::format_duration(sessions.touch_interval).to_string());
    let redis = match sessions.store {
        StoreKind::Redis => Some(redis(&c, &file, &sessions, base_dir, env)?),
        StoreKind::Memory => None,
    };
    let issuers = file
        .issuers
        .iter()
        .enumerate()
        .map(|(i, s)| issuer(&c, &format!("issuers[{i}]"), s, base_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for (i, s) in issuers.iter().enumerate() {
        if !seen.insert(s.issuer.clone()) {
            return c.fail(
                format!("issuers[{i}].issuer"),
                format!("`{}` is configured twice", s.issuer),
            );
        }
    }
    let pools = pools(&c, &file, &sessions)?;
    let upstreams = upstreams(&c, &file, base_dir)?;
    let routes = file
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(&c, &format!("routes[{i}]"), r, &upstreams, &server, env))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        if !seen.insert(r.name.clone()) {
            return c.fail(
                format!("routes[{i}].name"),
                format!("route `{}` is defined twice", r.name),
            );
        }
    }
    if routes.is_empty() {
        return c.fail("routes", "at least one [[routes]] entry is needed");
    }
    if routes.iter().any(|r| r.policy != RoutePolicy::Public) && issuers.is_empty() {
        return c.fail(
            "issuers",
            "routes with policy `session` or `token` need at least one [[issuers]] entry",
        );
    }
    if routes.iter().any(|r| r.policy == RoutePolicy::Session) && pools.is_empty() {
        return c.fail(
            "pools",
            "routes with policy `session` need at least one [[pools]] entry",
        );
    }
    let headers = headers(&c, &file)?;
    let logging = logging(&c, &file)?;
    let tracing = tracing(&c, &file)?;
    let admin = admin(&c, &file, base_dir, env)?;
    let usage = usage(&c, &file)?;

    Ok(Config {
        server,
        issuers,
        tokens,
        sessions,
        redis,
        pools,
        upstreams,
        routes,
        headers,
        logging,
        tracing,
        admin,
        usage,
        effective: file,
    })
}

/// Units humantime knows but a duration here may not use: months and years
/// have no fixed length, and `M` (months) beside `m` (minutes) read `"20M"`
/// as twenty months.
const REFUSED_DURATION_UNITS: &[&str] =
    &["M", "month", "months", "y", "yr", "yrs", "year", "years"];

/// A duration such as `"30s"`, `"20m"`, `"1h 30m"` or `"500ms"`, parsed by
/// humantime unless it uses one of [`REFUSED_DURATION_UNITS`]. The error
/// completes the sentence "`text` …".
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str =
        "units are ms, s, m (minutes), h, d and w; write e.g. \"30s\", \"20m\", \"8h\"";
    let mut units = text
        .split(|ch: char| !ch.is_ascii_alphabetic())
        .filter(|word| !word.is_empty());
    if let Some(unit) = units.find(|unit| REFUSED_DURATION_UNITS.contains(unit)) {
        return Err(format!(
            "uses `{unit}` (months or years), which has no fixed length; {HINT}"
        ));
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("is not a duration ({e}); {HINT}"))
}
