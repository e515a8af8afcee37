//! `[server]`: the proxy and admin listeners, their TLS files, threads,
//! the realm and the prefix of the gateway's own endpoints.

use std::net::SocketAddr;
use std::path::Path;

use super::Check;
use crate::config::{ConfigError, FileConfig, NamedCertificate, ServerConfig, TlsFiles};

pub(super) fn server(
    c: &Check,
    file: &FileConfig,
    base_dir: &Path,
) -> Result<ServerConfig, ConfigError> {
    let s = &file.server;
    if s.listen.is_empty() {
        return c.fail("server.listen", "must list at least one address");
    }
    let listen = s
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| c.socket_addr(&format!("server.listen[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    let admin_listen = c.socket_addr("server.admin_listen", &s.admin_listen)?;
    if listen.iter().any(|l| listeners_clash(l, &admin_listen)) {
        return c.fail(
            "server.admin_listen",
            "must differ from every proxy listener in server.listen",
        );
    }
    let threads = match s.threads {
        Some(0) => return c.fail("server.threads", "must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if s.realm.is_empty()
        || s.realm
            .chars()
            .any(|ch| ch == '"' || ch == '\\' || ch.is_control())
    {
        return c.fail(
            "server.realm",
            "must be non-empty, without quotes, backslashes or control characters",
        );
    }
    let prefix = s.gateway_prefix.as_str();
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || prefix.ends_with('/')
        || prefix.contains(['?', '#'])
    {
        return c.fail(
            "server.gateway_prefix",
            "must be a path like \"/.gateway\" (leading slash, no trailing slash)",
        );
    }
    let tls = match &s.tls {
        None => None,
        Some(t) => {
            let mut by_name = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (i, n) in t.certificates.iter().enumerate() {
                let key = format!("server.tls.certificates[{i}]");
                if n.names.is_empty() {
                    return c.fail(format!("{key}.names"), "must list at least one host name");
                }
                let mut names = Vec::new();
                for (j, name) in n.names.iter().enumerate() {
                    let name = name.trim().to_ascii_lowercase();
                    if !is_certificate_name(&name) {
                        return c.fail(
                            format!("{key}.names[{j}]"),
                            format!("`{name}` is not a host name or `*.` and a domain"),
                        );
                    }
                    if !seen.insert(name.clone()) {
                        return c.fail(
                            format!("{key}.names[{j}]"),
                            format!("`{name}` already has a certificate"),
                        );
                    }
                    names.push(name);
                }
                let (cert, private) = (base_dir.join(&n.cert), base_dir.join(&n.key));
                if let Err(e) = check_tls_pair(&cert, &private) {
                    return c.fail(key, e);
                }
                by_name.push(NamedCertificate {
                    names,
                    cert,
                    key: private,
                });
            }
            let files = TlsFiles {
                cert: base_dir.join(&t.cert),
                key: base_dir.join(&t.key),
                by_name,
            };
            if let Err(e) = check_tls_pair(&files.cert, &files.key) {
                return c.fail("server.tls", e);
            }
            Some(files)
        }
    };
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .or_else(|_| {
                    c.fail(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{text}` is not an address or CIDR (\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\")"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request_id_header =
        http::HeaderName::from_bytes(s.request_id_header.trim().to_ascii_lowercase().as_bytes())
            .or_else(|_| {
                c.fail(
                    "server.request_id_header",
                    format!("`{}` is not a header name", s.request_id_header),
                )
            })?;
    Ok(ServerConfig {
        listen,
        admin_listen,
        tls,
        threads,
        work_stealing: s.work_stealing,
        http2: s.http2,
        h2c: s.h2c,
        grace_period: c.duration("server.grace_period", &s.grace_period)?,
        shutdown_timeout: c.duration("server.shutdown_timeout", &s.shutdown_timeout)?,
        realm: s.realm.clone(),
        gateway_prefix: prefix.to_string(),
        readiness_requires_store: s.readiness_requires_store,
        trusted_proxies,
        request_id_header,
    })
}

/// Whether two listeners would compete for one port: the same address, or
/// the same (non-ephemeral) port where one of them is a wildcard that covers
/// the other (`[::]` also covers IPv4 on a dual-stack host).
fn listeners_clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    let covers = |wild: &SocketAddr, other: &SocketAddr| {
        wild.ip().is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a == b || (a.port() != 0 && a.port() == b.port() && (covers(a, b) || covers(b, a)))
}

/// Loads a listener's certificate chain and key as the proxy will, so a
/// missing, unreadable or mismatched file is refused by `check-config` and
/// before any listener opens (the proxy's own loader panics in a service
/// thread and leaves a process that serves nothing).
fn check_tls_pair(cert: &Path, key: &Path) -> Result<(), String> {
    use pingora::tls::{ServerConfig, install_default_crypto_provider, load_certs_and_key_files};
    for (what, path) in [("cert", cert), ("key", key)] {
        if let Err(e) = std::fs::File::open(path) {
            return Err(format!("{what}: cannot read {}: {e}", path.display()));
        }
    }
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let (chain, private_key) = match load_certs_and_key_files(&cert, &key) {
        Ok(Some(pair)) => pair,
        Ok(None) => {
            return Err(format!(
                "{cert} must hold a PEM certificate chain and {key} a PEM private key"
            ));
        }
        Err(e) => return Err(format!("cannot load {cert} / {key}: {e}")),
    };
    install_default_crypto_provider();
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map(|_| ())
        .map_err(|e| format!("the certificate in {cert} and the key in {key} do not fit: {e}"))
}

/// A name a listener certificate may be chosen by: a host name of letters,
/// digits, `-` and dots, or `*.` and such a name with at least one dot.
fn is_certificate_name(name: &str) -> bool {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label)
        && (!name.starts_with("*.") || host.contains('.'))
}
