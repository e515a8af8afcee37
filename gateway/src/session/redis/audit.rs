//! The audit stream queue: audit events are appended to a capped Redis
//! stream in the background, in batches, and dropped (the log has them)
//! rather than held while Redis is away.

use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use super::RedisStore;
use super::decode::{array, protocol, text};
use crate::session::{
    AuditCursor, AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditSink, PageBuilder, StoreError,
};

/// About how many audit events the stream keeps (`XADD … MAXLEN ~`).
const AUDIT_STREAM_CAP: u64 = 100_000;

/// Most audit events one script call appends.
const AUDIT_BATCH: usize = 256;

/// Most audit events waiting for the stream; more are dropped (the log has
/// them) rather than held while Redis is away.
const AUDIT_QUEUE_CAP: usize = 50_000;

/// How many stream entries one read asks Redis for.
const AUDIT_READ_CHUNK: usize = 500;

/// How long the first queued audit event waits for others to share its
/// script call: at thousands of new sessions a second, tens of events.
const AUDIT_DELAY: Duration = Duration::from_millis(10);

/// Audit events on their way to the stream. At most one flush runs at a
/// time: the first event waits [`AUDIT_DELAY`] for company, then the flush
/// sends everything queued, including what queued while its previous call
/// was in flight.
#[derive(Default)]
pub(super) struct AuditQueue {
    events: Vec<AuditEvent>,
    flushing: bool,
}

impl RedisStore {
    /// Appends queued audit events until none is left, up to
    /// [`AUDIT_BATCH`] per script call. A failed call drops its events (the
    /// log has them too) rather than holding memory while Redis is away.
    pub(super) async fn flush_audit(&self) {
        loop {
            let batch: Vec<AuditEvent> = {
                let mut queue = self.pending_audit.lock();
                if queue.events.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let take = queue.events.len().min(AUDIT_BATCH);
                queue.events.drain(..take).collect()
            };
            let mut args = vec![AUDIT_STREAM_CAP.to_string()];
            for event in &batch {
                args.push(event.len().to_string());
                for (field, value) in event {
                    args.push((*field).to_string());
                    args.push(value.clone());
                }
            }
            let key = format!("{{{}}}:audit", self.prefix);
            if let Err(error) = self.run(&self.scripts.audit, &[key], &args).await {
                tracing::debug!(%error, events = batch.len(), "audit events not appended to the store");
            }
        }
    }
}

#[async_trait]
impl AuditSink for RedisStore {
    async fn read_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let key = format!("{{{}}}:audit", self.prefix);
        let mut page = PageBuilder::new(query);
        // Exclusive bounds (`(id`): each chunk starts after the last entry
        // of the one before.
        let (script, mut from) = match (query.after, query.before) {
            (Some(after), _) => (&self.scripts.audit_oldest, format!("({after}")),
            (None, Some(before)) => (&self.scripts.audit_newest, format!("({before}")),
            (None, None) => (&self.scripts.audit_newest, "+".to_string()),
        };
        loop {
            let value = self
                .run(
                    script,
                    std::slice::from_ref(&key),
                    &[from, AUDIT_READ_CHUNK.to_string()],
                )
                .await?;
            let entries = array(&value)?;
            let mut last = None;
            for entry in entries {
                let record = stream_entry(entry)?;
                last = Some(record.id);
                if !page.offer(record) {
                    return Ok(page.finish());
                }
            }
            match last {
                Some(last) if entries.len() == AUDIT_READ_CHUNK => from = format!("({last}"),
                _ => return Ok(page.finish()),
            }
        }
    }

    fn queue_audit(&self, event: AuditEvent) {
        let start = {
            let mut queue = self.pending_audit.lock();
            if queue.events.len() >= AUDIT_QUEUE_CAP {
                tracing::debug!("audit queue full; event not appended to the store");
                return;
            }
            queue.events.push(event);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start
            && let Some(me) = self.me.upgrade()
            && !self.driver.spawn(async move {
                tokio::time::sleep(AUDIT_DELAY).await;
                me.flush_audit().await;
            })
        {
            self.pending_audit.lock().flushing = false;
        }
    }
}

/// One entry of an `XRANGE` / `XREVRANGE` reply: `[id, [field, value, …]]`.
fn stream_entry(entry: &Value) -> Result<AuditRecord, StoreError> {
    let parts = array(entry)?;
    let (Some(id), Some(fields)) = (parts.first(), parts.get(1)) else {
        return Err(protocol("audit stream entry"));
    };
    let id = AuditCursor::parse(&text(id)?).ok_or_else(|| protocol("audit stream id"))?;
    let flat = array(fields)?;
    let fields = flat
        .chunks(2)
        .map(|pair| match pair {
            [name, value] => Ok((text(name)?, text(value)?)),
            _ => Err(protocol("audit stream fields")),
        })
        .collect::<Result<_, _>>()?;
    Ok(AuditRecord { id, fields })
}
