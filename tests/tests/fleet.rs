//! Fleet tests: several real gateway processes sharing one real
//! `redis-server`. Seats are exact across instances, a session opened on one
//! instance is reused on another, expiry is seen everywhere, and a Redis
//! restart is survived without restarting the gateways.

use session_gateway_e2e::{
    ConfigDoc, Devkit, Gateway, REDIS_SESSION_ID_LEN, RedisServer, TokenRequest, eventually,
};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn fleet_config(kit: &Devkit, redis: &RedisServer, limit: i64, idle: &str) -> ConfigDoc {
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "idle_timeout", idle);
    config.set("sessions", "touch_interval", "1s");
    config.set("redis", "url", redis.url());
    config.pool(0).insert("limit".into(), limit.into());
    config
}

async fn fleet(config: &ConfigDoc, size: usize) -> anyhow::Result<Vec<Gateway>> {
    let mut gateways = Vec::with_capacity(size);
    for _ in 0..size {
        gateways.push(Gateway::start(BIN, config).await?);
    }
    Ok(gateways)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_users_get_exactly_the_free_seats_across_instances() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let limit = 5;
    let gateways = fleet(&fleet_config(&kit, &redis, limit, "20m"), 3).await?;

    for round in 0..5 {
        let tokens: Vec<String> = (0..20)
            .map(|u| kit.token(&format!("user-{round}-{u}")))
            .collect();
        let calls = tokens.iter().enumerate().map(|(i, token)| {
            let gw = &gateways[i % gateways.len()];
            async move { gw.get("/api/race", token).await }
        });
        let replies = futures_util::future::join_all(calls).await;
        let mut admitted = 0;
        let mut refused = 0;
        for reply in replies {
            let reply = reply?;
            match reply.status {
                200 => admitted += 1,
                429 => {
                    assert_eq!(reply.problem(), "license_unavailable");
                    refused += 1;
                }
                other => panic!("round {round}: unexpected {other}: {:?}", reply.json()),
            }
        }
        assert_eq!(admitted, limit, "round {round}");
        assert_eq!(refused, 20 - limit, "round {round}");
        let seats = redis.cli(&["ZCARD", "{sg:default}:b:0"])?;
        assert_eq!(seats, limit.to_string(), "round {round}: seats in Redis");
        // Start the next round with an empty pool.
        assert_eq!(redis.cli(&["FLUSHALL"])?, "OK");
    }
    Ok(())
}

#[tokio::test]
async fn a_session_follows_its_identity_across_instances() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let gateways = fleet(&fleet_config(&kit, &redis, 2, "3s"), 2).await?;
    let (a, b) = (&gateways[0], &gateways[1]);

    let token = kit.token("alice");
    let first = a.get("/api/x", &token).await?;
    assert_eq!(first.status, 200);
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(id.len(), REDIS_SESSION_ID_LEN);

    // Another instance, a refreshed token: the same session, one seat.
    let refreshed = kit.mint(&TokenRequest::new("alice").expires_in(600));
    let second = b.get("/api/x", &refreshed).await?;
    assert_eq!(second.forwarded_header("x-session-id"), Some(id.clone()));
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    assert_eq!(b.get("/api/x", &kit.token("bob")).await?.status, 200);
    let carol = a.get("/api/x", &kit.token("carol")).await?;
    assert_eq!(carol.status, 429);
    assert_eq!(carol.json()["in_use"], 2);

    // Idle expiry is seen by every instance.
    for gw in [a, b] {
        eventually("idle expiry on every instance", || async {
            Ok((gw.session(&token).await?.status == 404).then_some(()))
        })
        .await?;
    }
    // The sweeper closed them in Redis without any traffic.
    eventually("the sweeper freeing the seats", || async {
        Ok((redis.cli(&["ZCARD", "{sg:default}:b:0"])? == "0").then_some(()))
    })
    .await?;
    let reopened = b.get("/api/x", &token).await?;
    assert_ne!(reopened.forwarded_header("x-session-id"), Some(id.clone()));

    // The audit trail is also a capped Redis stream, shared by the fleet.
    let trail = eventually("the audit stream", || async {
        let entries = redis.cli(&["XRANGE", "{sg}:audit", "-", "+"])?;
        Ok((entries.contains("session_closed") && entries.contains(&id)).then_some(entries))
    })
    .await?;
    assert!(trail.contains("session_opened"));
    assert!(trail.contains("pool_full"), "the refusal of carol: {trail}");
    Ok(())
}

