//! Which host a request is for, decided once and strictly before routing.
//!
//! Routes can be bound to a host, so the host is part of the access
//! decision. A `Host` the gateway reads one way and the backend another
//! (`erp.example.com/`, `a, b`, `[erp.example.com]`) would let a request be
//! routed as "some other host" here — for example to a public catch-all —
//! and arrive at a backend that reads it as the protected one. So a request
//! names its host exactly once and well-formed (RFC 9112 §3.2, RFC 3986
//! §3.2.2), or it is answered 400 before any route is chosen:
//!
//! * HTTP/1.1 requests carry exactly one `Host` field (HTTP/1.0 may omit it);
//! * the field is `host[:port]`, where host is a DNS-style name (letters,
//!   digits, `-`, `_`, dot-separated labels, one optional trailing dot — an
//!   IPv4 address is such a name too) or a bracketed IPv6 literal, and port
//!   is 1 to 5 digits up to 65535. This is narrower than RFC 3986's
//!   reg-name: percent-encoding and sub-delimiters name no real host and
//!   only serve to be read differently by different parsers;
//! * an absolute-form target (`GET http://erp.example.com/x`) names the
//!   host itself: its authority must be well-formed, `http` or `https`, and
//!   equal to `Host` when both are present (RFC 9112 §3.2.2 lets the target
//!   win; a proxy that forwards `Host` cannot let them differ).
//!
//! This module does not know Pingora: it reads bytes and returns the host.

/// Why a request's host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    #[error("the request has no Host header")]
    Missing,
    /// More than one `Host` field.
    #[error("the request has more than one Host header")]
    Repeated,
    /// `Host` is not `host[:port]`.
    #[error("the Host header is not a valid host[:port]")]
    Malformed,
    /// The absolute-form target's authority is not a valid `http(s)` authority.
    #[error("the request target's authority is not a valid host[:port]")]
    MalformedTarget,
    /// The absolute-form target and `Host` name different authorities.
    #[error("the Host header differs from the request target's authority")]
    Mismatch,
}

/// What a request says about its host.
#[derive(Debug, Clone, Copy)]
pub struct HostFields<'a> {
    /// Whether the protocol version requires `Host` (HTTP/1.1).
    pub host_required: bool,
    /// Every `Host` field value, in order.
    pub host_fields: &'a [&'a [u8]],
    /// The request target exactly as received.
    pub target: &'a [u8],
    /// The authority the protocol gave outside `Host` (HTTP/2 `:authority`).
    pub uri_authority: Option<&'a str>,
}

/// The host a request is for: lowercase, without port or trailing dot
/// (`ERP.example.com.:8443` → `erp.example.com`, `[::1]:80` → `[::1]`), or
/// `None` for an HTTP/1.0 request that names none.
pub fn request_host(fields: HostFields<'_>) -> Result<Option<String>, HostError> {
    let host_field = match fields.host_fields {
        [] => None,
        [one] => Some(*one),
        _ => return Err(HostError::Repeated),
    };
    let from_host = host_field
        .map(|value| parse_authority(value).ok_or(HostError::Malformed))
        .transpose()?;
    let from_target = match absolute_form_authority(fields.target) {
        TargetAuthority::None => None,
        TargetAuthority::Invalid => return Err(HostError::MalformedTarget),
        TargetAuthority::Some(authority) => {
            Some(parse_authority(authority).ok_or(HostError::MalformedTarget)?)
        }
    };
    let from_uri = fields
        .uri_authority
        .map(|a| parse_authority(a.as_bytes()).ok_or(HostError::MalformedTarget))
        .transpose()?;
    let named = from_target.or(from_uri);
    match (from_host, named) {
        (Some(host), Some(named)) if host != named => Err(HostError::Mismatch),
        (Some(host), _) => Ok(Some(host.name)),
        (None, Some(named)) if !fields.host_required || fields.uri_authority.is_some() => {
            Ok(Some(named.name))
        }
        (None, _) if fields.host_required => Err(HostError::Missing),
        (None, named) => Ok(named.map(|n| n.name)),
    }
}

/// A parsed `host[:port]`, host normalised for comparison and routing.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    name: String,
    port: Option<u16>,
}

/// Parses `host[:port]` (see the module doc for what a host may be).
fn parse_authority(value: &[u8]) -> Option<Authority> {
    let text = std::str::from_utf8(value).ok()?;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", literal.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        if !is_dns_name(host) {
            return None;
        }
        (host.trim_end_matches('.').to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some(Authority { name: host, port })
}

