//! Upgraded connections (WebSocket) on `session` routes are tied to their
//! session: once it closes, for any reason and on any instance, the tunnel
//! stops carrying bytes and both of its connections end, so a seat freed by
//! a logout cannot keep serving its old holder while someone else takes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use session_gateway_e2e::{Await, ConfigDoc, Devkit, Gateway, RedisServer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// How long one read on the tunnel waits for its echo.
const ECHO_WAIT: Duration = Duration::from_secs(2);

/// A backend that switches every request to an echo tunnel (`101`), and
/// counts what reaches it after the switch.
struct EchoBackend {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    /// Set when a tunnel's upstream connection ended (EOF or error).
    ended: Arc<AtomicBool>,
}

impl EchoBackend {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (count, end) = (Arc::clone(&received), Arc::clone(&ended));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (count, end) = (Arc::clone(&count), Arc::clone(&end));
                tokio::spawn(async move {
                    // Any outcome ends this connection: EOF, reset or a
                    // malformed head.
                    let _ = Self::serve(socket, &count).await;
                    end.store(true, Ordering::SeqCst);
                });
            }
        });
        Ok(Self {
            addr,
            received,
            ended,
        })
    }

    async fn serve(mut socket: TcpStream, received: &AtomicUsize) -> anyhow::Result<()> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).await? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        socket
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await?;
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            received.fetch_add(n, Ordering::SeqCst);
            socket.write_all(&buffer[..n]).await?;
        }
    }
}

/// The standard configuration with one seat and a `/ws/` session route to
/// the echo backend that allows upgrades.
fn config(kit: &Devkit, echo: &EchoBackend) -> ConfigDoc {
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    config.push(
        "upstreams",
        &format!(
            "name = \"ws\"\nservers = [\"{}\"]\nread_timeout = \"60s\"",
            echo.addr
        ),
    );
    config.push(
        "routes",
        "name = \"ws\"\npath_prefix = \"/ws/\"\nupstream = \"ws\"\npolicy = \"session\"\nupgrades = \"allow\"",
    );
    config.set("admin", "token_env", "TUNNEL_TEST_ADMIN_TOKEN");
    config
}

