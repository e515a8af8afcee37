//! Who the client is, behind any proxies (`server.trusted_proxies`), and the
//! request id: what the gateway tells the backend in `X-Forwarded-For`,
//! `Forwarded`, `X-Forwarded-Proto` and the request id header, and writes to
//! the access log.
//!
//! The client address is found by walking the forwarding chain from the
//! gateway's own peer back toward the client, for as long as each hop is a
//! trusted proxy: the first untrusted hop is the client. Everything a client
//! wrote before that is its own claim and is dropped, so a client cannot
//! choose the address the backend sees. `Forwarded` (RFC 7239) is read in
//! preference to `X-Forwarded-For` when a trusted peer sent it.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use ipnet::IpNet;

/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The longest request id kept from a trusted proxy.
const MAX_REQUEST_ID: usize = 128;

/// The forwarding settings of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// `server.trusted_proxies`.
    pub trusted: Vec<IpNet>,
    /// `server.request_id_header`.
    pub request_id_header: HeaderName,
    /// Whether the proxy listeners speak TLS (`server.tls`).
    pub tls: bool,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            request_id_header: HeaderName::from_static("x-request-id"),
            tls: false,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client's address.
    pub client: IpAddr,
    /// The hops from the client to the gateway's peer, both included.
    pub chain: Vec<IpAddr>,
    /// The scheme the client used: `https` or `http`.
    pub proto: &'static str,
    /// The request's id: a trusted proxy's, or a new one.
    pub request_id: HeaderValue,
}

