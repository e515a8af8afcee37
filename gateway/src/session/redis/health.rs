//! Connection health: a Redis connection that stops answering is replaced.
//!
//! The redis crate reconnects only when a connection is seen to drop. A
//! connection left half-open (a NAT or firewall forgot it, a failover moved
//! the address) never drops: every command on it times out until the
//! kernel gives up retransmitting, about fifteen minutes. So the store
//! judges its connection by its answers: a call that times out or fails
//! with an I/O error makes the connection suspect, and after
//! [`SUSPECT_AFTER`] such calls in a row it is dropped and the next call
//! opens a new one. A new connection that cannot be opened is retried after
//! a backoff (100 ms doubling to 2 s, with jitter) during which calls fail
//! at once instead of each waiting for the connect timeout.
//!
//! Recovery bound: after a partition heals, at most [`SUSPECT_AFTER`] calls
//! fail (each within `connect_timeout + response_timeout`) before a new
//! connection is opened, plus at most one backoff period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use crate::session::StoreError;

/// Failed calls in a row after which a connection is replaced.
pub const SUSPECT_AFTER: u32 = 2;

/// The first wait before another connect attempt, doubled per failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait before another connect attempt.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Failed connects in a row.
#[derive(Default)]
struct Backoff {
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

/// A connection (any cheaply cloned handle) that is replaced when it stops
/// answering.
pub struct Replaceable<C> {
    current: ArcSwapOption<C>,
    /// One connect at a time; others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
    /// Calls in a row that failed for want of an answer.
    failures: AtomicU32,
    /// Connect attempts in a row that failed, when the next may start, and
    /// why the last one failed (reported while backing off).
    backoff: parking_lot::Mutex<Backoff>,
    /// Replace after this many failures in a row.
    suspect_after: u32,
    /// Replace after any failed call, an answered error included (Sentinel:
    /// a failed-over primary answers `READONLY`).
    any_error_replaces: bool,
}

impl<C: Clone> Replaceable<C> {
    /// No connection yet; replaced after `suspect_after` failures in a row.
    pub fn new(suspect_after: u32) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            failures: AtomicU32::new(0),
            backoff: parking_lot::Mutex::new(Backoff::default()),
            suspect_after: suspect_after.max(1),
            any_error_replaces: false,
        }
    }

    /// No connection yet; replaced after any failed call.
    pub fn replaced_on_any_error() -> Self {
        Self {
            any_error_replaces: true,
            ..Self::new(1)
        }
    }

    /// Records the outcome of a call on the connection (`None`: it timed
    /// out): an answer, even an error, keeps it unless it is replaced on any
    /// error; no answer counts towards replacing it.
    pub fn record<T>(&self, outcome: Option<&Result<T, StoreError>>) {
        match outcome {
            Some(Ok(_)) => self.answered(),
            Some(Err(_)) if self.any_error_replaces => self.drop_connection(),
            Some(Err(StoreError::Protocol(_))) => self.answered(),
            Some(Err(StoreError::Unavailable(_))) | None => {
                self.unanswered();
            }
        }
    }

    /// The current connection, or a new one from `connect` (one at a time;
    /// refused at once while a failed connect backs off).
    pub async fn get<F, Fut>(&self, connect: F) -> Result<C, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, StoreError>>,
    {
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
        }
        let _connecting = self.connecting.lock().await;
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
        }
        {
            let backoff = self.backoff.lock();
            if let Some(at) = backoff.retry_at
                && Instant::now() < at
            {
                return Err(StoreError::Unavailable(format!(
                    "reconnecting to Redis after a failed attempt ({})",
                    backoff.last_error
                )));
            }
        }
        match connect().await {
            Ok(conn) => {
                *self.backoff.lock() = Backoff::default();
                self.failures.store(0, Ordering::Relaxed);
                self.current.store(Some(Arc::new(conn.clone())));
                Ok(conn)
            }
            Err(error) => {
                let mut backoff = self.backoff.lock();
                backoff.attempts = backoff.attempts.saturating_add(1);
                backoff.retry_at = Some(Instant::now() + backoff_after(backoff.attempts));
                backoff.last_error = error.to_string();
                Err(error)
            }
        }
    }

    /// The connection held now, if any (for a command that must follow
    /// earlier ones on the same connection, such as `WAIT`).
    pub fn current(&self) -> Option<C> {
        self.current.load_full().map(|conn| (*conn).clone())
    }

    /// A call on the connection was answered.
    pub fn answered(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A call on the connection got no answer (timeout, I/O error): after
    /// enough in a row the connection is dropped and the next call opens a
    /// new one. Returns whether it was dropped.
    pub fn unanswered(&self) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.suspect_after {
            self.drop_connection();
            true
        } else {
            false
        }
    }

    /// Drops the connection now (the next call opens a new one).
    pub fn drop_connection(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.current.swap(None).is_some() {
            tracing::warn!("Redis connection replaced: it stopped answering");
        }
    }

    /// Whether a connection is held.
    #[cfg(test)]
    pub fn is_connected(&self) -> bool {
        self.current.load().is_some()
    }
}

