//! A TCP relay between a gateway and Redis that can fail the way networks
//! do: it forwards bytes both ways until told to leave its existing
//! connections half-open (bytes are taken and silently dropped, nothing is
//! closed, nothing answers, as when a NAT or firewall forgets a flow), while
//! new connections keep working, or to delay what it passes on. Loopback
//! only; its tasks end with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A relay to one target on a free loopback port.
pub struct Relay {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Connections accepted so far (each gets the next number).
    accepted: AtomicU64,
    /// Connections numbered below this forward nothing any more.
    frozen_below: AtomicU64,
    /// Added before each chunk is passed on towards the target, in ms.
    delay_ms: AtomicU64,
    /// Chunks read from a client and not yet passed on to the target.
    in_flight: AtomicU64,
}

impl Relay {
    /// Starts relaying `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(relay(client, server, number, state));
            }
        });
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL of the relay.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Delays every chunk on its way to the target by `delay` (a slow
    /// network or a Redis busy elsewhere); zero ends the delay.
    pub fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Chunks taken from clients and not yet passed on to the target (held
    /// by a delay).
    pub fn in_flight(&self) -> u64 {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Leaves every connection accepted so far half-open; later ones work.
    pub fn freeze_existing(&self) {
        let accepted = self.state.accepted.load(Ordering::SeqCst);
        self.state.frozen_below.store(accepted, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes; once frozen, reads and drops.
async fn relay(client: TcpStream, server: TcpStream, number: u64, state: Arc<State>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_state = Arc::clone(&state);
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            up_state.in_flight.fetch_add(1, Ordering::SeqCst);
            let delay = up_state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let passed = number < up_state.frozen_below.load(Ordering::SeqCst)
                || server_write.write_all(&buf[..n]).await.is_ok();
            up_state.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !passed {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if number >= state.frozen_below.load(Ordering::SeqCst)
                && client_write.write_all(&buf[..n]).await.is_err()
            {
                break;
            }
        }
    };
    tokio::join!(up, down);
}
