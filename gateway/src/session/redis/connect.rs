//! Reaching Redis: the three topologies (standalone, Sentinel, Cluster) as
//! one [`Connection`], and the clients behind it, with TLS when the URLs are
//! `rediss://`.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, IntoConnectionInfo, TlsCertificates, TlsMode, Value};

use super::health::Replaceable;
use crate::config::{RedisConfig, RedisTls};
use crate::session::StoreError;

/// The connection: the redis crate's own clients, which reconnect by
/// themselves when a connection drops, each held in a [`Replaceable`] that
/// also replaces one that stops answering (see [`health`](super::health)). They run a
/// driver task on the runtime that creates them, so they are created on the
/// store's own small runtime (see [`Driver`](super::driver::Driver)), never on whichever Pingora
/// service happens to call first.
pub(super) enum Connection {
    Standalone {
        client: redis::Client,
        config: redis::aio::ConnectionManagerConfig,
        conn: Replaceable<ConnectionManager>,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
        conn: Replaceable<ClusterConnection>,
    },
    Sentinel {
        /// Knows the sentinels, their password and TLS, and the primary's.
        sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
        config: redis::aio::ConnectionManagerConfig,
        /// The current primary; replaced after any failed call, so the next
        /// call asks the sentinels again (after a failover the old primary
        /// refuses writes or is gone).
        conn: Replaceable<ConnectionManager>,
    },
}

impl Connection {
    /// Records the outcome of a call (`None`: the call timed out).
    pub(super) fn record(&self, outcome: Option<&Result<Value, StoreError>>) {
        match self {
            Connection::Standalone { conn, .. } | Connection::Sentinel { conn, .. } => {
                conn.record(outcome)
            }
            Connection::Cluster { conn, .. } => conn.record(outcome),
        }
    }
}

/// A client for one server: with TLS when the URL is `rediss://` (the
/// configuration then always carries TLS settings, even if only the
/// system's roots).
pub(super) fn client(
    url: &str,
    certificates: Option<&TlsCertificates>,
) -> redis::RedisResult<redis::Client> {
    match certificates {
        Some(certificates) => redis::Client::build_with_tls(url, certificates.clone()),
        None => redis::Client::open(url),
    }
}

/// The redis crate's form of the TLS settings; without a CA file it trusts
/// the system's roots.
pub(super) fn tls_certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|identity| ClientTlsConfig {
            client_cert: identity.cert_pem.clone(),
            client_key: identity.key_pem.expose().as_bytes().to_vec(),
        }),
        root_cert: tls.ca_pem.clone(),
    }
}

/// A client that asks the sentinels for the primary of `master_name` and
/// connects to it. The sentinels' URLs carry their own password; the primary
/// gets `master_password`. With `rediss://` sentinels, the primary is
/// reached over TLS too, with the same CA and client certificate: a
/// deployment that encrypts one hop encrypts the other.
pub(super) fn sentinel_client(
    config: &RedisConfig,
    certificates: Option<&TlsCertificates>,
) -> redis::RedisResult<SentinelClient> {
    let mut sentinels = Vec::with_capacity(config.urls.len());
    let mut credentials = None;
    for url in &config.urls {
        let info = url.expose().into_connection_info()?;
        let settings = info.redis_settings();
        credentials.get_or_insert_with(|| {
            (
                settings.username().map(str::to_string),
                settings.password().map(str::to_string),
            )
        });
        sentinels.push(info.addr().clone());
    }
    let mut builder = SentinelClientBuilder::new(
        sentinels,
        config.master_name.as_deref().unwrap_or_default(),
        SentinelServerType::Master,
    )?;
    if let Some((username, password)) = credentials {
        if let Some(username) = username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(password) = &config.master_password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_sentinel_certificates(certificates.clone())
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates.clone());
    }
    builder.build()
}

pub(super) fn first_url(config: &RedisConfig) -> Result<&str, StoreError> {
    config
        .urls
        .first()
        .map(|u| u.expose())
        .ok_or_else(|| StoreError::Protocol("no Redis URL configured".into()))
}
