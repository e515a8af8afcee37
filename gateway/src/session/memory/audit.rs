//! The memory store's audit trail: the most recent events, in process, so
//! the admin API reads the same trail from either store (the log keeps
//! every event; this ring only the last [`MEMORY_AUDIT_CAP`]).

use std::collections::VecDeque;

use async_trait::async_trait;

use super::MemoryStore;
use crate::clock::UnixMillis;
use crate::session::{
    AuditCursor, AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditSink, PageBuilder, StoreError,
};

/// How many audit events the memory store keeps.
pub const MEMORY_AUDIT_CAP: usize = 10_000;

/// The most recent audit events, oldest first.
#[derive(Debug, Default)]
pub(super) struct AuditRing {
    events: VecDeque<AuditRecord>,
    last: Option<AuditCursor>,
}

impl AuditRing {
    /// Appends an event at `now`; positions only grow, even if the clock
    /// steps back.
    fn push(&mut self, now: UnixMillis, event: AuditEvent) {
        let id = match self.last {
            Some(last) if now <= last.ms => AuditCursor {
                ms: last.ms,
                seq: last.seq + 1,
            },
            _ => AuditCursor { ms: now, seq: 0 },
        };
        self.last = Some(id);
        if self.events.len() >= MEMORY_AUDIT_CAP {
            self.events.pop_front();
        }
        self.events.push_back(AuditRecord {
            id,
            fields: event
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        });
    }

    fn read(&self, query: &AuditQuery) -> AuditPage {
        let mut page = PageBuilder::new(query);
        if let Some(after) = query.after {
            let start = self.events.partition_point(|e| e.id <= after);
            for record in self.events.range(start..) {
                if !page.offer(record.clone()) {
                    break;
                }
            }
        } else {
            let end = query.before.map_or(self.events.len(), |before| {
                self.events.partition_point(|e| e.id < before)
            });
            for record in self.events.range(..end).rev() {
                if !page.offer(record.clone()) {
                    break;
                }
            }
        }
        page.finish()
    }
}

#[async_trait]
impl AuditSink for MemoryStore {
    fn queue_audit(&self, event: AuditEvent) {
        let now = self.clock.now_ms();
        self.audit.lock().push(now, event);
    }

    async fn read_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(self.audit.lock().read(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(events: usize) -> AuditRing {
        let mut ring = AuditRing::default();
        for n in 0..events {
            let pool = if n % 2 == 0 { "even" } else { "odd" };
            ring.push(
                1_000 + (n as u64 / 3),
                vec![
                    ("event", "e".into()),
                    ("pool", pool.into()),
                    ("n", n.to_string()),
                ],
            );
        }
        ring
    }

    fn numbers(page: &AuditPage) -> Vec<String> {
        page.events
            .iter()
            .map(|e| e.field("n").unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn newest_first_pages_walk_back_to_the_oldest() {
        let ring = ring(7);
        let mut query = AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        };
        let first = ring.read(&query);
        assert_eq!(numbers(&first), ["6", "5", "4"]);
        query.before = first.next;
        let second = ring.read(&query);
        assert_eq!(numbers(&second), ["3", "2", "1"]);
        query.before = second.next;
        let last = ring.read(&query);
        assert_eq!(numbers(&last), ["0"]);
        assert_eq!(last.next, None);
    }

    #[test]
    fn following_reads_oldest_first_after_a_position_and_filters() {
        let mut ring = ring(6);
        let query = AuditQuery {
            after: Some(AuditCursor { ms: 1_000, seq: 2 }),
            pool: Some("odd".into()),
            limit: 10,
            ..AuditQuery::default()
        };
        let page = ring.read(&query);
        assert_eq!(numbers(&page), ["3", "5"]);
        let seen = page.next.expect("a follower always gets a position");
        // Nothing new: the same position back.
        let idle = ring.read(&AuditQuery {
            after: Some(seen),
            ..query.clone()
        });
        assert!(idle.events.is_empty());
        assert_eq!(idle.next, Some(seen));
        // A clock that steps back still appends after the last position.
        ring.push(
            10,
            vec![
                ("event", "e".into()),
                ("pool", "odd".into()),
                ("n", "6".into()),
            ],
        );
        let next = ring.read(&AuditQuery {
            after: Some(seen),
            ..query
        });
        assert_eq!(numbers(&next), ["6"]);
        assert!(next.events[0].id > seen);
    }

    #[test]
    fn the_ring_keeps_the_most_recent_events() {
        let ring = ring(MEMORY_AUDIT_CAP + 5);
        assert_eq!(ring.events.len(), MEMORY_AUDIT_CAP);
        assert_eq!(ring.events.front().and_then(|e| e.field("n")), Some("5"));
    }
}
