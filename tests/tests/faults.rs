//! The Redis store under network faults, with a real gateway, a real
//! redis-server and a TCP relay between them (tests/src/relay.rs) that can
//! leave connections half-open. Loopback only, bounded by the harness's
//! deadline.

use std::net::SocketAddr;

use session_gateway_e2e::relay::Relay;
use session_gateway_e2e::{Await, ConfigDoc, Devkit, Gateway, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A redis-server and a relay in front of it.
async fn redis_behind_a_relay() -> anyhow::Result<(RedisServer, Relay)> {
    let redis = RedisServer::start()?;
    let target: SocketAddr = format!("127.0.0.1:{}", redis.port).parse()?;
    let relay = Relay::start(target).await?;
    Ok((redis, relay))
}

/// Points `config` at Redis through `relay`, with short store timeouts so
/// a silent connection is given up quickly.
fn through(config: &mut ConfigDoc, relay: &Relay) {
    config.use_redis(relay.redis_url());
    config.set("redis", "connect_timeout", "500ms");
    config.set("redis", "response_timeout", "500ms");
}

/// A connection left half-open (as a NAT or firewall timeout leaves it)
/// never drops, so the redis crate never reconnects: the gateway answered
/// 503 and `/readyz` reported the store down for as long as the kernel kept
/// retransmitting (about 15 minutes), though a new connection would have
/// worked at once. Now a connection that stops answering is replaced.
#[tokio::test]
async fn a_half_open_redis_connection_is_replaced() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let (redis, relay) = redis_behind_a_relay().await?;
    let mut config = kit.config();
    through(&mut config, &relay);
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

/// After FLUSHALL (or a Redis restart without persistence, or a failover to
/// a replica that had not received it) a token logged out before was
/// accepted again on every instance: the periodic sync replaced each
/// instance's list with Redis's empty one, including what the instance had
/// revoked itself. Now the instance that made a revocation keeps it and
/// writes it again, and the rest of the fleet gets it back from Redis.
#[tokio::test]
async fn a_logout_survives_the_loss_of_redis_data() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    let a = Gateway::start(BIN, &config).await?;
    let b = Gateway::start(BIN, &config).await?;

    let token = kit.token("alice");
    assert_eq!(a.get("/token-only/x", &token).await?.status, 200);
    assert_eq!(a.logout(&token).await?.status, 200);
    b.eventually("B to learn of the logout", || async {
        Ok((b.get("/token-only/x", &token).await?.status == 401).then_some(()))
    })
    .await?;

    assert_eq!(redis.cli(&["FLUSHALL"])?, "OK");
    // A's next sync finds its own revocation missing and writes it again.
    a.eventually("A to write its revocation again", || async {
        Ok((redis.cli(&["ZCARD", "{sg}:revocations"])? == "1").then_some(()))
    })
    .await?;
    assert_eq!(a.get("/token-only/x", &token).await?.status, 401);
    // B, which lost it at a sync after the FLUSHALL or never did, refuses it
    // again at the latest after its next sync; a sync happens every second
    // in these tests, so two syncs later B must refuse.
    b.eventually("B to refuse the token again", || async {
        Ok((b.get("/token-only/x", &token).await?.status == 401).then_some(()))
    })
    .await?;
    let api = a.get("/api/x", &token).await?;
    assert_eq!(api.status, 401, "no new session for a logged-out token");
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "0");
    let metrics = a.metrics_text().await?;
    assert!(
        metrics.contains("session_gateway_revocations_restored_total 1"),
        "{metrics}"
    );
    Ok(())
}

/// An instance that missed a revocation (its subscription was dead, its
/// periodic sync far off) reused or opened sessions for the revoked token:
/// revocations reached other instances only at their next sync. Now the
/// logout is published to every instance at once, and the store checks it
/// inside the admission itself, so even a deaf instance refuses.
#[tokio::test]
async fn an_instance_that_missed_a_logout_still_refuses_the_token() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let (redis, relay) = redis_behind_a_relay().await?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    let a = Gateway::start(BIN, &config).await?;
    // B reaches Redis through the relay, syncs revocations rarely, and
    // gives up on a silent connection quickly.
    through(&mut config, &relay);
    config.set("sessions", "sweep_interval", "1h");
    let b = Gateway::start(BIN, &config).await?;

    // Alice's session opens on A; B has no lease of it.
    let token = kit.token("alice");
    assert_eq!(a.get("/api/x", &token).await?.status, 200);
    // B hears nothing more on its old connections, its subscription included.
    relay.freeze_existing();
    assert_eq!(a.logout(&token).await?.status, 200);
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "0");

    // Until B has a working connection its calls fail (503); once it has
    // one, the admission refuses the revoked token. It never serves it.
    b.eventually("B to answer from Redis again", || async {
        let reply = b.get("/api/x", &token).await?;
        match reply.status {
            503 => Ok(None),
            401 => Ok(Some(())),
            other => anyhow::bail!("B answered {other} for a logged-out token"),
        }
    })
    .await?;
    assert_eq!(
        redis.cli(&["ZCARD", "{sg:default}:b:0"])?,
        "0",
        "no session was opened for the logged-out token"
    );
    Ok(())
}

