//! `[[upstreams]]`: the backend server groups, their health checks,
//! timeouts and TLS.

use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::path::Path;

use super::Check;
use super::tls_files::{certificate_ders, client_identity};
use crate::config::file::UpstreamSection;
use crate::config::{ClientIdentity, ConfigError, FileConfig, HealthCheckConfig, UpstreamConfig};

/// How often upstream host names are looked up again unless set: often
/// enough to follow a rescheduled backend within a minute, rarely enough to
/// cost the resolver nothing.
const DEFAULT_RESOLVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) fn upstreams(
    c: &Check,
    file: &FileConfig,
    base_dir: &Path,
) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let key = format!("upstreams[{i}]");
        if u.name.is_empty() {
            return c.fail(format!("{key}.name"), "must not be empty");
        }
        if !names.insert(u.name.clone()) {
            return c.fail(
                format!("{key}.name"),
                format!("upstream `{}` is defined twice", u.name),
            );
        }
        if u.servers.is_empty() {
            return c.fail(
                format!("{key}.servers"),
                "must list at least one \"host:port\"",
            );
        }
        for (j, s) in u.servers.iter().enumerate() {
            let has_port = s
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
            if !has_port {
                return c.fail(
                    format!("{key}.servers[{j}]"),
                    format!("`{s}` must be \"host:port\""),
                );
            }
            if let Err(e) = s.to_socket_addrs() {
                return c.fail(
                    format!("{key}.servers[{j}]"),
                    format!("cannot resolve `{s}`: {e}"),
                );
            }
        }
        let first_host = u.servers[0]
            .rsplit_once(':')
            .map_or("", |(h, _)| h)
            .to_string();
        let health_check = match &u.health_check {
            None => None,
            Some(h) => {
                if !h.path.starts_with('/') {
                    return c.fail(format!("{key}.health_check.path"), "must start with '/'");
                }
                Some(HealthCheckConfig {
                    path: h.path.clone(),
                    interval: c
                        .positive_duration(&format!("{key}.health_check.interval"), &h.interval)?,
                    timeout: c
                        .positive_duration(&format!("{key}.health_check.timeout"), &h.timeout)?,
                    host: h.host.clone().unwrap_or_else(|| first_host.clone()),
                })
            }
        };
        let named = u.servers.iter().any(|s| {
            let host = s.rsplit_once(':').map_or("", |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_err()
        });
        let resolve_interval = match &u.resolve_interval {
            None => named.then_some(DEFAULT_RESOLVE_INTERVAL),
            Some(text) => {
                let interval = c.duration(&format!("{key}.resolve_interval"), text)?;
                if !interval.is_zero() && interval < std::time::Duration::from_secs(1) {
                    return c.fail(
                        format!("{key}.resolve_interval"),
                        "must be at least 1s, or \"0s\" to look names up only at start and reload",
                    );
                }
                (named && !interval.is_zero()).then_some(interval)
            }
        };
        let sni = u.sni.clone().unwrap_or(first_host);
        let trust = trust(c, &key, u, &sni, base_dir)?;
        out.push(UpstreamConfig {
            name: u.name.clone(),
            servers: u.servers.clone(),
            health_check,
            connect_timeout: c
                .positive_duration(&format!("{key}.connect_timeout"), &u.connect_timeout)?,
            read_timeout: c.positive_duration(&format!("{key}.read_timeout"), &u.read_timeout)?,
            write_timeout: c
                .positive_duration(&format!("{key}.write_timeout"), &u.write_timeout)?,
            tls: u.tls,
            sni,
            ca: trust.ca,
            client_identity: trust.client_identity,
            verify_cert: u.verify_cert,
            verify_hostname: u.verify_hostname,
            http2: u.http2,
            resolve_interval,
        });
    }
    Ok(out)
}

/// What an upstream's TLS trusts and presents.
struct Trust {
    ca: Option<Vec<Vec<u8>>>,
    client_identity: Option<ClientIdentity>,
}

/// The TLS settings of an upstream: only with `tls = true`, an SNI the
/// certificate can be checked against (Pingora skips every check without
/// one), the CA bundle and client certificate read and checked now.
fn trust(
    c: &Check,
    key: &str,
    u: &UpstreamSection,
    sni: &str,
    base_dir: &Path,
) -> Result<Trust, ConfigError> {
    let tls_only = [
        ("ca_file", u.ca_file.is_some()),
        ("client_cert_file", u.client_cert_file.is_some()),
        ("client_key_file", u.client_key_file.is_some()),
        ("verify_cert", !u.verify_cert),
        ("verify_hostname", !u.verify_hostname),
    ];
    if !u.tls {
        if let Some((name, _)) = tls_only.iter().find(|(_, set)| *set) {
            return c.fail(
                format!("{key}.{name}"),
                "only applies with tls = true (the servers are spoken to in plain HTTP)",
            );
        }
        return Ok(Trust {
            ca: None,
            client_identity: None,
        });
    }
    if sni.is_empty() {
        return c.fail(
            format!("{key}.sni"),
            "must name the servers' certificate: without a name, no certificate would be checked",
        );
    }
    if !u.verify_cert && u.ca_file.is_some() {
        return c.fail(
            format!("{key}.ca_file"),
            "has no effect with verify_cert = false (no certificate is checked)",
        );
    }
    let ca = u
        .ca_file
        .as_deref()
        .map(|path| certificate_ders(c, &format!("{key}.ca_file"), base_dir, path))
        .transpose()?;
    let client_identity = client_identity(
        c,
        (
            &format!("{key}.client_cert_file"),
            &format!("{key}.client_key_file"),
        ),
        (&u.client_cert_file, &u.client_key_file),
        base_dir,
    )?
    .map(|(cert_pem, key_pem)| ClientIdentity { cert_pem, key_pem });
    Ok(Trust {
        ca,
        client_identity,
    })
}