/// A WebSocket-style upgrade through the gateway; the open tunnel.
async fn open_tunnel(gw: &Gateway, token: &str) -> anyhow::Result<TcpStream> {
    let mut socket = TcpStream::connect(gw.addr).await?;
    let request = format!(
        "GET /ws/chat HTTP/1.1\r\nHost: erp\r\nAuthorization: Bearer {token}\r\n\
Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(
            tokio::time::timeout(ECHO_WAIT, socket.read(&mut byte)).await?? == 1,
            "connection closed during the upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    anyhow::ensure!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    Ok(socket)
}

/// Sends one message on the tunnel: `true` if it came back, `false` once the
/// tunnel is closed.
async fn echoes(socket: &mut TcpStream) -> anyhow::Result<bool> {
    let message = b"ping\n";
    if socket.write_all(message).await.is_err() {
        return Ok(false);
    }
    let mut back = [0u8; 5];
    match tokio::time::timeout(ECHO_WAIT, socket.read_exact(&mut back)).await {
        Ok(Ok(_)) => Ok(&back == message),
        Ok(Err(_)) => Ok(false),
        Err(_) => anyhow::bail!("the tunnel neither echoed nor closed within {ECHO_WAIT:?}"),
    }
}

/// How many messages a tunnel may carry after its session closed before the
/// test gives up: one every [`PACE`], so far more than the gateway's one-second
/// re-check needs.
const MAX_MESSAGES: usize = 400;
/// The pause between two messages on the tunnel (traffic, not a wait).
const PACE: Duration = Duration::from_millis(25);

/// Keeps talking on the tunnel until the gateway ends it; how many messages
/// still came back.
async fn until_closed(socket: &mut TcpStream) -> anyhow::Result<usize> {
    for carried in 0..MAX_MESSAGES {
        if !echoes(socket).await? {
            return Ok(carried);
        }
        tokio::time::sleep(PACE).await;
    }
    anyhow::bail!("the tunnel still carried {MAX_MESSAGES} messages")
}

async fn start(binary: &str, config: &ConfigDoc) -> anyhow::Result<Gateway> {
    Gateway::start_with_env(
        binary,
        config,
        Await::Ready,
        &[("TUNNEL_TEST_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
}

#[tokio::test]
async fn a_logout_ends_the_tunnel_before_the_next_holder_of_the_seat_is_served()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let echo = EchoBackend::start().await?;
    let gw = start(BIN, &config(&kit, &echo)).await?;

    let alice = kit.token("alice");
    let mut tunnel = open_tunnel(&gw, &alice).await?;
    assert!(echoes(&mut tunnel).await?, "the tunnel carries bytes");
    assert_eq!(
        gw.metric("session_gateway_tunnels_open{pool=\"default\"}")
            .await?,
        Some(1.0)
    );
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        429,
        "alice's tunnel holds the only seat"
    );

    assert_eq!(gw.logout(&alice).await?.status, 200);
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        200,
        "the seat went to bob"
    );
    until_closed(&mut tunnel).await?;
    let carried = echo.received.load(Ordering::SeqCst);
    // Both ends are closed: the backend saw its connection end, and nothing
    // sent afterwards reaches it.
    eventually("the backend's side of the tunnel to end", || async {
        Ok(echo.ended.load(Ordering::SeqCst).then_some(()))
    })
    .await?;
    let _ = tunnel.write_all(b"after the close\n").await;
    assert_eq!(echo.received.load(Ordering::SeqCst), carried);

    gw.eventually("the close to be counted", || async {
        let closed = gw
            .metric(
                "session_gateway_tunnels_closed_total{pool=\"default\",reason=\"session_closed\"}",
            )
            .await?;
        let open = gw
            .metric("session_gateway_tunnels_open{pool=\"default\"}")
            .await?;
        Ok((closed == Some(1.0) && open == Some(0.0)).then_some(()))
    })
    .await?;
    assert!(
        gw.logs().contains("\"event\":\"tunnel_closed\""),
        "audited:\n{}",
        gw.logs()
    );
    Ok(())
}

#[tokio::test]
async fn an_admin_close_on_another_instance_ends_the_tunnel() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let echo = EchoBackend::start().await?;
    let redis = RedisServer::start()?;
    let mut config = config(&kit, &echo);
    config.use_redis(redis.url());
    let a = start(BIN, &config).await?;
    let b = start(BIN, &config).await?;

    let alice = kit.token("alice");
    let mut tunnel = open_tunnel(&a, &alice).await?;
    assert!(echoes(&mut tunnel).await?);
    let session = b.get("/api/x", &alice).await?;
    let id = session.forwarded_header("x-session-id").unwrap_or_default();
    assert!(!id.is_empty(), "the tunnel's session, reused on b");

    let closed = b
        .client()
        .delete(b.admin_url(&format!("/admin/v1/sessions/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(closed.status().as_u16(), 200);
    until_closed(&mut tunnel).await?;
    a.eventually("the close to be counted on a", || async {
        Ok((a
            .metric(
                "session_gateway_tunnels_closed_total{pool=\"default\",reason=\"session_closed\"}",
            )
            .await?
            == Some(1.0))
        .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn tunnel_traffic_does_not_keep_an_idle_session_open() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let echo = EchoBackend::start().await?;
    let mut config = config(&kit, &echo);
    config.set("sessions", "idle_timeout", "2s");
    let gw = start(BIN, &config).await?;

    let alice = kit.token("alice");
    let mut tunnel = open_tunnel(&gw, &alice).await?;
    // Only API calls slide the idle timer: the session closes by idle
    // while the tunnel is busy, and the tunnel ends with it.
    until_closed(&mut tunnel).await?;
    let session = gw.session(&alice).await?;
    assert_eq!(
        session.status,
        404,
        "the session closed: {:?}",
        session.json()
    );
    Ok(())
}

#[tokio::test]
async fn an_upgrade_the_backend_declines_is_an_ordinary_request() -> anyhow::Result<()> {
    // The devkit backend answers an upgrade request with 200: no tunnel is
    // opened or counted, and the session is used like any call's.
    let kit = Devkit::start().await?;
    let echo = EchoBackend::start().await?;
    let mut config = config(&kit, &echo);
    config.push(
        "routes",
        "name = \"ws-declined\"\npath_prefix = \"/ws-declined/\"\nupstream = \"erp\"\npolicy = \"session\"\nupgrades = \"allow\"",
    );
    let gw = start(BIN, &config).await?;
    let token = kit.token("alice");
    let request = format!(
        "GET /ws-declined/x HTTP/1.1\r\nHost: erp\r\nAuthorization: Bearer {token}\r\n\
Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n"
    );
    let answer = session_gateway_e2e::raw_conversation(gw.addr, request.as_bytes()).await?;
    assert_eq!(answer.statuses(), vec![200]);
    assert_eq!(
        gw.metric("session_gateway_tunnels_open{pool=\"default\"}")
            .await?,
        None,
        "no tunnel was counted"
    );
    Ok(())
}
