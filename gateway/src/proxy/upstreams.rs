//! Upstream groups: round-robin over their servers, skipping those the HTTP
//! health check marks down, and the peer (timeouts, TLS trust, protocol) to
//! connect with.

use std::sync::Arc;

use futures_util::FutureExt;
use pingora::http::RequestHeader;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backends, LoadBalancer};
use pingora::protocols::ALPN;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::server_names::ServerNames;
use crate::config::UpstreamConfig;

/// One upstream group.
pub struct Upstream {
    /// Its name.
    pub name: String,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    config: UpstreamConfig,
    tls: PeerTls,
}

/// The TLS trust and protocol of a group's connections, built once from
/// its configuration and copied into every peer (and the health check's).
#[derive(Clone, Default)]
struct PeerTls {
    ca: Option<Arc<CaType>>,
    client: Option<Arc<CertKey>>,
}

impl PeerTls {
    /// From files already checked by the configuration's validation.
    fn of(config: &UpstreamConfig) -> Result<Self, String> {
        let ca = config.ca.as_ref().map(|ders| {
            let certs: Vec<WrappedX509> = ders
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            Arc::<CaType>::from(certs)
        });
        let client = match &config.client_identity {
            None => None,
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                    .map(|c| c.map(|c| c.as_ref().to_vec()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("client_cert_file: {e}"))?;
                if chain.is_empty() {
                    return Err("client_cert_file: no certificate".into());
                }
                let key = PrivateKeyDer::from_pem_slice(identity.key_pem.expose().as_bytes())
                    .map_err(|e| format!("client_key_file: {e}"))?;
                Some(Arc::new(CertKey::new(chain, key.secret_der().to_vec())))
            }
        };
        Ok(Self { ca, client })
    }

    /// Applies the group's TLS and protocol settings to a peer.
    fn apply(&self, config: &UpstreamConfig, peer: &mut HttpPeer) {
        peer.client_cert_key = self.client.clone();
        let options = &mut peer.options;
        options.ca = self.ca.clone();
        options.verify_cert = config.verify_cert;
        options.verify_hostname = config.verify_hostname;
        if config.http2 {
            // With TLS the servers choose by ALPN (HTTP/1.1 stays possible);
            // without it there is nothing to negotiate: prior knowledge.
            options.alpn = if config.tls { ALPN::H2H1 } else { ALPN::H2 };
        }
    }
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
        let mut balancer = match config.resolve_interval {
            None => {
                LoadBalancer::<RoundRobin>::try_from_iter(config.servers.iter().map(String::as_str))
                    .map_err(|e| fail(e.to_string()))?
            }
            Some(interval) => {
                let names = ServerNames::new(&config.name, &config.servers).map_err(fail)?;
                let balancer =
                    LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(names)));
                // The first set was found just now: handed over at once.
                match balancer.update().now_or_never() {
                    Some(Ok(())) => {}
                    Some(Err(e)) => return Err(fail(e.to_string())),
                    None => return Err(fail("the first lookup did not complete".into())),
                }
                let mut balancer = balancer;
                balancer.update_frequency = Some(interval);
                balancer
            }
        };
        if let Some(hc) = &config.health_check {
            let tls = PeerTls::of(config).map_err(fail)?;
            let mut check = HttpHealthCheck::new(&hc.host, config.tls);
            tls.apply(config, &mut check.peer_template);
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
    pub fn new(
        index: usize,
        config: &UpstreamConfig,
        balancer: Arc<LoadBalancer<RoundRobin>>,
    ) -> Result<Self, UpstreamError> {
        let tls = PeerTls::of(config).map_err(|reason| UpstreamError::Servers {
            index,
            name: config.name.clone(),
            reason,
        })?;
        Ok(Upstream {
            name: config.name.clone(),
            balancer,
            config: config.clone(),
            tls,
        })
    }

    /// A group and its balancer. When [`Upstream::is_health_checked`], its
    /// balancer must be run as a background task ([`Upstream::balancer`])
    /// for the probes to happen.
    pub fn build(index: usize, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let balancer = Self::new_balancer(index, config)?;
        Self::new(index, config, Arc::new(balancer))
    }

    /// The group's settings.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Whether the group has an HTTP health check.
    pub fn is_health_checked(&self) -> bool {
        self.config.health_check.is_some()
    }

    /// Whether the group's balancer must run as a background task: for its
    /// health check, or to look its servers' names up again.
    pub fn runs_in_background(&self) -> bool {
        self.is_health_checked() || self.config.resolve_interval.is_some()
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
        self.tls.apply(&self.config, &mut peer);
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tls: bool, http2: bool) -> UpstreamConfig {
        UpstreamConfig {
            name: "erp".into(),
            servers: vec!["127.0.0.1:9000".into()],
            health_check: None,
            connect_timeout: std::time::Duration::from_secs(1),
            read_timeout: std::time::Duration::from_secs(1),
            write_timeout: std::time::Duration::from_secs(1),
            tls,
            sni: "127.0.0.1".into(),
            ca: None,
            client_identity: None,
            verify_cert: true,
            verify_hostname: false,
            http2,
            resolve_interval: None,
        }
    }

    #[test]
    fn http2_is_offered_by_alpn_with_tls_and_by_prior_knowledge_without() {
        let alpn = |tls, http2| {
            let upstream = Upstream::build(0, &config(tls, http2)).unwrap();
            let peer = upstream.peer(b"").unwrap();
            assert!(!peer.options.verify_hostname);
            peer.options.alpn
        };
        assert_eq!(alpn(true, true), ALPN::H2H1);
        assert_eq!(alpn(false, true), ALPN::H2);
        assert_eq!(alpn(true, false), ALPN::H1);
        assert_eq!(alpn(false, false), ALPN::H1);
    }
}
