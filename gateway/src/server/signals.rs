//! The process signals the gateway answers, replacing Pingora's defaults:
//!
//! | signal | effect |
//! |---|---|
//! | `SIGTERM` | graceful stop (`server.grace_period`, then `server.shutdown_timeout`) |
//! | `SIGINT` | immediate stop |
//! | `SIGHUP` | live reload of the configuration file (the process stays up) |
//! | `SIGQUIT` | ignored, with a warning |
//!
//! Pingora reads `SIGQUIT` as "hand the listening sockets to a new binary
//! over `upgrade_sock`", a path the gateway does not set up (no upgrade
//! socket, no `-u` start); it failed and exited after 15 s. Upgrades are done
//! by rolling restarts (`SIGTERM`), which the readiness endpoint and the
//! shared store make lossless, so the signal is disabled.

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

use crate::reload::ReloadRequests;

/// Makes `SIGHUP` and `SIGQUIT` harmless from process start until
/// [`Signals`] takes them over (their default action would end the process).
pub fn ignore_until_handled() {
    // SAFETY: installing SIG_IGN is async-signal-safe and happens before any
    // thread that could race on the disposition of these two signals exists
    // (Pingora's runtimes are built later, in `Server::run`).
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
}

/// The signal watcher handed to Pingora's main loop.
pub struct Signals {
    reloads: ReloadRequests,
}

impl Signals {
    /// A watcher that sends a reload request for every `SIGHUP`.
    pub fn new(reloads: ReloadRequests) -> Self {
        Self { reloads }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let streams = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::quit()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = streams else {
            // Without signal handling the process could not be stopped
            // gracefully; stopping now is the honest answer.
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.reloads.request();
                }
                _ = quit.recv() => tracing::warn!(
                    "SIGQUIT ignored: graceful binary upgrade is not supported; \
                     use SIGTERM and a rolling restart"
                ),
            }
        }
    }
}
