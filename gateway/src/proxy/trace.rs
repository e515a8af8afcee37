//! W3C Trace Context (`traceparent`, Trace Context Level 1): the gateway is
//! one hop of the caller's trace. A valid `traceparent` is continued with a
//! span id of the gateway's own; a missing or malformed one starts a new
//! trace. The backend gets the gateway's `traceparent` (its span as the
//! parent), `tracestate` passes untouched, and the access log carries the
//! trace and span ids, so a backend's trace and the gateway's log line meet.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The gateway's hop of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHop {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The gateway's span: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span, when the trace was continued.
    pub parent_id: Option<String>,
    /// The trace flags (2 hex digits; `01` = sampled).
    pub flags: String,
}

impl TraceHop {
    /// Continues the request's trace, or starts one, sampled when the
    /// gateway exports spans (`sample_new`).
    pub fn of(headers: &HeaderMap, sample_new: bool) -> Self {
        let span_id = random_hex(8);
        match headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
        {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
                flags,
            },
            // A new trace. Without span export, not sampled: the gateway
            // records no spans then, so it leaves the sampling decision to
            // those who do.
            None => Self {
                trace_id: random_hex(16),
                span_id,
                parent_id: None,
                flags: if sample_new { "01" } else { "00" }.into(),
            },
        }
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn is_sampled(&self) -> bool {
        u8::from_str_radix(&self.flags, 16).is_ok_and(|f| f & 1 == 1)
    }

    /// The `traceparent` for the backend: the gateway's span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut text = String::with_capacity(55);
        for (i, part) in ["00", &self.trace_id, &self.span_id, &self.flags]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                text.push('-');
            }
            text.push_str(part);
        }
        // Hex digits and dashes only: always a valid value.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// `version-traceid-parentid-flags`, version `00` exactly and any later
/// version by its first four fields (the specification's rule for versions
/// it does not know); all-zero ids are invalid.
fn parse(text: &str) -> Option<(String, String, String)> {
    let text = text.trim();
    let mut parts = text.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| {
        (
            trace_id.to_string(),
            parent_id.to_string(),
            flags.to_string(),
        )
    })
}

/// `bytes` (at most 16) random bytes as lowercase hex, never all zero.
/// Trace ids need to be unique, not secret (W3C Trace Context §6).
fn random_hex(bytes: usize) -> String {
    let random = fastrand::u128(1..).to_le_bytes();
    super::forwarded::hex(&random[..bytes.min(16)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(traceparent: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_str(traceparent).expect("value"),
        );
        h
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_the_gateways_span() {
        let hop = TraceHop::of(
            &with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            false,
        );
        assert_eq!(hop.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hop.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(hop.flags, "01");
        assert_eq!(hop.span_id.len(), 16);
        assert_ne!(hop.span_id, "00f067aa0ba902b7");
        assert_eq!(
            hop.traceparent(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", hop.span_id).as_str()
        );
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let hop = TraceHop::of(&with(bad), false);
            assert_eq!(hop.parent_id, None, "{bad:?}");
            assert_eq!(hop.trace_id.len(), 32);
            assert_ne!(hop.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(hop.flags, "00");
        }
        // A later version is read by its first four fields.
        let hop = TraceHop::of(
            &with("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
            false,
        );
        assert_eq!(hop.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(TraceHop::of(&HeaderMap::new(), false).parent_id, None);
        // With span export the gateway samples the traces it starts.
        let started = TraceHop::of(&HeaderMap::new(), true);
        assert!(started.is_sampled());
        assert!(!TraceHop::of(&HeaderMap::new(), false).is_sampled());
    }
}
