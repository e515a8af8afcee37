//! Upstream servers named by host name, looked up again on an interval
//! (`[[upstreams]] resolve_interval`): the balancer then spreads requests
//! over the addresses the names have now, and the health check probes those.
//!
//! Lookups use the system resolver (`getaddrinfo`: `/etc/hosts`, DNS), off
//! the proxy threads. A lookup that fails or finds nothing keeps the
//! addresses found last, so a resolver outage never empties a group.

use std::collections::{BTreeSet, HashMap};
use std::net::ToSocketAddrs;

use async_trait::async_trait;
use pingora::lb::Backend;
use pingora::lb::discovery::ServiceDiscovery;

/// The servers of one group, as `host:port` entries.
pub struct ServerNames {
    group: String,
    servers: Vec<String>,
    /// What the last lookup found; served again when a lookup fails.
    last: parking_lot::Mutex<BTreeSet<Backend>>,
    /// Whether the balancer took the first set yet: the one found while the
    /// configuration loaded, handed over without a second lookup (so the
    /// balancer has its servers before it serves).
    seeded: std::sync::atomic::AtomicBool,
}

impl ServerNames {
    /// The servers of a group, looked up now (blocking: at start-up and
    /// reload, before the group serves).
    pub fn new(group: &str, servers: &[String]) -> Result<Self, String> {
        let first = lookup(servers)?;
        Ok(Self {
            group: group.to_string(),
            servers: servers.to_vec(),
            last: parking_lot::Mutex::new(first),
            seeded: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl ServiceDiscovery for ServerNames {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        use std::sync::atomic::Ordering;
        if !self.seeded.swap(true, Ordering::SeqCst) {
            return Ok((self.last.lock().clone(), HashMap::new()));
        }
        let servers = self.servers.clone();
        let found = tokio::task::spawn_blocking(move || lookup(&servers))
            .await
            .unwrap_or_else(|e| Err(format!("lookup task failed: {e}")));
        let mut last = self.last.lock();
        match found {
            Ok(found) => {
                if *last != found {
                    let addresses: Vec<String> = found.iter().map(|b| b.addr.to_string()).collect();
                    tracing::info!(upstream = %self.group, addresses = ?addresses, "upstream servers resolved to new addresses");
                }
                *last = found;
            }
            Err(error) => {
                tracing::warn!(upstream = %self.group, %error, "upstream lookup failed; keeping the last addresses");
            }
        }
        Ok((last.clone(), HashMap::new()))
    }
}

/// Every address of every server; an error if any server finds none.
fn lookup(servers: &[String]) -> Result<BTreeSet<Backend>, String> {
    let mut found = BTreeSet::new();
    for server in servers {
        let addresses = server
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{server}`: {e}"))?;
        let before = found.len();
        for address in addresses {
            let backend = Backend::new(&address.to_string())
                .map_err(|e| format!("`{server}` gave `{address}`: {e}"))?;
            found.insert(backend);
        }
        if found.len() == before {
            return Err(format!("`{server}` resolves to no address"));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_set_is_handed_over_then_looked_up_again() {
        let names =
            ServerNames::new("erp", &["127.0.0.1:9000".into(), "localhost:9001".into()]).unwrap();
        let (first, _) = names.discover().await.unwrap();
        assert!(first.iter().any(|b| b.addr.to_string() == "127.0.0.1:9000"));
        assert!(first.iter().any(|b| b.addr.to_string().ends_with(":9001")));
        let (again, _) = names.discover().await.unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn a_name_that_does_not_resolve_is_an_error() {
        let error = lookup(&["no-such-host.invalid:80".into()]).unwrap_err();
        assert!(error.contains("no-such-host.invalid"), "{error}");
    }
}
