//! A real `redis-server` for one test, on a free loopback port, without
//! persistence, killed when its handle drops; optionally with a password or
//! with TLS only (certificates from a [`TestCa`] made for the test).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use session_gateway::config::{RedisConfig, RedisMode, Secret};

use crate::{DEADLINE, free_port};

/// A private certificate authority for one test, made with the `openssl`
/// command: its certificate, a server certificate for `127.0.0.1` and
/// `localhost`, and a client certificate, each with an EC P-256 key. Two
/// `TestCa`s never trust each other's certificates.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the certificates it signs.
    pub fn new() -> anyhow::Result<Self> {
        let ca = Self {
            dir: tempfile::tempdir()?,
        };
        // A name of its own, so another TestCa is an unknown issuer rather
        // than a namesake whose signature does not match.
        let name = ca.dir.path().file_name().map_or_else(String::new, |n| {
            n.to_string_lossy().replace(['.', ' '], "-")
        });
        ca.openssl(&format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout ca.key -out ca.crt -days 2 -subj /CN=session-gateway-test-ca{name} \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ))?;
        ca.sign(
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        ca.sign("client", "clientAuth", "")?;
        Ok(ca)
    }

    /// A key and a certificate signed by the CA: `<name>.key`, `<name>.crt`.
    fn sign(&self, name: &str, usage: &str, extra: &str) -> anyhow::Result<()> {
        std::fs::write(
            self.dir.path().join(format!("{name}.ext")),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\n{extra}"
            ),
        )?;
        self.openssl(&format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ))?;
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
             -extfile {name}.ext -out {name}.crt"
        ))
    }

    /// A server certificate for `names` (DNS names) signed by the CA, with
    /// its key: `(<file>.crt, <file>.key)`.
    pub fn server_cert_for(
        &self,
        file: &str,
        names: &[&str],
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        self.sign(
            file,
            "serverAuth",
            &format!("subjectAltName={}\n", san.join(",")),
        )?;
        Ok((
            self.file(&format!("{file}.crt")),
            self.file(&format!("{file}.key")),
        ))
    }

    /// Runs `openssl` in the CA's directory; `args` are separated by spaces.
    fn openssl(&self, args: &str) -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .context("cannot run `openssl`: it must be on PATH for the Redis TLS tests")?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args.split_whitespace().next().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.file("ca.crt")
    }

    /// The server certificate (PEM), for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self) -> PathBuf {
        self.file("server.crt")
    }

    /// The server certificate's key (PEM, PKCS#8).
    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }

    /// A client certificate (PEM) for mutual TLS.
    pub fn client_cert(&self) -> PathBuf {
        self.file("client.crt")
    }

    /// The client certificate's key (PEM, PKCS#8).
    pub fn client_key(&self) -> PathBuf {
        self.file("client.key")
    }
}

/// How a [`RedisServer`] speaks TLS.
#[derive(Debug, Clone)]
struct ServerTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate and key, when the server requires one.
    client: Option<(PathBuf, PathBuf)>,
}

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    password: Option<String>,
    tls: Option<ServerTls>,
}

