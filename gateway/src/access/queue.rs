//! Waiting for a seat (`[[pools]] queue`): a first call that finds no seat
//! is held, nothing forwarded, until the store gives its ticket a seat, the
//! pool's `max_wait` passes, or the client goes away.
//!
//! The line itself lives in the store (one line for the fleet). What this
//! instance keeps is who of its own requests waits, by ticket number, so
//! that only its earliest waiter per pool asks the store again, and only
//! when a seat may have freed: the store's news of a close anywhere in the
//! fleet, the time the earliest seat frees by expiry (from the last
//! answer), or, should news be lost, [`BACKSTOP`]. So the store's load grows
//! with the instances that have waiters, not with the waiters.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::admit::{Seated, Step, Waiting};
use super::{Access, Denial};
use crate::clock::whole_seconds;
use crate::licensing::PoolChoice;
use crate::session::{AdmitRequest, QueueExit, Refusal, SessionIdentity, Ticket};

/// How often the earliest waiter of a pool asks again with no news at all:
/// the bound on how long a lost message (a pubsub reconnect) delays a seat.
pub const BACKSTOP: Duration = Duration::from_secs(2);

/// This instance's waiting requests, per pool, by ticket number.
#[derive(Default)]
pub(super) struct Waitlists {
    pools: parking_lot::Mutex<HashMap<String, BTreeMap<u64, Arc<Notify>>>>,
}

impl Waitlists {
    /// Puts a waiting request in its pool's local line.
    fn join<'a>(&'a self, pool: &str, seq: u64) -> Place<'a> {
        let turn = Arc::new(Notify::new());
        self.pools
            .lock()
            .entry(pool.to_string())
            .or_default()
            .insert(seq, Arc::clone(&turn));
        Place {
            lists: self,
            pool: pool.to_string(),
            seq,
            turn,
        }
    }

    /// A seat of `pool` may have freed: its earliest waiter here asks again.
    pub(super) fn wake_front(&self, pool: &str) {
        if let Some((_, turn)) = self
            .pools
            .lock()
            .get(pool)
            .and_then(|line| line.first_key_value())
        {
            turn.notify_one();
        }
    }

    /// News may have been missed: every pool's earliest waiter asks again.
    pub(super) fn wake_every_front(&self) {
        for line in self.pools.lock().values() {
            if let Some((_, turn)) = line.first_key_value() {
                turn.notify_one();
            }
        }
    }
}

/// One waiting request's place in its pool's local line; leaving it (drop)
/// hands the turn to the next one.
struct Place<'a> {
    lists: &'a Waitlists,
    pool: String,
    seq: u64,
    turn: Arc<Notify>,
}

impl Place<'_> {
    /// Whether no request here waits ahead of this one.
    fn is_front(&self) -> bool {
        self.lists
            .pools
            .lock()
            .get(&self.pool)
            .and_then(|line| line.first_key_value())
            .is_some_and(|(seq, _)| *seq == self.seq)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut pools = self.lists.pools.lock();
        let Some(line) = pools.get_mut(&self.pool) else {
            return;
        };
        let was_front = line
            .first_key_value()
            .is_some_and(|(seq, _)| *seq == self.seq);
        line.remove(&self.seq);
        if line.is_empty() {
            pools.remove(&self.pool);
        } else if was_front && let Some((_, next)) = line.first_key_value() {
            // The next one asks at once: the seat this one got, or left,
            // may not have been the only one.
            next.notify_one();
        }
    }
}

/// How a wait ended, for the metrics.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Admitted,
    TimedOut,
    Left,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::TimedOut => "timed_out",
            Outcome::Left => "left",
            Outcome::Failed => "failed",
        }
    }
}

impl Access {
    /// Listens to the store's news of seats that may have freed, so waiting
    /// requests ask again only then.
    pub fn listen_for_seats(self: &Arc<Self>) {
        let access = Arc::downgrade(self);
        self.store.on_seat_freed(Arc::new(move |pool| {
            if let Some(access) = access.upgrade() {
                access.waitlists.wake_front(pool);
            }
        }));
    }

    /// Holds a request the store put in line until it gets a seat, `max_wait`
    /// passes (429 as from a full pool), or `gone` resolves (the client
    /// went away: it leaves the line at once).
    pub(super) async fn wait_for_seat(
        &self,
        base: &AdmitRequest<'_>,
        choice: &PoolChoice,
        identity: &SessionIdentity,
        first: Waiting,
        gone: impl Future<Output = ()>,
    ) -> Result<Seated, Denial> {
        let pool = &choice.pool;
        let max_wait = pool.queue.map_or(Duration::from_secs(10), |q| q.max_wait);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + max_wait;
        let ticket: Ticket = first.ticket;
        self.record_queued(&pool.name, identity, first.ahead);
        let place = self.waitlists.join(&pool.name, ticket.seq);
        let request = AdmitRequest {
            ticket: Some(&ticket),
            ..base.clone()
        };
        let mut retry = first.retry_after;
        tokio::pin!(gone);
        let outcome = loop {
            // Only the earliest waiter here asks without being woken: when
            // the earliest seat frees by time, or at the backstop.
            let timer = if place.is_front() {
                retry.map_or(BACKSTOP, |r| r.min(BACKSTOP))
            } else {
                max_wait
            };
            tokio::select! {
                () = &mut gone => {
                    self.leave(pool, &ticket, QueueExit::Left).await;
                    break Err((Outcome::Left, Denial::ClientLeft));
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.leave(pool, &ticket, QueueExit::TimedOut).await;
                    let refusal = Refusal::QueueTimeout {
                        limit: pool.limit,
                        retry_after: whole_seconds(retry.unwrap_or(pool.idle_timeout)),
                    };
                    self.record_refused(&pool.name, identity, &refusal);
                    break Err((
                        Outcome::TimedOut,
                        Denial::Refused { pool: pool.name.clone(), refusal },
                    ));
                }
                () = place.turn.notified() => {}
                () = tokio::time::sleep(timer) => {}
            }
            match self.admit_once(&request, choice, identity).await {
                Ok(Step::Seated(seated)) => break Ok(seated),
                Ok(Step::Waiting(next)) => retry = next.retry_after,
                Err(
                    denial @ Denial::Refused {
                        refusal: Refusal::QueueTimeout { .. },
                        ..
                    },
                ) => {
                    break Err((Outcome::TimedOut, denial));
                }
                Err(denial) => {
                    if matches!(denial, Denial::StoreUnavailable) {
                        self.leave(pool, &ticket, QueueExit::Left).await;
                    }
                    break Err((Outcome::Failed, denial));
                }
            }
        };
        drop(place);
        let label = match &outcome {
            Ok(_) => Outcome::Admitted,
            Err((outcome, _)) => *outcome,
        };
        self.record_queue_left(&pool.name, identity, label.as_str(), started.elapsed());
        outcome.map_err(|(_, denial)| denial)
    }

    /// Takes a ticket out of line; a failure is logged (the ticket then
    /// lapses at `max_wait` by itself).
    async fn leave(&self, pool: &crate::licensing::Pool, ticket: &Ticket, exit: QueueExit) {
        if let Err(error) = self
            .timed("leave_queue", self.store.leave_queue(pool, ticket, exit))
            .await
        {
            tracing::warn!(%error, pool = %pool.name, "could not leave the seat queue; the ticket lapses by itself");
        }
    }
}
