//! A real OpenID provider for the end-to-end tests: `oidc-provider` from npm,
//! run by `tests/oidc/provider.mjs` (see tests/oidc/README.md), and the
//! browser and relying-party moves a test makes against it with plain HTTP.
//!
//! ```ignore
//! let op = OidcProvider::start(&ProviderOptions::default()).await?;
//! let batch = op.client_credentials("erp-batch", "erp-batch-secret").await?;
//! let mut browser = op.browser();
//! let alice = browser.login("alice").await?;
//! let refreshed = op.refresh(alice.refresh_token()?).await?;
//! browser.logout(alice.id_token()?).await?;
//! ```
//!
//! The provider's clients: `erp-batch` (client credentials) and `erp-web`
//! (code and refresh, back-channel logout to
//! [`ProviderOptions::backchannel_logout_uri`]). Its access tokens are ES256
//! JWTs for the audience `erp-api`. The process is killed when the handle
//! drops; every wait is bounded by [`DEADLINE`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde_json::Value;

use crate::{DEADLINE, free_port};

/// The `erp-web` client's secret (tests/oidc/provider.mjs).
pub const WEB_SECRET: &str = "erp-web-secret";
/// The `erp-batch` client's secret (tests/oidc/provider.mjs).
pub const BATCH_SECRET: &str = "erp-batch-secret";

/// What the provider is started with.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// `erp-web`'s `backchannel_logout_uri`: where the provider POSTs logout
    /// tokens (a gateway's `/.gateway/backchannel-logout`). `None`: the
    /// client registers none.
    pub backchannel_logout_uri: Option<String>,
    /// A port to listen on (`None`: a free one). A gateway started before
    /// its provider needs to know the issuer URL in advance.
    pub port: Option<u16>,
    /// Access tokens without the provider session's `sid`, as oidc-provider
    /// issues them by default (otherwise they carry it, as many providers'
    /// do).
    pub plain_access_tokens: bool,
}

