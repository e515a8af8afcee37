//! The seed timeline of the product (docs/sessions.md): a token opens
//! nothing; the first call opens a session and takes a seat; later calls and
//! refreshed tokens reuse it; idle expiry frees the seat; a new call opens a
//! new session; an expired token is refused while its session lives; a full
//! pool refuses and admits again after expiry; the absolute lifetime closes a
//! session however busy it is.
//!
//! Timelines use short, generous timeouts and poll for the expected state
//! with a deadline; nothing sleeps to synchronise.

use session_gateway_e2e::{Devkit, Gateway, TokenRequest, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn session_id(reply: &session_gateway_e2e::Reply) -> String {
    reply.json()["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn session_lifecycle_from_first_call_to_idle_expiry() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set("sessions", "idle_timeout", "3s");
    let gw = Gateway::start(BIN, &config).await?;

    // A token alone opens nothing.
    let token = kit.token("alice");
    let before = gw.session(&token).await?;
    assert_eq!(before.status, 404, "{before:?}");
    assert_eq!(before.problem(), "no_session");
    assert_eq!(kit.backend.requests(), 0);

    // The first call opens a session and forwards with identity headers.
    let first = gw.get("/api/orders", &token).await?;
    assert_eq!(
        first.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(kit.backend.requests(), 1);
    let opened = gw.session(&token).await?;
    assert_eq!(opened.status, 200);
    let id = session_id(&opened);
    assert_eq!(id.len(), 32, "{opened:?}");
    assert_eq!(opened.json()["pool"], "default");
    assert_eq!(opened.json()["subject"], "alice");
    assert_eq!(
        first.forwarded_header("x-session-id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        first.forwarded_header("x-auth-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(
        first.forwarded_header("x-auth-client").as_deref(),
        Some("erp-web")
    );
    assert_eq!(
        first.forwarded_header("x-license-pool").as_deref(),
        Some("default")
    );

    // Reuse: the same session, and the idle expiry slides forward.
    let idle_before = opened.json()["idle_expires"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let again = gw.get("/api/orders", &token).await?;
    assert_eq!(
        again.forwarded_header("x-session-id").as_deref(),
        Some(id.as_str())
    );
    let slid = gw.session(&token).await?;
    assert!(slid.json()["idle_expires"].as_str().unwrap_or_default() >= idle_before.as_str());

    // A refreshed token (new jti, new iat) of the same identity keeps the session.
    let refreshed = kit.mint(&TokenRequest::new("alice").expires_in(600));
    assert_ne!(refreshed, token);
    let r = gw.get("/api/orders", &refreshed).await?;
    assert_eq!(
        r.forwarded_header("x-session-id").as_deref(),
        Some(id.as_str())
    );

    // An expired token is refused while the session lives, and changes nothing.
    let expired = kit.mint(&TokenRequest::new("alice").expires_in(-120));
    let refused = gw.get("/api/orders", &expired).await?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.problem(), "invalid_token");
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"erp\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(kit.backend.requests(), 3);
    assert_eq!(session_id(&gw.session(&token).await?), id);

    // Idle expiry: without calls, the session closes.
    gw.eventually("idle expiry", || async {
        let r = gw.session(&token).await?;
        Ok((r.status == 404).then_some(()))
    })
    .await?;

    // The next call opens a new session with a new id.
    let reopened = gw.get("/api/orders", &token).await?;
    assert_eq!(reopened.status, 200);
    let new_id = reopened
        .forwarded_header("x-session-id")
        .unwrap_or_default();
    assert_eq!(new_id.len(), 32);
    assert_ne!(new_id, id);
    Ok(())
}

#[tokio::test]
async fn full_pool_refuses_then_admits_after_a_seat_frees() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set("sessions", "idle_timeout", "3s");
    config.pool(0).insert("limit".into(), 2.into());
    let gw = Gateway::start(BIN, &config).await?;

    for user in ["alice", "bob"] {
        let r = gw.get("/api/x", &kit.token(user)).await?;
        assert_eq!(r.status, 200, "{user}");
    }
    let forwarded = kit.backend.requests();

    let carol = kit.token("carol");
    let refused = gw.get("/api/x", &carol).await?;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.problem(), "license_unavailable");
    let body = refused.json();
    assert_eq!(body["pool"], "default");
    assert_eq!(body["limit"], 2);
    assert_eq!(body["in_use"], 2);
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("MaximumLicenseCountExceeded")
    );
    let retry_after: u64 = refused.header("retry-after").unwrap_or("0").parse()?;
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        kit.backend.requests(),
        forwarded,
        "a refused call reached the backend"
    );
    // A refusal opened nothing.
    assert_eq!(gw.session(&carol).await?.status, 404);

    // Existing sessions keep working while the pool is full.
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);

    // Once a seat frees by idle expiry, carol gets in.
    let admitted = eventually("a free seat", || async {
        let r = gw.get("/api/x", &carol).await?;
        Ok((r.status == 200).then_some(r))
    })
    .await?;
    assert_eq!(
        admitted.forwarded_header("x-auth-subject").as_deref(),
        Some("carol")
    );
    Ok(())
}

#[tokio::test]
async fn absolute_lifetime_closes_a_busy_session() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set("sessions", "idle_timeout", "5s");
    config.set("sessions", "absolute_timeout", "6s");
    let gw = Gateway::start(BIN, &config).await?;
    let token = kit.token("alice");

    let first = gw.get("/api/x", &token).await?;
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(id.len(), 32);

    // Keep calling far more often than the idle timeout: only the absolute
    // lifetime can end this session.
    let next = eventually("the absolute lifetime", || async {
        let r = gw.get("/api/x", &token).await?;
        assert_eq!(r.status, 200);
        let current = r.forwarded_header("x-session-id").unwrap_or_default();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // request pacing, not synchronisation
        Ok((current != id).then_some(current))
    })
    .await?;
    assert_eq!(next.len(), 32);
    assert!(
        gw.logs().contains("\"reason\":\"absolute\""),
        "no absolute close in the audit log"
    );
    Ok(())
}

#[tokio::test]
async fn token_routes_open_no_session_and_public_routes_need_no_token() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;

    let token = kit.token("alice");
    let r = gw.get("/token-only/report", &token).await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.forwarded_header("x-auth-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(r.forwarded_header("x-session-id"), None);
    assert_eq!(gw.session(&token).await?.status, 404);

    let r = gw.get_anonymous("/public/status").await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.forwarded_header("x-auth-subject"), None);

    // The only seat is still free for a session route.
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 200);
    Ok(())
}

/// SIGTERM stops accepting but lets a request in flight finish within the
/// configured grace period, then the process exits cleanly.
#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set("server", "grace_period", "5s");
    config.set("server", "shutdown_timeout", "2s");
    // The devkit backend holds `/slow?ms=N` for N ms.
    config.push(
        "routes",
        "name = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"erp\"\npolicy = \"public\"\n",
    );
    let gw = Gateway::start(BIN, &config).await?;
    let before = kit.backend.requests();
    let in_flight = tokio::spawn({
        let client = gw.client().clone();
        let url = gw.url("/slow?ms=1500");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    eventually("the request reaching the backend", || async {
        Ok((kit.backend.requests() > before).then_some(()))
    })
    .await?;
    let stopping = tokio::task::spawn_blocking(move || gw.stop());
    let status = in_flight.await??;
    assert_eq!(status, 200, "the request in flight was cut");
    let exit = stopping.await??;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}
