//! Upstream groups: round-robin over their servers, skipping those the HTTP
//! health check marks down, and the peer (timeouts, TLS) to connect with.

use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::lb::LoadBalancer;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::upstreams::peer::HttpPeer;

use crate::config::UpstreamConfig;

/// One upstream group.
pub struct Upstream {
    /// Its name.
    pub name: String,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    config: UpstreamConfig,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why an upstream group could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A server address did not resolve.
    #[error("upstreams[{index}] ({name}): {reason}")]
    Servers {
        /// Position in the configuration.
        index: usize,
        /// Group name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl Upstream {
    /// The balancer of a group. When the group has a health check, the
    /// caller must run the balancer as a background service (it probes on
    /// its own schedule) and pass its shared `Arc` to [`Upstream::new`].
    fn new_balancer(
        index: usize,
        config: &UpstreamConfig,
    ) -> Result<LoadBalancer<RoundRobin>, UpstreamError> {
        let fail = |reason: String| UpstreamError::Servers {
            index,
            name: config.name.clone(),
            reason,
        };
        let mut balancer =
            LoadBalancer::<RoundRobin>::try_from_iter(config.servers.iter().map(String::as_str))
                .map_err(|e| fail(e.to_string()))?;
        if let Some(hc) = &config.health_check {
            let mut check = HttpHealthCheck::new(&hc.host, config.tls);
            let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None)
                .map_err(|e| fail(format!("health_check.path: {e}")))?;
            req.insert_header("Host", hc.host.as_str())
                .map_err(|e| fail(format!("health_check.host: {e}")))?;
            check.req = req;
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.read_timeout = Some(hc.timeout);
            balancer.set_health_check(Box::new(check));
            balancer.health_check_frequency = Some(hc.interval);
            balancer.parallel_health_check = true;
        }
        Ok(balancer)
    }

    /// A group over a balancer built by [`Upstream::balancer`].
    pub fn new(config: &UpstreamConfig, balancer: Arc<LoadBalancer<RoundRobin>>) -> Self {
        Upstream {
            name: config.name.clone(),
            balancer,
            config: config.clone(),
        }
    }

    /// A group and its balancer. When [`Upstream::is_health_checked`], its
    /// balancer must be run as a background task ([`Upstream::balancer`])
    /// for the probes to happen.
    pub fn build(index: usize, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let balancer = Self::new_balancer(index, config)?;
        Ok(Self::new(config, Arc::new(balancer)))
    }

    /// The group's settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Whether the group has an HTTP health check.
    pub fn is_health_checked(&self) -> bool {
        self.config.health_check.is_some()
    }

    /// The balancer (run it as a background task when health-checked).
    pub fn balancer(&self) -> &Arc<LoadBalancer<RoundRobin>> {
        &self.balancer
    }

    /// The peer for the next request, or `None` when every server is down.
    pub fn peer(&self, key: &[u8]) -> Option<HttpPeer> {
        let backend = self.balancer.select(key, 256)?;
        let mut peer = HttpPeer::new(backend, self.config.tls, self.config.sni.clone());
        peer.options.connection_timeout = Some(self.config.connect_timeout);
        peer.options.read_timeout = Some(self.config.read_timeout);
        peer.options.write_timeout = Some(self.config.write_timeout);
        Some(peer)
    }
}