/// The wait after `attempts` failed connects in a row: doubling from
/// [`BACKOFF_START`] up to [`BACKOFF_MAX`], minus up to a quarter of jitter
/// so a fleet does not reconnect in lockstep.
fn backoff_after(attempts: u32) -> Duration {
    let doubled = BACKOFF_START.saturating_mul(1u32 << attempts.saturating_sub(1).min(8));
    let base = doubled.min(BACKOFF_MAX);
    let jitter_range = u64::try_from(base.as_millis() / 4).unwrap_or(0).max(1);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % jitter_range;
    base.saturating_sub(Duration::from_millis(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        for attempts in 1..20 {
            let wait = backoff_after(attempts);
            let base = BACKOFF_START
                .saturating_mul(1 << (attempts - 1).min(8))
                .min(BACKOFF_MAX);
            assert!(
                wait <= base && wait >= base - base / 4,
                "{attempts}: {wait:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_connection_is_replaced_after_failures_in_a_row() {
        let link = Replaceable::<u32>::new(2);
        let opened = AtomicU32::new(0);
        let connect = || async { Ok::<_, StoreError>(opened.fetch_add(1, Ordering::Relaxed) + 1) };
        assert_eq!(link.get(connect).await.ok(), Some(1));
        assert!(!link.unanswered());
        link.answered();
        assert!(!link.unanswered(), "an answer in between resets the count");
        assert_eq!(link.get(connect).await.ok(), Some(1));
        assert!(link.unanswered(), "two in a row drop the connection");
        assert!(!link.is_connected());
        assert_eq!(link.get(connect).await.ok(), Some(2), "a new one is opened");
    }

    #[tokio::test]
    async fn outcomes_decide_what_replaces_a_connection() {
        let connect = || async { Ok::<_, StoreError>(1u32) };
        let answered_error: Result<(), _> = Err(StoreError::Protocol("script error".into()));
        let plain = Replaceable::<u32>::new(1);
        plain.get(connect).await.ok();
        plain.record(Some(&answered_error));
        assert!(
            plain.is_connected(),
            "an answered error keeps the connection"
        );
        plain.record::<()>(None);
        assert!(!plain.is_connected(), "a timeout counts as no answer");
        let sentinel = Replaceable::<u32>::replaced_on_any_error();
        sentinel.get(connect).await.ok();
        sentinel.record(Some(&answered_error));
        assert!(
            !sentinel.is_connected(),
            "any error asks the sentinels again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_connect_backs_off_and_then_retries() {
        let link = Replaceable::<u32>::new(2);
        let refuse = || async { Err::<u32, _>(StoreError::Unavailable("refused".into())) };
        assert!(link.get(refuse).await.is_err());
        let tried = AtomicU32::new(0);
        let count = || async {
            tried.fetch_add(1, Ordering::Relaxed);
            Ok::<_, StoreError>(7)
        };
        assert!(
            link.get(count).await.is_err(),
            "refused at once while backing off"
        );
        assert_eq!(tried.load(Ordering::Relaxed), 0);
        tokio::time::advance(BACKOFF_MAX).await;
        assert_eq!(link.get(count).await.ok(), Some(7));
        assert_eq!(tried.load(Ordering::Relaxed), 1);
    }
}
