//! [`AuditSink`]: a store's own audit trail, where it has one, beside the
//! log every instance writes anyway.

/// One audit event for a store's trail: field names and values, in order.
pub type AuditEvent = Vec<(&'static str, String)>;

/// Where a store keeps audit events.
pub trait AuditSink: Send + Sync + 'static {
    /// Queues an audit event for the store's own trail, where it has one
    /// (the Redis store: a capped stream, written in the background). The
    /// memory store keeps none: its audit trail is the log.
    fn queue_audit(&self, _event: AuditEvent) {}
}
