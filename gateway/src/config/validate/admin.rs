//! `[admin]`: the bearer token of the admin API, from the environment or a
//! file.

use std::path::Path;

use super::Check;
use crate::config::{AdminConfig, ConfigError, FileConfig, Secret};

/// The shortest admin token accepted: a guessable token on an API that can
/// end every session is worse than none.
const MIN_ADMIN_TOKEN: usize = 16;

pub(super) fn admin(
    c: &Check,
    file: &FileConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AdminConfig, ConfigError> {
    let a = &file.admin;
    let (key, token) = match (&a.token_env, &a.token_file) {
        (None, None) => return Ok(AdminConfig::default()),
        (Some(_), Some(_)) => return c.fail("admin", "set token_env or token_file, not both"),
        (Some(var), None) => match env(var) {
            Some(token) => ("admin.token_env", token),
            None => {
                return c.fail(
                    "admin.token_env",
                    format!("environment variable `{var}` is not set"),
                );
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(base_dir.join(path)) {
            Ok(token) => ("admin.token_file", token),
            Err(e) => return c.fail("admin.token_file", format!("cannot read `{path}`: {e}")),
        },
    };
    let token = token.trim().to_string();
    if token.len() < MIN_ADMIN_TOKEN || token.chars().any(|ch| !ch.is_ascii_graphic()) {
        return c.fail(
            key,
            format!("the token must be at least {MIN_ADMIN_TOKEN} visible ASCII characters"),
        );
    }
    Ok(AdminConfig {
        token: Some(Secret::new(token)),
    })
}
