//! Start-up and readiness as an operator meets them: a configuration that
//! names a file that cannot serve is refused before anything listens, and
//! `/readyz` says whether this instance can serve its routes, without
//! taking a whole fleet out of its load balancer for a Redis outage.

use std::process::Command;

use session_gateway_e2e::{Devkit, Gateway, RedisServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A missing certificate passed `check-config`; at `run` the proxy thread
/// panicked and the process stayed up, ready, with its port closed.
#[tokio::test]
async fn a_missing_certificate_is_refused_by_check_config_and_run() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.set(
        "server",
        "listen",
        vec![format!("127.0.0.1:{}", free_port())],
    );
    config.set(
        "server",
        "admin_listen",
        format!("127.0.0.1:{}", free_port()),
    );
    let dir = tempfile::tempdir()?;
    let mut tls = toml::Table::new();
    tls.insert("cert".into(), "nope.crt".into());
    tls.insert("key".into(), "nope.key".into());
    config.table("server").insert("tls".into(), tls.into());
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config.render())?;

    for command in ["check-config", "run"] {
        let mut cmd = Command::new(BIN);
        match command {
            "run" => cmd.args(["run", "--config"]),
            _ => cmd.arg("check-config"),
        };
        let out = cmd.arg(&path).env_remove("RUST_LOG").output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{command} accepted a missing certificate"
        );
        let line = stderr.lines().last().unwrap_or_default();
        assert!(
            line.contains("server.tls: cert: cannot read") && line.contains("nope.crt"),
            "{command}: {stderr}"
        );
    }
    Ok(())
}

async fn readyz(gw: &Gateway) -> anyhow::Result<(u16, serde_json::Value)> {
    let r = gw.client().get(gw.admin_url("/readyz")).send().await?;
    Ok((r.status().as_u16(), r.json().await?))
}

/// A Redis outage made every instance answer `/readyz` 503, which takes the
/// whole fleet out of a load balancer, token and public routes included;
/// the seat gauge kept its last value as if it were true.
#[tokio::test]
async fn a_store_outage_degrades_session_routes_but_keeps_the_instance_ready() -> anyhow::Result<()>
{
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let text = gw.metrics_text().await?;
    assert!(
        text.contains("session_gateway_seats_in_use{pool=\"default\"} 1"),
        "{text}"
    );
    assert!(text.contains("session_gateway_store_up 1"), "{text}");

    redis.stop();
    let (status, body) = readyz(&gw).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["degraded"].as_array().map(Vec::len), Some(1), "{body}");

    let bob = gw.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 503);
    assert_eq!(bob.problem(), "store_unavailable");
    let token_route = gw.get("/token-only/x", &kit.token("bob")).await?;
    assert_eq!(token_route.status, 200, "token routes need no store");
    assert_eq!(gw.get_anonymous("/public/x").await?.status, 200);

    let text = gw.metrics_text().await?;
    assert!(
        !text.contains("session_gateway_seats_in_use{"),
        "no frozen seat count while the store is unreachable: {text}"
    );
    assert!(text.contains("session_gateway_store_up 0"), "{text}");
    assert!(text.contains("session_gateway_seats_limit{pool=\"default\"} 10"));
    Ok(())
}

/// With `server.readiness_requires_store = true` the outage fails readiness.
#[tokio::test]
async fn readiness_can_require_the_store() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    config.set("server", "readiness_requires_store", true);
    let gw = Gateway::start(BIN, &config).await?;
    redis.stop();
    let (status, body) = readyz(&gw).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["failing"].as_array().map(Vec::len), Some(1), "{body}");
    Ok(())
}
