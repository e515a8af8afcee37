//! Logs and audit events.
//!
//! * [`logs`]: the tracing subscriber (JSON or text, level from config or
//!   `RUST_LOG`);
//! * [`audit`]: one structured event per session transition (opened, closed
//!   with its reason, refused), under the `audit` target so operators can
//!   route them separately;
//! * [`metrics`]: the Prometheus metrics of the admin listener's `/metrics`;
//! * [`spans`]: the request spans sent to an OTLP collector, when configured.

pub mod audit;
pub mod logs;
pub mod metrics;
pub mod spans;

pub use metrics::Metrics;
