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
    /// The request metrics of each route, resolved at its first request.
    meters: OnceLock<Vec<RouteMeter>>,
}

/// The two request metrics every forwarded request of a route updates,
/// with their labels resolved once per table instead of on every request
/// (a label lookup hashes the values and takes a lock).
#[derive(Debug)]
pub struct RouteMeter {
    /// `session_gateway_requests_total{route, policy, outcome="forwarded"}`.
    pub forwarded: IntCounter,
    /// `session_gateway_request_duration_seconds{route, policy}`.
    pub duration: Histogram,
}

impl RouteTable {
    /// The table of a validated configuration over its built upstream
    /// groups (in the configuration's order).
    pub fn of_config(config: &Config, upstreams: Vec<Arc<Upstream>>) -> Self {
        Self::new(
            config.routes.clone(),
            &config.server.gateway_prefix,
            upstreams,
            config.headers.clone(),
            Wording {
                realm: config.server.realm.clone(),
                license_unavailable_status: config.sessions.license_unavailable_status,
            },
        )
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
                            forwarded: metrics.requests.with_label_values(&[
                                name,
                                policy,
                                "forwarded",
                            ]),
                            duration: metrics.request_duration.with_label_values(&[name, policy]),
                        }
                    })
                    .collect()
            })
            .get(index)
    }
}

/// The table in force, shared by the proxy and the reloader.
pub type LiveTable = Arc<ArcSwap<RouteTable>>;
