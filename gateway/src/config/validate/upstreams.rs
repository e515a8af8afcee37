//! `[[upstreams]]`: the backend server groups, their health checks,
//! timeouts and TLS.

use std::collections::HashSet;
use std::net::ToSocketAddrs;

use super::Check;
use crate::config::{ConfigError, FileConfig, HealthCheckConfig, UpstreamConfig};

pub(super) fn upstreams(c: &Check, file: &FileConfig) -> Result<Vec<UpstreamConfig>, ConfigError> {
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
            sni: u.sni.clone().unwrap_or(first_host),
        });
    }
    Ok(out)
}
