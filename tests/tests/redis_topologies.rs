//! The Redis store on real Redis topologies other than a single server: a
//! three-node Redis Cluster (two gateways, two pools in their own slots,
//! exact seats and reuse across instances) and a primary behind Redis
//! Sentinel.

use session_gateway_e2e::RedisServer;
use session_gateway_e2e::redis::{RedisCluster, RedisSentinel};
use session_gateway_e2e::{Devkit, Gateway, TokenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

#[tokio::test]
async fn seats_are_exact_on_a_redis_cluster() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let cluster = RedisCluster::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("redis", "mode", "cluster");
    config.set("redis", "urls", cluster.urls());
    config.clear("pools");
    config.push(
        "pools",
        "name = \"web\"\nlimit = 1\nmatch = { claim = \"client_id\", any_of = [\"erp-web\"] }\n",
    );
    config.push("pools", "name = \"desktop\"\nlimit = 1\n");
    let a = Gateway::start(BIN, &config).await?;
    let b = Gateway::start(BIN, &config).await?;

    let alice = a.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    let id = alice.forwarded_header("x-session-id");
    assert_eq!(
        alice.forwarded_header("x-license-pool").as_deref(),
        Some("web")
    );
    let again = b.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(again.forwarded_header("x-session-id"), id);

    let bob = b.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 429);
    assert_eq!(bob.json()["pool"], "web");

    let desktop = TokenRequest::new("carol").client_id("erp-desktop");
    let carol = b.get("/api/x", &kit.mint(&desktop)).await?;
    assert_eq!(carol.status, 200);
    assert_eq!(
        carol.forwarded_header("x-license-pool").as_deref(),
        Some("desktop")
    );
    let dave = a
        .get(
            "/api/x",
            &kit.mint(&TokenRequest::new("dave").client_id("erp-desktop")),
        )
        .await?;
    assert_eq!(dave.status, 429);
    assert_eq!(dave.json()["pool"], "desktop");
    Ok(())
}

#[tokio::test]
async fn the_primary_is_found_through_sentinel() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let primary = RedisServer::start()?;
    let sentinel = RedisSentinel::start(&primary)?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("redis", "mode", "sentinel");
    config.set("redis", "urls", vec![sentinel.url()]);
    config.set("redis", "master_name", RedisSentinel::MASTER);
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;

    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);
    // The seat lives in the primary the sentinel named.
    assert_eq!(primary.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    Ok(())
}
