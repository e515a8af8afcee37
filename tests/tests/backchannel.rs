//! OpenID Connect Back-Channel Logout 1.0 at `POST /.gateway/backchannel-logout`:
//! a valid logout token closes the sessions of its `sid` (or of its `sub`),
//! frees their seats and revokes the tokens that could reopen them; every
//! malformed variant, and a replay, is a 400 `invalid_request` that changes
//! nothing. Logout tokens and ID tokens are never access tokens.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer, Reply, TokenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn logout_claims(kit: &Devkit, extra: Value) -> Value {
    let mut claims = json!({
        "iss": kit.issuer.issuer_url(),
        "aud": "erp-api",
        "iat": now(),
        "exp": now() + 120,
        "jti": format!("lt-{}", rand_suffix()),
        "events": { EVENT: {} },
    });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Signs a logout token the way providers do, typed `logout+jwt`.
fn sign(kit: &Devkit, claims: &Value) -> String {
    sign_typed(kit, Some("logout+jwt"), claims)
}

fn sign_typed(kit: &Devkit, typ: Option<&str>, claims: &Value) -> String {
    let mut header = kit.issuer.header(Algorithm::RS256);
    header.typ = typ.map(str::to_owned);
    kit.issuer.sign_raw(&header, claims)
}

/// Sets a key of the first `[[issuers]]` entry.
fn set_issuer(config: &mut ConfigDoc, key: &str, value: impl Into<toml::Value>) {
    config.item("issuers", 0).insert(key.into(), value.into());
}

fn strings(items: &[&str]) -> toml::Value {
    toml::Value::Array(items.iter().map(|s| (*s).into()).collect())
}

async fn post(gw: &Gateway, token: &str) -> anyhow::Result<Reply> {
    let r = gw
        .client()
        .post(gw.url("/.gateway/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await?;
    Reply::read(r).await
}

#[tokio::test]
async fn a_sid_logout_closes_that_session_and_revokes_its_tokens() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;

    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);

    let token = sign(
        &kit,
        &logout_claims(&kit, json!({"sid": kit.issuer.sid_for("alice")})),
    );
    let r = post(&gw, &token).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // The seat is free, the old token of that IdP session is refused.
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 200);
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401);
    // Idempotent for the identity provider's retries, but a replayed
    // logout token (same jti) is refused.
    let replay = post(&gw, &token).await?;
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json()["error"], "invalid_request");
    assert!(
        replay.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("replayed")
    );
    // A new login (a new IdP session) works again.
    let relogin = kit.mint(&TokenRequest::new("alice").claim("sid", "a-new-idp-session"));
    assert_eq!(
        gw.session(&relogin).await?.status,
        404,
        "no session survived"
    );
    Ok(())
}

