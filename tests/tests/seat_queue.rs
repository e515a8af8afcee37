//! Waiting for a seat (`[[pools]] queue`), end to end with real gateways:
//! callers of a full pool are held, nothing forwarded, and served first
//! come first served across a fleet on one Redis; a waiter whose client
//! goes away (HTTP/1.1 connection closed, HTTP/2 stream reset) leaves the
//! line at once; a full line and a wait past `max_wait` get the usual 429.

use std::time::Duration;

use reqwest::Method;
use session_gateway_e2e::admin::{AdminGateway, admin};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer, Reply, eventually};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The kit's configuration with one seat and a queue.
fn one_seat_with_queue(kit: &Devkit, max_wait: &str, max_length: u32) -> ConfigDoc {
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let mut queue = toml::Table::new();
    queue.insert("max_wait".into(), max_wait.into());
    queue.insert("max_length".into(), max_length.into());
    config.pool(0).insert("queue".into(), queue.into());
    config
}

/// Callers waiting in the first pool's line, as the admin API reports it.
async fn waiting(gw: &Gateway) -> anyhow::Result<u64> {
    let licenses = admin(gw, Method::GET, "/admin/v1/licenses").await?;
    licenses.json()["pools"][0]["waiting"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no waiting count in {:?}", licenses.json()))
}

/// Waits until exactly `n` callers wait.
async fn until_waiting(gw: &Gateway, n: u64) -> anyhow::Result<()> {
    eventually(&format!("{n} callers waiting"), || async move {
        Ok((waiting(gw).await? == n).then_some(()))
    })
    .await
}

/// A call of `user` on `gw`, running in the background.
fn call(gw: &Gateway, kit: &Devkit, user: &str) -> tokio::task::JoinHandle<anyhow::Result<Reply>> {
    let request = gw
        .client()
        .get(gw.url("/api/x"))
        .bearer_auth(kit.token(user));
    tokio::spawn(async move { Reply::read(request.send().await?).await })
}

#[tokio::test]
async fn waiting_callers_are_served_first_come_first_served_across_a_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = one_seat_with_queue(&kit, "2m", 10);
    config.set("sessions", "store", "redis");
    config.set("redis", "url", redis.url());
    let first = AdminGateway::start(BIN, config.clone()).await?;
    let second = AdminGateway::start(BIN, config).await?;

    assert_eq!(first.get("/api/x", &kit.token("alice")).await?.status, 200);
    // Bob waits on the second instance, then carol on the first: the line
    // is the fleet's.
    let bob = call(&second, &kit, "bob");
    until_waiting(&first, 1).await?;
    let carol = call(&first, &kit, "carol");
    until_waiting(&second, 2).await?;

    // Alice's seat frees on the first instance: it is bob's, on the other
    // one, although carol waits where it freed.
    let closed = admin(&first, Method::DELETE, "/admin/v1/subjects/alice/sessions").await?;
    assert_eq!(closed.status, 200, "{:?}", closed.json());
    let bob = bob.await??;
    assert_eq!(bob.status, 200, "{:?}", bob.json());
    until_waiting(&first, 1).await?;
    assert!(
        !carol.is_finished(),
        "carol still waits: her turn has not come"
    );
    // A newcomer lines up behind carol instead of taking bob's seat when
    // it frees.
    let dave = call(&second, &kit, "dave");
    until_waiting(&first, 2).await?;
    let closed = admin(&second, Method::DELETE, "/admin/v1/subjects/bob/sessions").await?;
    assert_eq!(closed.status, 200);
    let carol = carol.await??;
    assert_eq!(carol.status, 200, "{:?}", carol.json());
    until_waiting(&first, 1).await?;
    assert!(!dave.is_finished(), "dave waits behind carol");
    dave.abort();

    // Every wait is audited and counted where it ended.
    let admitted = |pool: &str| {
        format!("session_gateway_queue_exits_total{{outcome=\"admitted\",pool=\"{pool}\"}}")
    };
    let pool = "default";
    assert_eq!(second.metric(&admitted(pool)).await?, Some(1.0));
    assert_eq!(first.metric(&admitted(pool)).await?, Some(1.0));
    // Each instance appends its events to the shared trail in batches, in
    // the background: the trail's order is the batches', not the line's,
    // and an event shows once its batch is in.
    let queued = eventually("three session_queued events in the trail", || async {
        let trail = admin(&first, Method::GET, "/admin/v1/audit?event=session_queued").await?;
        let mut queued: Vec<String> = trail.json()["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["subject"].as_str().map(str::to_string))
            .collect();
        queued.sort();
        Ok((queued.len() >= 3).then_some(queued))
    })
    .await?;
    assert_eq!(queued, vec!["bob", "carol", "dave"]);
    Ok(())
}

#[tokio::test]
async fn a_waiter_whose_client_goes_away_leaves_the_line_at_once() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = one_seat_with_queue(&kit, "2m", 10);
    config.set("server", "h2c", true);
    let gw = AdminGateway::start(BIN, config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);

    // HTTP/1.1: the client closes its connection.
    let address = gw.url("").trim_start_matches("http://").to_string();
    let mut connection = tokio::net::TcpStream::connect(&address).await?;
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\r\n",
        kit.token("bob")
    );
    connection.write_all(request.as_bytes()).await?;
    until_waiting(&gw, 1).await?;
    drop(connection);
    until_waiting(&gw, 0).await?;

    // HTTP/2: the client resets its stream (the request is dropped).
    let h2 = session_gateway_e2e::h2c_client();
    let carol = {
        let request = h2.get(gw.url("/api/x")).bearer_auth(kit.token("carol"));
        tokio::spawn(async move { request.send().await })
    };
    until_waiting(&gw, 1).await?;
    carol.abort();
    until_waiting(&gw, 0).await?;

    let left = "session_gateway_queue_exits_total{outcome=\"left\",pool=\"default\"}";
    assert_eq!(gw.metric(left).await?, Some(2.0));
    // Nobody was let through, and the seat is still alice's.
    let licenses = admin(&gw, Method::GET, "/admin/v1/licenses").await?;
    assert_eq!(licenses.json()["pools"][0]["in_use"], 1);
    let sessions = admin(&gw, Method::GET, "/admin/v1/sessions").await?;
    let sessions = sessions.json();
    let subjects: Vec<&str> = sessions["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["subject"].as_str())
        .collect();
    assert_eq!(subjects, vec!["alice"]);
    Ok(())
}

