//! `[tokens]`: the limits every verified token must keep, whatever its
//! issuer (leeway, lifetime, authentication age, required claims, size).

use std::time::Duration;

use super::Check;
use crate::config::{ConfigError, FileConfig, TokenPolicy};

pub(super) fn tokens(c: &Check, file: &FileConfig) -> Result<TokenPolicy, ConfigError> {
    let t = &file.tokens;
    let optional = |key: &str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
        v.as_deref()
            .map(|text| c.positive_duration(key, text))
            .transpose()
    };
    if !(256..=65_536).contains(&t.max_token_bytes) {
        return c.fail("tokens.max_token_bytes", "must be between 256 and 65536");
    }
    if let Some(i) = t.required_claims.iter().position(|n| n.trim().is_empty()) {
        return c.fail(format!("tokens.required_claims[{i}]"), "must name a claim");
    }
    Ok(TokenPolicy {
        leeway: c.duration("tokens.leeway", &t.leeway)?,
        max_lifetime: optional("tokens.max_lifetime", &t.max_lifetime)?,
        max_auth_age: optional("tokens.max_auth_age", &t.max_auth_age)?,
        required_claims: t.required_claims.clone(),
        cache_size: t.cache_size,
        max_token_bytes: t.max_token_bytes,
    })
}
