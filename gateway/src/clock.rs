//! Wall-clock time as the gateway sees it.
//!
//! Everything that decides with time inside one process (token `exp`/`nbf`,
//! the memory store's idle and absolute expiry, the verified-token cache)
//! reads a [`Clock`] instead of calling `SystemTime::now()`, so tests can move
//! time forward deterministically with a [`ManualClock`]. Shared session
//! expiry in Redis uses the Redis server's `TIME` instead (see the Redis
//! store), so instance clocks may drift without changing who holds a seat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// A time as RFC 3339 in UTC with milliseconds, the form every JSON answer
/// of the gateway uses.
pub fn rfc3339_ms(ms: UnixMillis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A duration rounded up to whole seconds, at least one: the `Retry-After`
/// of every refusal (a hint of zero would invite an immediate retry).
pub fn whole_seconds(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Duration::from_secs(ms.div_ceil(1000).max(1))
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> UnixMillis;

    /// Whole seconds since the Unix epoch, the unit of JWT time claims.
    fn now_secs(&self) -> i64 {
        (self.now_ms() / 1000) as i64
    }

    /// Whether this clock is driven by hand (tests). Stores that have a
    /// clock of their own (Redis `TIME`) use this clock only when it is manual.
    fn is_manual(&self) -> bool {
        false
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            // A clock before 1970 is a broken host; treating it as the epoch
            // makes every token look expired, which fails closed.
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at `start_ms`.
    pub fn starting_at(start_ms: UnixMillis) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set(&self, now_ms: UnixMillis) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.now.load(Ordering::SeqCst)
    }

    fn is_manual(&self) -> bool {
        true
    }
}

/// Shared handle to the clock in use.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let clock = ManualClock::starting_at(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        other.advance(Duration::from_millis(2_500));
        assert_eq!(clock.now_ms(), 3_500);
        assert_eq!(clock.now_secs(), 3);
        clock.set(10_000);
        assert_eq!(other.now_ms(), 10_000);
        assert!(clock.is_manual());
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
        assert!(!SystemClock.is_manual());
    }
}
