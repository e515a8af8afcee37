//! Whether a proxy listener really serves: a TCP connection to it. Used by
//! `/readyz` and by the start-up check, so neither reports a listener that
//! does not accept connections (a proxy service that failed in its own
//! thread leaves the process up with its port closed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long one probe waits for the connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `addr` accepts a connection within [`PROBE_TIMEOUT`]; a wildcard
/// address is probed on loopback.
pub async fn accepts(addr: SocketAddr) -> bool {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(target)).await,
        Ok(Ok(_))
    )
}
