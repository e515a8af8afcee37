//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! One [`Metrics`] is built at start-up with its own registry and shared by
//! the proxy, the store calls, the JWKS refresher and the admin listener.
//! The `prometheus` crate is the one Pingora links (through
//! `pingora_prometheus`), so there is a single copy of it in the binary.
//!
//! Seat gauges (`session_gateway_seats_*`) are read from the store when
//! `/metrics` is scraped, so with the Redis store they are true for the whole
//! fleet, whichever instance is scraped. Every name is documented in
//! docs/operations.md.

use std::time::Duration;

use pingora_prometheus::prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::session::PoolUsage;

/// Every metric of the gateway.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, policy, outcome (`forwarded` or an error code)
    /// and status class (`2xx` … `5xx`, or `none` when no response went out).
    pub requests: IntCounterVec,
    /// Request duration by route and policy, seconds.
    pub request_duration: HistogramVec,
    /// Upstream failures by upstream and kind (`unavailable`, `timeout`).
    pub upstream_errors: IntCounterVec,
    /// Tokens refused, by reason.
    pub token_rejections: IntCounterVec,
    /// Tokens accepted, by how (`cache`, `signature`).
    pub tokens_verified: IntCounterVec,
    /// Sessions opened, by pool.
    pub sessions_opened: IntCounterVec,
    /// Sessions opened beyond the limit (overdraft), by pool.
    pub overdraft_opened: IntCounterVec,
    /// Sessions found used from more clients than allowed, by pool and action.
    pub tokens_shared: IntCounterVec,
    /// Closed sessions whose seats stay held for their identities, by pool.
    pub seats_held: IntCounterVec,
    /// Sessions closed, by pool and reason.
    pub sessions_closed: IntCounterVec,
    /// New sessions refused, by pool and reason (`pool_full`, `subject_limit`).
    pub license_refusals: IntCounterVec,
    /// Seats held, per pool (fleet-wide with Redis).
    pub seats_in_use: IntGaugeVec,
    /// Callers waiting for a seat, per pool (fleet-wide with Redis).
    pub queue_waiting: IntGaugeVec,
    /// Waits for a seat this instance ended, by pool and outcome
    /// (`admitted`, `timed_out`, `left`, `failed`).
    pub queue_exits: IntCounterVec,
    /// How long the waits this instance ended lasted, by pool and outcome.
    pub queue_wait: HistogramVec,
    /// `session_gateway_tunnels_open{pool}`: upgraded connections on
    /// `session` routes this instance carries now.
    pub tunnels_open: IntGaugeVec,
    /// `session_gateway_tunnels_closed_total{pool,reason}`: upgraded
    /// connections this instance ended because their session closed.
    pub tunnels_closed: IntCounterVec,
    /// `session_gateway_store_up`: 1 when the last read of the seat gauges
    /// reached the store, 0 when it did not (the seat gauges are then absent
    /// rather than frozen at their last value).
    pub store_up: IntGaugeVec,
    /// `session_gateway_config_reloads_total{outcome}`: live reloads,
    /// `applied` or `refused`.
    pub config_reloads: IntCounterVec,
    /// `session_gateway_revocations_restored_total`: revocations this
    /// instance wrote again after the store lost them.
    pub revocations_restored: IntCounter,
    /// Seat limit, per pool.
    pub seats_limit: IntGaugeVec,
    /// Reserved seats, per pool.
    pub seats_reserved: IntGaugeVec,
    /// `session_gateway_seats_peak{pool}`: the most seats held since the
    /// previous scrape (see [`Metrics::observe_seats_held`]).
    pub seats_peak: IntGaugeVec,
    /// The most seats each pool held at this instance's admissions since
    /// the last scrape (shared by the clones of this set).
    peaks: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, u32>>>,
    /// Store call latency by operation, seconds.
    pub store_duration: HistogramVec,
    /// Store call failures by operation.
    pub store_errors: IntCounterVec,
    /// JWKS loads by issuer and result (`ok`, `error`).
    pub jwks_refreshes: IntCounterVec,
    /// Age of the keys in use, per issuer, seconds; absent for an issuer
    /// whose keys never loaded.
    pub jwks_key_age: IntGaugeVec,
    /// Whether an issuer's keys are loaded (1) or not (0).
    pub jwks_keys_loaded: IntGaugeVec,
    /// `session_gateway_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets from 100 µs to 10 s: the gateway's own work is
