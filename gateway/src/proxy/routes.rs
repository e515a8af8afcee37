//! Route matching: which configured route (or gateway endpoint) a request
//! is for.
//!
//! Routes are tried in configuration order; the first whose host and path
//! prefix match wins. The gateway's own endpoints (`/.gateway/…` by default)
//! are matched before any route. Paths with dot-segments (`/api/../admin`,
//! also percent-encoded) are refused rather than normalised: the gateway and
//! the backend could normalise differently, and a path that means one route
//! here and another one behind us is a classic access-control bypass. The
//! same holds for every other spelling of `.`, `/` or `\` a backend might
//! decode: double percent-encoding, overlong UTF-8, `%u` escapes and Unicode
//! lookalikes are refused too ([`check_encoding`]). The rule applies to
//! every route, whatever its policy, and to the gateway's own endpoints.

use crate::config::RouteConfig;

/// An endpoint the gateway answers itself on the proxy listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayEndpoint {
    /// `GET <prefix>/session`: the caller's current session.
    Session,
    /// `POST <prefix>/logout`: close the caller's session, revoke the token.
    Logout,
    /// `POST <prefix>/backchannel-logout`: OpenID Connect Back-Channel Logout.
    BackchannelLogout,
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// A gateway endpoint.
    Gateway(GatewayEndpoint),
    /// The route at this index of the configuration.
    Route(usize),
    /// Under the gateway prefix but no such endpoint, or no route matches.
    NotFound,
    /// The path is unsafe or malformed.
    BadPath(&'static str),
}

/// A host pattern: exact, or `*.example.com` for any subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    fn new(host: Option<&str>) -> Self {
        match host {
            None => HostPattern::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
                None => HostPattern::Exact(h.to_ascii_lowercase()),
            },
        }
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (_, None) => false,
            (HostPattern::Exact(h), Some(host)) => h == host,
            (HostPattern::Suffix(s), Some(host)) => {
                host.len() > s.len() && host.ends_with(s.as_str())
            }
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    host: HostPattern,
    path_prefix: String,
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    gateway_prefix: String,
}

impl Router {
    /// Compiles the configured routes.
    pub fn new(routes: &[RouteConfig], gateway_prefix: &str) -> Self {
        Self {
            routes: routes
                .iter()
                .map(|r| CompiledRoute {
                    host: HostPattern::new(r.host.as_deref()),
                    path_prefix: r.path_prefix.clone(),
                })
                .collect(),
            gateway_prefix: gateway_prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Resolves a request by its `Host` (without port, any case) and path
    /// (without query).
    pub fn resolve(&self, host: Option<&str>, path: &str) -> Resolution {
        if let Err(reason) = check_path(path) {
            return Resolution::BadPath(reason);
        }
        if let Some(rest) = path.strip_prefix(self.gateway_prefix.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return match rest {
                "/session" => Resolution::Gateway(GatewayEndpoint::Session),
                "/logout" => Resolution::Gateway(GatewayEndpoint::Logout),
                "/backchannel-logout" => Resolution::Gateway(GatewayEndpoint::BackchannelLogout),
                _ => Resolution::NotFound,
            };
        }
        let host = host.map(normalize_host);
        self.routes
            .iter()
            .position(|r| {
                r.host.matches(host.as_deref()) && path.starts_with(r.path_prefix.as_str())
            })
            .map_or(Resolution::NotFound, Resolution::Route)
    }
}

/// Lowercases a host and drops its port (`ERP.example.com:8443` →
/// `erp.example.com`); IPv6 literals keep their brackets.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| h).to_string() + "]"
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses paths that do not start with `/`, contain dot-segments (plain or
/// percent-encoded), backslashes, or NUL.
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("path must start with `/`");
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains(['\\', '\0']) || lower.contains("%5c") || lower.contains("%00") {
        return Err("path contains a backslash or NUL");
    }
    check_encoding(lower.as_bytes())?;
    // An unreserved character needs no encoding; `/%61pi/` is only ever
    // written to make a path mean one thing here and another behind us.
    if encodes_unreserved(&lower) {
        return Err("path percent-encodes a character that needs no encoding");
    }
    let decoded_dots = lower.replace("%2e", ".");
    let decoded = decoded_dots.replace("%2f", "/").replace("%3b", ";");
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        // `//` collapses to `/` in many backends; a trailing `/` is fine.
        if segment.is_empty() && i != last {
            return Err("path contains an empty segment");
        }
        // Servlet containers drop `;params` before resolving `..;`.
        let name = segment.split(';').next().unwrap_or_default();
        if name == "." || name == ".." {
            return Err("path contains dot-segments");
        }
    }
    Ok(())
}

/// Refuses the encodings of `.`, `/` and `\` that a backend may decode
/// although the gateway does not: a `%` that is not `%XX` (IIS's `%u002e`),
/// an escape of `%` that forms another escape (`%252e`, decoded twice
/// behind us), overlong UTF-8 (`%c0%ae`) and the Unicode characters that
/// NFKC normalisation turns into a dot or a slash (`．`, `／`, `＼`, …),
/// whether percent-encoded or raw.
fn check_encoding(lower: &[u8]) -> Result<(), &'static str> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut decoded = Vec::with_capacity(lower.len());
    let mut i = 0;
    while i < lower.len() {
        if lower[i] != b'%' {
            decoded.push(lower[i]);
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            lower.get(i + 1).copied().and_then(hex),
            lower.get(i + 2).copied().and_then(hex),
        ) else {
            return Err("path contains a `%` that is not a percent-encoded byte");
        };
        let byte = h * 16 + l;
        if byte == b'%'
            && lower.get(i + 3).copied().and_then(hex).is_some()
            && lower.get(i + 4).copied().and_then(hex).is_some()
        {
            return Err("path is percent-encoded more than once");
        }
        decoded.push(byte);
        i += 3;
    }
    for (at, window) in decoded.windows(2).enumerate() {
        let overlong = match window {
            [0xc0 | 0xc1, _] => true,
            [0xe0, second] => (0x80..=0x9f).contains(second),
            [0xf0, second] => (0x80..=0x8f).contains(second),
            _ => false,
        };
        if overlong {
            return Err("path contains overlong UTF-8");
        }
        let rest = &decoded[at..];
        if LOOKALIKES.iter().any(|l| rest.starts_with(l)) {
            return Err("path contains a character that normalises to a dot or slash");
        }
    }
    if matches!(decoded.last(), Some(0xc0 | 0xc1)) {
        return Err("path contains overlong UTF-8");
    }
    Ok(())
}

