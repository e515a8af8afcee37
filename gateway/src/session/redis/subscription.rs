//! The revocation channel: a pubsub subscription that hears revocations,
//! lease drops and freed seats from the fleet, checked with a PING so a half-open one ends,
//! and the store generation that reveals a Redis that lost its data.

use std::time::Duration;

use redis::Value;

use super::connect::Connection;
use super::decode::text;
use super::{LeaseDrop, RedisStore};
use crate::session::{Revocation, RevocationNews, StoreError};

/// How often the revocation subscription is checked with a PING: the bound
/// on how long a subscription left half-open goes unnoticed (plus the
/// response timeout).
const PUBSUB_PING_INTERVAL: Duration = Duration::from_secs(1);

impl RedisStore {
    /// Listens for revocations published by any instance and drops the
    /// matching leases, until `shutdown` turns true. Reconnects by itself.
    pub async fn listen_for_revocations(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use futures_util::StreamExt;
        let channel = self.revocations_channel();
        loop {
            let subscribed = async {
                let connect = async {
                    let client = self.pubsub_client().await?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    redis::RedisResult::Ok(pubsub)
                };
                let pubsub = tokio::time::timeout(self.timeout, connect)
                    .await
                    .map_err(|_| io_timeout("subscribing to the revocation channel"))??;
                // Closes published before this point were not heard: leases
                // confirmed until now must ask Redis again; revocations
                // published meanwhile are fetched again.
                self.leases.subscribed();
                self.tell(RevocationNews::Resubscribed);
                let (mut sink, mut messages) = pubsub.split();
                let mut generation = self.generation().await.ok();
                // A half-open subscription hears nothing and never ends: a
                // PING that gets no answer ends it (and with it the epoch).
                let mut ping = tokio::time::interval(PUBSUB_PING_INTERVAL);
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let text: String = message.get_payload().unwrap_or_default();
                            if let Some(encoded) = text.strip_prefix("revoke|") {
                                if let Some(revocation) = Revocation::decode(encoded) {
                                    self.tell(RevocationNews::Revoked(revocation));
                                }
                            } else if let Some(pool) = text.strip_prefix("seat|") {
                                self.seats.tell(pool);
                            } else if let Some(revocation) = LeaseDrop::parse(&text) {
                                self.leases.forget(&revocation.pool, &revocation.identity);
                                // A closed session: its seat may be free
                                // for a waiting caller.
                                self.seats.tell(&revocation.pool);
                            }
                        }
                        _ = ping.tick() => {
                            tokio::time::timeout(self.timeout, sink.ping::<Value>())
                                .await
                                .map_err(|_| io_timeout("revocation channel PING"))??;
                            self.check_generation(&mut generation).await;
                        }
                    }
                }
                redis::RedisResult::Ok(())
            };
            tokio::select! {
                result = subscribed => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "revocation channel lost; reconnecting");
                    }
                }
                _ = shutdown.changed() => return,
            }
            // Messages are missed from now until the next subscription: no
            // cached lease is fresh meanwhile (grace still applies).
            self.leases.subscription_lost();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The store's generation (written when Redis has none).
    pub(super) async fn generation(&self) -> Result<String, StoreError> {
        let fresh = crate::session::new_session_id();
        let value = self
            .run(
                &self.scripts.generation,
                &[format!("{{{}}}:generation", self.prefix)],
                &[fresh],
            )
            .await?;
        text(&value)
    }

    /// Ends the lease epoch when the generation changed since `seen`: Redis
    /// lost its data without dropping a connection (FLUSHALL, a restart
    /// without persistence behind a proxy), so sessions cached here may no
    /// longer exist there. Revocations are fetched again too.
    pub(super) async fn check_generation(&self, seen: &mut Option<String>) {
        let Ok(now) = self.generation().await else {
            return;
        };
        if seen.as_ref().is_some_and(|g| *g != now) {
            tracing::warn!("Redis lost its data (new store generation): every cached lease ends");
            self.leases.subscribed();
            self.tell(RevocationNews::Resubscribed);
        }
        *seen = Some(now);
    }

    /// Passes news from the revocation channel to the listener, if any.
    pub(super) fn tell(&self, news: RevocationNews) {
        let listener = self.revocation_listener.lock().clone();
        if let Some(listener) = listener {
            listener(news);
        }
    }

    /// A client for the revocation channel: the server, a cluster node (any
    /// node hears every PUBLISH), or the primary the sentinels name now.
    pub(super) async fn pubsub_client(&self) -> redis::RedisResult<redis::Client> {
        match &self.connection {
            Connection::Sentinel { sentinel, .. } => sentinel.lock().await.async_get_client().await,
            _ => Ok(self.pubsub.clone()),
        }
    }

    /// The channel of closes and revocations.
    pub(super) fn revocations_channel(&self) -> String {
        format!("{}:revocations", self.prefix)
    }
}

/// A timeout as the redis crate's I/O error, for code that handles both.
pub(super) fn io_timeout(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}
