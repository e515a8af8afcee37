//! Seat policies beyond a hard limit, end to end with real gateways on one
//! Redis. Overdraft (`[[pools]] overdraft`): sessions beyond the limit are
//! admitted up to the overdraft across the whole fleet, marked toward the
//! backend, in the audit trail, the metrics and the usage history.
//! Shared-token detection (`[[pools]] shared_token`): one session used from
//! more client addresses than allowed is audited, counted and (with
//! `deny`) refused for the newcomer, fleet-wide.

use reqwest::Method;
use session_gateway_e2e::admin::{AdminGateway, admin};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer, Reply, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The configuration with the fleet's store: `redis`.
fn on_redis(mut config: ConfigDoc, redis: &RedisServer) -> ConfigDoc {
    config.set("sessions", "store", "redis");
    config.set("redis", "url", redis.url());
    config
}

#[tokio::test]
async fn the_overdraft_is_exact_across_a_fleet_and_marked_everywhere() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = on_redis(kit.config(), &redis);
    config.pool(0).insert("limit".into(), 1.into());
    config.pool(0).insert("overdraft".into(), 1.into());
    let pool = config.pool(0)["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = AdminGateway::start(BIN, config.clone()).await?;
    let second = AdminGateway::start(BIN, config).await?;

    // The one seat, on the first instance: not overdraft, and a client's
    // own claim to be one is dropped.
    let alice = first
        .client()
        .get(first.url("/api/x"))
        .bearer_auth(kit.token("alice"))
        .header("x-license-overdraft", "true")
        .send()
        .await?;
    let alice = session_gateway_e2e::Reply::read(alice).await?;
    assert_eq!(alice.status, 200);
    assert_eq!(alice.forwarded_header("x-license-overdraft"), None);

    // The overdraft seat, on the other instance, marked for the backend on
    // every call of that session.
    for _ in 0..2 {
        let bob = second.get("/api/x", &kit.token("bob")).await?;
        assert_eq!(bob.status, 200, "{:?}", bob.json());
        assert_eq!(
            bob.forwarded_header("x-license-overdraft").as_deref(),
            Some("true")
        );
    }
    // Limit plus overdraft reached on the fleet: refused on either instance.
    assert_eq!(first.get("/api/x", &kit.token("carol")).await?.status, 429);
    assert_eq!(second.get("/api/x", &kit.token("carol")).await?.status, 429);

    let opened = format!("session_gateway_overdraft_sessions_opened_total{{pool=\"{pool}\"}}");
    assert_eq!(second.metric(&opened).await?, Some(1.0));
    assert_eq!(
        first.metric(&opened).await?,
        None,
        "the first instance opened none"
    );
    // Each instance appends its events to the shared trail in batches, in
    // the background: the second instance's event shows once its batch is in.
    let overdrafts = eventually("bob's session_opened in the trail", || async {
        let trail = admin(&first, Method::GET, "/admin/v1/audit?event=session_opened").await?;
        let trail = trail.json();
        let overdrafts: Vec<String> = trail["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["overdraft"] == "true")
            .filter_map(|e| e["subject"].as_str().map(str::to_string))
            .collect();
        Ok((!overdrafts.is_empty()).then_some(overdrafts))
    })
    .await?;
    assert_eq!(overdrafts, vec!["bob"]);
    let usage = admin(
        &first,
        Method::GET,
        "/admin/v1/usage?step=day&group=overdraft",
    )
    .await?;
    assert_eq!(usage.status, 200, "{:?}", usage.json());
    let today = usage.json()["intervals"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (today["opened"].as_u64(), today["peak"].as_u64()),
        (Some(1), Some(1)),
        "{today}"
    );
    assert_eq!(usage.json()["group"], "overdraft");
    Ok(())
}

/// A call of `token` that a trusted proxy says came from `client`.
async fn from(gw: &Gateway, token: &str, client: &str) -> anyhow::Result<Reply> {
    let reply = gw
        .client()
        .get(gw.url("/api/x"))
        .bearer_auth(token)
        .header("x-forwarded-for", client)
        .header("user-agent", "erp-desktop/7")
        .send()
        .await?;
    Reply::read(reply).await
}

/// The kit's configuration behind a trusted proxy on loopback, with
/// shared-token detection of at most two addresses.
fn shared_token_config(kit: &Devkit, on_shared: &str) -> ConfigDoc {
    let mut config = kit.config();
    config.set("server", "trusted_proxies", vec!["127.0.0.1".to_string()]);
    let mut policy = toml::Table::new();
    policy.insert("max_addresses".into(), 2.into());
    policy.insert("on_shared".into(), on_shared.into());
    config.pool(0).insert("shared_token".into(), policy.into());
    config
}

#[tokio::test]
async fn a_token_used_from_too_many_addresses_is_refused_to_the_newcomer_across_the_fleet()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = on_redis(shared_token_config(&kit, "deny"), &redis);
    let pool = config.pool(0)["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let first = AdminGateway::start(BIN, config.clone()).await?;
    let second = AdminGateway::start(BIN, config).await?;
    let token = kit.token("alice");

    assert_eq!(from(&first, &token, "203.0.113.1").await?.status, 200);
    assert_eq!(from(&second, &token, "203.0.113.2").await?.status, 200);
    // A third address, on either instance: refused, with a problem.
    let third = from(&first, &token, "203.0.113.3").await?;
    assert_eq!(third.status, 403);
    assert_eq!(
        third.json()["type"],
        "urn:session-gateway:error:token_shared"
    );
    assert_eq!(from(&second, &token, "203.0.113.3").await?.status, 403);
    // The session's first two clients go on working.
    assert_eq!(from(&second, &token, "203.0.113.1").await?.status, 200);
    assert_eq!(from(&first, &token, "203.0.113.2").await?.status, 200);

    let denied = format!("session_gateway_tokens_shared_total{{action=\"deny\",pool=\"{pool}\"}}");
    assert_eq!(first.metric(&denied).await?, Some(1.0));
    assert_eq!(second.metric(&denied).await?, Some(1.0));
    // Each instance that saw it audits it once; the fleet's trail is
    // written in the background.
    let events = session_gateway_e2e::eventually("two token_shared events", || async {
        let trail = admin(&first, Method::GET, "/admin/v1/audit?event=token_shared").await?;
        let events = trail.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok((events.len() == 2).then_some(events))
    })
    .await?;
    assert!(
        events
            .iter()
            .all(|e| e["addresses"] == "3" && e["action"] == "deny" && e["subject"] == "alice")
    );
    Ok(())
}

#[tokio::test]
async fn in_audit_mode_a_shared_token_is_recorded_and_served() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = AdminGateway::start(BIN, shared_token_config(&kit, "audit")).await?;
    let pool = kit.config().pool(0)["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let token = kit.token("alice");
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"] {
        assert_eq!(from(&gw, &token, client).await?.status, 200, "{client}");
    }
    // Another user's session is not concerned.
    assert_eq!(
        from(&gw, &kit.token("bob"), "203.0.113.9").await?.status,
        200
    );
    let audited =
        format!("session_gateway_tokens_shared_total{{action=\"audit\",pool=\"{pool}\"}}");
    assert_eq!(
        gw.metric(&audited).await?,
        Some(1.0),
        "once, when it first counted as shared"
    );
    let trail = admin(&gw, Method::GET, "/admin/v1/audit?event=token_shared").await?;
    let events = trail.json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["addresses"], "3");
    Ok(())
}

