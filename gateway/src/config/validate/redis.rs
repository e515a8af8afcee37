//! `[redis]`: the shared session store's servers (standalone, cluster or
//! sentinel), their passwords from the environment, TLS files, and the
//! timing that must agree with `[sessions]`.

use std::path::Path;

use super::Check;
use super::tls_files::{client_identity, pem_certificates};
use crate::config::file::RedisSection;
use crate::config::{
    ClientIdentity, ConfigError, FileConfig, RedisConfig, RedisMode, RedisTls, Secret,
    SessionSettings,
};

pub(super) fn redis(
    c: &Check,
    file: &FileConfig,
    sessions: &SessionSettings,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RedisConfig, ConfigError> {
    let Some(r) = &file.redis else {
        return c.fail(
            "redis",
            "`sessions.store = \"redis\"` needs a [redis] table naming the server, e.g. url = \"redis://10.0.0.7:6379\"",
        );
    };
    let (mode, urls, key) = match r.mode.as_str() {
        "standalone" => (RedisMode::Standalone, vec![r.url.clone()], "redis.url"),
        "cluster" => {
            if r.urls.is_empty() {
                return c.fail(
                    "redis.urls",
                    "cluster mode needs at least one seed node URL",
                );
            }
            (RedisMode::Cluster, r.urls.clone(), "redis.urls")
        }
        "sentinel" => {
            if r.urls.is_empty() {
                return c.fail(
                    "redis.urls",
                    "sentinel mode needs at least one sentinel URL",
                );
            }
            if r.master_name.as_deref().is_none_or(str::is_empty) {
                return c.fail(
                    "redis.master_name",
                    "sentinel mode needs the monitored master's name",
                );
            }
            (RedisMode::Sentinel, r.urls.clone(), "redis.urls")
        }
        other => {
            return c.fail(
                "redis.mode",
                format!("`{other}` is not a mode; use \"standalone\", \"cluster\" or \"sentinel\""),
            );
        }
    };
    // A key of another mode would be silently ignored: say so instead.
    let default_url = RedisSection::default().url;
    let unused = match mode {
        RedisMode::Standalone if !r.urls.is_empty() => {
            Some(("redis.urls", "standalone mode uses `url`, one server"))
        }
        RedisMode::Standalone | RedisMode::Cluster if r.master_name.is_some() => {
            Some(("redis.master_name", "is only used with mode = \"sentinel\""))
        }
        RedisMode::Cluster | RedisMode::Sentinel if r.url != default_url => Some((
            "redis.url",
            "is only used with mode = \"standalone\"; list the nodes in `urls`",
        )),
        _ => None,
    };
    if let Some((key, why)) = unused {
        return c.fail(key, why);
    }
    if mode != RedisMode::Sentinel && r.sentinel_password_env.is_some() {
        return c.fail(
            "redis.sentinel_password_env",
            "is only used with mode = \"sentinel\" (the password of the sentinels themselves)",
        );
    }
    let secret = |key: &str, var: &Option<String>| -> Result<Option<String>, ConfigError> {
        match var {
            None => Ok(None),
            Some(var) => match env(var) {
                Some(p) if !p.is_empty() => Ok(Some(p)),
                _ => c.fail(key, format!("environment variable `{var}` is not set")),
            },
        }
    };
    let password = secret("redis.password_env", &r.password_env)?;
    let sentinel_password = secret("redis.sentinel_password_env", &r.sentinel_password_env)?;
    // Each URL carries the password of the server it names. Sentinels and
    // the primary they watch keep separate passwords (`requirepass` in
    // sentinel.conf is not the primary's), so neither stands in for the other.
    let (url_password, password_key, master_password) = match mode {
        RedisMode::Sentinel => (
            sentinel_password,
            "redis.sentinel_password_env",
            password.map(Secret::new),
        ),
        _ => (password, "redis.password_env", None),
    };
    let mut secrets = Vec::with_capacity(urls.len());
    let mut secure = None;
    for (i, text) in urls.iter().enumerate() {
        let at = if mode != RedisMode::Standalone {
            format!("{key}[{i}]")
        } else {
            key.to_string()
        };
        let mut url = match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => u,
            _ => return c.fail(at, format!("`{text}` is not a redis:// or rediss:// URL")),
        };
        // One TLS setting serves every node, so the nodes must agree on it.
        let tls = url.scheme() == "rediss";
        if *secure.get_or_insert(tls) != tls {
            return c.fail(
                at,
                "mixes redis:// and rediss://; every URL must use the same scheme",
            );
        }
        if url.password().is_some() {
            return c.fail(
                at,
                format!(
                    "must not contain a password; name an environment variable in {password_key}"
                ),
            );
        }
        if let Some(p) = &url_password
            && url.set_password(Some(p)).is_err()
        {
            return c.fail(at, "cannot carry a password");
        }
        secrets.push(Secret::new(url.to_string()));
    }
    let tls = redis_tls(c, r, base_dir, secure == Some(true))?;
    if r.key_prefix.is_empty()
        || !r
            .key_prefix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | ':'))
    {
        return c.fail(
            "redis.key_prefix",
            "must be non-empty letters, digits, `-`, `_`, `.` or `:`",
        );
    }
    let grace_period = c.duration("redis.grace_period", &r.grace_period)?;
    if grace_period >= sessions.idle_timeout {
        return c.fail(
            "redis.grace_period",
            "must be shorter than sessions.idle_timeout",
        );
    }
    if r.wait_replicas > 0 && mode == RedisMode::Cluster {
        return c.fail(
            "redis.wait_replicas",
            "is not supported with mode = \"cluster\" (a pool's keys live on one shard; use each shard's own replication settings)",
        );
    }
    let wait_timeout = c.positive_duration("redis.wait_timeout", &r.wait_timeout)?;
    Ok(RedisConfig {
        mode,
        urls: secrets,
        master_name: r.master_name.clone(),
        master_password,
        tls,
        key_prefix: r.key_prefix.clone(),
        connect_timeout: c.positive_duration("redis.connect_timeout", &r.connect_timeout)?,
        response_timeout: c.positive_duration("redis.response_timeout", &r.response_timeout)?,
        grace_period,
        touch_interval: sessions.touch_interval,
        lease_revalidate: sessions.lease_revalidate,
        wait_replicas: r.wait_replicas,
        wait_timeout,
    })
}

