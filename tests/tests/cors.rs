//! CORS on a `session` route (`[routes.cors]`), end to end with a real
//! gateway, issuer and backend: preflights are answered by the gateway
//! without a token and open no session; responses of allowed origins are
//! marked, the gateway's own refusals included; other origins get nothing.

use reqwest::Method;
use session_gateway_e2e::{Devkit, Gateway, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const ORIGIN: &str = "https://erp-web.example.com";

/// The standard configuration, route `api` (session) with a CORS policy and
/// a pool of one seat.
async fn start(kit: &Devkit) -> anyhow::Result<Gateway> {
    let mut config = kit.config();
    let cors: toml::Table = toml::from_str(&format!(
        r#"
        allow_origins = ["{ORIGIN}"]
        allow_methods = ["GET", "POST"]
        expose_headers = ["retry-after"]
        max_age = "5m"
        "#
    ))?;
    config
        .item("routes", 0)
        .insert("cors".into(), toml::Value::Table(cors));
    config.pool(0).insert("limit".into(), 1.into());
    Gateway::start(BIN, &config).await
}

async fn send(
    gw: &Gateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut request = gw.client().request(method, gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request.send().await?).await
}

#[tokio::test]
async fn a_preflight_is_answered_without_a_token_and_opens_no_session() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start(&kit).await?;
    let r = send(
        &gw,
        Method::OPTIONS,
        "/api/orders",
        &[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
    )
    .await?;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("300"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert!(r.body.is_empty());
    assert_eq!(
        gw.metric("session_gateway_seats_in_use{pool=\"default\"}")
            .await?,
        Some(0.0),
        "asking opened no session"
    );
    assert_eq!(kit.backend.requests(), 0, "nothing reached the backend");
    Ok(())
}

#[tokio::test]
async fn preflights_outside_the_policy_are_refused_by_name() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start(&kit).await?;
    for (origin, method, headers, named) in [
        ("https://evil.example", "GET", "", "https://evil.example"),
        (ORIGIN, "DELETE", "", "DELETE"),
        (ORIGIN, "GET", "x-debug", "x-debug"),
    ] {
        let r = send(
            &gw,
            Method::OPTIONS,
            "/api/orders",
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", headers),
            ],
        )
        .await?;
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
        let problem = r.json();
        assert_eq!(problem["type"], "urn:session-gateway:error:cors_refused");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(named)),
            "{problem}"
        );
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    assert_eq!(kit.backend.requests(), 0);
    Ok(())
}

#[tokio::test]
async fn responses_to_an_allowed_origin_are_marked_refusals_included() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start(&kit).await?;
    let alice = format!("Bearer {}", kit.token("alice"));
    let r = send(
        &gw,
        Method::GET,
        "/api/orders",
        &[("origin", ORIGIN), ("authorization", &alice)],
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("retry-after")
    );

    // The pool's only seat is Alice's: Bob's refusal is readable by the page.
    let bob = format!("Bearer {}", kit.token("bob"));
    let r = send(
        &gw,
        Method::GET,
        "/api/orders",
        &[("origin", ORIGIN), ("authorization", &bob)],
    )
    .await?;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(r.header("retry-after").is_some());

    // Another origin gets its answer without CORS headers.
    let r = send(
        &gw,
        Method::GET,
        "/api/orders",
        &[
            ("origin", "https://evil.example"),
            ("authorization", &alice),
        ],
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    Ok(())
}

/// Without a policy a route keeps answering a preflight like any request
/// without a token.
#[tokio::test]
async fn a_route_without_a_policy_treats_a_preflight_as_a_request() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = send(
        &gw,
        Method::OPTIONS,
        "/api/orders",
        &[("origin", ORIGIN), ("access-control-request-method", "GET")],
    )
    .await?;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), None);
    Ok(())
}
