//! The routing table: the routes, their upstream groups, the gateway
//! endpoints' prefix, the identity header names and the wording of
//! refusals, built from one
//! configuration. The proxy reads it through a [`LiveTable`], which a live
//! reload swaps atomically: a request keeps the table it was routed by, the
//! next request sees the new one.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use pingora_prometheus::prometheus::{Histogram, IntCounter};

use super::denial::Wording;
use super::forwarded::Forwarding;
use super::routes::Router;
use super::upstreams::Upstream;
use crate::config::{Config, IdentityHeaderNames, RouteConfig};
use crate::telemetry::Metrics;

/// One configuration's routing.
#[derive(Debug)]
pub struct RouteTable {
    /// Matches a request to a route or gateway endpoint.
    pub router: Router,
    /// The routes, in matching order (indexes of `router`).
    pub routes: Vec<RouteConfig>,
    /// The upstream groups (indexes of `RouteConfig::upstream`).
    pub upstreams: Vec<Arc<Upstream>>,
    /// The identity headers sent upstream and stripped from clients.
    pub headers: IdentityHeaderNames,
    /// How refusals are worded (realm, statuses).
    pub wording: Wording,
    /// Trusted proxies and the request id header.
    pub forwarding: Forwarding,
    /// The request metrics of each route, resolved at its first request.
    meters: OnceLock<Vec<RouteMeter>>,
}

/// The two request metrics every forwarded request of a route updates,
/// with their labels resolved once per table instead of on every request
/// (a label lookup hashes the values and takes a lock).
#[derive(Debug)]
pub struct RouteMeter {
    /// `session_gateway_requests_total{route, policy, outcome="forwarded",
    /// status}`, one per status class ([`STATUS_CLASSES`]).
    pub forwarded: [IntCounter; 6],
    /// `session_gateway_request_duration_seconds{route, policy}`.
    pub duration: Histogram,
}

impl RouteTable {
    /// The table of a validated configuration over its built upstream
    /// groups (in the configuration's order).
    pub fn of_config(config: &Config, upstreams: Vec<Arc<Upstream>>) -> Self {
        let mut table = Self::new(
            config.routes.clone(),
            &config.server.gateway_prefix,
            upstreams,
            config.headers.clone(),
            Wording {
                realm: config.server.realm.clone(),
                license_unavailable_status: config.sessions.license_unavailable_status,
            },
        );
        table.forwarding = Forwarding {
            trusted: config.server.trusted_proxies.clone(),
            request_id_header: config.server.request_id_header.clone(),
            tls: config.server.tls.is_some(),
        };
        table
    }

    /// A table over validated routes and their built upstream groups.
    pub fn new(
        routes: Vec<RouteConfig>,
        gateway_prefix: &str,
        upstreams: Vec<Arc<Upstream>>,
        headers: IdentityHeaderNames,
        wording: Wording,
    ) -> Self {
        Self {
            router: Router::new(&routes, gateway_prefix),
            routes,
            upstreams,
            headers,
            wording,
            forwarding: Forwarding::default(),
            meters: OnceLock::new(),
        }
    }

    /// The metrics of route `index`, resolved in `metrics` for every route
    /// of the table the first time one is asked for.
    pub fn meter(&self, index: usize, metrics: &Metrics) -> Option<&RouteMeter> {
        self.meters
            .get_or_init(|| {
                self.routes
                    .iter()
                    .map(|route| {
                        let (name, policy) = (route.name.as_str(), route.policy.as_str());
                        RouteMeter {
                            forwarded: STATUS_CLASSES.map(|class| {
                                metrics.requests.with_label_values(&[
                                    name,
                                    policy,
                                    "forwarded",
                                    class,
                                ])
                            }),
                            duration: metrics.request_duration.with_label_values(&[name, policy]),
                        }
                    })
                    .collect()
            })
            .get(index)
    }
}

/// The `status` label of the request metrics: the response's status class,
/// or `none` when no response went out (index 0).
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`STATUS_CLASSES`] of a status code (0 for none).
pub fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100),
        _ => 0,
    }
}

/// The table in force, shared by the proxy and the reloader.
pub type LiveTable = Arc<ArcSwap<RouteTable>>;