impl Forwarding {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Where a request from `peer` came from.
    pub fn origin(&self, peer: IpAddr, headers: &HeaderMap) -> Origin {
        let peer = canonical(peer);
        let own_proto = if self.tls { "https" } else { "http" };
        if !self.trusts(peer) {
            return Origin {
                client: peer,
                chain: vec![peer],
                proto: own_proto,
                request_id: new_request_id(),
            };
        }
        // hops[..]: what the proxies reported, oldest first, then the peer.
        // An entry that is no address ends the walk (`None`).
        let mut hops: Vec<Option<IpAddr>> = if headers.contains_key(header::FORWARDED) {
            forwarded_for(headers)
        } else {
            x_forwarded_for(headers)
        };
        hops.push(Some(peer));
        let mut client = hops.len() - 1;
        while client > 0 {
            match hops[client] {
                Some(ip) if self.trusts(ip) && hops[client - 1].is_some() => client -= 1,
                _ => break,
            }
        }
        let chain: Vec<IpAddr> = hops[client..].iter().flatten().copied().collect();
        let proto = headers
            .get(&X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .and_then(|v| {
                if v.eq_ignore_ascii_case("https") {
                    Some("https")
                } else if v.eq_ignore_ascii_case("http") {
                    Some("http")
                } else {
                    None
                }
            })
            .unwrap_or(own_proto);
        let request_id = headers
            .get(&self.request_id_header)
            .filter(|v| valid_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        Origin {
            client: chain.first().copied().unwrap_or(peer),
            chain,
            proto,
            request_id,
        }
    }
}

impl Origin {
    /// The forwarding headers toward the backend, replacing what the client
    /// sent: `X-Forwarded-For` (the chain), `Forwarded` (the same, RFC 7239,
    /// with the client's scheme), `X-Forwarded-Proto`, and the request id.
    pub fn upstream_headers(&self, forwarding: &Forwarding) -> Vec<(HeaderName, HeaderValue)> {
        use std::fmt::Write as _;
        // Written straight into two strings: this runs on every request.
        let mut xff = String::with_capacity(self.chain.len() * 17);
        let mut forwarded = String::with_capacity(self.chain.len() * 24 + 12);
        for (i, ip) in self.chain.iter().enumerate() {
            if i > 0 {
                xff.push_str(", ");
                forwarded.push_str(", ");
            }
            let _ = write!(xff, "{ip}");
            let _ = match ip {
                IpAddr::V4(v4) => write!(forwarded, "for={v4}"),
                IpAddr::V6(v6) => write!(forwarded, "for=\"[{v6}]\""),
            };
            if i == 0 {
                forwarded.push_str(";proto=");
                forwarded.push_str(self.proto);
            }
        }
        let value = |text: String| {
            // Addresses, commas and `for=`/`proto=` only: always valid.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
                .unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        vec![
            (X_FORWARDED_FOR, value(xff)),
            (header::FORWARDED, value(forwarded)),
            (X_FORWARDED_PROTO, HeaderValue::from_static(self.proto)),
            (
                forwarding.request_id_header.clone(),
                self.request_id.clone(),
            ),
        ]
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket
/// reports) compared as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The entries of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::with_capacity(4);
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.to_str().unwrap_or("\u{0}");
        hops.extend(text.split(',').map(|entry| address(entry.trim())));
    }
    hops
}

/// The `for=` of every element of every `Forwarded` header, in order; an
/// element without one, or with an obfuscated or `unknown` node, is no
/// address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(header::FORWARDED)
        .iter()
        .flat_map(|v| {
            let text = v.to_str().unwrap_or("\u{0}");
            text.split(',')
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, node)| address(node.trim().trim_matches('"')))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.7`, `192.0.2.7:4711`,
/// `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        return v6.parse::<IpAddr>().ok().map(canonical);
    }
    let (v4, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A request id worth keeping: 1 to 128 characters of `A-Z a-z 0-9 - _ . : /`
/// (what tracing systems and load balancers write), nothing a log or a
/// header could be confused by.
fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// A new request id: 32 hex digits (128 random bits; unique, not secret).
fn new_request_id() -> HeaderValue {
    let id = hex(&fastrand::u128(..).to_le_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding(trusted: &[&str]) -> Forwarding {
        Forwarding {
            trusted: trusted.iter().map(|t| t.parse().expect("cidr")).collect(),
            ..Forwarding::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let f = forwarding(&[]);
        let o = f.origin(
            ip("192.0.2.1"),
            &headers(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "chosen-by-client"),
            ]),
        );
        assert_eq!(o.client, ip("192.0.2.1"));
        assert_eq!(o.chain, [ip("192.0.2.1")]);
        assert_eq!(o.proto, "http");
        assert_ne!(o.request_id, "chosen-by-client");
        assert_eq!(o.request_id.len(), 32);
    }

    #[test]
    fn the_first_untrusted_hop_from_the_peer_back_is_the_client() {
        let f = forwarding(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "lb-4711"),
        ]);
        let o = f.origin(ip("10.2.2.2"), &h);
        assert_eq!(
            o.client,
            ip("203.0.113.9"),
            "198.51.100.1 is the client's own claim"
        );
        assert_eq!(o.chain, [ip("203.0.113.9"), ip("10.1.1.1"), ip("10.2.2.2")]);
        assert_eq!(o.proto, "https");
        assert_eq!(o.request_id, "lb-4711");
        let upstream = o.upstream_headers(&f);
        assert_eq!(upstream[0].1, "203.0.113.9, 10.1.1.1, 10.2.2.2");
        assert_eq!(
            upstream[1].1,
            "for=203.0.113.9;proto=https, for=10.1.1.1, for=10.2.2.2"
        );
    }

    #[test]
    fn forwarded_is_read_first_and_garbage_ends_the_walk() {
        let f = forwarding(&["10.0.0.0/8", "2001:db8::/32"]);
        let h = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::7]:4711\"",
            ),
            ("x-forwarded-for", "198.51.100.99"),
        ]);
        let tls = Forwarding {
            tls: true,
            ..f.clone()
        };
        let o = tls.origin(ip("10.0.0.1"), &h);
        assert_eq!(o.client, ip("192.0.2.60"));
        assert_eq!(
            o.proto, "https",
            "no X-Forwarded-Proto: the gateway's own listener"
        );
        // An obfuscated hop: the trusted proxy after it is the client.
        let h = headers(&[("x-forwarded-for", "_hidden, 10.3.3.3")]);
        let o = f.origin(ip("10.0.0.1"), &h);
        assert_eq!(o.client, ip("10.3.3.3"));
        // All trusted: the oldest hop is the client.
        let h = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(f.origin(ip("10.0.0.1"), &h).client, ip("10.9.9.9"));
        // A dual-stack socket's mapped address is the IPv4 peer.
        let o = f.origin(ip("::ffff:10.0.0.1"), &headers(&[]));
        assert_eq!(o.client, ip("10.0.0.1"));
        let upstream = o.upstream_headers(&f);
        assert_eq!(upstream[1].1, "for=10.0.0.1;proto=http");
    }

    #[test]
    fn addresses_and_request_ids_are_read_strictly() {
        assert_eq!(address("192.0.2.7:4711"), Some(ip("192.0.2.7")));
        assert_eq!(address("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
        assert_eq!(address("unknown"), None);
        assert_eq!(address("192.0.2.7:port"), None);
        assert!(valid_request_id(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id("x".repeat(129).as_bytes()));
    }
}
