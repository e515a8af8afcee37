//! `POST /.gateway/logout`: the session closes and frees its seat at once,
//! the presented token is refused until it expires, and a new token of the
//! same identity opens a new session — on one instance and across a fleet.

use session_gateway_e2e::{
    Devkit, Gateway, REDIS_SESSION_ID_LEN, RedisServer, TokenRequest, eventually,
};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

#[tokio::test]
async fn logout_frees_the_seat_and_refuses_the_token() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;

    let token = kit.token("alice");
    let opened = gw.get("/api/x", &token).await?;
    let id = opened.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        429,
        "the only seat is held"
    );

    let out = gw.logout(&token).await?;
    assert_eq!(out.status, 200, "{:?}", out.json());
    assert_eq!(out.json()["session_id"], id.as_str());
    assert_eq!(out.json()["logged_out"], true);

    // The presented token is refused from now on; nothing is forwarded.
    let before = kit.backend.requests();
    let refused = gw.get("/api/x", &token).await?;
    assert_eq!(refused.status, 401);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked")
    );
    assert_eq!(kit.backend.requests(), before);
    // The seat is free at once: bob gets it.
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 200);
    // A second logout with the revoked token is refused too.
    assert_eq!(gw.logout(&token).await?.status, 401);
    // Logging out needs POST.
    let get = gw.get("/.gateway/logout", &kit.token("carol")).await?;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    Ok(())
}

#[tokio::test]
async fn a_new_token_after_logout_opens_a_new_session_across_the_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    let a = Gateway::start(BIN, &config).await?;
    let b = Gateway::start(BIN, &config).await?;

    let token = kit.token("alice");
    let first = a.get("/api/x", &token).await?;
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(
        b.get("/api/x", &token)
            .await?
            .forwarded_header("x-session-id"),
        Some(id.clone())
    );

    assert_eq!(a.logout(&token).await?.status, 200);
    assert_eq!(
        redis.cli(&["ZCARD", "{sg:default}:b:0"])?,
        "0",
        "seat freed in Redis"
    );
    // The other instance learns of the revocation by its next sync.
    eventually("the revocation on the other instance", || async {
        Ok((b.get("/api/x", &token).await?.status == 401).then_some(()))
    })
    .await?;

    let fresh = kit.token("alice");
    let reopened = b.get("/api/x", &fresh).await?;
    assert_eq!(reopened.status, 200);
    let new_id = reopened
        .forwarded_header("x-session-id")
        .unwrap_or_default();
    assert_eq!(new_id.len(), REDIS_SESSION_ID_LEN);
    assert_ne!(new_id, id);
    Ok(())
}

#[tokio::test]
async fn a_token_expiring_far_in_the_future_stays_revoked() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    // `exp` = 2e16 s: the revocation's end used to wrap to 1970.
    for (user, exp) in [
        ("alice", serde_json::json!(2e16)),
        ("bob", serde_json::json!(1e16)),
        ("carol", serde_json::json!(1u64 << 53)),
    ] {
        let token = kit.mint(&TokenRequest::new(user).claim("exp", exp.clone()));
        assert_eq!(gw.get("/api/x", &token).await?.status, 200, "{exp}");
        let out = gw.logout(&token).await?;
        assert_eq!(out.status, 200, "{exp}: {:?}", out.json());
        let refused = gw.get("/api/x", &token).await?;
        assert_eq!(refused.status, 401, "{exp}");
        assert!(
            refused.json()["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("revoked"),
            "{exp}"
        );
    }
    Ok(())
}
