//! Export of the gateway's spans over OTLP (`[tracing] otlp_endpoint`, off
//! by default): one server span per request, with the very trace and span
//! ids the access log shows and the backend gets in `traceparent`, so the
//! collector's trace, the log line and the backend's spans line up.
//!
//! Only sampled traces are exported: a caller's `traceparent` with the
//! sampled flag, or a trace the gateway starts (which it then marks
//! sampled). Spans are batched and sent from the exporter's own thread
//! (OTLP/HTTP, JSON bodies); a collector that is down costs the request
//! path nothing, and the spans of the last batch may be lost at shutdown.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::OtlpConfig;

/// What one request's span says.
#[derive(Debug, Clone)]
pub struct RequestSpan<'a> {
    /// The trace, as 32 hex digits.
    pub trace_id: &'a str,
    /// The gateway's span, 16 hex digits.
    pub span_id: &'a str,
    /// The caller's span, if the trace was continued.
    pub parent_id: Option<&'a str>,
    /// Whether the trace is sampled (flags `01`).
    pub sampled: bool,
    /// How long the request took, to its end now.
    pub elapsed: Duration,
    /// `GET`, …
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The route's name (empty: none matched).
    pub route: &'a str,
    /// The response status (0: none went out).
    pub status: u16,
    /// `forwarded`, or the error code of a refusal.
    pub outcome: &'a str,
    /// The pool of the request's session, if any.
    pub pool: Option<&'a str>,
}

/// The exporter and its tracer.
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExport").finish_non_exhaustive()
    }
}

impl SpanExport {
    /// An exporter to the configured collector (nothing is sent yet).
    pub fn new(config: &OtlpConfig) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(config.endpoint.as_str())
            .with_timeout(config.timeout)
            .build()
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("session-gateway");
        Ok(Self { provider, tracer })
    }

    /// Records one request's span, if its trace is sampled.
    pub fn record(&self, span: &RequestSpan<'_>) {
        if !span.sampled {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(span.trace_id),
            SpanId::from_hex(span.span_id),
        ) else {
            return;
        };
        let parent = match span.parent_id.and_then(|p| SpanId::from_hex(p).ok()) {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let end = SystemTime::now();
        let start = end.checked_sub(span.elapsed).unwrap_or(end);
        let name = if span.route.is_empty() {
            span.method.to_string()
        } else {
            format!("{} {}", span.method, span.route)
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", span.method.to_string()),
            KeyValue::new("url.path", span.path.to_string()),
            KeyValue::new("session_gateway.outcome", span.outcome.to_string()),
        ];
        if !span.route.is_empty() {
            attributes.push(KeyValue::new("http.route", span.route.to_string()));
        }
        if span.status > 0 {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(span.status),
            ));
        }
        if let Some(pool) = span.pool {
            attributes.push(KeyValue::new("session_gateway.pool", pool.to_string()));
        }
        let builder = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_trace_id(trace_id)
            .with_span_id(span_id)
            .with_start_time(start)
            .with_attributes(attributes);
        let mut exported = self.tracer.build_with_context(builder, &parent);
        if span.status >= 500 {
            exported.set_status(Status::error(span.outcome.to_string()));
        }
        exported.end_with_timestamp(end);
    }
}

impl Drop for SpanExport {
    fn drop(&mut self) {
        // Sends what is still batched.
        let _ = self.provider.shutdown();
    }
}
