//! The audit stream queue: audit events are appended to a capped Redis
//! stream in the background, in batches, and dropped (the log has them)
//! rather than held while Redis is away.

use std::time::Duration;

use super::RedisStore;
use crate::session::{AuditEvent, AuditSink};

/// About how many audit events the stream keeps (`XADD … MAXLEN ~`).
const AUDIT_STREAM_CAP: u64 = 100_000;

/// Most audit events one script call appends.
const AUDIT_BATCH: usize = 256;

/// Most audit events waiting for the stream; more are dropped (the log has
/// them) rather than held while Redis is away.
const AUDIT_QUEUE_CAP: usize = 50_000;

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

impl AuditSink for RedisStore {
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
