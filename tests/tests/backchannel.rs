//! OpenID Connect Back-Channel Logout 1.0 at `POST /.gateway/backchannel-logout`:
//! a valid logout token closes the sessions of its `sid` (or of its `sub`),
//! frees their seats and revokes the tokens that could reopen them; every
//! malformed variant is a 400 `invalid_request` that changes nothing.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use session_gateway_e2e::{Devkit, Gateway, Reply, TokenRequest};

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

fn sign(kit: &Devkit, claims: &Value) -> String {
    kit.issuer
        .sign_raw(&kit.issuer.header(Algorithm::RS256), claims)
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
