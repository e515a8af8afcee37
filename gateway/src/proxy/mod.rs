//! The proxy: the Pingora service and the pieces it delegates to.
//!
//! * [`host`]: which host a request is for (a malformed `Host` is refused);
//! * [`routes`]: which route (or gateway endpoint) a request is for;
//! * [`denial`]: how each denial of the access decision is worded;
//! * [`headers`]: the identity headers the upstream may trust;
//! * [`upstreams`]: upstream groups, balancing and health checks;
//! * [`problem`]: RFC 9457 error responses;
//! * [`table`]: the routing table a live reload swaps;
//! * [`endpoints`]: the gateway's own endpoints (session, logout,
//!   back-channel logout);
//! * [`probe`]: whether a proxy listener accepts connections (readiness,
//!   the start-up check);
//! * [`respond`]: writing the gateway's own answers and problems;
//! * [`tunnel`]: upgraded connections tied to their session;
//! * [`service`]: the thin `ProxyHttp` implementation tying them together.
//!
//! The access decision itself is [`crate::access`]; this module maps its
//! outcomes to HTTP and Pingora calls and nothing else.

pub mod cors;
pub mod denial;
pub mod endpoints;
pub mod forwarded;
pub mod headers;
pub mod host;
pub mod probe;
pub mod problem;
pub mod respond;
pub mod route_timeouts;
pub mod routes;
pub mod server_names;
pub mod service;
pub mod table;
pub mod trace;
pub mod tunnel;
pub mod upstreams;

pub use problem::{ErrorCode, Problem};
pub use service::Gateway;
