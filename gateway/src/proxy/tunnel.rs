//! A tunnel: the upgraded connection (WebSocket, or any `Upgrade` the route
//! allows) that a `session` route's backend switched to with `101`. It is
//! carried only while its session holds its seat.
//!
//! Pingora carries an upgraded connection's bytes through the body filters
//! in both directions and has no way to end a connection from outside, so
//! the check rides on the bytes: every chunk asks [`Tunnel::carry`], which
//! refuses once the session is known to have closed and, at most once per
//! [`RECHECK`], starts a store check in the background (the response filter
//! cannot wait). A tunnel whose session closed therefore carries at most
//! [`RECHECK`] plus one store call's worth of bytes more, and none after
//! that; a silent tunnel carries nothing, and ends at its next byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pingora_prometheus::prometheus::IntGauge;

use crate::access::Access;
use crate::session::Session;

/// How often a tunnel that carries bytes re-checks its session.
pub const RECHECK: Duration = Duration::from_secs(1);

/// One upgraded connection and what the gateway knows of its session.
#[derive(Debug)]
pub struct Tunnel {
    session: Session,
    ended: AtomicBool,
    checking: AtomicBool,
    checked_at: parking_lot::Mutex<Instant>,
    open_gauge: IntGauge,
}

impl Tunnel {
    /// A tunnel on `session`, just admitted (so its first check is due one
    /// [`RECHECK`] from now), counted in `session_gateway_tunnels_open`.
    pub fn open(session: Session, access: &Access) -> Arc<Self> {
        let open_gauge = access
            .metrics()
            .tunnels_open
            .with_label_values(&[session.pool.as_str()]);
        open_gauge.inc();
        Arc::new(Self {
            session,
            ended: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            checked_at: parking_lot::Mutex::new(Instant::now()),
            open_gauge,
        })
    }

    /// Whether the next chunk may pass; starts a check of the session when
    /// one is due.
    pub fn carry(self: &Arc<Self>, access: &Arc<Access>) -> bool {
        if self.has_ended() {
            return false;
        }
        let due = self.checked_at.lock().elapsed() >= RECHECK;
        if due && !self.checking.swap(true, Ordering::AcqRel) {
            let tunnel = Arc::clone(self);
            let access = Arc::clone(access);
            tokio::spawn(async move { tunnel.check(&access).await });
        }
        true
    }

    /// Whether the gateway ended it.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    async fn check(&self, access: &Access) {
        match access.tunnel_end(&self.session).await {
            Ok(None) => {}
            Ok(Some(end)) => {
                if !self.ended.swap(true, Ordering::AcqRel) {
                    access.record_tunnel_closed(&self.session, end);
                }
            }
            // Like a cached lease, the tunnel outlives a store blip: the
            // store cannot say the session closed, and new sessions cannot
            // open meanwhile. It is checked again one RECHECK later.
            Err(error) => tracing::warn!(
                %error,
                session_id = %self.session.id,
                "tunnel session check failed; carrying on until the next check"
            ),
        }
        *self.checked_at.lock() = Instant::now();
        self.checking.store(false, Ordering::Release);
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.open_gauge.dec();
    }
}