/// sub-millisecond, an upstream call may take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Wait buckets from 10 ms to the longest `max_wait`, five minutes.
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

impl Metrics {
    /// A fresh set on its own registry.
    ///
    /// The `expect`s below cannot fire: every definition is a constant with
    /// valid names and labels, and each name is registered once into a
    /// registry created here.
    pub fn new() -> Self {
        let registry = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes,
        // process_open_fds, … of this process (Linux; nothing elsewhere).
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g =
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("metric registered once");
            h
        };
        Self {
            requests: counter(
                "session_gateway_requests_total",
                "Requests by route, policy, outcome (forwarded or the error code) and status class \
                 (2xx, 3xx, 4xx, 5xx, or none when no response went out).",
                &["route", "policy", "outcome", "status"],
            ),
            request_duration: histogram(
                "session_gateway_request_duration_seconds",
                "Time from request to the end of the response, by route and policy.",
                &["route", "policy"],
            ),
            upstream_errors: counter(
                "session_gateway_upstream_errors_total",
                "Upstream failures by upstream and kind (unavailable, timeout).",
                &["upstream", "kind"],
            ),
            token_rejections: counter(
                "session_gateway_token_rejections_total",
                "Access tokens refused, by reason.",
                &["reason"],
            ),
            tokens_verified: counter(
                "session_gateway_tokens_verified_total",
                "Access tokens accepted, by source (cache or signature).",
                &["source"],
            ),
            sessions_opened: counter(
                "session_gateway_sessions_opened_total",
                "Sessions opened by this instance, by pool.",
                &["pool"],
            ),
            overdraft_opened: counter(
                "session_gateway_overdraft_sessions_opened_total",
                "Sessions this instance opened beyond the pool's limit (its overdraft), by pool.",
                &["pool"],
            ),
            queue_exits: counter(
                "session_gateway_queue_exits_total",
                "Waits for a seat this instance ended, by pool and outcome (admitted, timed_out, left: \
                 the client went away, failed: refused otherwise or the store failed).",
                &["pool", "outcome"],
            ),
            queue_wait: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "session_gateway_queue_wait_seconds",
                        "How long callers waited for a seat on this instance, by pool and outcome.",
                    )
                    .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
                    &["pool", "outcome"],
                )
                .expect("valid metric definition");
                registry
                    .register(Box::new(h.clone()))
                    .expect("metric registered once");
                h
            },
            seats_held: counter(
                "session_gateway_seats_held_after_close_total",
                "Sessions this instance saw close whose seats stay held for their identities (linger, min_hold), by pool.",
                &["pool"],
            ),
            tokens_shared: counter(
                "session_gateway_tokens_shared_total",
                "Sessions this instance found used from more client addresses or user agents than their pool allows, by pool and action (audit, deny).",
                &["pool", "action"],
            ),
            sessions_closed: counter(
                "session_gateway_sessions_closed_total",
                "Sessions closed as seen by this instance, by pool and reason.",
                &["pool", "reason"],
            ),
            license_refusals: counter(
                "session_gateway_license_refusals_total",
                "New sessions refused, by pool and reason (pool_full, subject_limit).",
                &["pool", "reason"],
            ),
            seats_in_use: gauge(
                "session_gateway_seats_in_use",
                "Seats held now, per pool (the whole fleet with the Redis store).",
                &["pool"],
            ),
            queue_waiting: gauge(
                "session_gateway_queue_waiting",
                "Callers waiting for a seat now, per pool (the whole fleet with the Redis store).",
                &["pool"],
            ),
            tunnels_open: gauge(
                "session_gateway_tunnels_open",
                "Upgraded connections (WebSocket) on session routes carried now, per pool.",
                &["pool"],
            ),
            tunnels_closed: counter(
                "session_gateway_tunnels_closed_total",
                "Upgraded connections ended because their session closed, by pool and reason.",
                &["pool", "reason"],
            ),
            store_up: gauge(
                "session_gateway_store_up",
                "1 when the session store answered the last seat-gauge read, 0 when it did not.",
                &[],
            ),
            config_reloads: counter(
                "session_gateway_config_reloads_total",
                "Live configuration reloads, by outcome (applied, refused).",
                &["outcome"],
            ),
            revocations_restored: {
                let c = IntCounter::new(
                    "session_gateway_revocations_restored_total",
                    "Revocations this instance wrote again after the store had lost them.",
                )
                .expect("valid metric definition");
                registry
                    .register(Box::new(c.clone()))
                    .expect("metric registered once");
                c
            },
            seats_limit: gauge(
                "session_gateway_seats_limit",
                "Seat limit, per pool.",
                &["pool"],
            ),
            seats_reserved: gauge(
                "session_gateway_seats_reserved",
                "Seats reserved for named groups, per pool.",
                &["pool"],
            ),
            seats_peak: gauge(
                "session_gateway_seats_peak",
                "Most seats held since the previous scrape, per pool: at least seats_in_use, \
                 and the level after any admission of this instance in between (max over \
                 instances: the fleet's peak).",
                &["pool"],
            ),
            peaks: Default::default(),
            store_duration: histogram(
                "session_gateway_store_operation_duration_seconds",
                "Session store calls, by operation.",
                &["operation"],
            ),
            store_errors: counter(
                "session_gateway_store_errors_total",
                "Session store calls that failed, by operation.",
                &["operation"],
            ),
            jwks_refreshes: counter(
                "session_gateway_jwks_refreshes_total",
                "JWKS loads by issuer and result (ok, error).",
                &["issuer", "result"],
            ),
            jwks_key_age: gauge(
                "session_gateway_jwks_key_age_seconds",
                "Age of the signing keys in use, per issuer (absent while they never loaded).",
                &["issuer"],
            ),
            jwks_keys_loaded: gauge(
                "session_gateway_jwks_keys_loaded",
                "1 when the issuer's signing keys are loaded, 0 when they never loaded.",
                &["issuer"],
            ),
            build_info: {
                let info = gauge(
                    "session_gateway_build_info",
                    "The running build: always 1, its version as a label.",
                    &["version"],
                );
                info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
                info
            },
            registry,
        }
    }

    /// Records one store call.
    pub fn store_call<T, E>(&self, operation: &str, took: Duration, result: &Result<T, E>) {
        self.store_duration
            .with_label_values(&[operation])
            .observe(took.as_secs_f64());
        if result.is_err() {
            self.store_errors.with_label_values(&[operation]).inc();
        }
    }

    /// Notes the seats a pool held right after a session opened here. The
    /// store counted them at that moment (fleet-wide with Redis), so the
    /// highest level between two scrapes is never missed: every new peak
    /// is reached at some instance's admission.
    pub fn observe_seats_held(&self, pool: &str, held: u32) {
        let mut peaks = self.peaks.lock();
        match peaks.get_mut(pool) {
            Some(peak) => *peak = (*peak).max(held),
            None => {
                peaks.insert(pool.to_string(), held);
            }
        }
    }

    /// Sets the seat gauges from the store's usage: exactly the pools in
    /// `usage` (a pool a reload removed disappears), and `store_up` 1. The
    /// peak of each pool is the highest level noted since the previous call,
    /// or the current one, and starts again from the current one.
    pub fn set_usage(&self, usage: &[PoolUsage]) {
        self.seats_in_use.reset();
        self.queue_waiting.reset();
        self.seats_limit.reset();
        self.seats_reserved.reset();
        self.seats_peak.reset();
        let mut peaks = std::mem::take(&mut *self.peaks.lock());
        self.store_up.with_label_values(&[] as &[&str]).set(1);
        for pool in usage {
            let name = [pool.pool.as_str()];
            self.seats_in_use
                .with_label_values(&name)
                .set(i64::from(pool.in_use));
            self.seats_limit
                .with_label_values(&name)
                .set(i64::from(pool.limit));
            self.queue_waiting
                .with_label_values(&name)
                .set(i64::from(pool.waiting));
            self.seats_reserved
                .with_label_values(&name)
                .set(i64::from(pool.reserved));
            let peak = peaks.remove(&pool.pool).unwrap_or(0).max(pool.in_use);
            self.seats_peak
                .with_label_values(&name)
                .set(i64::from(peak));
        }
    }

    /// The store could not be read: the seat-use gauges disappear instead
    /// of repeating a value that may no longer be true, and `store_up` is 0.
    /// Limits and reservations are configuration, not store readings, and
    /// stay.
    pub fn set_store_unreachable(&self) {
        self.seats_in_use.reset();
        self.queue_waiting.reset();
        // The peaks noted meanwhile wait for the next reading.
        self.seats_peak.reset();
        self.store_up.with_label_values(&[] as &[&str]).set(0);
    }

    /// The text exposition format of everything registered.
    pub fn render(&self) -> Result<(String, Vec<u8>), String> {
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        encoder
            .encode(&self.registry.gather(), &mut body)
            .map_err(|e| e.to_string())?;
        Ok((encoder.format_type().to_string(), body))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pool: &str, in_use: u32) -> PoolUsage {
        PoolUsage {
            pool: pool.into(),
            limit: 10,
            reserved: 0,
            in_use,
            waiting: 0,
        }
    }

    fn peak(m: &Metrics, pool: &str) -> i64 {
        m.seats_peak.with_label_values(&[pool]).get()
    }

    #[test]
    fn the_peak_keeps_the_highest_level_between_two_readings() {
        let m = Metrics::new();
        m.observe_seats_held("a", 4);
        m.observe_seats_held("a", 7);
        m.observe_seats_held("a", 5);
        m.observe_seats_held("b", 2);
        m.set_usage(&[usage("a", 3), usage("b", 6)]);
        assert_eq!(peak(&m, "a"), 7, "the level after an admission in between");
        assert_eq!(peak(&m, "b"), 6, "never below the current level");
        // The next reading starts again from the levels then.
        m.set_usage(&[usage("a", 3), usage("b", 6)]);
        assert_eq!(peak(&m, "a"), 3);
        // A failed reading keeps what was noted for the next one.
        m.observe_seats_held("a", 9);
        m.set_store_unreachable();
        m.set_usage(&[usage("a", 1), usage("b", 0)]);
        assert_eq!(peak(&m, "a"), 9);
    }

    #[test]
    fn renders_registered_metrics_with_labels() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["api", "session", "forwarded", "2xx"])
            .inc();
        m.set_usage(&[PoolUsage {
            pool: "default".into(),
            limit: 10,
            reserved: 1,
            in_use: 3,
            waiting: 2,
        }]);
        let (content_type, body) = m.render().unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(content_type.starts_with("text/plain"));
        assert!(text.contains("session_gateway_requests_total{outcome=\"forwarded\",policy=\"session\",route=\"api\",status=\"2xx\"} 1"));
        assert!(text.contains("session_gateway_build_info{version=\""));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
        assert!(text.contains("session_gateway_seats_in_use{pool=\"default\"} 3"));
        assert!(text.contains("session_gateway_seats_limit{pool=\"default\"} 10"));
    }

    #[test]
    fn two_instances_do_not_share_a_registry() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.token_rejections.with_label_values(&["expired"]).inc();
        let (_, body) = b.render().unwrap();
        assert!(!String::from_utf8(body).unwrap().contains("expired"));
    }
}
