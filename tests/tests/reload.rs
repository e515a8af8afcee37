//! Live reload and process signals, end to end: a real gateway process whose
//! configuration file is rewritten, then reloaded by SIGHUP or by
//! `POST /admin/v1/reload`, with sessions open and requests in flight.

use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The admin token the test gateways are configured with.
const TOKEN: &str = "reload-test-admin-token-42";

fn with_admin(config: &mut ConfigDoc, dir: &tempfile::TempDir) -> anyhow::Result<()> {
    let path = dir.path().join("admin-token");
    std::fs::write(&path, TOKEN)?;
    config.set("admin", "token_file", path.display().to_string());
    Ok(())
}

/// `POST /admin/v1/reload` with the admin token.
async fn reload(gw: &Gateway) -> anyhow::Result<reqwest::Response> {
    Ok(gw
        .client()
        .post(gw.admin_url("/admin/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await?)
}

/// Reloads counted with this outcome (0 before the first).
async fn reloads(gw: &Gateway, outcome: &str) -> anyhow::Result<f64> {
    let series = format!("session_gateway_config_reloads_total{{outcome=\"{outcome}\"}}");
    Ok(gw.metric(&series).await?.unwrap_or(0.0))
}

/// SIGHUP used to end the process (exit 129) and lose every session of the
/// memory store. Now it raises a pool's limit for new sessions while the open
/// ones keep their ids and seats.
#[tokio::test]
async fn sighup_raises_a_pool_limit_and_keeps_every_session() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let mut gw = Gateway::start(BIN, &config).await?;

    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200);
    let alice_id = alice.forwarded_header("x-session-id");
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);

    config.pool(0).insert("limit".into(), 2.into());
    gw.rewrite_config(&config)?;
    gw.signal("HUP")?;
    gw.eventually("the reload to be applied", || async {
        Ok((reloads(&gw, "applied").await? >= 1.0).then_some(()))
    })
    .await?;

    assert!(gw.exited()?.is_none(), "SIGHUP must not end the process");
    let bob = gw.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 200, "{:?}", bob.json());
    let again = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(again.forwarded_header("x-session-id"), alice_id);
    assert_eq!(gw.get("/api/x", &kit.token("carol")).await?.status, 429);
    Ok(())
}

/// A broken file changes nothing: the error is logged and counted, the
/// running configuration keeps serving.
#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_configuration_stays() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let dir = tempfile::tempdir()?;
    let mut config = kit.config();
    with_admin(&mut config, &dir)?;
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);

    let mut broken = config.clone();
    broken.pool(0).insert("limit".into(), 0.into());
    gw.rewrite_config(&broken)?;
    let answer = reload(&gw).await?;
    assert_eq!(answer.status(), 422);
    let problem: serde_json::Value = answer.json().await?;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("pools[0].limit"), "{problem}");
    assert!(
        detail.contains("the running configuration stays"),
        "{problem}"
    );
    assert_eq!(reloads(&gw, "refused").await?, 1.0);
    assert!(gw.logs().contains("configuration reload refused"));

    // Still limit 1, still serving alice.
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);

    // Without the admin token the endpoint is closed.
    let anonymous = gw
        .client()
        .post(gw.admin_url("/admin/v1/reload"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}

/// Routes, upstreams and header names switch; listener changes are named as
/// restart-only and keep their running value.
#[tokio::test]
async fn routes_switch_live_and_restart_only_settings_are_named() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let dir = tempfile::tempdir()?;
    let mut config = kit.config();
    with_admin(&mut config, &dir)?;
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get_anonymous("/docs/x").await?.status, 404);

    config.push(
        "routes",
        "name = \"docs\"\npath_prefix = \"/docs/\"\nupstream = \"erp\"\npolicy = \"public\"\n",
    );
    config.set("headers", "subject", "X-Erp-User");
    config.use_redis("redis://127.0.0.1:1");
    config.set("server", "threads", 2);
    gw.rewrite_config(&config)?;

    let answer = reload(&gw).await?;
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await?;
    assert_eq!(
        report["restart_required"],
        serde_json::json!(["server.threads", "sessions.store", "redis"]),
        "{report}"
    );
    assert_eq!(report["routes"], 4);

    assert_eq!(gw.get_anonymous("/docs/x").await?.status, 200);
    let alice = gw.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(alice.status, 200, "the memory store is still in use");
    assert_eq!(
        alice.forwarded_header("x-erp-user").as_deref(),
        Some("alice")
    );
    assert_eq!(alice.forwarded_header("x-auth-subject"), None);
    Ok(())
}

/// A pool limit lowered and raised under load with the Redis store: no
/// request fails for the reload, no session changes id, and the seat count
/// stays exact.
#[tokio::test]
async fn a_reload_under_load_loses_nothing() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut config = kit.config();
    with_admin(&mut config, &dir)?;
    config.use_redis(redis.url());
    config.pool(0).insert("limit".into(), 4.into());
    let gw = std::sync::Arc::new(Gateway::start(BIN, &config).await?);

    let users = ["u0", "u1", "u2", "u3"];
    let mut ids = Vec::new();
    for user in users {
        let reply = gw.get("/api/x", &kit.token(user)).await?;
        assert_eq!(reply.status, 200);
        ids.push(reply.forwarded_header("x-session-id"));
    }

    let load = {
        let gw = std::sync::Arc::clone(&gw);
        let tokens: Vec<String> = users.iter().map(|u| kit.token(u)).collect();
        let ids = ids.clone();
        tokio::spawn(async move {
            for round in 0..60 {
                let i = round % tokens.len();
                let reply = gw.get("/api/x", &tokens[i]).await?;
                anyhow::ensure!(reply.status == 200, "round {round}: {}", reply.status);
                anyhow::ensure!(reply.forwarded_header("x-session-id") == ids[i]);
            }
            anyhow::Ok(())
        })
    };
    for limit in [5, 4, 6] {
        config.pool(0).insert("limit".into(), limit.into());
        gw.rewrite_config(&config)?;
        assert_eq!(reload(&gw).await?.status(), 200);
    }
    load.await??;

    let licenses: serde_json::Value = gw
        .client()
        .get(gw.admin_url("/admin/v1/licenses"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(licenses["pools"][0]["limit"], 6);
    assert_eq!(licenses["pools"][0]["in_use"], 4);
    Ok(())
}

/// SIGQUIT ran Pingora's graceful-upgrade path, which fails without an
/// upgrade socket and ended the process 15 s later. It is now ignored.
#[tokio::test]
async fn sigquit_is_ignored() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut gw = Gateway::start(BIN, &kit.config()).await?;
    gw.signal("QUIT")?;
    gw.eventually("the SIGQUIT warning", || async {
        Ok(gw.logs().contains("SIGQUIT ignored").then_some(()))
    })
    .await?;
    assert!(gw.exited()?.is_none());
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let status = gw.stop()?;
    assert!(status.success(), "SIGTERM still stops it cleanly: {status}");
    Ok(())
}
