//! Route matching and path checks (`proxy::routes::Router::resolve`) with
//! fuzzed route tables, hosts and paths.
//!
//! Properties: nothing panics; a matched route's host matches and its prefix
//! really prefixes the path; no earlier route matched; a path with
//! dot-segments (plain or encoded, also `..;`), an empty segment (`//`), a
//! backslash or NUL, or a percent-encoded unreserved character is refused,
//! and nothing else is. The router refuses instead of normalising, so an
//! accepted path is its own normalised form (no dot-segment to remove, no
//! `//` to merge): the prefix check on it is the check on the normalised path.
#![no_main]

use arbitrary::Arbitrary;
use fuzz_support::must_refuse;
use libfuzzer_sys::fuzz_target;
use session_gateway::config::{RouteConfig, RoutePolicy, UpgradePolicy, UpstreamAuthorization};
use session_gateway::proxy::routes::{Resolution, Router, normalize_host};

#[derive(Debug, Arbitrary)]
struct Input {
    routes: Vec<(Option<String>, String)>,
    gateway_prefix: String,
    host: Option<String>,
    path: String,
}

fn host_matches(pattern: Option<&str>, host: Option<&str>) -> bool {
    match (pattern, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(p), Some(h)) => match p.strip_prefix('*') {
            Some(suffix) => {
                let suffix = suffix.to_ascii_lowercase();
                h.len() > suffix.len() && h.ends_with(&suffix)
            }
            None => p.to_ascii_lowercase() == h,
        },
    }
}

fuzz_target!(|input: Input| {
    let routes: Vec<RouteConfig> = input
        .routes
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, (host, prefix))| RouteConfig {
            name: format!("r{i}"),
            host: host.clone(),
            path_prefix: prefix.clone(),
            upstream: 0,
            policy: RoutePolicy::Session,
            required_scopes: vec![],
            authorization: UpstreamAuthorization::Pass,
            upgrades: UpgradePolicy::Refuse,
        })
        .collect();
    let router = Router::new(&routes, &input.gateway_prefix);
    let resolution = router.resolve(input.host.as_deref(), &input.path);
    let refuse = must_refuse(&input.path);

    match (refuse, resolution) {
        (Some(why), r) => assert!(
            matches!(r, Resolution::BadPath(_)),
            "{:?} must be refused ({why}), got {r:?}",
            input.path
        ),
        (None, Resolution::BadPath(reason)) => {
            panic!("{:?} refused ({reason}) but is harmless", input.path)
        }
        (None, _) => {}
    }

    if let Resolution::Route(i) = resolution {
        let host = input.host.as_deref().map(normalize_host);
        let route = &routes[i];
        assert!(host_matches(route.host.as_deref(), host.as_deref()));
        assert!(
            input.path.starts_with(&route.path_prefix),
            "route {i} prefix {:?} does not prefix {:?}",
            route.path_prefix,
            input.path
        );
        for earlier in &routes[..i] {
            assert!(
                !(host_matches(earlier.host.as_deref(), host.as_deref())
                    && input.path.starts_with(&earlier.path_prefix)),
                "an earlier route matched too"
            );
        }
    }
});
