//! The proxy: the Pingora service and the pieces it delegates to.
//!
//! * [`host`]: which host a request is for (a malformed `Host` is refused);
//! * [`routes`]: which route (or gateway endpoint) a request is for;
//! * [`access`]: the access decision (token, scopes, pool, session);
//! * [`headers`]: the identity headers the upstream may trust;
//! * [`upstreams`]: upstream groups, balancing and health checks;
//! * [`problem`]: RFC 9457 error responses;
//! * [`table`]: the routing table a live reload swaps;
//! * [`service`]: the thin `ProxyHttp` implementation tying them together.

pub mod access;
pub mod headers;
pub mod host;
pub mod problem;
pub mod routes;
pub mod service;
pub mod table;
pub mod upstreams;

pub use access::Access;
pub use problem::{ErrorCode, Problem};
pub use service::Gateway;
