//! Interoperability with a real OpenID provider: `oidc-provider` from npm
//! (tests/oidc/provider.mjs) in front of real gateways. Its tokens open
//! sessions (client credentials, code and refresh), its RP-initiated logout
//! makes it send the back-channel logout that closes them, its key rotation
//! is picked up at once, and a two-instance Redis fleet sees all of it.
//!
//! Needs `npm ci --prefix tests/oidc` (scripts/test.sh does it).

use std::net::SocketAddr;

use session_gateway_e2e::oidc::{BATCH_SECRET, jwt_parts};
use session_gateway_e2e::{
    Await, Backend, BackendHandle, ConfigDoc, Gateway, LogoutCatcher, OidcProvider,
    ProviderOptions, REDIS_SESSION_ID_LEN, RedisServer, eventually, free_port,
};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const ADMIN_ENV: &str = "OIDC_SUITE_ADMIN_TOKEN";
const ADMIN_TOKEN: &str = "oidc-suite-admin-token-0123456789";

async fn backend() -> anyhow::Result<BackendHandle> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    Backend::start(loopback, "erp-1").await
}

/// The standard configuration with the provider as its one issuer
/// (discovery over loopback http, ES256), the admin API on, and a pool of
/// `limit` seats. `logout`: the provider's logout tokens (`aud` = the
/// client, `erp-web`) are accepted, and must be typed `logout+jwt` (the
/// provider types them, so the strict setting works with it).
fn config(issuer: &str, backend: SocketAddr, limit: i64, logout: bool) -> ConfigDoc {
    let mut config = ConfigDoc::standard(issuer, backend);
    let entry = config.item("issuers", 0);
    entry.insert("algorithms".into(), vec!["ES256"].into());
    entry.insert("jwks_min_refetch".into(), "1s".into());
    if logout {
        entry.insert("logout_audiences".into(), vec!["erp-web"].into());
        entry.insert("require_logout_typ".into(), true.into());
    }
    config.pool(0).insert("limit".into(), limit.into());
    config.set("admin", "token_env", ADMIN_ENV);
    config
}

async fn start(config: &ConfigDoc, what: Await) -> anyhow::Result<Gateway> {
    Gateway::start_with_env(BIN, config, what, &[(ADMIN_ENV, ADMIN_TOKEN)]).await
}

/// Waits until a gateway started before its provider has loaded the keys.
async fn ready(gw: &Gateway) -> anyhow::Result<()> {
    eventually("the gateway ready with the provider's keys", || async {
        let r = gw.client().get(gw.admin_url("/readyz")).send().await?;
        Ok(r.status().is_success().then_some(()))
    })
    .await
}