/// FLUSHALL drops no connection, so no lease epoch ended: the instance went
/// on serving sessions Redis no longer had, from its lease cache, for as
/// long as their leases lived (here ten minutes), while Redis counted the
/// seats from zero. Now a change of the store's generation ends the epoch.
#[tokio::test]
async fn a_flushall_ends_every_cached_lease() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "touch_interval", "10m");
    config.set("redis", "url", redis.url());
    let gw = Gateway::start(BIN, &config).await?;
    let token = kit.token("alice");
    let first = gw.get("/api/x", &token).await?;
    assert_eq!(first.status, 200);
    let id = first.forwarded_header("x-session-id");
    assert_eq!(
        gw.get("/api/x", &token)
            .await?
            .forwarded_header("x-session-id"),
        id,
        "served from the lease"
    );

    assert_eq!(redis.cli(&["FLUSHALL"])?, "OK");
    gw.eventually("a new session in the emptied Redis", || async {
        let reply = gw.get("/api/x", &token).await?;
        anyhow::ensure!(reply.status == 200, "{}", reply.status);
        Ok((reply.forwarded_header("x-session-id") != id).then_some(()))
    })
    .await?;
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    assert!(gw.logs().contains("Redis lost its data"));
    Ok(())
}

/// With Redis slow (2 s of added latency), newcomers got 503 at the store's
/// 1 s timeout, yet their admissions ran later and took seats nobody used,
/// held until the idle timeout (20 min by default) while everyone else got
/// 429. Now an admission whose caller was told 503 is undone.
#[tokio::test]
async fn admissions_answered_503_leave_no_seat_held() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let (redis, relay) = redis_behind_a_relay().await?;
    let mut config = kit.config();
    through(&mut config, &relay);
    config.pool(0).insert("limit".into(), 5.into());
    let gw = Gateway::start(BIN, &config).await?;
    // One admission first, so the script is loaded and a late EVALSHA runs
    // it instead of failing with NOSCRIPT.
    assert_eq!(gw.get("/api/x", &kit.token("early")).await?.status, 200);

    relay.set_delay(std::time::Duration::from_secs(2));
    for user in ["n1", "n2", "n3", "n4"] {
        let reply = gw.get("/api/x", &kit.token(user)).await?;
        assert_eq!(reply.status, 503, "{user}: {:?}", reply.json());
    }
    relay.set_delay(std::time::Duration::ZERO);
    // Every delayed command has reached Redis (the admissions among them).
    gw.eventually("the delayed commands to reach Redis", || async {
        Ok((relay.in_flight() == 0).then_some(()))
    })
    .await?;

    // The late admissions ran and are undone, or found their ids marked and
    // opened nothing: either way no seat stays held.
    gw.eventually("only the early seat held", || async {
        let held = redis.cli(&["ZCARD", "{sg:default}:b:0"])?;
        Ok((held == "1").then_some(()))
    })
    .await?;
    for user in ["a1", "a2", "a3", "a4"] {
        let reply = gw.get("/api/x", &kit.token(user)).await?;
        assert_eq!(reply.status, 200, "{user} finds a free seat");
    }
    Ok(())
}

/// Replication is asynchronous: an admission acknowledged just before a
/// failover could be lost with the primary. With `redis.wait_replicas` a new
/// session is acknowledged only once a replica has it (`WAIT`); when no
/// replica confirms in time the caller gets 503 and the seat is released.
#[tokio::test]
async fn wait_replicas_acknowledges_only_replicated_admissions() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let primary = RedisServer::start()?;
    let port = primary.port.to_string();
    let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port])?;
    let linked = || async {
        let info = replica.cli(&["INFO", "replication"])?;
        Ok(info.contains("master_link_status:up").then_some(()))
    };
    session_gateway_e2e::eventually("the replica to follow the primary", linked).await?;
    let mut config = kit.config();
    config.use_redis(primary.url());
    config.set("redis", "wait_replicas", 1);
    config.set("redis", "wait_timeout", "300ms");
    let gw = Gateway::start(BIN, &config).await?;

    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    // Acknowledged means the replica has it already, not "soon".
    assert_eq!(replica.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");

    replica.stop();
    let bob = gw.get("/api/x", &kit.token("bob")).await?;
    assert_eq!(bob.status, 503, "{:?}", bob.json());
    assert_eq!(bob.problem(), "store_unavailable");
    gw.eventually("bob's unreplicated seat to be released", || async {
        Ok((primary.cli(&["ZCARD", "{sg:default}:b:0"])? == "1").then_some(()))
    })
    .await?;
    assert!(gw.logs().contains("not acknowledged by enough replicas"));
    Ok(())
}

/// libfaketime, which shifts a process's wall clock (not its monotonic one).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// An instance whose wall clock runs ahead compared it with Redis's times
/// and judged sessions ended that Redis still counts (no lease hits, and no
/// grace through an outage). Now a lease is judged on the monotonic clock.
#[tokio::test]
async fn a_skewed_instance_keeps_its_leases() -> anyhow::Result<()> {
    anyhow::ensure!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: install Debian's faketime (scripts/bootstrap.sh does)"
    );
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "touch_interval", "10s");
    config.set("redis", "url", redis.url());
    config.set("redis", "grace_period", "20s");
    config.pool(0).insert("idle_timeout".into(), "30s".into());
    config
        .pool(0)
        .insert("absolute_timeout".into(), "60s".into());
    // Two minutes ahead: more than the session's whole absolute lifetime.
    let skew = [
        ("LD_PRELOAD", FAKETIME),
        ("FAKETIME", "+120s"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let gw = Gateway::start_with_env(BIN, &config, Await::Ready, &skew).await?;
    let token = kit.token("alice");
    let first = gw.get("/api/x", &token).await?;
    assert_eq!(first.status, 200, "{:?}", first.json());

    // Redis goes away: the session confirmed a moment ago rides out the
    // outage on its lease (grace period), whatever the local clock says.
    redis.stop();
    let again = gw.get("/api/x", &token).await?;
    assert_eq!(again.status, 200, "{:?}", again.json());
    assert_eq!(
        again.forwarded_header("x-session-id"),
        first.forwarded_header("x-session-id")
    );
    Ok(())
}
