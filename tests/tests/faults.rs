//! The Redis store under network faults, with a real gateway, a real
//! redis-server and a TCP relay between them (tests/src/relay.rs) that can
//! leave connections half-open. Loopback only, bounded by the harness's
//! deadline.

use std::net::SocketAddr;

use session_gateway_e2e::relay::Relay;
use session_gateway_e2e::{Devkit, Gateway, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A connection left half-open (as a NAT or firewall timeout leaves it)
/// never drops, so the redis crate never reconnects: the gateway answered
/// 503 and `/readyz` reported the store down for as long as the kernel kept
/// retransmitting (about 15 minutes), though a new connection would have
/// worked at once. Now a connection that stops answering is replaced.
#[tokio::test]
async fn a_half_open_redis_connection_is_replaced() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let target: SocketAddr = format!("127.0.0.1:{}", redis.port).parse()?;
    let relay = Relay::start(target).await?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("redis", "url", relay.redis_url());
    config.set("redis", "connect_timeout", "500ms");
    config.set("redis", "response_timeout", "500ms");
    let gw = Gateway::start(BIN, &config).await?;
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);

    let before = relay.accepted();
    relay.freeze_existing();
    // Each call either fails within the store's timeouts (503) or, once the
    // dead connection has been replaced, opens bob's session.
    let bob = kit.token("bob");
    let refused = std::cell::Cell::new(0u32);
    gw.eventually("a new Redis connection serving bob", || async {
        let reply = gw.get("/api/x", &bob).await?;
        match reply.status {
            200 => Ok(Some(())),
            503 => {
                refused.set(refused.get() + 1);
                Ok(None)
            }
            other => anyhow::bail!("unexpected {other}: {:?}", reply.json()),
        }
    })
    .await?;
    assert!(
        refused.get() >= 1,
        "the half-open connection was in use at first"
    );
    assert!(relay.accepted() > before, "a new connection was opened");
    assert_eq!(
        redis.cli(&["ZCARD", "{sg:default}:b:0"])?,
        "2",
        "alice and bob, each counted once"
    );
    let ready = gw.client().get(gw.admin_url("/readyz")).send().await?;
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(body["degraded"], serde_json::json!([]), "{body}");
    Ok(())
}