/// `redis.tls_*`: only with `rediss://` URLs. Each file is read now, so a
/// missing or malformed one is refused by `check-config` and before the
/// gateway serves, not found at the first connection.
fn redis_tls(
    c: &Check,
    r: &RedisSection,
    base_dir: &Path,
    secure: bool,
) -> Result<Option<RedisTls>, ConfigError> {
    let named = [
        ("redis.tls_ca_file", &r.tls_ca_file),
        ("redis.tls_cert_file", &r.tls_cert_file),
        ("redis.tls_key_file", &r.tls_key_file),
    ];
    if !secure {
        if let Some((key, _)) = named.iter().find(|(_, value)| value.is_some()) {
            return c.fail(
                *key,
                "is only used with rediss:// URLs (TLS), and the URLs here are redis://",
            );
        }
        return Ok(None);
    }
    let ca_pem = r
        .tls_ca_file
        .as_deref()
        .map(|path| pem_certificates(c, "redis.tls_ca_file", base_dir, path))
        .transpose()?;
    let client = client_identity(
        c,
        ("redis.tls_cert_file", "redis.tls_key_file"),
        (&r.tls_cert_file, &r.tls_key_file),
        base_dir,
    )?
    .map(|(cert_pem, key_pem)| ClientIdentity { cert_pem, key_pem });
    Ok(Some(RedisTls { ca_pem, client }))
}