/// Seats in use in the first pool, from the admin API.
async fn seats_in_use(gw: &Gateway) -> anyhow::Result<i64> {
    let r = gw
        .client()
        .get(gw.admin_url("/admin/v1/licenses"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let body: serde_json::Value = r.json().await?;
    body["pools"][0]["in_use"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no in_use in {body}"))
}

#[tokio::test]
async fn a_client_credentials_token_opens_a_session() -> anyhow::Result<()> {
    let op = OidcProvider::start(&ProviderOptions::default()).await?;
    let erp = backend().await?;
    let gw = start(&config(&op.issuer(), erp.addr(), 10, false), Await::Ready).await?;

    let batch = op.client_credentials("erp-batch", BATCH_SECRET).await?;
    let token = batch.access_token()?;
    let (header, claims) = jwt_parts(token)?;
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["aud"], "erp-api");
    assert_eq!(claims["client_id"], "erp-batch");

    let first = gw.get("/api/orders", token).await?;
    assert_eq!(first.status, 200, "{:?}\n{}", first.json(), gw.logs());
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(id.len(), 32);
    let session = gw.session(token).await?;
    assert_eq!(session.status, 200);
    assert_eq!(session.json()["subject"], "erp-batch");
    assert_eq!(session.json()["client"], "erp-batch");
    assert_eq!(session.json()["issuer"], op.issuer());

    // The service's next token (a new grant) is the same identity: the same
    // session, one seat.
    let again = op.client_credentials("erp-batch", BATCH_SECRET).await?;
    let second = gw.get("/api/orders", again.access_token()?).await?;
    assert_eq!(second.forwarded_header("x-session-id"), Some(id));
    assert_eq!(seats_in_use(&gw).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_refreshed_token_reuses_the_session_of_the_login() -> anyhow::Result<()> {
    let op = OidcProvider::start(&ProviderOptions::default()).await?;
    let erp = backend().await?;
    let gw = start(&config(&op.issuer(), erp.addr(), 10, false), Await::Ready).await?;

    let mut browser = op.browser();
    let login = browser.login("alice").await?;
    let first_token = login.access_token()?;
    let (_, first_claims) = jwt_parts(first_token)?;
    assert_eq!(first_claims["sub"], "alice");
    assert_eq!(first_claims["client_id"], "erp-web");

    let first = gw.get("/api/orders", first_token).await?;
    assert_eq!(first.status, 200, "{:?}\n{}", first.json(), gw.logs());
    let id = first.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(id.len(), 32);
    assert_eq!(gw.session(first_token).await?.json()["subject"], "alice");

    let refreshed = op.refresh(login.refresh_token()?).await?;
    let second_token = refreshed.access_token()?;
    assert_ne!(second_token, first_token);
    let (_, second_claims) = jwt_parts(second_token)?;
    assert_eq!(
        second_claims["sid"], first_claims["sid"],
        "one provider session"
    );
    assert_ne!(second_claims["jti"], first_claims["jti"]);

    let second = gw.get("/api/orders", second_token).await?;
    assert_eq!(second.status, 200, "{:?}", second.json());
    assert_eq!(second.forwarded_header("x-session-id"), Some(id));
    assert_eq!(seats_in_use(&gw).await?, 1);
    Ok(())
}

#[tokio::test]
async fn rp_initiated_logout_at_the_provider_closes_the_session() -> anyhow::Result<()> {
    logout_closes_the_session(false).await
}

/// oidc-provider's own access tokens name no `sid`: the logout token's
/// `sid` then links to no session, and the `sub` it also names closes it.
#[tokio::test]
async fn rp_initiated_logout_closes_a_session_opened_by_a_token_without_sid() -> anyhow::Result<()>
{
    logout_closes_the_session(true).await
}

async fn logout_closes_the_session(plain_access_tokens: bool) -> anyhow::Result<()> {
    // The provider registers the gateway's back-channel URI and the gateway
    // discovers the provider: the gateway starts first, on the issuer URL the
    // provider will have, and becomes ready once the provider serves.
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let erp = backend().await?;
    let gw = start(&config(&issuer, erp.addr(), 1, true), Await::Alive).await?;
    let op = OidcProvider::start(&ProviderOptions {
        backchannel_logout_uri: Some(gw.url("/.gateway/backchannel-logout")),
        port: Some(port),
        plain_access_tokens,
    })
    .await?;
    ready(&gw).await?;

    let mut browser = op.browser();
    let alice = browser.login("alice").await?;
    let token = alice.access_token()?;
    let (_, claims) = jwt_parts(token)?;
    assert_eq!(claims["sid"].is_null(), plain_access_tokens, "{claims}");
    assert_eq!(gw.get("/api/orders", token).await?.status, 200);
    let batch = op.client_credentials("erp-batch", BATCH_SECRET).await?;
    let full = gw.get("/api/orders", batch.access_token()?).await?;
    assert_eq!(full.status, 429, "one seat, held by alice");

    browser.logout(alice.id_token()?).await?;
    assert!(
        op.logs().contains("backchannel logout sent to erp-web"),
        "the provider's back-channel logout did not succeed: {}\n{}",
        op.logs(),
        gw.logs()
    );
    eventually("alice's session closed", || async {
        Ok((gw.session(token).await?.status != 200).then_some(()))
    })
    .await?;
    assert_eq!(seats_in_use(&gw).await?, 0);
    let refused = gw.get("/api/orders", token).await?;
    assert_eq!(refused.status, 401, "a token of the ended provider session");
    // The seat is free for someone else.
    let admitted = gw.get("/api/orders", batch.access_token()?).await?;
    assert_eq!(admitted.status, 200, "{:?}", admitted.json());
    Ok(())
}

#[tokio::test]
async fn id_and_logout_tokens_are_not_access_tokens() -> anyhow::Result<()> {
    let catcher = LogoutCatcher::start().await?;
    let op = OidcProvider::start(&ProviderOptions {
        backchannel_logout_uri: Some(catcher.url()),
        ..ProviderOptions::default()
    })
    .await?;
    let erp = backend().await?;
    let gw = start(&config(&op.issuer(), erp.addr(), 10, true), Await::Ready).await?;

    let mut browser = op.browser();
    let alice = browser.login("alice").await?;
    let access = alice.access_token()?;
    assert_eq!(gw.get("/token-only/x", access).await?.status, 200);

    // The ID token: signed by the same key, `aud` = the client, `typ` JWT
    // (one of the default `access_token_types`): only its audience, which is
    // a logout audience and not an access audience, keeps it out.
    let id_token = alice.id_token()?;
    let (header, claims) = jwt_parts(id_token)?;
    assert_eq!(claims["aud"], "erp-web");
    let typ = header["typ"].as_str().unwrap_or("").to_string();
    for path in ["/token-only/x", "/api/x"] {
        let r = gw.get(path, id_token).await?;
        assert_eq!(
            r.status,
            401,
            "an ID token (typ {typ:?}) on {path}: {:?}",
            r.json()
        );
    }

    // The logout token the provider sends on RP-initiated logout.
    browser.logout(id_token).await?;
    let logout_token = eventually("the provider's logout token", || async {
        Ok(catcher.tokens().into_iter().next())
    })
    .await?;
    let (header, claims) = jwt_parts(&logout_token)?;
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["aud"], "erp-web");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    for path in ["/token-only/x", "/api/x"] {
        let r = gw.get(path, &logout_token).await?;
        assert_eq!(r.status, 401, "a logout token on {path}: {:?}", r.json());
    }
    assert_eq!(
        erp.requests(),
        1,
        "only the access token reached the backend"
    );
    Ok(())
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_at_once() -> anyhow::Result<()> {
    let mut op = OidcProvider::start(&ProviderOptions::default()).await?;
    let erp = backend().await?;
    let gw = start(&config(&op.issuer(), erp.addr(), 10, false), Await::Ready).await?;

    let before = op.client_credentials("erp-batch", BATCH_SECRET).await?;
    let old_token = before.access_token()?.to_string();
    assert_eq!(gw.get("/token-only/x", &old_token).await?.status, 200);
    let old_kid = jwt_parts(&old_token)?.0["kid"].clone();

    op.rotate_keys().await?;
    let jwks: serde_json::Value = session_gateway_e2e::client()
        .get(op.url("/jwks"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");

    let after = op.client_credentials("erp-batch", BATCH_SECRET).await?;
    let new_token = after.access_token()?;
    let new_kid = jwt_parts(new_token)?.0["kid"].clone();
    assert_ne!(new_kid, old_kid, "the provider signs with the new key");
    // The unknown kid makes the gateway fetch the keys again: no waiting for
    // the periodic refresh, no refusal in between.
    let r = gw.get("/token-only/x", new_token).await?;
    assert_eq!(r.status, 200, "{:?}\n{}", r.json(), gw.logs());
    // Tokens signed before the rotation stay valid while the old key is
    // published.
    assert_eq!(gw.get("/token-only/x", &old_token).await?.status, 200);
    assert_eq!(gw.get("/api/x", new_token).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_redis_fleet_shares_the_session_and_the_logout() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let erp = backend().await?;
    let mut fleet_config = config(&issuer, erp.addr(), 2, true);
    fleet_config.set("sessions", "store", "redis");
    fleet_config.set("sessions", "touch_interval", "1s");
    fleet_config.set("redis", "url", redis.url());
    let a = start(&fleet_config, Await::Alive).await?;
    let b = start(&fleet_config, Await::Alive).await?;
    // The provider calls one back-channel URI per client: instance A's.
    let op = OidcProvider::start(&ProviderOptions {
        backchannel_logout_uri: Some(a.url("/.gateway/backchannel-logout")),
        port: Some(port),
        ..ProviderOptions::default()
    })
    .await?;
    ready(&a).await?;
    ready(&b).await?;

    let mut browser = op.browser();
    let alice = browser.login("alice").await?;
    let on_a = a.get("/api/orders", alice.access_token()?).await?;
    assert_eq!(on_a.status, 200, "{:?}\n{}", on_a.json(), a.logs());
    let id = on_a.forwarded_header("x-session-id").unwrap_or_default();
    assert_eq!(id.len(), REDIS_SESSION_ID_LEN);

    // The refreshed token on the other instance: the same session, one seat.
    let refreshed = op.refresh(alice.refresh_token()?).await?;
    let token = refreshed.access_token()?;
    let on_b = b.get("/api/orders", token).await?;
    assert_eq!(on_b.status, 200, "{:?}", on_b.json());
    assert_eq!(on_b.forwarded_header("x-session-id"), Some(id.clone()));
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "1");
    assert_eq!(seats_in_use(&a).await?, 1);
    assert_eq!(seats_in_use(&b).await?, 1);

    // Logout at the provider reaches instance A; instance B sees it too.
    browser.logout(alice.id_token()?).await?;
    assert!(
        op.logs().contains("backchannel logout sent to erp-web"),
        "the provider's back-channel logout did not succeed: {}\n{}",
        op.logs(),
        a.logs()
    );
    eventually("the session closed on instance B", || async {
        Ok((b.session(token).await?.status != 200).then_some(()))
    })
    .await?;
    assert_eq!(redis.cli(&["ZCARD", "{sg:default}:b:0"])?, "0");
    assert_eq!(seats_in_use(&b).await?, 0);
    // The revocation of the provider session reaches B with its next sync
    // (every `sessions.sweep_interval`, docs/sessions.md). Until then B would
    // open a new session for the token, so wait on a route that opens none.
    eventually("alice's tokens refused on instance B", || async {
        Ok((b.get("/token-only/x", token).await?.status == 401).then_some(()))
    })
    .await?;
    assert_eq!(b.get("/api/orders", token).await?.status, 401);
    assert_eq!(seats_in_use(&b).await?, 0, "no session reopened");
    Ok(())
}
