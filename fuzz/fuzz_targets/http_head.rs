//! The request head as the gateway sees it before routing: the `Host`
//! fields, the request target and the protocol version, through
//! `proxy::host::request_host`, then `proxy::routes::Router::resolve`.
//!
//! Properties: nothing panics; an accepted host came from at most one
//! `Host` field, and from exactly one (or an HTTP/2 authority) when the
//! version requires it; it is lowercase and is either dot-separated labels
//! of letters, digits, `-` and `_` or a bracketed IPv6 literal — nothing a
//! backend could read as another host (no `,`, `/`, `?`, `#`, `@`, `\`,
//! `:`, space); the router's own normalisation leaves it unchanged; and an
//! accepted host equals the absolute-form target's host when both exist.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_gateway::config::{RouteConfig, RoutePolicy, UpgradePolicy, UpstreamAuthorization};
use session_gateway::proxy::host::{HostFields, request_host};
use session_gateway::proxy::routes::{Router, normalize_host};

#[derive(Debug, Arbitrary)]
struct Input {
    host_required: bool,
    host_fields: Vec<Vec<u8>>,
    target: Vec<u8>,
    uri_authority: Option<String>,
}

fn well_formed(host: &str) -> bool {
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return literal.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

fuzz_target!(|input: Input| {
    let fields: Vec<&[u8]> = input
        .host_fields
        .iter()
        .take(4)
        .map(Vec::as_slice)
        .collect();
    let result = request_host(HostFields {
        host_required: input.host_required,
        host_fields: &fields,
        target: &input.target,
        uri_authority: input.uri_authority.as_deref(),
    });
    let Ok(host) = result else {
        return;
    };
    assert!(fields.len() <= 1, "{} Host fields accepted", fields.len());
    if input.host_required && input.uri_authority.is_none() {
        assert_eq!(fields.len(), 1, "a required Host was missing");
    }
    if let Some(host) = &host {
        assert!(well_formed(host), "accepted host {host:?}");
        assert_eq!(
            &normalize_host(host),
            host,
            "the router would read it otherwise"
        );
    }
    // An absolute-form target's host wins: whatever was accepted is its host.
    if let Some(rest) = input.target.strip_prefix(b"http://")
        && fields.len() == 1
    {
        let end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let authority = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let target_host = normalize_host(&authority);
        assert_eq!(host.as_deref(), Some(target_host.as_str()));
    }
    // Routing on it never panics.
    let routes = [RouteConfig {
        name: "r".into(),
        host: Some("erp.example.com".into()),
        path_prefix: "/".into(),
        upstream: 0,
        policy: RoutePolicy::Session,
        required_scopes: vec![],
        authorization: UpstreamAuthorization::Pass,
        upgrades: UpgradePolicy::Refuse,
    }];
    let path = std::str::from_utf8(&input.target).unwrap_or("/");
    let _ = Router::new(&routes, "/.gateway").resolve(host.as_deref(), path);
});
