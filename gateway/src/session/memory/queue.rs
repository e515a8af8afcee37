//! A pool's line of callers waiting for a seat, as the memory store keeps
//! it under its lock: first come first served by ticket number, each ticket
//! lapsing `max_wait` after it was handed out.

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::UnixMillis;
use crate::session::Ticket;

/// The waiting callers of one pool.
#[derive(Debug, Default)]
pub(super) struct Waitline {
    /// The last ticket number handed out.
    last: u64,
    /// Ticket number → id, in line order.
    line: BTreeMap<u64, String>,
    /// Ticket id → (number, lapse).
    tickets: BTreeMap<String, (u64, UnixMillis)>,
    /// Every ticket's `(lapse, number)`, earliest first.
    lapses: BTreeSet<(UnixMillis, u64)>,
}

impl Waitline {
    /// Callers waiting.
    pub(super) fn len(&self) -> u32 {
        u32::try_from(self.line.len()).unwrap_or(u32::MAX)
    }

    /// Callers waiting ahead of a ticket, or `None` if it is not in line.
    pub(super) fn ahead_of(&self, id: &str) -> Option<u32> {
        let (number, _) = self.tickets.get(id)?;
        Some(u32::try_from(self.line.range(..number).count()).unwrap_or(u32::MAX))
    }

    /// Puts a new caller at the end of the line, its ticket lapsing at
    /// `lapse`.
    pub(super) fn push(&mut self, lapse: UnixMillis) -> Ticket {
        self.last += 1;
        let id = crate::session::new_session_id();
        self.line.insert(self.last, id.clone());
        self.tickets.insert(id.clone(), (self.last, lapse));
        self.lapses.insert((lapse, self.last));
        Ticket { id, seq: self.last }
    }

    /// Takes a ticket out of line; whether it was there.
    pub(super) fn remove(&mut self, id: &str) -> bool {
        let Some((number, lapse)) = self.tickets.remove(id) else {
            return false;
        };
        self.line.remove(&number);
        self.lapses.remove(&(lapse, number));
        true
    }

    /// Drops the tickets lapsed by `now` and returns when each lapsed.
    pub(super) fn purge(&mut self, now: UnixMillis) -> Vec<UnixMillis> {
        let mut lapsed = Vec::new();
        while let Some(&(lapse, number)) = self.lapses.first() {
            if lapse > now {
                break;
            }
            self.lapses.pop_first();
            if let Some(id) = self.line.remove(&number) {
                self.tickets.remove(&id);
            }
            lapsed.push(lapse);
        }
        lapsed
    }

    /// Callers waiting at `now` (lapsed tickets not counted).
    pub(super) fn waiting_at(&self, now: UnixMillis) -> u32 {
        let lapsed = self.lapses.iter().take_while(|(l, _)| *l <= now).count();
        u32::try_from(self.line.len() - lapsed).unwrap_or(u32::MAX)
    }
}