#[tokio::test]
async fn a_sub_logout_closes_every_session_of_the_subject() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let web = kit.mint(&TokenRequest::new("carol").claim("iat", now() - 30));
    let desktop = kit.mint(
        &TokenRequest::new("carol")
            .client_id("erp-desktop")
            .claim("iat", now() - 30),
    );
    let dave = kit.token("dave");
    for t in [&web, &desktop, &dave] {
        assert_eq!(gw.get("/api/x", t).await?.status, 200);
    }
    let r = post(
        &gw,
        &sign(&kit, &logout_claims(&kit, json!({"sub": "carol"}))),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    for t in [&web, &desktop] {
        assert_eq!(
            gw.get("/api/x", t).await?.status,
            401,
            "a token issued before the logout"
        );
    }
    // Others are untouched; a token issued after the logout opens a new session.
    assert_eq!(gw.session(&dave).await?.status, 200);
    let later = kit.mint(&TokenRequest::new("carol").claim("iat", now() + 2));
    assert_eq!(gw.session(&later).await?.status, 404);
    assert_eq!(gw.get("/api/x", &later).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn malformed_logout_tokens_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let sid = kit.issuer.sid_for("alice");

    let cases: Vec<(&str, Value)> = vec![
        ("no events", json!({"sid": sid, "events": null})),
        (
            "wrong event",
            json!({"sid": sid, "events": {"urn:other": {}}}),
        ),
        ("nonce", json!({"sid": sid, "nonce": "n-1"})),
        ("neither sid nor sub", json!({})),
        ("wrong audience", json!({"sid": sid, "aud": "payroll"})),
        (
            "expired",
            json!({"sid": sid, "iat": now() - 600, "exp": now() - 300}),
        ),
        (
            "issued in the future",
            json!({"sid": sid, "iat": now() + 3600, "exp": now() + 7200}),
        ),
        ("no jti", json!({"sid": sid, "jti": null})),
        ("no iat", json!({"sid": sid, "iat": null})),
    ];
    for (what, extra) in cases {
        let r = post(&gw, &sign(&kit, &logout_claims(&kit, extra))).await?;
        assert_eq!(r.status, 400, "{what}: {:?}", r.json());
        assert_eq!(r.json()["error"], "invalid_request", "{what}");
    }
    // A token of another type (an access or ID token of the same keys).
    for typ in ["JWT", "at+jwt", "id+jwt"] {
        let claims = logout_claims(&kit, json!({"sid": sid}));
        let r = post(&gw, &sign_typed(&kit, Some(typ), &claims)).await?;
        assert_eq!(r.status, 400, "typ {typ}: {:?}", r.json());
        assert_eq!(r.json()["error"], "invalid_request", "typ {typ}");
    }
    // Not a signed token of a trusted issuer.
    let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", "e30");
    assert_eq!(post(&gw, &unsigned).await?.status, 400);
    let stranger = session_gateway_e2e::Issuer::start("127.0.0.1:0".parse()?).await?;
    let foreign = stranger.sign_raw(
        &stranger.header(Algorithm::RS256),
        &logout_claims(&kit, json!({"sid": sid, "iss": stranger.issuer_url()})),
    );
    assert_eq!(post(&gw, &foreign).await?.status, 400);
    // Wrong transport.
    let json_body = gw
        .client()
        .post(gw.url("/.gateway/backchannel-logout"))
        .json(&json!({"logout_token": "x"}))
        .send()
        .await?;
    assert_eq!(json_body.status().as_u16(), 400);
    let empty = gw
        .client()
        .post(gw.url("/.gateway/backchannel-logout"))
        .form(&[("other", "x")])
        .send()
        .await?;
    assert_eq!(empty.status().as_u16(), 400);

    // Alice's session survived all of it.
    assert_eq!(gw.session(&alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn logout_tokens_are_for_the_client_ids_in_logout_audiences() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    set_issuer(
        &mut config,
        "logout_audiences",
        strings(&["erp-web", "erp-desktop"]),
    );
    let gw = Gateway::start(BIN, &config).await?;
    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let sid = kit.issuer.sid_for("alice");

    // The access tokens' audience no longer names a logout token's.
    let api = post(
        &gw,
        &sign(
            &kit,
            &logout_claims(&kit, json!({"sid": sid, "aud": "erp-api"})),
        ),
    )
    .await?;
    assert_eq!(api.status, 400, "{:?}", api.json());
    assert_eq!(gw.session(&alice).await?.status, 200, "nothing closed");

    // BCL §2.4: the provider addresses the logout token to the client.
    let web = post(
        &gw,
        &sign(
            &kit,
            &logout_claims(&kit, json!({"sid": sid, "aud": "erp-web"})),
        ),
    )
    .await?;
    assert_eq!(web.status, 200, "{:?}", web.json());
    assert_eq!(web.header("cache-control"), Some("no-store"));
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        200,
        "seat freed"
    );
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401);
    Ok(())
}

#[tokio::test]
async fn a_required_logout_typ_refuses_untyped_logout_tokens() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    set_issuer(&mut config, "require_logout_typ", true);
    let gw = Gateway::start(BIN, &config).await?;
    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let claims = logout_claims(&kit, json!({"sid": kit.issuer.sid_for("alice")}));
    let untyped = post(&gw, &sign_typed(&kit, None, &claims)).await?;
    assert_eq!(untyped.status, 400, "{:?}", untyped.json());
    assert_eq!(untyped.json()["error"], "invalid_request");
    assert_eq!(gw.session(&alice).await?.status, 200, "nothing closed");
    // The same claims typed `logout+jwt`: the refusal spent nothing.
    let typed = post(&gw, &sign(&kit, &claims)).await?;
    assert_eq!(typed.status, 200, "{:?}", typed.json());
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401, "logged out");
    Ok(())
}

#[tokio::test]
async fn logout_and_id_tokens_are_never_access_tokens() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    // The client id among the audiences, as with providers that put it in
    // their access tokens: only the token type tells these apart.
    set_issuer(&mut config, "audiences", strings(&["erp-api", "erp-web"]));
    set_issuer(&mut config, "logout_audiences", strings(&["erp-web"]));
    let gw = Gateway::start(BIN, &config).await?;
    let event = json!({ EVENT: {} });
    let not_access_tokens = [
        (
            "a logout token",
            TokenRequest::new("alice")
                .audience("erp-web")
                .typ(Some("logout+jwt"))
                .claim("events", event.clone()),
        ),
        (
            "an untyped logout token",
            TokenRequest::new("alice")
                .audience("erp-web")
                .typ(None)
                .claim("events", event),
        ),
        (
            "an ID token",
            TokenRequest::new("alice")
                .audience("erp-web")
                .claim("nonce", "n-0S6_WzA2Mj"),
        ),
        (
            "a typed ID token",
            TokenRequest::new("alice")
                .audience("erp-web")
                .typ(Some("id+jwt")),
        ),
    ];
    for (what, request) in not_access_tokens {
        let token = kit.mint(&request);
        for path in ["/token-only/x", "/api/x"] {
            let r = gw.get(path, &token).await?;
            assert_eq!(r.status, 401, "{what} on {path}");
            assert!(
                r.json()["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not an access token"),
                "{what} on {path}: {:?}",
                r.json()
            );
        }
    }
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);
    let typed = kit.mint(&TokenRequest::new("bob").typ(Some("at+jwt")));
    assert_eq!(gw.get("/token-only/x", &typed).await?.status, 200);
    // Keycloak's `Bearer` is refused unless configured.
    let keycloak = kit.mint(&TokenRequest::new("bob").typ(Some("Bearer")));
    assert_eq!(gw.get("/token-only/x", &keycloak).await?.status, 401);
    Ok(())
}

