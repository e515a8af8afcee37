//! `GET /admin/v1/audit`: the store's audit trail, newest first in pages,
//! or oldest first after a position (what `session-gateway admin audit
//! --follow` polls with). Every event carries its `event` kind and, for
//! closes, the `reason` (idle, absolute, logout, backchannel, admin,
//! replaced, abandoned).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::api::{Api, json, page_limit, params};
use super::error::AdminError;
use crate::session::{AuditCursor, AuditQuery, AuditRecord};

/// Events per page of `GET /audit` without `limit`.
pub const DEFAULT_AUDIT_LIMIT: usize = 100;

/// `GET /audit`: one page of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    /// The events: newest first, or oldest first with `after`.
    pub events: Vec<AuditEntry>,
    /// Newest first: pass as `before` for the next (older) page; `null`
    /// once the oldest event kept was reached. With `after`: the newest
    /// position seen (or `after` itself when nothing was new); pass it as
    /// `after` to poll for what comes next.
    pub next_cursor: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its position in the trail (`<ms>-<seq>`).
    pub id: String,
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// Its fields: `event` and what that kind carries (`session_id`,
    /// `pool`, `subject`, `reason`, …).
    #[serde(flatten)]
    pub fields: BTreeMap<String, String>,
}

impl AuditEntry {
    fn of(record: AuditRecord) -> Self {
        Self {
            id: record.id.to_string(),
            time: crate::clock::rfc3339_ms(record.id.ms),
            fields: record
                .fields
                .into_iter()
                .filter(|(name, _)| name != "id" && name != "time")
                .collect(),
        }
    }
}

/// `GET /audit?after=&before=&pool=&subject=&event=&limit=`.
pub(super) async fn read(
    State(api): State<Arc<Api>>,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let query = parse(query.as_deref())?;
    let page = api.access.audit_trail(&query).await?;
    Ok(json(&AuditList {
        events: page.events.into_iter().map(AuditEntry::of).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

fn parse(query: Option<&str>) -> Result<AuditQuery, AdminError> {
    let mut params = params(
        query,
        &["after", "before", "pool", "subject", "event", "limit"],
    )?;
    let mut cursor = |name: &str| -> Result<Option<AuditCursor>, AdminError> {
        params
            .remove(name)
            .map(|text| {
                AuditCursor::parse(&text).ok_or_else(|| {
                    AdminError::bad_parameter(name, "not an event id (`<ms>-<seq>`) of this API")
                })
            })
            .transpose()
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    if after.is_some() && before.is_some() {
        return Err(AdminError::bad_parameter(
            "before",
            "give `after` (oldest first) or `before` (newest first), not both",
        ));
    }
    let limit = page_limit(params.remove("limit"), DEFAULT_AUDIT_LIMIT)?;
    Ok(AuditQuery {
        after,
        before,
        pool: params.remove("pool"),
        subject: params.remove("subject"),
        event: params.remove("event"),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_takes_one_direction_and_valid_ids() {
        let q = parse(Some("after=5-1&pool=p&event=session_closed&limit=7")).expect("parses");
        assert_eq!(q.after, Some(AuditCursor { ms: 5, seq: 1 }));
        assert_eq!(q.pool.as_deref(), Some("p"));
        assert_eq!(q.event.as_deref(), Some("session_closed"));
        assert_eq!(q.limit, 7);
        assert_eq!(parse(None).expect("parses").limit, DEFAULT_AUDIT_LIMIT);
        for (bad, parameter) in [
            ("after=1-0&before=2-0", "before"),
            ("after=yesterday", "after"),
            ("before=1", "before"),
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
        ] {
            match parse(Some(bad)) {
                Err(AdminError::BadParameter { parameter: p, .. }) => {
                    assert_eq!(p, parameter, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