#[tokio::test]
async fn a_full_line_and_a_wait_past_max_wait_get_the_usual_429() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = AdminGateway::start(BIN, one_seat_with_queue(&kit, "2s", 1)).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let bob = call(&gw, &kit, "bob");
    until_waiting(&gw, 1).await?;

    // The line holds one: carol is refused at once.
    let carol = gw.get("/api/x", &kit.token("carol")).await?;
    assert_eq!(carol.status, 429, "{:?}", carol.json());
    assert_eq!(
        carol.json()["type"],
        "urn:session-gateway:error:license_unavailable"
    );
    assert_eq!(carol.json()["waiting"], 1);
    assert!(carol.header("retry-after").is_some());

    // Bob's wait runs out: the same refusal, after waiting.
    let bob = tokio::time::timeout(Duration::from_secs(60), bob).await???;
    assert_eq!(bob.status, 429, "{:?}", bob.json());
    assert!(
        bob.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("as long as its queue lets a caller wait")),
        "{:?}",
        bob.json()
    );
    assert!(bob.header("retry-after").is_some());
    assert_eq!(waiting(&gw).await?, 0);
    for (reason, count) in [("queue_full", 1.0), ("queue_timeout", 1.0)] {
        let series = format!(
            "session_gateway_license_refusals_total{{pool=\"default\",reason=\"{reason}\"}}"
        );
        assert_eq!(gw.metric(&series).await?, Some(count), "{series}");
    }
    let usage = admin(&gw, Method::GET, "/admin/v1/usage?step=day").await?;
    let today = usage.json()["intervals"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(today["refused"]["queue_timeout"], 1, "{today}");
    assert_eq!(today["refused"]["queue_full"], 1, "{today}");
    Ok(())
}