/// The redirect URI registered for `erp-web`. Nothing listens there: the
/// browser stops at the redirect and reads the code from its `Location`.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// A running `tests/oidc/provider.mjs`.
pub struct OidcProvider {
    child: Child,
    port: u16,
    options: ProviderOptions,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// The directory of the provider script and its npm packages.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcProvider {
    /// Starts the provider and waits for its `ready` line.
    pub async fn start(options: &ProviderOptions) -> anyhow::Result<Self> {
        let dir = provider_dir();
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            bail!(
                "the identity-provider suite needs its npm packages: run `npm ci --prefix tests/oidc` \
                 (or ./scripts/test.sh, whose bootstrap does it); {} has no node_modules/oidc-provider",
                dir.display()
            );
        }
        let mut last_error = None;
        // A free port is only probably free; retry on a collision.
        for _ in 0..3 {
            let port = options.port.unwrap_or_else(free_port);
            let dir = tempfile::tempdir()?;
            let mut op = Self {
                child: spawn(port, options, dir.path(), false)?,
                port,
                options: options.clone(),
                dir,
                client: crate::client(),
            };
            match op.await_ready().await {
                Ok(()) => return Ok(op),
                Err(e) if options.port.is_none() && format!("{e:#}").contains("EADDRINUSE") => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the provider did not start")))
    }

    /// Rotates the signing key: restarts the provider on the same port with
    /// a new key first in its JWKS (the old one stays published). Its
    /// in-memory state (provider sessions, grants, refresh tokens) is lost;
    /// the clients are configuration and stay.
    pub async fn rotate_keys(&mut self) -> anyhow::Result<()> {
        stop(&mut self.child);
        let started = Instant::now();
        loop {
            self.child = spawn(self.port, &self.options, self.dir.path(), true)?;
            match self.await_ready().await {
                Ok(()) => return Ok(()),
                // The old listener's port may take a moment to be free again.
                Err(e)
                    if format!("{e:#}").contains("EADDRINUSE") && started.elapsed() < DEADLINE =>
                {
                    stop(&mut self.child);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn await_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if self.logs().lines().any(|l| l.starts_with("ready ")) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the provider exited with {status}: {}", self.logs());
            }
            if started.elapsed() > DEADLINE {
                bail!(
                    "the provider not ready within {DEADLINE:?}: {}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on the provider.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    /// Everything the current process printed (stdout and stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    /// A client-credentials grant (`scope=api`, the default resource).
    pub async fn client_credentials(&self, client: &str, secret: &str) -> anyhow::Result<Tokens> {
        self.token_request(
            client,
            secret,
            &[("grant_type", "client_credentials"), ("scope", "api")],
        )
        .await
    }

    /// A refresh-token grant for `erp-web`.
    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<Tokens> {
        self.token_request(
            "erp-web",
            WEB_SECRET,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    async fn token_request(
        &self,
        client: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Tokens> {
        let r = self
            .client
            .post(self.url("/token"))
            .basic_auth(client, Some(secret))
            .form(form)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.context("token response is not JSON")?;
        if !status.is_success() {
            bail!("token endpoint answered {status}: {body}");
        }
        Ok(Tokens(body))
    }

    /// A user agent with its own cookies, as a browser would be.
    pub fn browser(&self) -> Browser {
        Browser {
            issuer: self.issuer(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(DEADLINE)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            cookies: BTreeMap::new(),
            token_client: self.client.clone(),
        }
    }
}

fn spawn(port: u16, options: &ProviderOptions, dir: &Path, rotate: bool) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("provider.log"))?;
    let mut command = Command::new("node");
    command
        .current_dir(provider_dir())
        .arg("provider.mjs")
        .args(["--port", &port.to_string()])
        .arg("--keys")
        .arg(dir.join("keys.json"))
        .env("OIDC_REDIRECT_URI", REDIRECT_URI)
        .env_remove("OIDC_BACKCHANNEL_LOGOUT_URI")
        .env(
            "OIDC_PLAIN_ACCESS_TOKENS",
            if options.plain_access_tokens {
                "1"
            } else {
                "0"
            },
        )
        .env_remove("DEBUG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if rotate {
        command.arg("--rotate");
    }
    if let Some(uri) = &options.backchannel_logout_uri {
        command.env("OIDC_BACKCHANNEL_LOGOUT_URI", uri);
    }
    command
        .spawn()
        .context("spawning `node tests/oidc/provider.mjs` (is Node.js installed?)")
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A token response.
#[derive(Debug, Clone)]
pub struct Tokens(pub Value);

impl Tokens {
    /// `access_token`.
    pub fn access_token(&self) -> anyhow::Result<&str> {
        self.member("access_token")
    }

    /// `id_token`.
    pub fn id_token(&self) -> anyhow::Result<&str> {
        self.member("id_token")
    }

    /// `refresh_token`.
    pub fn refresh_token(&self) -> anyhow::Result<&str> {
        self.member("refresh_token")
    }

    fn member(&self, name: &str) -> anyhow::Result<&str> {
        self.0[name]
            .as_str()
            .with_context(|| format!("the token response has no `{name}`: {}", self.0))
    }
}

/// A JWT's header and payload, decoded without any check (to look at what
/// the provider issued).
pub fn jwt_parts(token: &str) -> anyhow::Result<(Value, Value)> {
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> anyhow::Result<Value> {
        let part = parts.next().with_context(|| format!("no JWT {what}"))?;
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part)?)?)
    };
    Ok((decode("header")?, decode("payload")?))
}

/// A user agent at the provider: follows redirects itself and keeps the
/// provider's cookies, so a login and a logout work as in a browser.
pub struct Browser {
    issuer: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
    token_client: reqwest::Client,
}

impl Browser {
    /// The authorization code flow for `erp-web` as `user` (the provider's
    /// interaction logs in the `login_hint` and grants consent), then the
    /// code exchange.
    pub async fn login(&mut self, user: &str) -> anyhow::Result<Tokens> {
        let mut authorize = Url::parse(&format!("{}/auth", self.issuer))?;
        authorize
            .query_pairs_mut()
            .append_pair("client_id", "erp-web")
            .append_pair("response_type", "code")
            .append_pair("scope", "openid api")
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("login_hint", user)
            .append_pair("state", "oidc-suite");
        let callback = self.follow(self.client.get(authorize)).await?;
        let url = Url::parse(&callback)?;
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .with_context(|| format!("no code in the redirect {callback}"))?;
        let r = self
            .token_client
            .post(format!("{}/token", self.issuer))
            .basic_auth("erp-web", Some(WEB_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ])
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("code exchange answered {status}: {body}");
        }
        Ok(Tokens(body))
    }

    /// RP-initiated logout: the end-session endpoint with `id_token_hint`,
    /// then the provider's confirmation form submitted with "yes, sign me
    /// out" (`logout=yes`). The provider sends the back-channel logouts
    /// before it answers.
    pub async fn logout(&mut self, id_token: &str) -> anyhow::Result<()> {
        let mut end = Url::parse(&format!("{}/session/end", self.issuer))?;
        end.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", REDIRECT_URI);
        let page = self.send(self.client.get(end)).await?;
        let html = page.text().await?;
        let xsrf = html
            .split("name=\"xsrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .with_context(|| format!("no logout form on the end-session page: {html}"))?
            .to_string();
        let confirm = self
            .client
            .post(format!("{}/session/end/confirm", self.issuer))
            .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")]);
        let done = self.follow(confirm).await?;
        anyhow::ensure!(
            done.starts_with(REDIRECT_URI),
            "the logout ended at {done}, not the post-logout redirect"
        );
        Ok(())
    }

    /// Sends a request and follows redirects on the provider until one
    /// leaves it (to the client's redirect URI); returns that location.
    async fn follow(&mut self, first: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let mut response = self.send(first).await?;
        for _ in 0..10 {
            let status = response.status();
            if !status.is_redirection() {
                let body = response.text().await.unwrap_or_default();
                bail!("the provider answered {status} instead of a redirect: {body}");
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .context("a redirect without Location")?;
            let next = response.url().join(location)?;
            if !next.as_str().starts_with(&self.issuer) {
                return Ok(next.to_string());
            }
            response = self.send(self.client.get(next)).await?;
        }
        bail!("more than 10 redirects at the provider")
    }

    /// Sends with the cookies kept so far and keeps the ones set.
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, cookie)
        };
        let response = request.send().await?;
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((pair, attributes)) = set
                .to_str()
                .ok()
                .map(|s| s.split_once(';').unwrap_or((s, "")))
            else {
                continue;
            };
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            // A cleared cookie comes with an empty value and a date in 1970.
            if value.is_empty() || attributes.contains("1970") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_string(), value.to_string());
            }
        }
        Ok(response)
    }
}

/// A loopback listener standing in for a relying party's back-channel
/// logout endpoint: it answers 200 to every request and keeps the
/// `logout_token`s it was sent (to look at what the provider sends).
pub struct LogoutCatcher {
    addr: std::net::SocketAddr,
    tokens: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogoutCatcher {
    /// Listens on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&tokens);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        if let Some(body) = complete_body(&buffer) {
                            if let Some(token) = form_value(&body, "logout_token")
                                && let Ok(mut list) = kept.lock()
                            {
                                list.push(token);
                            }
                            break;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Ok(Self { addr, tokens, task })
    }

    /// `http://<addr>/backchannel-logout`.
    pub fn url(&self) -> String {
        format!("http://{}/backchannel-logout", self.addr)
    }

    /// The logout tokens received so far.
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for LogoutCatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body of a request framed by `Content-Length`, once all of it is there.
fn complete_body(buffer: &[u8]) -> Option<String> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (buffer.len() >= head_end + length)
        .then(|| String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string())
}

/// A value of an `application/x-www-form-urlencoded` body.
fn form_value(body: &str, name: &str) -> Option<String> {
    let url = Url::parse(&format!("http://x/?{body}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}