#[tokio::test]
async fn a_sid_unknown_to_every_session_falls_back_to_the_sub() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;
    // The provider's access tokens carry no `sid` (oidc-provider's don't).
    let alice = kit.mint(
        &TokenRequest::new("alice")
            .without_claim("sid")
            .claim("iat", now() - 30),
    );
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);

    let r = post(
        &gw,
        &sign(
            &kit,
            &logout_claims(&kit, json!({"sid": "idp-session-1", "sub": "alice"})),
        ),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        200,
        "seat freed"
    );
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401, "token revoked");
    Ok(())
}

#[tokio::test]
async fn a_sid_with_linked_sessions_leaves_the_subjects_other_sessions() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let web = kit.mint(&TokenRequest::new("carol").claim("sid", "idp-web"));
    let desktop = kit.mint(
        &TokenRequest::new("carol")
            .client_id("erp-desktop")
            .claim("sid", "idp-desktop"),
    );
    for t in [&web, &desktop] {
        assert_eq!(gw.get("/api/x", t).await?.status, 200);
    }
    let r = post(
        &gw,
        &sign(
            &kit,
            &logout_claims(&kit, json!({"sid": "idp-web", "sub": "carol"})),
        ),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(gw.session(&web).await?.status, 401);
    assert_eq!(
        gw.session(&desktop).await?.status,
        200,
        "another IdP session"
    );
    Ok(())
}

/// A session reused by a token of a new login (new `sid`) is linked to that
/// `sid` as well, on one instance and through the Redis store's lease cache.
async fn a_session_reused_under_a_new_sid(config: ConfigDoc, kit: &Devkit) -> anyhow::Result<()> {
    let mut config = config;
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;
    let first = kit.mint(&TokenRequest::new("alice").claim("sid", "idp-login-1"));
    let second = kit.mint(&TokenRequest::new("alice").claim("sid", "idp-login-2"));
    let opened = gw.get("/api/x", &first).await?;
    let reused = gw.get("/api/x", &second).await?;
    assert_eq!(reused.status, 200);
    assert_eq!(
        opened.forwarded_header("x-session-id"),
        reused.forwarded_header("x-session-id"),
        "the same session"
    );
    let r = post(
        &gw,
        &sign(kit, &logout_claims(kit, json!({"sid": "idp-login-2"}))),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        gw.get("/api/x", &kit.token("bob")).await?.status,
        200,
        "seat freed"
    );
    assert_eq!(gw.get("/api/x", &second).await?.status, 401);
    Ok(())
}

#[tokio::test]
async fn a_session_reused_under_a_new_sid_is_closed_by_that_sid() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    a_session_reused_under_a_new_sid(kit.config(), &kit).await
}

#[tokio::test]
async fn a_session_reused_under_a_new_sid_is_closed_by_that_sid_in_redis() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    a_session_reused_under_a_new_sid(config, &kit).await
}

#[tokio::test]
async fn a_replayed_logout_token_closes_nothing() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let before = kit.mint(&TokenRequest::new("carol").claim("iat", now() - 30));
    assert_eq!(gw.get("/api/x", &before).await?.status, 200);
    let token = sign(&kit, &logout_claims(&kit, json!({"sub": "carol"})));
    assert_eq!(post(&gw, &token).await?.status, 200);
    assert_eq!(gw.session(&before).await?.status, 401);

    // Carol logs in again; then the old logout token comes back.
    let after = kit.mint(&TokenRequest::new("carol").claim("iat", now() + 5));
    assert_eq!(gw.get("/api/x", &after).await?.status, 200);
    let replay = post(&gw, &token).await?;
    assert_eq!(replay.status, 400, "{:?}", replay.json());
    assert!(
        replay.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("replayed")
    );
    assert_eq!(
        gw.session(&after).await?.status,
        200,
        "the new session survived"
    );
    assert_eq!(gw.get("/api/x", &after).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn a_logout_token_expiring_far_in_the_future_is_still_one_time() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let token = sign(
        &kit,
        &logout_claims(
            &kit,
            json!({"sid": kit.issuer.sid_for("alice"), "exp": 2e16}),
        ),
    );
    let r = post(&gw, &token).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401);
    let replay = post(&gw, &token).await?;
    assert_eq!(replay.status, 400, "{:?}", replay.json());
    Ok(())
}
