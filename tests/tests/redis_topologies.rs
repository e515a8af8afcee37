//! The Redis store on real Redis topologies other than a single plain
//! server: a three-node Redis Cluster (two gateways, two pools in their own
//! slots, exact seats and reuse across instances), a primary behind Redis
//! Sentinel (also with passwords on both), and a server that speaks only TLS
//! (with a CA made for the test, with and without a client certificate).

use std::process::Command;

use session_gateway_e2e::RedisServer;
use session_gateway_e2e::redis::{RedisCluster, RedisSentinel, TestCa};
use session_gateway_e2e::{Await, ConfigDoc, Devkit, Gateway, TokenRequest, eventually};

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

#[tokio::test]
async fn sentinel_and_primary_with_their_own_passwords() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let primary = RedisServer::start_with_password("primary-pass-1")?;
    let sentinel = RedisSentinel::start_with_password(&primary, Some("sentinel-pass-2"))?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("redis", "mode", "sentinel");
    config.set("redis", "urls", vec![sentinel.url()]);
    config.set("redis", "master_name", RedisSentinel::MASTER);
    config.set("redis", "password_env", "SG_TEST_PRIMARY_PASSWORD");
    config.set(
        "redis",
        "sentinel_password_env",
        "SG_TEST_SENTINEL_PASSWORD",
    );
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start_with_env(
        BIN,
        &config,
        Await::Ready,
        &[
            ("SG_TEST_PRIMARY_PASSWORD", "primary-pass-1"),
            ("SG_TEST_SENTINEL_PASSWORD", "sentinel-pass-2"),
        ],
    )
    .await?;

    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);
    assert_eq!(primary.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    // Neither password reaches the log.
    let logs = gw.logs();
    assert!(
        !logs.contains("primary-pass-1") && !logs.contains("sentinel-pass-2"),
        "{logs}"
    );
    Ok(())
}

/// The standard configuration on the Redis store at `server`, with one seat.
fn on_redis(kit: &Devkit, server: &RedisServer) -> ConfigDoc {
    let mut config = kit.config();
    config.use_redis(server.url());
    config.pool(0).insert("limit".into(), 1.into());
    config
}

fn path(p: std::path::PathBuf) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn seats_are_counted_in_a_redis_that_speaks_only_tls() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let redis = RedisServer::start_tls(&ca, false)?;
    assert!(redis.url().starts_with("rediss://"));
    let mut config = on_redis(&kit, &redis);
    config.set("redis", "tls_ca_file", path(ca.ca_cert()));
    let gw = Gateway::start(BIN, &config).await?;

    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    let again = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(
        again.forwarded_header("x-session-id"),
        alice.forwarded_header("x-session-id")
    );
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    Ok(())
}

#[tokio::test]
async fn a_redis_that_requires_a_client_certificate_gets_it() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let redis = RedisServer::start_tls(&ca, true)?;
    let mut config = on_redis(&kit, &redis);
    config.set("redis", "tls_ca_file", path(ca.ca_cert()));
    config.set("redis", "tls_cert_file", path(ca.client_cert()));
    config.set("redis", "tls_key_file", path(ca.client_key()));
    let gw = Gateway::start(BIN, &config).await?;

    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "{:?}", alice.json());
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    Ok(())
}

#[tokio::test]
async fn a_redis_certificate_from_another_ca_keeps_the_gateway_unready() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let (ca, other) = (TestCa::new()?, TestCa::new()?);
    let redis = RedisServer::start_tls(&ca, false)?;
    let mut config = on_redis(&kit, &redis);
    config.set("redis", "tls_ca_file", path(other.ca_cert()));
    // By default an unreachable store only degrades readiness; this
    // deployment asks for it to fail.
    config.set("server", "readiness_requires_store", true);
    let gw = Gateway::start_awaiting(BIN, &config, Await::Alive).await?;

    // Ready needs the issuer's keys and the store; wait until the readiness
    // report is down to the store alone, and names the certificate.
    let http = gw.client();
    let failing = eventually("readiness to blame the Redis certificate", || async {
        let r = http.get(gw.admin_url("/readyz")).send().await?;
        assert_eq!(
            r.status(),
            503,
            "ready with a CA that did not sign the server"
        );
        let body: serde_json::Value = r.json().await?;
        let failing: Vec<String> = body["failing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        Ok((failing.len() == 1).then_some(failing))
    })
    .await?;
    assert!(
        failing[0].contains("invalid peer certificate"),
        "not about the certificate: {failing:?}"
    );
    // No seat is taken on a connection the gateway does not trust.
    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 503, "{:?}", alice.json());
    assert_eq!(alice.problem(), "store_unavailable");
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "0");
    Ok(())
}

#[test]
fn check_config_refuses_a_missing_redis_ca_file_by_its_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = ConfigDoc::standard("https://idp.example.com", "127.0.0.1:9".parse()?);
    config.use_redis("rediss://127.0.0.1:6380");
    config.set("redis", "tls_ca_file", "no-such-ca.pem");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config.render())?;
    let out = Command::new(BIN).arg("check-config").arg(&file).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a missing CA file");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("redis.tls_ca_file"), "{stderr}");
    assert!(stderr.contains("no-such-ca.pem"), "{stderr}");
    Ok(())
}
