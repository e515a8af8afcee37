//! Every rejection class of the HTTP contract (docs/design.md §6), end to end:
//! the documented status, problem `type` and headers, and nothing forwarded.
//! Forged tokens, smuggling shapes and spoofed headers are in `attacks.rs`.

use jsonwebtoken::Algorithm;
use serde_json::json;
use session_gateway_e2e::{
    Await, ConfigDoc, Devkit, Gateway, Issuer, TokenRequest, free_port, raw_exchange,
};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// Asserts a 401 `invalid_token` whose description mentions `why`, and that
/// the backend saw nothing.
async fn assert_invalid(gw: &Gateway, kit: &Devkit, token: &str, why: &str) -> anyhow::Result<()> {
    let before = kit.backend.requests();
    let r = gw.get("/api/x", token).await?;
    assert_eq!(r.status, 401, "{why}: {:?}", r.json());
    assert_eq!(r.problem(), "invalid_token", "{why}");
    let challenge = r.header("www-authenticate").unwrap_or_default().to_string();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{why}: {challenge}"
    );
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(why),
        "expected `{why}` in {:?}",
        r.json()
    );
    assert_eq!(kit.backend.requests(), before, "{why}: forwarded");
    Ok(())
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_get_the_bare_challenge() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = gw.get_anonymous("/api/x").await?;
    assert_eq!(r.status, 401);
    assert_eq!(r.problem(), "missing_token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"erp\""));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let basic = gw
        .client()
        .get(gw.url("/api/x"))
        .basic_auth("user", Some("pw"))
        .send()
        .await?;
    assert_eq!(basic.status().as_u16(), 401);
    assert_eq!(kit.backend.requests(), 0);
    Ok(())
}

#[tokio::test]
async fn tokens_that_fail_verification_are_refused() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set("tokens", "max_lifetime", "15m");
    let gw = Gateway::start(BIN, &config).await?;

    assert_invalid(&gw, &kit, "not-a-jwt", "malformed").await?;

    // Alice's header and claims with Bob's signature.
    let alice = kit.token("alice");
    let bob = kit.token("bob");
    let (alice_signed, _) = alice.rsplit_once('.').unwrap_or_default();
    let (_, bob_signature) = bob.rsplit_once('.').unwrap_or_default();
    assert_invalid(
        &gw,
        &kit,
        &format!("{alice_signed}.{bob_signature}"),
        "invalid signature",
    )
    .await?;

    // A token of an issuer the gateway does not trust.
    let stranger = Issuer::start("127.0.0.1:0".parse()?).await?;
    assert_invalid(
        &gw,
        &kit,
        &stranger.mint(&TokenRequest::new("alice")),
        "untrusted issuer",
    )
    .await?;

    let wrong_aud = kit.mint(&TokenRequest::new("alice").audience("payroll"));
    assert_invalid(&gw, &kit, &wrong_aud, "wrong audience").await?;

    let expired = kit.mint(&TokenRequest::new("alice").expires_in(-120));
    assert_invalid(&gw, &kit, &expired, "token expired").await?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let not_yet = kit.mint(&TokenRequest::new("alice").claim("nbf", now + 3600));
    assert_invalid(&gw, &kit, &not_yet, "not yet valid").await?;

    let future = kit.mint(
        &TokenRequest::new("alice")
            .claim("iat", now + 3600)
            .expires_in(7200),
    );
    assert_invalid(&gw, &kit, &future, "issued in the future").await?;

    let long = kit.mint(&TokenRequest::new("alice").expires_in(3600));
    assert_invalid(&gw, &kit, &long, "lifetime too long").await?;

    let no_exp = kit.mint(&TokenRequest::new("alice").without_claim("exp"));
    assert_invalid(&gw, &kit, &no_exp, "exp").await?;

    let no_sub = kit.mint(&TokenRequest::new("alice").without_claim("sub"));
    assert_invalid(&gw, &kit, &no_sub, "sub").await?;

    // Nothing of this opened a session.
    assert_eq!(gw.session(&alice).await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn unknown_keys_trigger_one_rate_limited_refetch() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let fetches = kit.issuer.jwks_fetches();
    let claims = kit.issuer.claims(&TokenRequest::new("alice"));
    for i in 0..10 {
        let mut header = kit.issuer.header(Algorithm::RS256);
        header.kid = Some(format!("made-up-{i}"));
        let token = kit.issuer.sign_raw(&header, &claims);
        assert_invalid(&gw, &kit, &token, "unknown signing key").await?;
    }
    let extra = kit.issuer.jwks_fetches() - fetches;
    assert!(
        extra <= 1,
        "{extra} JWKS fetches for unknown kids (rate limit is one per minute)"
    );
    Ok(())
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_at_once() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config
        .item("issuers", 0)
        .insert("jwks_min_refetch".into(), "1s".into());
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let kid = kit.issuer.rotate().await?;
    let token = kit.token("bob");
    assert_eq!(
        kit.issuer.header(Algorithm::RS256).kid.as_deref(),
        Some(kid.as_str())
    );
    let r = gw.get("/api/x", &token).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    Ok(())
}

