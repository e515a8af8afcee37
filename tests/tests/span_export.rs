//! Span export over OTLP (`[tracing] otlp_endpoint`): a real gateway sends
//! its request spans (OTLP/HTTP, JSON) to a real HTTP server standing in for
//! the collector (the devkit backend, which records what it is sent). The
//! exported span has the trace id of the caller's `traceparent`, the
//! caller's span as its parent, and the span id the backend got in its own
//! `traceparent`; an unsampled trace is not exported; a trace the gateway
//! starts is sampled and exported.

use serde_json::Value;
use session_gateway_e2e::{Await, Backend, Devkit, Gateway, eventually, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// Every span of an OTLP/JSON export body.
fn spans(body: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for resource in body["resourceSpans"].as_array().into_iter().flatten() {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            out.extend(scope["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

/// The attribute `key` of a span, as a string or an integer.
fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| match &a["value"] {
            Value::Object(v) => v
                .get("stringValue")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    v.get("intValue")
                        .map(|i| i.to_string().trim_matches('"').to_string())
                })
                .unwrap_or_default(),
            _ => String::new(),
        })
}

#[tokio::test]
async fn request_spans_reach_the_collector_with_the_ids_of_the_trace() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let collector =
        Backend::start(format!("127.0.0.1:{}", free_port()).parse()?, "collector").await?;
    let mut config = kit.config();
    config.set(
        "tracing",
        "otlp_endpoint",
        format!("{}/v1/traces", collector.url()),
    );
    // The SDK's batch delay, shortened so the test does not wait 5 s.
    let gw = Gateway::start_with_env(
        BIN,
        &config,
        Await::Ready,
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    )
    .await?;
    let call = |traceparent: Option<String>| {
        let mut request = gw
            .client()
            .get(gw.url("/api/x"))
            .bearer_auth(kit.token("alice"));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        async move { session_gateway_e2e::Reply::read(request.send().await?).await }
    };
    let last_body = || {
        collector
            .last_request()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .unwrap_or(Value::Null)
    };

    // An unsampled trace, then a sampled one.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = call(Some(format!("00-{unsampled}-b7ad6b7169203331-00"))).await?;
    assert_eq!(reply.status, 200);
    let reply = call(Some(format!("00-{sampled}-00f067aa0ba902b7-01"))).await?;
    assert_eq!(reply.status, 200);
    let forwarded = reply
        .forwarded_header("traceparent")
        .ok_or_else(|| anyhow::anyhow!("no traceparent reached the backend"))?;
    let gateway_span = forwarded.split('-').nth(2).unwrap_or_default().to_string();

    let span = eventually("the sampled span at the collector", || async {
        Ok(spans(&last_body())
            .into_iter()
            .find(|s| s["traceId"] == sampled))
    })
    .await?;
    assert_eq!(span["spanId"], gateway_span.as_str(), "{span}");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7", "{span}");
    assert_eq!(span["kind"], 2, "a server span: {span}");
    assert_eq!(attribute(&span, "http.route").as_deref(), Some("api"));
    assert_eq!(
        attribute(&span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(&span, "session_gateway.pool").as_deref(),
        Some("default")
    );
    let request = collector.last_request().expect("recorded");
    assert_eq!(request.path, "/v1/traces");
    assert!(
        !String::from_utf8_lossy(&request.body).contains(unsampled),
        "an unsampled trace was exported"
    );
    assert_eq!(
        collector.requests(),
        1,
        "one export, of the sampled span only"
    );
    let service = last_body()["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["key"] == "service.name").cloned());
    assert_eq!(
        service.map(|s| s["value"]["stringValue"].clone()),
        Some(Value::from("session-gateway"))
    );

    // A trace the gateway starts is sampled, and exported.
    let reply = call(None).await?;
    let started = reply
        .forwarded_header("traceparent")
        .ok_or_else(|| anyhow::anyhow!("no traceparent reached the backend"))?;
    assert!(started.ends_with("-01"), "{started}");
    let trace = started.split('-').nth(1).unwrap_or_default().to_string();
    eventually("the started trace at the collector", || async {
        Ok(spans(&last_body())
            .into_iter()
            .find(|s| s["traceId"] == trace.as_str()))
    })
    .await?;
    Ok(())
}
