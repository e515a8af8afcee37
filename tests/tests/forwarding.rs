//! Client addresses and request ids end to end (`server.trusted_proxies`,
//! `server.request_id_header`): what the backend is told in
//! `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto`, the request id
//! it gets and the client gets back, and the access log.

use session_gateway_e2e::{Devkit, Gateway, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A call with a valid token and the given extra headers.
async fn call(gw: &Gateway, token: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    let mut request = gw.client().get(gw.url("/api/orders")).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = Reply::read(request.send().await?).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    Ok(r)
}

#[tokio::test]
async fn without_trusted_proxies_the_peer_is_the_client_and_claims_are_dropped()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = call(
        &gw,
        &kit.token("alice"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "chosen-by-the-client"),
        ],
    )
    .await?;
    assert_eq!(
        r.forwarded_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.forwarded_header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http")
    );
    assert_eq!(
        r.forwarded_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    let id = r.forwarded_header("x-request-id").unwrap_or_default();
    assert_eq!(id.len(), 32, "a new id: {id}");
    assert_ne!(id, "chosen-by-the-client");
    assert_eq!(
        r.header("x-request-id"),
        Some(id.as_str()),
        "returned to the client"
    );
    Ok(())
}

#[tokio::test]
async fn behind_trusted_proxies_the_first_untrusted_hop_is_the_client_and_the_id_is_kept()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set(
        "server",
        "trusted_proxies",
        vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string()],
    );
    let gw = Gateway::start(BIN, &config).await?;
    let r = call(
        &gw,
        &kit.token("alice"),
        &[
            // 198.51.100.1 is what the client claimed; 203.0.113.9 is what
            // the first trusted proxy (10.1.1.1) saw.
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "lb-req-4711"),
        ],
    )
    .await?;
    assert_eq!(
        r.forwarded_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 10.1.1.1, 127.0.0.1")
    );
    assert_eq!(
        r.forwarded_header("forwarded").as_deref(),
        Some("for=203.0.113.9;proto=https, for=10.1.1.1, for=127.0.0.1")
    );
    assert_eq!(
        r.forwarded_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.forwarded_header("x-request-id").as_deref(),
        Some("lb-req-4711")
    );
    assert_eq!(r.header("x-request-id"), Some("lb-req-4711"));

    // The access log names the client and the request id.
    let line = gw
        .eventually("the access log line of the request", || async {
            Ok(gw
                .logs()
                .lines()
                .find(|l| l.contains("lb-req-4711") && l.contains("access"))
                .map(str::to_string))
        })
        .await?;
    assert!(line.contains("203.0.113.9"), "{line}");
    Ok(())
}

/// The gateway's own refusals carry the request id too.
#[tokio::test]
async fn a_refusal_carries_the_request_id() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = Reply::read(gw.client().get(gw.url("/api/orders")).send().await?).await?;
    assert_eq!(r.status, 401);
    assert!(r.header("x-request-id").is_some_and(|id| id.len() == 32));
    Ok(())
}

/// A caller's `traceparent` is continued: the backend gets the same trace
/// with the gateway's span as parent, and the access log and the audit line
/// of the session it opened carry the trace id. Without one, a trace starts.
#[tokio::test]
async fn a_traceparent_is_continued_to_the_backend_and_into_the_log() -> anyhow::Result<()> {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = call(
        &gw,
        &kit.token("alice"),
        &[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))],
    )
    .await?;
    let sent = r.forwarded_header("traceparent").unwrap_or_default();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{sent}"
    );
    assert_eq!(parts[2].len(), 16);
    assert_ne!(parts[2], "00f067aa0ba902b7", "the gateway's own span");

    let lines = gw
        .eventually("the access and audit lines of the request", || async {
            let logs = gw.logs();
            let with_trace: Vec<String> = logs
                .lines()
                .filter(|l| l.contains(TRACE))
                .map(str::to_string)
                .collect();
            let access = with_trace
                .iter()
                .any(|l| l.contains("\"target\":\"access\""));
            let audit = with_trace.iter().any(|l| l.contains("session_opened"));
            Ok((access && audit).then_some(with_trace))
        })
        .await?;
    assert!(lines.iter().all(|l| l.contains(parts[2])), "{lines:?}");

    // No traceparent: a new, unsampled trace.
    let r = call(&gw, &kit.token("bob"), &[]).await?;
    let started = r.forwarded_header("traceparent").unwrap_or_default();
    assert!(
        started.starts_with("00-") && started.ends_with("-00"),
        "{started}"
    );
    assert!(!started.contains(TRACE));
    Ok(())
}