#[tokio::test]
async fn scopes_pools_and_subject_caps_refuse_with_their_own_codes() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.clear("pools");
    config.push(
        "pools",
        r#"
name = "web"
limit = 5
match = { claim = "client_id", any_of = ["erp-web", "erp-desktop"] }
per_subject_limit = 1
on_subject_limit = "deny"
"#,
    );
    config.push(
        "routes",
        r#"
name = "admin-api"
path_prefix = "/admin-api/"
upstream = "erp"
policy = "session"
required_scopes = ["erp.admin"]
"#,
    );
    let gw = Gateway::start(BIN, &config).await?;

    let r = gw.get("/admin-api/x", &kit.token("alice")).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.problem(), "insufficient_scope");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"erp.admin\""), "{challenge}");

    let batch = kit.mint(&TokenRequest::new("robot").client_id("batch"));
    let r = gw.get("/api/x", &batch).await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.problem(), "no_pool");

    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let desktop = kit.mint(&TokenRequest::new("alice").client_id("erp-desktop"));
    let r = gw.get("/api/x", &desktop).await?;
    assert_eq!(r.status, 429);
    assert_eq!(r.problem(), "session_limit");
    assert!(r.header("retry-after").is_some());
    assert_eq!(kit.backend.requests(), 1);
    Ok(())
}

#[tokio::test]
async fn routing_errors_and_unsafe_paths() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let r = gw.get("/nowhere", &kit.token("alice")).await?;
    assert_eq!(r.status, 404);
    assert_eq!(r.problem(), "not_found");

    for path in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/public/./x",
        "/public/..;/api/x",
        "//api/x",
        "/%61pi/x",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: erp\r\n\r\n");
        let responses = raw_exchange(gw.addr, &[request.as_bytes()]).await?;
        assert!(
            responses[0].starts_with("HTTP/1.1 400"),
            "{path}: {}",
            responses[0]
        );
        assert!(responses[0].contains("bad_request"), "{path}");
    }
    assert_eq!(kit.backend.requests(), 0);
    Ok(())
}

#[tokio::test]
async fn rejections_keep_the_connection_alive() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let one = "GET /api/x HTTP/1.1\r\nHost: erp\r\n\r\n";
    let responses =
        raw_exchange(gw.addr, &[one.as_bytes(), one.as_bytes(), one.as_bytes()]).await?;
    assert_eq!(responses.len(), 3);
    assert!(responses.iter().all(|r| r.starts_with("HTTP/1.1 401")));
    Ok(())
}

#[tokio::test]
async fn upstream_failures_are_problems() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    let closed = format!("127.0.0.1:{}", free_port());
    config.push(
        "upstreams",
        &format!("name = \"down\"\nservers = [\"{closed}\"]\nconnect_timeout = \"1s\"\n"),
    );
    config.push(
        "upstreams",
        &format!(
            "name = \"slow\"\nservers = [\"{}\"]\nread_timeout = \"1s\"\n",
            kit.backend.addr()
        ),
    );
    config.push(
        "routes",
        "name = \"down\"\npath_prefix = \"/down/\"\nupstream = \"down\"\npolicy = \"public\"\n",
    );
    config.push(
        "routes",
        "name = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\npolicy = \"public\"\n",
    );
    let gw = Gateway::start(BIN, &config).await?;

    let r = gw.get_anonymous("/down/x").await?;
    assert_eq!(r.status, 502);
    assert_eq!(r.problem(), "upstream_unavailable");
    let r = gw.get_anonymous("/slow?ms=5000").await?;
    assert_eq!(r.status, 504);
    assert_eq!(r.problem(), "upstream_timeout");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_503_not_a_401() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let dead_issuer = format!("http://127.0.0.1:{}", free_port());
    let mut config = ConfigDoc::standard(&dead_issuer, kit.backend.addr());
    config
        .item("issuers", 0)
        .insert("jwks_min_refetch".into(), "60s".into());
    let gw = Gateway::start_awaiting(BIN, &config, Await::Alive).await?;
    let ready = gw.client().get(gw.admin_url("/readyz")).send().await?;
    assert_eq!(ready.status().as_u16(), 503);
    // Any token naming that issuer: the gateway cannot judge it.
    let claims =
        json!({"iss": dead_issuer, "sub": "alice", "aud": "erp-api", "exp": 4102444800u64});
    let token = kit
        .issuer
        .sign_raw(&kit.issuer.header(Algorithm::RS256), &claims);
    let r = gw.get("/api/x", &token).await?;
    assert_eq!(r.status, 503, "{:?}", r.json());
    assert_eq!(r.problem(), "issuer_unavailable");
    assert!(r.header("retry-after").is_some());
    Ok(())
}

/// `[routes.timeouts]`: a route's own read timeout, and its total bound on
/// the exchange with the backend, answer 504 `upstream_timeout` where the
/// upstream group alone would wait; calls within them pass.
#[tokio::test]
async fn route_timeouts_bound_the_backend_exchange() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    for timeouts in [
        "{ read = \"1s\" }",
        "{ total = \"1s\" }",
        "{ connect = \"1s\", total = \"1s\" }",
    ] {
        let mut config = kit.config();
        config.push(
            "upstreams",
            &format!(
                "name = \"patient\"\nservers = [\"{}\"]\nread_timeout = \"30s\"\n",
                kit.backend.addr()
            ),
        );
        config.push(
            "routes",
            &format!(
                "name = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"patient\"\npolicy = \"public\"\ntimeouts = {timeouts}\n"
            ),
        );
        let gw = Gateway::start(BIN, &config).await?;
        let r = gw.get_anonymous("/slow?ms=3000").await?;
        assert_eq!(r.status, 504, "{timeouts}");
        assert_eq!(r.problem(), "upstream_timeout");
        assert_eq!(
            gw.get_anonymous("/slow?ms=10").await?.status,
            200,
            "{timeouts}"
        );
    }
    Ok(())
}
