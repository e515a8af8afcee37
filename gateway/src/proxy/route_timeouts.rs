//! Per-route timeouts (`[routes.timeouts]`): `connect` and `read` instead
//! of the upstream group's, and `total`, a bound on the whole exchange with
//! the backend counted from the request's arrival. Before the backend is
//! asked, every connect, write and read wait is cut to the time left; while
//! the response streams, a chunk past the total ends it.

use std::time::Instant;

use pingora::prelude::{Error, ErrorType};
use pingora::upstreams::peer::PeerOptions;

use crate::config::RouteTimeouts;

/// Sets a peer's timeouts for a route, the request having arrived at
/// `started`; an error (a 504 `upstream_timeout`) when the total is over.
pub fn apply(
    timeouts: &RouteTimeouts,
    options: &mut PeerOptions,
    started: Instant,
) -> pingora::Result<()> {
    if let Some(connect) = timeouts.connect {
        options.connection_timeout = Some(connect);
    }
    if let Some(read) = timeouts.read {
        options.read_timeout = Some(read);
    }
    if let Some(total) = timeouts.total {
        let left = total
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(past_total)?;
        for wait in [
            &mut options.connection_timeout,
            &mut options.read_timeout,
            &mut options.write_timeout,
        ] {
            *wait = Some(wait.map_or(left, |d| d.min(left)));
        }
    }
    Ok(())
}

/// Whether a request that arrived at `started` is past its route's total.
pub fn is_past_total(timeouts: &RouteTimeouts, started: Instant) -> bool {
    timeouts
        .total
        .is_some_and(|total| started.elapsed() > total)
}

/// The error of a request past its route's total: answered 504
/// `upstream_timeout` while no response went out, else the response ends.
pub fn past_total() -> Box<Error> {
    Error::explain(ErrorType::ReadTimedout, "the route's total timeout passed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_total_cuts_every_wait_to_the_time_left() {
        let mut options = PeerOptions::new();
        options.connection_timeout = Some(Duration::from_secs(5));
        options.read_timeout = Some(Duration::from_secs(60));
        let timeouts = RouteTimeouts {
            connect: None,
            read: Some(Duration::from_secs(30)),
            total: Some(Duration::from_secs(10)),
        };
        apply(&timeouts, &mut options, Instant::now()).expect("time is left");
        assert_eq!(options.connection_timeout, Some(Duration::from_secs(5)));
        assert!(
            options
                .read_timeout
                .is_some_and(|d| d <= Duration::from_secs(10))
        );
        assert!(
            options
                .write_timeout
                .is_some_and(|d| d <= Duration::from_secs(10))
        );
        let long_ago = Instant::now() - Duration::from_secs(11);
        assert!(apply(&timeouts, &mut options, long_ago).is_err());
        assert!(is_past_total(&timeouts, long_ago));
        assert!(!is_past_total(&RouteTimeouts::default(), long_ago));
    }
}
