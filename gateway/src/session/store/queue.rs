//! [`SeatQueue`]: the queue of callers waiting for a seat (`[[pools]]
//! queue`), beside the admission that hands out and honours its tickets.
//!
//! A caller that finds no seat gets a [`Ticket`] from
//! [`SessionStore::admit`](super::SessionStore::admit) and asks again with
//! it; the line itself lives in the store, so it is one line for the whole
//! fleet. This trait is the rest: leaving the line, and hearing when a seat
//! may have freed, so waiters ask again only then.

use std::sync::Arc;

use async_trait::async_trait;

use super::StoreError;
use crate::licensing::Pool;
use crate::session::Ticket;

/// Why a waiting caller leaves the queue without a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueExit {
    /// It waited `max_wait`: refused, and written into the usage history as
    /// a `queue_timeout` refusal.
    TimedOut,
    /// Its client went away, or its request ended otherwise: no refusal,
    /// nobody heard one.
    Left,
}

/// Who hears that a seat of a pool may have freed (by the pool's name);
/// called on the store's own runtime, so it must not block.
pub type SeatListener = Arc<dyn Fn(&str) + Send + Sync>;

/// The queue of callers waiting for a seat.
#[async_trait]
pub trait SeatQueue: Send + Sync + 'static {
    /// Takes a ticket out of its pool's line; `false` when it was no longer
    /// there (it lapsed at `max_wait` and was written then). Callers behind
    /// it move up, and hear so if a seat is free for them.
    async fn leave_queue(
        &self,
        pool: &Pool,
        ticket: &Ticket,
        exit: QueueExit,
    ) -> Result<bool, StoreError>;

    /// Registers who hears that a seat of a pool may have freed: a session
    /// closed, or a waiting caller left while a seat was free. With the
    /// Redis store the news comes from the whole fleet. A seat that frees
    /// by time (an idle timeout, the end of a held seat) is not told: a
    /// waiter knows when that happens from its last answer.
    fn on_seat_freed(&self, listener: SeatListener);
}

/// Where a store keeps its [`SeatListener`] and tells it.
#[derive(Default)]
pub struct SeatNews {
    listener: parking_lot::Mutex<Option<SeatListener>>,
}

impl SeatNews {
    /// Replaces the listener.
    pub fn listen(&self, listener: SeatListener) {
        *self.listener.lock() = Some(listener);
    }

    /// Tells the listener that a seat of `pool` may have freed. Call it with
    /// no store lock held: the listener may call back into the store.
    pub fn tell(&self, pool: &str) {
        let listener = self.listener.lock().clone();
        if let Some(listener) = listener {
            listener(pool);
        }
    }
}

impl std::fmt::Debug for SeatNews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeatNews")
            .field("listening", &self.listener.lock().is_some())
            .finish()
    }
}
