//! `[[routes]]`: which requests go to which upstream, under which policy
//! (session, token, public), and what happens to their Authorization header
//! and upgrade requests.

use http::HeaderValue;

use super::Check;
use crate::config::file::RouteSection;
use crate::config::{
    ConfigError, RouteConfig, RoutePolicy, RouteTimeouts, Secret, ServerConfig, UpgradePolicy,
    UpstreamAuthorization, UpstreamConfig,
};

pub(super) fn route(
    c: &Check,
    key: &str,
    r: &RouteSection,
    upstreams: &[UpstreamConfig],
    server: &ServerConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RouteConfig, ConfigError> {
    if r.name.is_empty() {
        return c.fail(format!("{key}.name"), "must not be empty");
    }
    let upstream = upstreams
        .iter()
        .position(|u| u.name == r.upstream)
        .map_or_else(
            || {
                let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                c.fail(
                    format!("{key}.upstream"),
                    format!(
                        "no upstream named `{}` (defined: {})",
                        r.upstream,
                        known.join(", ")
                    ),
                )
            },
            Ok,
        )?;
    let policy = match r.policy.as_str() {
        "session" => RoutePolicy::Session,
        "token" => RoutePolicy::Token,
        "public" => RoutePolicy::Public,
        other => {
            return c.fail(
                format!("{key}.policy"),
                format!("`{other}` is not a policy; use \"session\", \"token\" or \"public\""),
            );
        }
    };
    if !r.path_prefix.starts_with('/') || r.path_prefix.contains(['?', '#']) {
        return c.fail(
            format!("{key}.path_prefix"),
            "must be a path starting with '/'",
        );
    }
    let gateway = &server.gateway_prefix;
    if r.path_prefix == *gateway || r.path_prefix.starts_with(&format!("{gateway}/")) {
        return c.fail(
            format!("{key}.path_prefix"),
            format!("`{gateway}` is reserved for the gateway's own endpoints"),
        );
    }
    let host = match &r.host {
        None => None,
        Some(h) => {
            let h = h.trim().to_ascii_lowercase();
            let body = h.strip_prefix("*.").unwrap_or(&h);
            let valid = !body.is_empty()
                && body
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.'))
                && !body.starts_with('.')
                && !body.ends_with('.');
            if !valid {
                return c.fail(
                    format!("{key}.host"),
                    "must be a host name like \"erp.example.com\" or \"*.example.com\" (no port)",
                );
            }
            Some(h)
        }
    };
    if policy == RoutePolicy::Public && !r.required_scopes.is_empty() {
        return c.fail(
            format!("{key}.required_scopes"),
            "a public route has no token to carry scopes",
        );
    }
    let authorization = match (r.authorization.as_str(), &r.authorization_env) {
        ("pass", None) => UpstreamAuthorization::Pass,
        ("strip", None) => UpstreamAuthorization::Strip,
        ("replace", Some(var)) => {
            let value = env(var).filter(|v| !v.is_empty()).map_or_else(
                || {
                    c.fail(
                        format!("{key}.authorization_env"),
                        format!("environment variable `{var}` is not set (it must hold the upstream Authorization value)"),
                    )
                },
                Ok,
            )?;
            if HeaderValue::from_str(&value).is_err() {
                return c.fail(
                    format!("{key}.authorization_env"),
                    format!("environment variable `{var}` is not a valid header value"),
                );
            }
            UpstreamAuthorization::Replace(Secret::new(value))
        }
        ("replace", None) => {
            return c.fail(
                format!("{key}.authorization_env"),
                "`authorization = \"replace\"` needs the name of the environment variable holding the credential",
            );
        }
        ("pass" | "strip", Some(_)) => {
            return c.fail(
                format!("{key}.authorization_env"),
                "only used with `authorization = \"replace\"`",
            );
        }
        (other, _) => {
            return c.fail(
                format!("{key}.authorization"),
                format!("`{other}` is not a mode; use \"pass\", \"strip\" or \"replace\""),
            );
        }
    };
    let upgrades = match r.upgrades.as_str() {
        "refuse" => UpgradePolicy::Refuse,
        "allow" => UpgradePolicy::Allow,
        other => {
            return c.fail(
                format!("{key}.upgrades"),
                format!("`{other}` is not an upgrade policy; use \"refuse\" or \"allow\""),
            );
        }
    };
    let cors = r
        .cors
        .as_ref()
        .map(|section| super::cors::cors(c, &format!("{key}.cors"), section))
        .transpose()?;
    let timeouts = match &r.timeouts {
        None => RouteTimeouts::default(),
        Some(t) => {
            let one = |name: &str, value: &Option<String>| {
                value
                    .as_ref()
                    .map(|text| c.positive_duration(&format!("{key}.timeouts.{name}"), text))
                    .transpose()
            };
            RouteTimeouts {
                connect: one("connect", &t.connect)?,
                read: one("read", &t.read)?,
                total: one("total", &t.total)?,
            }
        }
    };
    Ok(RouteConfig {
        name: r.name.clone(),
        host,
        path_prefix: r.path_prefix.clone(),
        upstream,
        policy,
        required_scopes: r.required_scopes.clone(),
        authorization,
        upgrades,
        cors,
        timeouts,
    })
}