#[tokio::test]
async fn a_redis_outage_refuses_new_sessions_and_recovers_by_itself() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = fleet_config(&kit, &redis, 5, "20m");
    config.set("redis", "connect_timeout", "500ms");
    config.set("redis", "response_timeout", "500ms");
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let forwarded = kit.backend.requests();

    redis.stop();
    let refused = gw.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(refused.status, 503, "{:?}", refused.json());
    assert_eq!(refused.problem(), "store_unavailable");
    assert!(refused.header("retry-after").is_some());
    assert_eq!(
        kit.backend.requests(),
        forwarded,
        "forwarded during the outage"
    );
    // The instance stays ready (token and public routes need no store) and
    // reports the outage as degraded.
    let ready = gw.client().get(gw.admin_url("/readyz")).send().await?;
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(body["degraded"].as_array().map(Vec::len), Some(1), "{body}");

    redis.restart()?;
    let bob = kit.token("bob");
    eventually("recovery after the restart", || async {
        Ok((gw.get("/api/x", &bob).await?.status == 200).then_some(()))
    })
    .await?;
    let ready = gw.client().get(gw.admin_url("/readyz")).send().await?;
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(body["degraded"], serde_json::json!([]), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_grace_period_keeps_confirmed_sessions_working_through_an_outage() -> anyhow::Result<()>
{
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = fleet_config(&kit, &redis, 5, "20m");
    config.set("redis", "grace_period", "10m");
    config.set("redis", "connect_timeout", "500ms");
    config.set("redis", "response_timeout", "500ms");
    let gw = Gateway::start(BIN, &config).await?;
    let alice = kit.token("alice");
    let opened = gw.get("/api/x", &alice).await?;
    let id = opened.forwarded_header("x-session-id");
    assert!(id.is_some());

    redis.stop();
    // Confirmed before the outage: keeps working, same session.
    let during = gw.get("/api/x", &alice).await?;
    assert_eq!(during.status, 200, "{:?}", during.json());
    assert_eq!(during.forwarded_header("x-session-id"), id);
    // Nobody new gets in while the seats cannot be counted.
    let bob = gw.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 503);
    assert_eq!(bob.problem(), "store_unavailable");
    Ok(())
}

/// How often Redis ran `command` (inside scripts too) since its statistics
/// were last reset.
fn command_calls(redis: &RedisServer, command: &str) -> anyhow::Result<u64> {
    let stats = redis.cli(&["INFO", "commandstats"])?;
    let prefix = format!("cmdstat_{command}:calls=");
    Ok(stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[tokio::test]
async fn a_long_lived_lease_ends_as_soon_as_another_instance_closes_its_session()
-> anyhow::Result<()> {
    // Leases that may live ten minutes without Redis: only the close
    // channel can end this one within the test's deadline.
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = fleet_config(&kit, &redis, 1, "20m");
    config.set("sessions", "touch_interval", "10m");
    config.set("sessions", "lease_revalidate", "10m");
    let gateways = fleet(&config, 2).await?;
    let (a, b) = (&gateways[0], &gateways[1]);

    let token = kit.token("alice");
    let first = a.get("/api/x", &token).await?;
    assert_eq!(first.status, 200);
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    // The lease serves every further call on `a`: no admission or touch
    // writes the session (the sweeper's and the channel's own scripts run
    // meanwhile, so script calls are not counted).
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"])?, "OK");
    for _ in 0..10 {
        let reply = a.get("/api/x", &token).await?;
        assert_eq!(
            reply.forwarded_header("x-session-id").as_deref(),
            Some(id.as_str())
        );
    }
    assert_eq!(command_calls(&redis, "hset")?, 0, "served from the lease");

    // The user logs out on `b` with a refreshed token of the same identity.
    let refreshed = kit.mint(&TokenRequest::new("alice").claim("jti", "refreshed"));
    assert_eq!(b.logout(&refreshed).await?.status, 200);
    // `a` heard the close: alice's next call there is a new admission (a new
    // session, on the seat the logout freed), not the closed session.
    let reopened = eventually("the lease on `a` to be dropped", || async {
        let reply = a.get("/api/x", &token).await?;
        assert_eq!(reply.status, 200, "{:?}", reply.json());
        let now = reply.forwarded_header("x-session-id").unwrap_or_default();
        Ok((now != id).then_some(now))
    })
    .await?;
    assert_eq!(reopened.len(), REDIS_SESSION_ID_LEN);
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1", "one seat");
    Ok(())
}
