//! The command line (the binary's edge, where errors become one line on
//! stderr and an exit code): run the gateway, check a configuration, start
//! the self-contained dev mode, or call a running gateway's admin API.
//!
//! It lives in the library so that the `session-gateway` binary and the
//! end-to-end tests' `gateway-under-test` binary are the same code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::{admin, devkit, server, telemetry};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// The embedded configuration of `session-gateway dev`.
const DEV_CONFIG: &str = include_str!("../../config/dev.toml");
const DEV_GATEWAY: &str = "127.0.0.1:8080";
const DEV_ADMIN: &str = "127.0.0.1:9190";
const DEV_ISSUER: &str = "127.0.0.1:9180";
const DEV_BACKEND: &str = "127.0.0.1:9181";
const DEV_ADMIN_TOKEN_ENV: &str = "SESSION_GATEWAY_ADMIN_TOKEN";

#[derive(Debug, Parser)]
#[command(
    name = "session-gateway",
    version,
    about = "A reverse proxy that turns valid access tokens into accounted sessions and license seats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Run {
        /// The configuration file (TOML).
        #[arg(short, long, env = "SESSION_GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The configuration file (TOML).
        file: PathBuf,
    },
    /// Run everything in one process: the gateway (memory store), a demo
    /// OpenID Connect issuer and a demo ERP backend, with a walkthrough.
    Dev {
        #[command(flatten)]
        addresses: DevAddresses,
    },
    /// Run only the demo issuer and demo ERP backend (for experiments).
    Devkit {
        /// Address of the demo issuer.
        #[arg(long, default_value = DEV_ISSUER)]
        issuer: SocketAddr,
        /// Address of the demo ERP backend.
        #[arg(long, default_value = DEV_BACKEND)]
        backend: SocketAddr,
    },
    /// Call a running gateway's admin API: list and close sessions, show
    /// license use. The admin token comes from an environment variable.
    Admin(admin::command::AdminArgs),
}

/// Where dev mode listens (all loopback by default).
#[derive(Debug, clap::Args)]
struct DevAddresses {
    /// The gateway's proxy listener.
    #[arg(long, default_value = DEV_GATEWAY)]
    listen: SocketAddr,
    /// The admin listener.
    #[arg(long, default_value = DEV_ADMIN)]
    admin: SocketAddr,
    /// The demo issuer.
    #[arg(long, default_value = DEV_ISSUER)]
    issuer: SocketAddr,
    /// The demo ERP backend.
    #[arg(long, default_value = DEV_BACKEND)]
    backend: SocketAddr,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { file } => check_config(&file),
        Command::Dev { addresses } => dev(&addresses),
        Command::Devkit { issuer, backend } => devkit_only(issuer, backend),
        Command::Admin(args) => admin::command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    telemetry::logs::init(&config.logging);
    let path = path.to_path_buf();
    server::run(config, Box::new(move || Config::load(&path)))?;
    Ok(())
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    print!("{}", config.effective_toml());
    Ok(())
}

fn dev(at: &DevAddresses) -> anyhow::Result<()> {
    // The embedded file names the default addresses; other addresses are
    // substituted so the dev mode can run beside another one (or in tests).
    let text = DEV_CONFIG
        .replace(DEV_GATEWAY, &at.listen.to_string())
        .replace(DEV_ADMIN, &at.admin.to_string())
        .replace(DEV_ISSUER, &at.issuer.to_string())
        .replace(DEV_BACKEND, &at.backend.to_string());
    // The admin token: the operator's, or a fresh random one for this run.
    let admin_token = std::env::var(DEV_ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let token = admin_token.clone();
    let load = move || {
        Config::from_toml(&text, "config/dev.toml", Path::new("."), &|name| {
            if name == DEV_ADMIN_TOKEN_ENV {
                Some(token.clone())
            } else {
                std::env::var(name).ok()
            }
        })
    };
    let config = load()?;
    telemetry::logs::init(&config.logging);
    // The devkit runs on a thread of its own: Pingora builds its runtimes
    // itself and must not be started inside one.
    let _devkit = devkit::spawn_devkit_thread(at.issuer, at.backend)
        .context("starting the demo issuer and backend")?;
    println!("{}", walkthrough(&config, at, &admin_token));
    // The embedded configuration does not change: a reload (SIGHUP) reads it
    // again and applies nothing new.
    server::run(config, Box::new(load))?;
    Ok(())
}

fn devkit_only(issuer: SocketAddr, backend: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!("demo issuer on http://{issuer}, demo ERP backend on http://{backend}; Ctrl-C stops");
    runtime.block_on(devkit::run_devkit(issuer, backend))
}

fn walkthrough(config: &Config, at: &DevAddresses, admin_token: &str) -> String {
    let gw = at.listen;
    let admin = at.admin;
    let issuer = at.issuer;
    let backend = at.backend;
    let idle = humantime::format_duration(config.sessions.idle_timeout);
    let limit = config.pools.first().map_or(0, |p| p.limit);
    let wait = config.sessions.idle_timeout.as_secs() + 1;
    format!(
        r#"
session-gateway dev — gateway http://{gw}, admin http://{admin}, demo issuer http://{issuer}, demo ERP http://{backend}
pool "demo" has {limit} seats; sessions close after {idle} without calls.

# 1. A token alone opens nothing:
T1=$(curl -s 'http://{issuer}/dev/token?user=alice')
curl -s -H "Authorization: Bearer $T1" http://{gw}/.gateway/session     # 404 no_session

# 2. The first API call opens a session and takes a seat; the backend sees X-Session-Id:
curl -s -H "Authorization: Bearer $T1" http://{gw}/api/orders
curl -s -H "Authorization: Bearer $T1" http://{gw}/.gateway/session

# 3. A refreshed token of the same identity reuses the same session (same session_id):
T2=$(curl -s 'http://{issuer}/dev/token?user=alice')
curl -s -H "Authorization: Bearer $T2" http://{gw}/api/orders

# 4. Other users take the remaining seats; when all {limit} are held the next one gets 429:
curl -s -H "Authorization: Bearer $(curl -s 'http://{issuer}/dev/token?user=bob')" http://{gw}/api/orders
curl -si -H "Authorization: Bearer $(curl -s 'http://{issuer}/dev/token?user=carol')" http://{gw}/api/orders   # 429 license_unavailable, Retry-After

# 5. Wait {idle} without calls: the seats free, and carol gets in:
sleep {wait}; curl -s -H "Authorization: Bearer $(curl -s 'http://{issuer}/dev/token?user=carol')" http://{gw}/api/orders

# Operators: license use and open sessions through the admin API (token of this run):
export {DEV_ADMIN_TOKEN_ENV}={admin_token}
session-gateway admin --url http://{admin} licenses      # or: cargo run -q -p session-gateway -- admin …
curl -s -H "Authorization: Bearer ${DEV_ADMIN_TOKEN_ENV}" http://{admin}/admin/v1/sessions

# Log out (frees the seat at once, refuses that token):
curl -s -X POST -H "Authorization: Bearer $T2" http://{gw}/.gateway/logout

# Health: curl -s http://{admin}/readyz    Metrics: curl -s http://{admin}/metrics    Stop: Ctrl-C
"#
    )
}
