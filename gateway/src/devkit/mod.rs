//! The devkit: a demo OpenID Connect issuer and a demo ERP backend.
//!
//! The gateway only makes sense between an identity provider and a backend,
//! and both have to be real HTTP servers for the gateway to be exercised the
//! way it runs in production: discovery and JWKS fetched over the network, key
//! rotation observed through the JWKS cache, requests forwarded over a socket.
//! The devkit provides the smallest such pair, and it serves two audiences:
//!
//! * `session-gateway dev` runs them next to the gateway so that a newcomer
//!   can walk through sessions, token refresh and license exhaustion with
//!   nothing but `curl` (docs/design.md §8). Pingora owns the main thread and
//!   forbids a tokio runtime there, so [`spawn_devkit_thread`] runs both
//!   servers on a thread of their own.
//! * The end-to-end tests use them as *the* issuer and backend: they start an
//!   [`Issuer`] and a [`Backend`] inside `#[tokio::test]`, mint tokens in
//!   process with [`IssuerHandle::mint`] (including expired, mis-signed or
//!   oddly shaped ones), and assert on what the backend received with
//!   [`BackendHandle::last_request`] and [`BackendHandle::requests`].
//!
//! `session-gateway devkit` runs both until Ctrl-C with [`run_devkit`], for
//! people who want to point a gateway of their own at them.
//!
//! Nothing here is meant for production: the issuer mints a token for any
//! user name it is asked for.

mod backend;
mod issuer;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use backend::{Backend, BackendHandle, RecordedRequest};
pub use issuer::{
    DEFAULT_AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_EXPIRES_IN, DEFAULT_SCOPE, Issuer, IssuerError,
    IssuerHandle, TokenRequest,
};
/// Re-exported so that callers of [`TokenRequest`] and
/// [`IssuerHandle::sign_raw`] need no direct `jsonwebtoken` dependency.
pub use jsonwebtoken::{Algorithm, Header};

/// How long a stopping server waits for in-flight requests (a `/slow` call,
/// say) before its connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One axum server running on the current tokio runtime, stopped through a
/// oneshot channel (graceful shutdown), shared by the issuer and the backend.
struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Binds `bind`; `what` names the server in the error ("the devkit
    /// issuer"), so that a port already in use is reported clearly.
    async fn bind(bind: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| anyhow::anyhow!("{what} cannot listen on {bind}: {e}"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("{what}: reading the bound address of {bind}"))?;
        Ok((listener, addr))
    }

    /// Serves `router` on `listener` (a plain `TcpListener`, or the
    /// backend's metered one) in a task of the current runtime.
    fn serve<L>(listener: L, addr: SocketAddr, router: Router, what: &'static str) -> Self
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                // A dropped sender also means "stop".
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(server = what, %addr, %error, "devkit server failed");
            }
        });
        tracing::debug!(server = what, %addr, "devkit server listening");
        RunningServer {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Stops accepting, lets in-flight requests finish for at most
    /// [`SHUTDOWN_GRACE`], and waits until the server task has ended.
    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Only signals: the task ends on its own once its connections close.
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The issuer and the backend running on a thread of their own, as started by
/// [`spawn_devkit_thread`]. Dropping it (or [`DevkitThread::stop`]) shuts both
/// servers down and joins the thread.
#[derive(Debug)]
pub struct DevkitThread {
    issuer_url: String,
    issuer_addr: SocketAddr,
    backend_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DevkitThread {
    /// The issuer URL (`iss` of its tokens, base of its discovery document),
    /// e.g. `http://127.0.0.1:9000`.
    pub fn issuer_url(&self) -> &str {
        &self.issuer_url
    }

    /// The address the issuer listens on.
    pub fn issuer_addr(&self) -> SocketAddr {
        self.issuer_addr
    }

    /// The address the demo ERP backend listens on.
    pub fn backend_addr(&self) -> SocketAddr {
        self.backend_addr
    }

    /// Shuts both servers down and waits for the thread to end.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the devkit thread panicked");
        }
    }
}

impl Drop for DevkitThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What the devkit thread reports once both servers are bound.
struct Started {
    issuer_url: String,
    issuer_addr: SocketAddr,
    backend_addr: SocketAddr,
}