/// Dot-separated labels of letters, digits, `-` and `_`, with at most one
/// trailing dot and no empty label.
fn is_dns_name(host: &str) -> bool {
    let body = host.strip_suffix('.').unwrap_or(host);
    !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

enum TargetAuthority<'a> {
    /// Origin-form (`/x`) or asterisk-form: no authority in the target.
    None,
    /// Absolute-form with an unusable scheme or authority.
    Invalid,
    /// The authority of an `http(s)` absolute-form target.
    Some(&'a [u8]),
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_form_authority(target: &[u8]) -> TargetAuthority<'_> {
    if target.is_empty() || target[0] == b'/' || target == b"*" {
        return TargetAuthority::None;
    }
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return TargetAuthority::Invalid;
    };
    let scheme = &target[..colon];
    let Some(rest) = target[colon + 1..].strip_prefix(b"//") else {
        return TargetAuthority::Invalid;
    };
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return TargetAuthority::Invalid;
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    TargetAuthority::Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(hosts: &[&[u8]], target: &[u8]) -> Result<Option<String>, HostError> {
        request_host(HostFields {
            host_required: true,
            host_fields: hosts,
            target,
            uri_authority: None,
        })
    }

    #[test]
    fn a_well_formed_host_is_normalised() {
        for (host, want) in [
            (&b"erp.example.com"[..], "erp.example.com"),
            (b"ERP.Example.COM:8443", "erp.example.com"),
            (b"erp.example.com.", "erp.example.com"),
            (b"127.0.0.1:8080", "127.0.0.1"),
            (b"[::1]:8080", "[::1]"),
            (b"[2001:DB8::1]", "[2001:db8::1]"),
            (b"erp", "erp"),
            (b"my_host.internal", "my_host.internal"),
        ] {
            assert_eq!(
                host_of(&[host], b"/x"),
                Ok(Some(want.to_string())),
                "{host:?}"
            );
        }
    }

    #[test]
    fn an_http11_request_without_host_is_refused() {
        assert_eq!(host_of(&[], b"/x"), Err(HostError::Missing));
        // HTTP/1.0 may omit it: only host-less routes match then.
        let fields = HostFields {
            host_required: false,
            host_fields: &[],
            target: b"/x",
            uri_authority: None,
        };
        assert_eq!(request_host(fields), Ok(None));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for bad in [
            &b"a, b"[..],
            b"erp.example.com/",
            b"erp.example.com?x",
            b"?x",
            b"#x",
            b"erp.example.com#x",
            b":80:80",
            b"erp.example.com:80:80",
            b"\\x",
            b"erp.example.com\\x",
            b"[erp.example.com]",
            b"[::1",
            b"[::1]x",
            b"[v1.x]",
            b"",
            b" ",
            b"erp.example.com ",
            b"admin@erp",
            b"erp..example.com",
            b".erp",
            b"erp.example.com..",
            b"erp:",
            b"erp:99999",
            b"erp:+80",
            b"erp:123456",
            b"%65rp",
            b"erp\xff.example",
            b"erp\0",
        ] {
            assert_eq!(host_of(&[bad], b"/x"), Err(HostError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn host_must_appear_once() {
        assert_eq!(host_of(&[b"erp", b"erp"], b"/x"), Err(HostError::Repeated));
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        assert_eq!(
            host_of(&[b"erp.example.com"], b"http://ERP.example.com/x"),
            Ok(Some("erp.example.com".into()))
        );
        assert_eq!(
            host_of(&[b"erp.example.com:80"], b"https://erp.example.com:80?q"),
            Ok(Some("erp.example.com".into()))
        );
        assert_eq!(
            host_of(&[b"erp"], b"http://other/x"),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            host_of(&[b"erp"], b"http://erp:8080/x"),
            Err(HostError::Mismatch)
        );
        for bad in [
            &b"ftp://erp/x"[..],
            b"http:/erp/x",
            b"http://erp.example.com\\@evil/x",
            b"http://[erp]/x",
            b"http:///x",
            b"erp/x",
        ] {
            assert_eq!(
                host_of(&[b"erp"], bad),
                Err(HostError::MalformedTarget),
                "{bad:?}"
            );
        }
        // Without Host the target's authority is the host on HTTP/1.0; on
        // HTTP/1.1 Host is still required.
        assert_eq!(host_of(&[], b"http://erp/x"), Err(HostError::Missing));
        let fields = HostFields {
            host_required: false,
            host_fields: &[],
            target: b"http://erp/x",
            uri_authority: None,
        };
        assert_eq!(request_host(fields), Ok(Some("erp".into())));
    }

    #[test]
    fn an_http2_authority_counts_like_host() {
        let fields = HostFields {
            host_required: true,
            host_fields: &[],
            target: b"/x",
            uri_authority: Some("erp.example.com:443"),
        };
        assert_eq!(request_host(fields), Ok(Some("erp.example.com".into())));
        let fields = HostFields {
            host_fields: &[b"other"],
            ..fields
        };
        assert_eq!(request_host(fields), Err(HostError::Mismatch));
    }
}
