//! session-gateway: a Pingora reverse proxy that turns valid access tokens
//! into accounted sessions and license seats.
//!
//! The crate is split by what each module decides (see `docs/architecture.md`
//! §1, "Modules and what each decides"):
//!
//! * [`config`]: the TOML file, validated into typed runtime values;
//! * [`claims`], [`digest`]: the value types everything below keys on: a
//!   token's claims, and the digests the gateway's keys are made of;
//! * [`auth`]: issuers, their JWKS, token verification and its cache;
//! * [`session`]: session identity, the [`session::Store`] trait and stores;
//! * [`licensing`]: pools, their matching rules, limits and reserved seats;
//! * [`access`]: the access decision (authenticate, admit, logout,
//!   back-channel logout, revocations, operator actions), free of HTTP;
//! * [`proxy`]: the Pingora `ProxyHttp` service, routes, upstreams, headers,
//!   and the wording of the access decision's outcomes as HTTP problems;
//! * [`admin`]: the admin listener (health, readiness, metrics);
//! * [`telemetry`]: logs and metrics;
//! * [`devkit`]: the demo issuer and ERP backend used by `dev` and the tests;
//! * [`reload`]: live reload of the configuration (SIGHUP, the admin API);
//! * [`server`]: start-up, wiring everything into one Pingora server;
//! * [`usage`]: the usage history of the pools (peaks, seat-time, counts);
//! * [`cli`]: the command line of the `session-gateway` binary.

pub mod access;
pub mod admin;
pub mod auth;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devkit;
pub mod digest;
pub mod licensing;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod usage;
