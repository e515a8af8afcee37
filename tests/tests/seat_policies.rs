//! Seat policies beyond a hard limit, end to end with real gateways on one
//! Redis. Overdraft (`[[pools]] overdraft`): sessions beyond the limit are
//! admitted up to the overdraft across the whole fleet, marked toward the
//! backend, in the audit trail, the metrics and the usage history.

use reqwest::Method;
use session_gateway_e2e::admin::{AdminGateway, admin};
use session_gateway_e2e::{Devkit, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

#[tokio::test]
async fn the_overdraft_is_exact_across_a_fleet_and_marked_everywhere() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("redis", "url", redis.url());
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
    let trail = admin(&first, Method::GET, "/admin/v1/audit?event=session_opened").await?;
    let trail = trail.json();
    let overdrafts: Vec<&str> = trail["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["overdraft"] == "true")
        .filter_map(|e| e["subject"].as_str())
        .collect();
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
