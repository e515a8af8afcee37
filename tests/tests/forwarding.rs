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