/// `linger`: after a logout the seat stays with its identity for the whole
/// fleet; another user waits for it, and the same user gets the session
/// back under its id on any instance.
#[tokio::test]
async fn a_lingering_seat_waits_for_its_identity_across_the_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = on_redis(kit.config(), &redis);
    config.pool(0).insert("limit".into(), 1.into());
    config.pool(0).insert("linger".into(), "10m".into());
    let first = AdminGateway::start(BIN, config.clone()).await?;
    let second = AdminGateway::start(BIN, config).await?;
    let alice = kit.token("alice");

    let opened = first.get("/api/x", &alice).await?;
    assert_eq!(opened.status, 200);
    let id = opened.forwarded_header("x-session-id");
    assert_eq!(first.logout(&alice).await?.status, 200);
    // The close says the seat stays held, in the trail and the metrics.
    let held = "session_gateway_seats_held_after_close_total{pool=\"default\"}";
    assert_eq!(first.metric(held).await?, Some(1.0));
    let closed = session_gateway_e2e::eventually("the logout in the trail", || async {
        let trail = admin(&first, Method::GET, "/admin/v1/audit?event=session_closed").await?;
        Ok(trail.json()["events"]
            .as_array()
            .and_then(|e| e.first().cloned()))
    })
    .await?;
    assert_eq!(closed["reason"], "logout");
    assert!(closed["seat_held_until"].is_string(), "{closed}");
    // Bob waits for the seat: refused, told to retry when the linger ends.
    let bob = second.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 429, "{:?}", bob.json());
    let retry: u64 = bob
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=600).contains(&retry), "Retry-After {retry}");
    // Alice logs in again (her old token is revoked by the logout) and comes
    // back on the other instance: her session, under its id.
    let back = second.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(back.status, 200, "{:?}", back.json());
    assert_eq!(back.forwarded_header("x-session-id"), id);
    // An operator's close frees the seat at once.
    let listed = admin(&first, Method::GET, "/admin/v1/sessions").await?;
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(1));
    let killed = admin(
        &first,
        Method::DELETE,
        &format!("/admin/v1/sessions/{}", id.unwrap_or_default()),
    )
    .await?;
    assert_eq!(killed.status, 200);
    assert_eq!(second.get("/api/x", &kit.token("bob")).await?.status, 200);
    Ok(())
}