impl RedisServer {
    /// Starts one on a free port; fails with a clear message when
    /// `redis-server` is not on PATH.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_configured(extra, None, None)
    }

    /// Starts one that requires this password (`requirepass`).
    pub fn start_with_password(password: &str) -> anyhow::Result<Self> {
        Self::start_configured(&[], Some(password), None)
    }

    /// Starts one that speaks TLS only (no plain port), with the server
    /// certificate of `ca`. With `client_auth`, it also requires a client
    /// certificate signed by `ca` (`tls-auth-clients yes`).
    pub fn start_tls(ca: &TestCa, client_auth: bool) -> anyhow::Result<Self> {
        let tls = ServerTls {
            ca: ca.ca_cert(),
            cert: ca.server_cert(),
            key: ca.server_key(),
            client: client_auth.then(|| (ca.client_cert(), ca.client_key())),
        };
        Self::start_configured(&[], None, Some(tls))
    }

    fn start_configured(
        extra: &[&str],
        password: Option<&str>,
        tls: Option<ServerTls>,
    ) -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            let mut server = Self {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir()?,
                extra: extra.iter().map(|a| a.to_string()).collect(),
                password: password.map(str::to_string),
                tls: tls.clone(),
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// The password it requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `redis-server` arguments for the password and TLS settings.
    fn security_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_string(), password.clone()]);
        }
        if let Some(tls) = &self.tls {
            let path = |p: &Path| p.display().to_string();
            args.extend([
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                path(&tls.cert),
                "--tls-key-file".into(),
                path(&tls.key),
                "--tls-ca-cert-file".into(),
                path(&tls.ca),
                "--tls-auth-clients".into(),
                if tls.client.is_some() { "yes" } else { "no" }.into(),
            ]);
        }
        args
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        // With TLS the plain port is closed (0): only the TLS port answers.
        let port = if self.tls.is_some() {
            "0".to_string()
        } else {
            self.port.to_string()
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .args(self.security_args())
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start `redis-server`: it must be on PATH for the Redis tests \
                 (Debian/Ubuntu: apt-get install redis-server; .ci/run installs it)",
            )?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server exited with {status} (port {port} taken?)");
            }
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("redis-server did not answer PING within {DEADLINE:?}")
    }

    /// Whether it answers `PING`.
    pub fn ping(&self) -> bool {
        use std::io::{Read, Write};
        if self.password.is_some() || self.tls.is_some() {
            return self.cli(&["PING"]).is_ok_and(|reply| reply == "PONG");
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` when it speaks TLS
    /// (never with the password).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills it (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (a restart without persistence).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// Runs a command with `redis-cli` (with the password and TLS settings
    /// the server needs) and returns its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        redis_cli(self.port, self.password.as_deref(), self.tls.as_ref(), args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real three-node Redis Cluster (no replicas) on free loopback ports,
/// created with `redis-cli --cluster create`, killed when dropped.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster, and waits until it serves.
    pub fn start() -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "5000",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            }) {
                return Ok(Self { nodes });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("cluster not ok within {DEADLINE:?}")
    }

    /// The seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A real Redis Sentinel watching one primary (quorum 1), killed when dropped.
pub struct RedisSentinel {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// The name the sentinel monitors the primary under.
    pub const MASTER: &'static str = "mymaster";

    /// Starts a sentinel monitoring `primary` (with the primary's password,
    /// if it has one: `sentinel auth-pass`).
    pub fn start(primary: &RedisServer) -> anyhow::Result<Self> {
        Self::start_with_password(primary, None)
    }

    /// Starts a sentinel monitoring `primary` that requires its own
    /// `password` of clients (`requirepass` in sentinel.conf).
    pub fn start_with_password(
        primary: &RedisServer,
        password: Option<&str>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor {} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {} 5000\n",
            Self::MASTER,
            primary.port,
            Self::MASTER
        );
        if let Some(primary_password) = primary.password() {
            text.push_str(&format!(
                "sentinel auth-pass {} {primary_password}\n",
                Self::MASTER
            ));
        }
        if let Some(password) = password {
            text.push_str(&format!("requirepass {password}\n"));
        }
        std::fs::write(&conf, text)?;
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `redis-server --sentinel` (needs redis-server on PATH)")?;
        let sentinel = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            let out = redis_cli(
                port,
                password,
                None,
                &["SENTINEL", "get-master-addr-by-name", Self::MASTER],
            );
            if out.is_ok_and(|o| o.contains(&primary.port.to_string())) {
                return Ok(sentinel);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("sentinel did not report the primary within {DEADLINE:?}")
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Runs `redis-cli` against a port on 127.0.0.1 and returns its output. The
/// password goes through `REDISCLI_AUTH`, not the command line.
fn redis_cli(
    port: u16,
    password: Option<&str>,
    tls: Option<&ServerTls>,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    if let Some(tls) = tls {
        command.arg("--tls").arg("--cacert").arg(&tls.ca);
        if let Some((cert, key)) = &tls.client {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
    let out = command.args(args).output().context("running redis-cli")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The length of the session ids the Redis store opens (store layout 2:
/// the identity's 22-character slot and 16 random characters).
pub const REDIS_SESSION_ID_LEN: usize = 38;

/// A Redis store configuration for in-process store tests: one standalone
/// server, keys under `key_prefix`, the lease cache off (every call reaches
/// the scripts; set `touch_interval` to turn it on), no grace, no `WAIT`.
pub fn store_config(url: String, key_prefix: &str) -> RedisConfig {
    RedisConfig {
        mode: RedisMode::Standalone,
        urls: vec![Secret::new(url)],
        master_name: None,
        master_password: None,
        tls: None,
        key_prefix: key_prefix.into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        grace_period: Duration::ZERO,
        touch_interval: Duration::ZERO,
        lease_revalidate: Duration::from_secs(30),
        wait_replicas: 0,
        wait_timeout: Duration::from_millis(100),
    }
}
