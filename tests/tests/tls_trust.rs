//! TLS trust toward upstreams and issuers, with a private CA made in the
//! test (`openssl`) and real HTTPS servers (`tests/tls/https_server.py`,
//! Python's http.server over its ssl module): an upstream's `ca_file`,
//! client certificate (mTLS) and verification settings, and an issuer's
//! `ca_file` for its JWKS fetches, and the listeners' certificates chosen by
//! the name a client asks for (SNI).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use session_gateway_e2e::redis::TestCa;
use session_gateway_e2e::{Await, ConfigDoc, Devkit, Gateway, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// An HTTPS server on 127.0.0.1 with the CA's server certificate
/// (`127.0.0.1`, `localhost`), killed when dropped.
struct HttpsServer {
    child: Child,
    port: u16,
}

impl HttpsServer {
    /// Serves `/echo` and the files of `dir`; with `client_ca`, only to
    /// clients presenting a certificate of that CA.
    fn start(ca: &TestCa, client_ca: Option<&TestCa>, dir: &Path) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tls/https_server.py");
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .arg(&script)
            .arg(port.to_string())
            .arg(ca.server_cert())
            .arg(ca.server_key())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(client_ca) = client_ca {
            command.arg("--client-ca").arg(client_ca.ca_cert());
        }
        let mut child = command.spawn().context("cannot run python3")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the HTTPS server did not start: {line:?}");
        }
        Ok(Self { child, port })
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kit's configuration with a public route `/tls/` to the HTTPS server
/// as upstream `secure`, named `sni`, its other TLS settings set by `tls`.
fn with_tls_upstream(kit: &Devkit, server: &HttpsServer, sni: &str, tls: &str) -> ConfigDoc {
    let mut config = kit.config();
    config.push(
        "upstreams",
        &format!(
            "name = \"secure\"\nservers = [\"{}\"]\ntls = true\nsni = \"{sni}\"\n{tls}",
            server.addr()
        ),
    );
    config.push(
        "routes",
        "name = \"tls\"\npath_prefix = \"/tls/\"\nupstream = \"secure\"\npolicy = \"public\"",
    );
    config
}

/// `GET /tls/echo` through a gateway on `config`: its status and body.
async fn through(config: &ConfigDoc) -> anyhow::Result<(u16, serde_json::Value)> {
    let gw = Gateway::start(BIN, config).await?;
    let reply = gw.get_anonymous("/tls/echo").await?;
    Ok((reply.status, reply.json()))
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn an_upstream_behind_a_private_ca_is_trusted_through_its_ca_file_only() -> anyhow::Result<()>
{
    let kit = Devkit::start().await?;
    let (ca, other) = (TestCa::new()?, TestCa::new()?);
    let dir = tempfile::tempdir()?;
    let server = HttpsServer::start(&ca, None, dir.path())?;

    // The system's roots do not know the private CA.
    let (status, _) = through(&with_tls_upstream(&kit, &server, "localhost", "")).await?;
    assert_eq!(status, 502);
    // Another private CA is no better.
    let wrong = format!("ca_file = \"{}\"", path(other.ca_cert()));
    let (status, _) = through(&with_tls_upstream(&kit, &server, "localhost", &wrong)).await?;
    assert_eq!(status, 502);
    let right = format!("ca_file = \"{}\"", path(ca.ca_cert()));
    let (status, body) = through(&with_tls_upstream(&kit, &server, "localhost", &right)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/tls/echo");
    assert_eq!(body["client_cn"], serde_json::Value::Null);

    // The certificate names localhost and 127.0.0.1: another SNI fails the
    // name check, unless that check alone is turned off.
    let misnamed = with_tls_upstream(&kit, &server, "erp.internal", &right);
    let (status, _) = through(&misnamed).await?;
    assert_eq!(status, 502);
    let lenient = right + "\nverify_hostname = false";
    let lenient = with_tls_upstream(&kit, &server, "erp.internal", &lenient);
    let (status, body) = through(&lenient).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn an_upstream_requiring_a_client_certificate_gets_the_configured_one() -> anyhow::Result<()>
{
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let dir = tempfile::tempdir()?;
    let server = HttpsServer::start(&ca, Some(&ca), dir.path())?;
    let trust = format!("ca_file = \"{}\"", path(ca.ca_cert()));
    let (status, _) = through(&with_tls_upstream(&kit, &server, "localhost", &trust)).await?;
    assert_eq!(status, 502, "no client certificate, no connection");
    let mtls = format!(
        "{trust}\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        path(ca.client_cert()),
        path(ca.client_key())
    );
    let (status, body) = through(&with_tls_upstream(&kit, &server, "localhost", &mtls)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_cn"], "client");
    Ok(())
}

#[tokio::test]
async fn an_issuer_behind_a_private_ca_is_trusted_through_its_ca_file() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let dir = tempfile::tempdir()?;
    // The kit issuer's keys, served over HTTPS by the private CA's server.
    let jwks = reqwest::get(format!("{}/jwks", kit.issuer.issuer_url()))
        .await?
        .text()
        .await?;
    std::fs::write(dir.path().join("jwks.json"), jwks)?;
    let server = HttpsServer::start(&ca, None, dir.path())?;
    let jwks_uri = format!("https://{}/jwks.json", server.addr());

    let mut config = kit.config();
    config
        .item("issuers", 0)
        .insert("jwks_uri".into(), jwks_uri.into());
    let untrusted = Gateway::start_awaiting(BIN, &config, Await::Alive).await?;
    let reply = untrusted.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(reply.status, 503, "{:?}", reply.json());
    assert_eq!(
        reply.json()["type"],
        "urn:session-gateway:error:issuer_unavailable"
    );

    config
        .item("issuers", 0)
        .insert("ca_file".into(), path(ca.ca_cert()).into());
    let trusted = Gateway::start(BIN, &config).await?;
    let reply = trusted.get("/api/x", &kit.token("alice")).await?;
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    Ok(())
}

#[tokio::test]
async fn listeners_present_the_certificate_of_the_name_a_client_asks_for() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let (a_cert, a_key) = ca.server_cert_for("erp-a", &["erp-a.example.test"])?;
    let (eu_cert, eu_key) = ca.server_cert_for("eu", &["*.eu.example.test"])?;
    let mut config = kit.config();
    let named = |names: &[&str], cert: &Path, key: &Path| {
        let mut table = toml::Table::new();
        let names: Vec<toml::Value> = names.iter().map(|n| (*n).into()).collect();
        table.insert("names".into(), names.into());
        table.insert("cert".into(), cert.display().to_string().into());
        table.insert("key".into(), key.display().to_string().into());
        toml::Value::Table(table)
    };
    config.set("server", "tls", {
        let mut tls = toml::Table::new();
        tls.insert("cert".into(), path(ca.server_cert()).into());
        tls.insert("key".into(), path(ca.server_key()).into());
        tls.insert(
            "certificates".into(),
            vec![
                named(&["erp-a.example.test"], &a_cert, &a_key),
                named(&["*.eu.example.test"], &eu_cert, &eu_key),
            ]
            .into(),
        );
        tls
    });
    let gw = Gateway::start(BIN, &config).await?;
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.ca_cert())?)?;
    let mut client = reqwest::Client::builder()
        .add_root_certificate(root)
        .no_proxy();
    for name in [
        "erp-a.example.test",
        "fr.eu.example.test",
        "other.example.test",
    ] {
        client = client.resolve(name, gw.addr);
    }
    let client = client.build()?;
    let port = gw.addr.port();
    // The client checks the certificate against the name it asked for: a
    // good answer means the listener chose that name's certificate.
    for host in ["erp-a.example.test", "fr.eu.example.test", "localhost"] {
        let reply = client
            .get(format!("https://{host}:{port}/public/x"))
            .send()
            .await
            .with_context(|| format!("TLS to {host}"))?;
        assert_eq!(reply.status(), 200, "{host}");
    }
    // A name without a certificate of its own gets the default one, which
    // names localhost and 127.0.0.1 only.
    let other = client
        .get(format!("https://other.example.test:{port}/public/x"))
        .send()
        .await;
    assert!(other.is_err(), "{other:?}");
    Ok(())
}
