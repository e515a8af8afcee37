//! A gateway with the admin API on, and the two ways tests talk to it: the
//! HTTP API with the admin token, and the `session-gateway admin` command.

use reqwest::Method;

use crate::{ConfigDoc, Gateway, Reply};

/// The admin token the test gateways are configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A gateway with the admin API enabled (token from a file) and the
/// directory holding that file.
pub struct AdminGateway {
    gw: Gateway,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for AdminGateway {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.gw
    }
}

impl AdminGateway {
    /// Starts `binary` on `config` with the admin token set.
    pub async fn start(binary: &str, mut config: ConfigDoc) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("admin-token");
        std::fs::write(&path, format!("{ADMIN_TOKEN}\n"))?;
        config.set("admin", "token_file", path.display().to_string());
        Ok(Self {
            gw: Gateway::start(binary, &config).await?,
            _dir: dir,
        })
    }

    /// Stops the gateway (SIGTERM, then waits), as [`Gateway::stop`].
    pub fn stop(self) -> anyhow::Result<std::process::ExitStatus> {
        self.gw.stop()
    }
}

/// An admin API request with the admin token.
pub async fn admin(gw: &Gateway, method: Method, path: &str) -> anyhow::Result<Reply> {
    admin_as(gw, method, path, Some(ADMIN_TOKEN)).await
}

/// An admin API request with any token, or none.
pub async fn admin_as(
    gw: &Gateway,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Reply> {
    let mut request = gw.client().request(method, gw.admin_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await?).await
}

/// What one run of the command line did.
pub struct CliRun {
    /// Whether it exited 0.
    pub ok: bool,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs `binary` with `args`, the admin token (if any) in the default
/// environment variable.
pub async fn cli(binary: &str, args: &[&str], token: Option<&str>) -> anyhow::Result<CliRun> {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(args)
        .env_remove("SESSION_GATEWAY_ADMIN_TOKEN")
        .env_remove("SESSION_GATEWAY_ADMIN_URL");
    if let Some(token) = token {
        command.env("SESSION_GATEWAY_ADMIN_TOKEN", token);
    }
    let out = command.output().await?;
    Ok(CliRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}
