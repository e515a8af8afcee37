//! HTTP/2 toward the gateway: ALPN `h2` on TLS listeners (on by default,
//! `server.http2`), prior-knowledge h2c on plain ones (`server.h2c`, off by
//! default). The session rules hold as on HTTP/1.1: a session is opened and
//! reused, identity headers a client sends are dropped, a missing token is
//! a problem, and a full pool refuses. Toward upstreams, HTTP/2 is a setting
//! per upstream (`[[upstreams]] http2`).

use serde_json::Value;
use session_gateway_e2e::redis::TestCa;
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A GET over the given client; status, protocol version and body.
async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, reqwest::Version, Value)> {
    let mut request = client
        .get(url)
        .header("x-auth-subject", "mallory")
        .header("x-session-id", "forged");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let (status, version) = (response.status().as_u16(), response.version());
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, version, body))
}

/// The session rules, over one client that speaks HTTP/2.
async fn session_rules_hold(
    kit: &Devkit,
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/x");
    let alice = kit.token("alice");
    let (status, version, first) = get(client, &url, Some(&alice)).await?;
    assert_eq!(
        (status, version),
        (200, reqwest::Version::HTTP_2),
        "{first}"
    );
    assert_eq!(
        first["headers"]["x-auth-subject"], "alice",
        "the client's copy is dropped"
    );
    let session = first["headers"]["x-session-id"].clone();
    assert!(session.is_string() && session != "forged");
    let (_, _, again) = get(client, &url, Some(&alice)).await?;
    assert_eq!(
        again["headers"]["x-session-id"], session,
        "the session is reused"
    );
    let (status, _, problem) = get(client, &url, None).await?;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "urn:session-gateway:error:missing_token");
    let (status, _, problem) = get(client, &url, Some(&kit.token("bob"))).await?;
    assert_eq!(status, 429, "one seat: {problem}");
    assert_eq!(
        problem["type"],
        "urn:session-gateway:error:license_unavailable"
    );
    Ok(())
}

#[tokio::test]
async fn tls_listeners_negotiate_http2() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let ca = TestCa::new()?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    config.set("server", "tls", {
        let mut tls = toml::Table::new();
        tls.insert("cert".into(), ca.server_cert().display().to_string().into());
        tls.insert("key".into(), ca.server_key().display().to_string().into());
        tls
    });
    let gw = Gateway::start(BIN, &config).await?;
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca.ca_cert())?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .no_proxy()
        .build()?;
    session_rules_hold(
        &kit,
        &client,
        &format!("https://localhost:{}", gw.addr.port()),
    )
    .await?;

    // A client that offers only HTTP/1.1 still gets it.
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            ca.ca_cert(),
        )?)?)
        .http1_only()
        .no_proxy()
        .build()?;
    let (status, version, _) = get(
        &http1,
        &format!("https://localhost:{}/api/x", gw.addr.port()),
        Some(&kit.token("alice")),
    )
    .await?;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_11));
    Ok(())
}

#[tokio::test]
async fn h2c_is_a_setting_of_plain_listeners() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let prior_knowledge = session_gateway_e2e::h2c_client();

    // Off by default: an HTTP/2 preface gets no HTTP/2 answer.
    let plain = Gateway::start(BIN, &kit.config()).await?;
    let refused = prior_knowledge
        .get(format!("http://127.0.0.1:{}/api/x", plain.addr.port()))
        .bearer_auth(kit.token("alice"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "h2c answered without server.h2c: {refused:?}"
    );

    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    config.set("server", "h2c", true);
    let gw = Gateway::start(BIN, &config).await?;
    session_rules_hold(
        &kit,
        &prior_knowledge,
        &format!("http://127.0.0.1:{}", gw.addr.port()),
    )
    .await?;
    // HTTP/1.1 keeps working on the same listener.
    let (status, version, _) = get(
        gw.client(),
        &format!("http://127.0.0.1:{}/api/x", gw.addr.port()),
        Some(&kit.token("alice")),
    )
    .await?;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_11));
    Ok(())
}

#[tokio::test]
async fn an_upstream_with_http2_is_spoken_to_in_http2() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let version = |config: ConfigDoc| {
        let token = kit.token("alice");
        async move {
            let gw = Gateway::start(BIN, &config).await?;
            let reply = gw.get("/api/x", &token).await?;
            anyhow::ensure!(reply.status == 200, "{:?}", reply.json());
            anyhow::Ok(reply.json()["version"].as_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(version(kit.config()).await?, "HTTP/1.1", "the default");
    let mut config = kit.config();
    config
        .item("upstreams", 0)
        .insert("http2".into(), true.into());
    // A plain upstream has nothing to negotiate: prior knowledge (h2c).
    assert_eq!(version(config).await?, "HTTP/2.0");
    Ok(())
}