/// Starts the issuer on `issuer_bind` and a backend named `erp` on
/// `backend_bind`, on a new thread with its own tokio runtime, and returns
/// once both listen, or with the first error (a port in use is reported with
/// its address).
///
/// For `session-gateway dev`: Pingora runs its own runtimes and must own the
/// main thread, so the devkit cannot share a runtime with it.
///
/// # Errors
///
/// If the runtime or the thread cannot be created, or either server cannot
/// start (a port in use is reported with its address); nothing keeps running
/// then.
pub fn spawn_devkit_thread(
    issuer_bind: SocketAddr,
    backend_bind: SocketAddr,
) -> anyhow::Result<DevkitThread> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("devkit")
        .enable_all()
        .build()
        .context("building the devkit's tokio runtime")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Started>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();

    let thread = std::thread::Builder::new()
        .name("devkit".into())
        .spawn(move || {
            runtime.block_on(async move {
                let issuer = match Issuer::start(issuer_bind).await {
                    Ok(issuer) => issuer,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let backend = match Backend::start(backend_bind, "erp").await {
                    Ok(backend) => backend,
                    Err(error) => {
                        issuer.shutdown().await;
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let started = Started {
                    issuer_url: issuer.issuer_url().to_owned(),
                    issuer_addr: issuer.addr(),
                    backend_addr: backend.addr(),
                };
                if ready_tx.send(Ok(started)).is_ok() {
                    // Stop on request, or when the DevkitThread is gone.
                    let _ = stop_rx.await;
                }
                tokio::join!(issuer.shutdown(), backend.shutdown());
            });
        })
        .context("spawning the devkit thread")?;

    let started = match ready_rx.recv() {
        Ok(Ok(started)) => started,
        Ok(Err(error)) => {
            let _ = thread.join();
            return Err(error);
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the devkit thread ended before its servers started");
        }
    };
    Ok(DevkitThread {
        issuer_url: started.issuer_url,
        issuer_addr: started.issuer_addr,
        backend_addr: started.backend_addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Runs the issuer and a backend named `erp` on the current runtime until
/// Ctrl-C, then shuts both down. For `session-gateway devkit`.
///
/// # Errors
///
/// If either server cannot start (a port in use is reported with its
/// address), or Ctrl-C cannot be listened for.
pub async fn run_devkit(issuer_bind: SocketAddr, backend_bind: SocketAddr) -> anyhow::Result<()> {
    let issuer = Issuer::start(issuer_bind).await?;
    let backend = match Backend::start(backend_bind, "erp").await {
        Ok(backend) => backend,
        Err(error) => {
            issuer.shutdown().await;
            return Err(error);
        }
    };
    tracing::info!(
        issuer = issuer.issuer_url(),
        backend = %backend.addr(),
        "devkit running; Ctrl-C stops it"
    );
    let interrupted = tokio::signal::ctrl_c().await.context("waiting for Ctrl-C");
    tokio::join!(issuer.shutdown(), backend.shutdown());
    interrupted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn devkit_thread_serves_both_and_stops() -> anyhow::Result<()> {
        let devkit = spawn_devkit_thread(loopback(), loopback())?;
        assert_eq!(
            devkit.issuer_url(),
            format!("http://127.0.0.1:{}", devkit.issuer_addr().port())
        );
        let issuer_addr = devkit.issuer_addr();
        let backend_addr = devkit.backend_addr();
        // Plain blocking sockets: this test runs outside any runtime, like
        // `session-gateway dev`.
        assert!(std::net::TcpStream::connect(issuer_addr).is_ok());
        assert!(std::net::TcpStream::connect(backend_addr).is_ok());
        devkit.stop();
        assert!(std::net::TcpStream::connect(issuer_addr).is_err());
        assert!(std::net::TcpStream::connect(backend_addr).is_err());
        Ok(())
    }

    #[test]
    fn devkit_thread_reports_a_port_in_use() -> anyhow::Result<()> {
        let taken = std::net::TcpListener::bind(loopback())?;
        let addr = taken.local_addr()?;
        let error = spawn_devkit_thread(loopback(), addr)
            .err()
            .ok_or_else(|| anyhow::anyhow!("the devkit started on a port in use"))?;
        let message = error.to_string();
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(message.contains("backend"), "{message}");
        Ok(())
    }
}
