//! `[routes.cors]`: origins, methods, headers and cache time of a route's
//! CORS policy, each checked so that a typo cannot silently open the route
//! to every site or close it to the one it was meant for.

use std::time::Duration;

use http::{HeaderName, Method};

use super::Check;
use crate::config::file::CorsSection;
use crate::config::{ConfigError, CorsConfig};

/// The longest preflight cache a policy may ask for; browsers cap it lower
/// anyway (Chromium: 2 hours).
const MAX_AGE_CAP: Duration = Duration::from_secs(24 * 3600);

pub(super) fn cors(c: &Check, key: &str, section: &CorsSection) -> Result<CorsConfig, ConfigError> {
    let any_origin = section.allow_origins.iter().any(|o| o.trim() == "*");
    if section.allow_origins.is_empty() {
        return c.fail(
            format!("{key}.allow_origins"),
            "must name at least one origin (\"https://erp.example.com\"), or \"*\"",
        );
    }
    if any_origin && section.allow_origins.len() > 1 {
        return c.fail(
            format!("{key}.allow_origins"),
            "\"*\" allows every origin: list it alone",
        );
    }
    if any_origin && section.allow_credentials {
        return c.fail(
            format!("{key}.allow_credentials"),
            "browsers refuse credentials with `allow_origins = [\"*\"]`: list the origins",
        );
    }
    let mut allow_origins = Vec::new();
    if !any_origin {
        for (i, origin) in section.allow_origins.iter().enumerate() {
            let origin = origin.trim().to_ascii_lowercase();
            if !valid_origin(&origin) {
                return c.fail(
                    format!("{key}.allow_origins[{i}]"),
                    format!(
                        "`{origin}` is not an origin: write scheme://host[:port] with http or https, no path and no trailing slash"
                    ),
                );
            }
            allow_origins.push(origin);
        }
    }
    let mut allow_methods = Vec::new();
    for (i, method) in section.allow_methods.iter().enumerate() {
        let upper = method.trim().to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(m) if !upper.is_empty() => allow_methods.push(m),
            _ => {
                return c.fail(
                    format!("{key}.allow_methods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                );
            }
        }
    }
    let names = |field: &str, list: &[String]| -> Result<Vec<HeaderName>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, name)| {
                HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).or_else(|_| {
                    c.fail(
                        format!("{key}.{field}[{i}]"),
                        format!("`{name}` is not a header name"),
                    )
                })
            })
            .collect()
    };
    let max_age = c.duration(&format!("{key}.max_age"), &section.max_age)?;
    if max_age > MAX_AGE_CAP {
        return c.fail(format!("{key}.max_age"), "must be 24h or less");
    }
    Ok(CorsConfig {
        allow_origins,
        any_origin,
        allow_methods,
        allow_headers: names("allow_headers", &section.allow_headers)?,
        expose_headers: names("expose_headers", &section.expose_headers)?,
        max_age,
        allow_credentials: section.allow_credentials,
    })
}

/// `scheme://host[:port]`, as browsers send it in `Origin` (lowercase; a
/// host name or IPv4 address).
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.'))
        && !host.starts_with('.')
        && !host.ends_with('.');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    matches!(scheme, "http" | "https") && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::valid_origin;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://erp.example.com",
            "http://localhost:3000",
            "https://a-b.example.co.uk:8443",
            "http://127.0.0.1:8080",
        ] {
            assert!(valid_origin(good), "{good}");
        }
        for bad in [
            "erp.example.com",
            "https://erp.example.com/",
            "https://erp.example.com/app",
            "ftp://erp.example.com",
            "https://",
            "https://erp.example.com:",
            "https://erp.example.com:99999x",
            "https://.example.com",
            "https://erp example.com",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
    }
}
