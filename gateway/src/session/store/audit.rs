//! [`AuditSink`]: a store's own audit trail, beside the log every instance
//! writes anyway, and reading it back (the admin API's `GET /audit`).

use super::StoreError;
use crate::clock::UnixMillis;
use async_trait::async_trait;

/// One audit event for a store's trail: field names and values, in order.
pub type AuditEvent = Vec<(&'static str, String)>;

/// The position of an event in a trail: the time it was appended (ms) and a
/// sequence number within that millisecond, written `<ms>-<seq>` (the
/// spelling of Redis stream ids). Later events have greater positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor {
    /// When the event was appended.
    pub ms: UnixMillis,
    /// Its order among the events of that millisecond.
    pub seq: u64,
}

impl AuditCursor {
    /// Parses `<ms>-<seq>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One event read back from a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its position (pass it as a cursor to read on from there).
    pub id: AuditCursor,
    /// Its fields as they were queued, `event` first.
    pub fields: Vec<(String, String)>,
}

impl AuditRecord {
    /// The value of a field, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which events to read and in what order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Oldest first, only events after this position (following the trail);
    /// without it, newest first.
    pub after: Option<AuditCursor>,
    /// Newest first, only events before this position (the next page).
    pub before: Option<AuditCursor>,
    /// Only events of this pool.
    pub pool: Option<String>,
    /// Only events of this subject.
    pub subject: Option<String>,
    /// Only events of this kind (`session_opened`, `session_closed`, …).
    pub event: Option<String>,
    /// At most this many events.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether an event passes the query's filters.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let wants = |name: &str, wanted: &Option<String>| {
            wanted
                .as_deref()
                .is_none_or(|w| record.field(name) == Some(w))
        };
        wants("pool", &self.pool) && wants("subject", &self.subject) && wants("event", &self.event)
    }
}

/// One page of a trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// The events, in the query's order.
    pub events: Vec<AuditRecord>,
    /// Where to go on: the position to pass as `before` (newest first) or
    /// `after` (oldest first) for the next page. Newest first, `None` means
    /// the trail's oldest event was reached; oldest first it is always set
    /// (the newest position seen), so a follower can poll with it.
    pub next: Option<AuditCursor>,
}

/// How many events a store may look at to fill one page whose filters
/// match few: a page then ends early with a cursor to go on from, so one
/// call never walks a whole trail.
pub const AUDIT_SCAN_LIMIT: usize = 10_000;

/// Collects one page from a trail's events offered in the query's order.
#[derive(Debug)]
pub struct PageBuilder<'q> {
    query: &'q AuditQuery,
    page: AuditPage,
    scanned: usize,
    last_seen: Option<AuditCursor>,
    stopped: bool,
}

impl<'q> PageBuilder<'q> {
    /// An empty page for `query`.
    pub fn new(query: &'q AuditQuery) -> Self {
        Self {
            query,
            page: AuditPage::default(),
            scanned: 0,
            last_seen: None,
            stopped: false,
        }
    }

    /// Offers the next event; `false` once the page is full or has looked
    /// at [`AUDIT_SCAN_LIMIT`] events (offer no more then).
    pub fn offer(&mut self, record: AuditRecord) -> bool {
        self.scanned += 1;
        self.last_seen = Some(record.id);
        if self.query.matches(&record) {
            self.page.events.push(record);
        }
        self.stopped =
            self.page.events.len() >= self.query.limit.max(1) || self.scanned >= AUDIT_SCAN_LIMIT;
        !self.stopped
    }

    /// The page, once the events ran out or [`PageBuilder::offer`] said
    /// stop.
    pub fn finish(mut self) -> AuditPage {
        self.page.next = if self.query.after.is_some() {
            self.last_seen.or(self.query.after)
        } else if self.stopped {
            self.last_seen
        } else {
            None
        };
        self.page
    }
}

/// Where a store keeps audit events.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Queues an audit event for the store's own trail (the Redis store: a
    /// capped stream, written in the background; the memory store: the most
    /// recent events in memory).
    fn queue_audit(&self, _event: AuditEvent) {}

    /// Reads the trail: newest first, or oldest first after a position.
    /// A store without a trail answers an empty page.
    async fn read_audit(&self, _query: &AuditQuery) -> Result<AuditPage, StoreError> {
        Ok(AuditPage::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_order_and_print_like_stream_ids() {
        let a = AuditCursor::parse("1700000000250-0").expect("parses");
        let b = AuditCursor::parse("1700000000250-7").expect("parses");
        let c = AuditCursor::parse("1700000000251-0").expect("parses");
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000250-7");
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1 -2",
            "+1-2",
            "123456789012345678901-0",
        ] {
            assert_eq!(AuditCursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_query_filters_by_pool_subject_and_event() {
        let record = AuditRecord {
            id: AuditCursor { ms: 1, seq: 0 },
            fields: vec![
                ("event".into(), "session_closed".into()),
                ("pool".into(), "p".into()),
                ("subject".into(), "alice".into()),
            ],
        };
        let query = |pool: Option<&str>, subject: Option<&str>, event: Option<&str>| AuditQuery {
            pool: pool.map(Into::into),
            subject: subject.map(Into::into),
            event: event.map(Into::into),
            ..AuditQuery::default()
        };
        assert!(query(None, None, None).matches(&record));
        assert!(query(Some("p"), Some("alice"), Some("session_closed")).matches(&record));
        assert!(!query(Some("q"), None, None).matches(&record));
        assert!(!query(None, Some("bob"), None).matches(&record));
        assert!(!query(None, None, Some("session_opened")).matches(&record));
    }
}
