//! `[logging]`: the log filter and output format; `[tracing]`: span export.

use super::Check;
use crate::config::{ConfigError, FileConfig, LogFormat, LoggingConfig, OtlpConfig, TracingConfig};

pub(super) fn tracing(c: &Check, file: &FileConfig) -> Result<TracingConfig, ConfigError> {
    let t = &file.tracing;
    let Some(endpoint) = &t.otlp_endpoint else {
        return Ok(TracingConfig { otlp: None });
    };
    let url = url::Url::parse(endpoint).or_else(|e| {
        c.fail(
            "tracing.otlp_endpoint",
            format!("`{endpoint}` is not a URL ({e})"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return c.fail(
            "tracing.otlp_endpoint",
            "must be an http:// or https:// URL of the collector's traces endpoint (…/v1/traces)",
        );
    }
    if t.service_name.trim().is_empty() {
        return c.fail("tracing.service_name", "must not be empty");
    }
    Ok(TracingConfig {
        otlp: Some(OtlpConfig {
            endpoint: url,
            service_name: t.service_name.clone(),
            timeout: c.positive_duration("tracing.export_timeout", &t.export_timeout)?,
        }),
    })
}

pub(super) fn logging(c: &Check, file: &FileConfig) -> Result<LoggingConfig, ConfigError> {
    let l = &file.logging;
    if let Err(e) = check_log_filter(&l.level) {
        return c.fail("logging.level", e);
    }
    let format = match l.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return c.fail(
                "logging.format",
                format!("`{other}` is not a format; use \"json\" or \"text\""),
            );
        }
    };
    Ok(LoggingConfig {
        level: l.level.clone(),
        format,
    })
}

/// The levels a log filter may name.
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A log filter: a level (`"info"`), or comma-separated directives
/// `target=level` with an optional default level (`"info,session_gateway=debug"`).
/// `tracing`'s own parser reads a bare unknown word as a target name, so
/// `"verbose"` would silently disable every log line; here every level must
/// be one of [`LOG_LEVELS`].
fn check_log_filter(text: &str) -> Result<(), String> {
    let hint = format!("levels are {}", LOG_LEVELS.join(", "));
    if text.trim().is_empty() {
        return Err(format!("must name a level; {hint}"));
    }
    for directive in text.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                let valid_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | ':' | '-'));
                if !valid_target {
                    return Err(format!(
                        "`{directive}` is not a directive; write `target=level`, e.g. \"session_gateway=debug\""
                    ));
                }
                level
            }
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("`{level}` is not a log level; {hint}"));
        }
    }
    if tracing_subscriber::EnvFilter::try_new(text).is_err() {
        return Err(format!("`{text}` is not a log filter; {hint}"));
    }
    Ok(())
}