/// UTF-8 of the characters NFKC maps to `.`, `/` or `\`: fullwidth and
/// small full stop, one dot leader, fullwidth solidus, fullwidth and small
/// reverse solidus.
const LOOKALIKES: [&[u8]; 6] = [
    "\u{ff0e}".as_bytes(),
    "\u{fe52}".as_bytes(),
    "\u{2024}".as_bytes(),
    "\u{ff0f}".as_bytes(),
    "\u{ff3c}".as_bytes(),
    "\u{fe68}".as_bytes(),
];

/// Whether a (lowercased) path holds `%XX` for an unreserved character
/// (RFC 3986 §2.3: letters, digits, `-`, `.`, `_`, `~`), other than `%2e`,
/// which the dot-segment check decodes itself.
fn encodes_unreserved(lower: &str) -> bool {
    let bytes = lower.as_bytes();
    bytes.windows(3).any(|w| {
        if w[0] != b'%' {
            return false;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        match (hex(w[1]), hex(w[2])) {
            (Some(h), Some(l)) => {
                let c = (h * 16 + l) as u8;
                c != b'.' && (c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~'))
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RoutePolicy, UpgradePolicy, UpstreamAuthorization};

    fn route(host: Option<&str>, prefix: &str) -> RouteConfig {
        RouteConfig {
            name: prefix.into(),
            host: host.map(str::to_string),
            path_prefix: prefix.into(),
            upstream: 0,
            policy: RoutePolicy::Session,
            required_scopes: vec![],
            authorization: UpstreamAuthorization::Pass,
            upgrades: UpgradePolicy::Refuse,
            cors: None,
            timeouts: Default::default(),
        }
    }

    fn router() -> Router {
        Router::new(
            &[
                route(Some("erp.example.com"), "/api/"),
                route(Some("*.tenant.example"), "/"),
                route(None, "/public/"),
                route(None, "/"),
            ],
            "/.gateway",
        )
    }

    #[test]
    fn first_match_in_order_wins() {
        let r = router();
        assert_eq!(
            r.resolve(Some("erp.example.com"), "/api/orders"),
            Resolution::Route(0)
        );
        assert_eq!(
            r.resolve(Some("ERP.example.com:8080"), "/api/x"),
            Resolution::Route(0)
        );
        assert_eq!(
            r.resolve(Some("a.tenant.example"), "/api/x"),
            Resolution::Route(1)
        );
        assert_eq!(
            r.resolve(Some("tenant.example"), "/public/x"),
            Resolution::Route(2)
        );
        assert_eq!(r.resolve(None, "/other"), Resolution::Route(3));
        assert_eq!(
            r.resolve(Some("erp.example.com"), "/api"),
            Resolution::Route(3)
        );
    }

    #[test]
    fn no_route_is_not_found() {
        let r = Router::new(&[route(None, "/api/")], "/.gateway");
        assert_eq!(r.resolve(None, "/admin"), Resolution::NotFound);
    }

    #[test]
    fn gateway_endpoints_come_first() {
        let r = router();
        assert_eq!(
            r.resolve(None, "/.gateway/session"),
            Resolution::Gateway(GatewayEndpoint::Session)
        );
        assert_eq!(
            r.resolve(None, "/.gateway/logout"),
            Resolution::Gateway(GatewayEndpoint::Logout)
        );
        assert_eq!(r.resolve(None, "/.gateway/nope"), Resolution::NotFound);
        assert_eq!(r.resolve(None, "/.gateway"), Resolution::NotFound);
        // Only a whole segment is the prefix.
        assert_eq!(r.resolve(None, "/.gatewayx"), Resolution::Route(3));
    }

    #[test]
    fn dot_segments_are_refused() {
        let r = router();
        for bad in [
            "/api/../admin",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api/%2E%2e/admin",
            "/api/.%2e/admin",
            "/api%2f..%2fadmin",
            "/api\\..\\admin",
            "/a%00b",
            "api/x",
            "*",
            "/status/..;/api/orders",
            "/status/..%3b/api/orders",
            "/status/.;x/api",
            "//api/x",
            "/public//x",
            "/%61pi/x",
            "/api/%7Euser",
            // Encoded more than once, overlong, `%u`, Unicode lookalikes.
            "/public/%252e%252e/admin",
            "/public/..%252fadmin",
            "/public/%25252e%25252e/admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%c0%af",
            "/public/%e0%80%ae",
            "/public/%f0%80%80%ae",
            "/public/%c0",
            "/public/%u002e%u002e/admin",
            "/public/%U002E",
            "/public/%",
            "/public/%2",
            "/public/%zz",
            "/public/%ef%bc%8e%ef%bc%8e/admin",
            "/public/\u{ff0e}\u{ff0e}/admin",
            "/public/%EF%BC%8F",
            "/public/%e2%80%a4%e2%80%a4/admin",
            "/public/%ef%b9%92",
            "/public/%ef%bc%bc",
        ] {
            assert!(
                matches!(r.resolve(None, bad), Resolution::BadPath(_)),
                "{bad} accepted"
            );
        }
        assert_eq!(r.resolve(None, "/api/..x/y"), Resolution::Route(3));
        assert_eq!(r.resolve(None, "/public/x;v=1/"), Resolution::Route(2));
        assert_eq!(r.resolve(None, "/public/a%20b%2Fc"), Resolution::Route(2));
        assert_eq!(r.resolve(None, "/api/.well-known"), Resolution::Route(3));
        // A literal `%` (`%25` not followed by two hex digits) and UTF-8
        // that is not a lookalike stay allowed.
        assert_eq!(r.resolve(None, "/public/100%25"), Resolution::Route(2));
        assert_eq!(r.resolve(None, "/public/50%25off"), Resolution::Route(2));
        assert_eq!(r.resolve(None, "/public/caf%c3%a9"), Resolution::Route(2));
        assert_eq!(r.resolve(None, "/public/%e2%82%ac"), Resolution::Route(2));
    }

    #[test]
    fn a_raw_nul_is_refused_like_an_encoded_one() {
        // HTTP parsers normally refuse it first; the router must not depend
        // on that (found by fuzz/route_match).
        let r = router();
        assert!(matches!(
            r.resolve(None, "/\0\u{4}"),
            Resolution::BadPath(_)
        ));
        assert!(matches!(
            r.resolve(None, "/api/a\0b"),
            Resolution::BadPath(_)
        ));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("ERP.Example.COM:443"), "erp.example.com");
        assert_eq!(normalize_host("erp.example.com."), "erp.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
    }
}
