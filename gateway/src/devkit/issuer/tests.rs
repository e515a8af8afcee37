//! Tests of the demo issuer over HTTP and in process: discovery and JWKS
//! verify minted tokens, the token endpoints' answers and refusals, key
//! rotation, claim overrides, raw signing and the server's lifecycle.

use std::net::SocketAddr;

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value, json};

use super::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

async fn start() -> anyhow::Result<IssuerHandle> {
    Issuer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Verifies `token` against the JWKS the issuer serves over HTTP.
fn verify(jwks: &JwkSet, token: &str, issuer: &str) -> anyhow::Result<Map<String, Value>> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header
        .kid
        .ok_or_else(|| anyhow::anyhow!("token without kid"))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow::anyhow!("kid {kid} not in the JWKS"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[DEFAULT_AUDIENCE]);
    validation.validate_nbf = true;
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &DecodingKey::from_jwk(jwk)?,
        &validation,
    )?;
    Ok(data.claims)
}

fn int(claims: &Map<String, Value>, name: &str) -> anyhow::Result<i64> {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow::anyhow!("claim {name} missing or not an integer"))
}

#[tokio::test]
async fn discovery_and_jwks_verify_minted_tokens() -> anyhow::Result<()> {
    let issuer = start().await?;
    let url = issuer.issuer_url().to_owned();
    assert_eq!(url, format!("http://127.0.0.1:{}", issuer.addr().port()));
    let client = reqwest::Client::new();

    let discovery: Value = client
        .get(format!("{url}/.well-known/openid-configuration"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(discovery["issuer"], url.as_str());
    assert_eq!(discovery["jwks_uri"], issuer.jwks_url().as_str());
    assert_eq!(discovery["token_endpoint"], issuer.token_url().as_str());

    let jwks: JwkSet = client
        .get(issuer.jwks_url())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, ["rsa-1", "ec-1"]);
    assert_eq!(issuer.jwks_fetches(), 1);

    for (alg, kid) in [(Algorithm::RS256, "rsa-1"), (Algorithm::ES256, "ec-1")] {
        let token = issuer.mint(&TokenRequest::new("alice").alg(alg));
        assert_eq!(
            jsonwebtoken::decode_header(&token)?.kid.as_deref(),
            Some(kid)
        );
        let claims = verify(&jwks, &token, &url)?;
        assert_eq!(claims["iss"], url.as_str());
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], DEFAULT_AUDIENCE);
        assert_eq!(claims["client_id"], DEFAULT_CLIENT_ID);
        assert_eq!(claims["azp"], DEFAULT_CLIENT_ID);
        assert_eq!(claims["scope"], DEFAULT_SCOPE);
        assert_eq!(claims["sid"], issuer.sid_for("alice").as_str());
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let iat = int(&claims, "iat")?;
        assert_eq!(int(&claims, "nbf")?, iat);
        assert_eq!(int(&claims, "auth_time")?, iat);
        assert_eq!(int(&claims, "exp")? - iat, DEFAULT_EXPIRES_IN);
    }
    issuer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn token_endpoint_mints_and_validates() -> anyhow::Result<()> {
    let issuer = start().await?;
    let client = reqwest::Client::new();
    let jwks: JwkSet = serde_json::from_value(issuer.jwks())?;

    let response = client
        .post(issuer.token_url())
        .form(&[
            ("username", "bob"),
            ("client_id", "erp-desktop"),
            ("expires_in", "-60"),
            ("alg", "ES256"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], -60);
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access_token"))?;
    // Expired: the signature is right but validation refuses it.
    let error = verify(&jwks, token, issuer.issuer_url())
        .err()
        .ok_or_else(|| anyhow::anyhow!("an expired token verified"))?;
    assert!(error.to_string().contains("ExpiredSignature"), "{error}");
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token)?.claims;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["azp"], "erp-desktop");
    assert!(int(&claims, "exp")? < int(&claims, "iat")?);

    let text = client
        .get(format!(
            "{}/dev/token?user=carol&scope=erp.read",
            issuer.issuer_url()
        ))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let token = text
        .strip_suffix('\n')
        .ok_or_else(|| anyhow::anyhow!("no trailing newline"))?;
    let claims = verify(&jwks, token, issuer.issuer_url())?;
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["scope"], "erp.read");

    for form in [
        vec![("client_id", "erp-web")],
        vec![("username", "")],
        vec![("username", "dave"), ("expires_in", "soon")],
        vec![("username", "dave"), ("alg", "HS256")],
        vec![("username", "dave"), ("alg", "none")],
        vec![("username", "dave"), ("audience", "")],
    ] {
        let response = client.post(issuer.token_url()).form(&form).send().await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{form:?}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "invalid_request", "{form:?}");
        assert!(body["error_description"].is_string(), "{form:?}");
    }
    // Not a form at all.
    let response = client
        .post(issuer.token_url())
        .json(&json!({ "username": "dave" }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_request");

    issuer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_old_keys_published() -> anyhow::Result<()> {
    let issuer = start().await?;
    let client = reqwest::Client::new();
    let old = issuer.mint(&TokenRequest::new("alice"));

    let rotated: Value = client
        .post(format!("{}/dev/rotate", issuer.issuer_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(rotated["kid"], "rsa-2");
    assert_eq!(issuer.rotate().await?, "rsa-3");

    let new = issuer.mint(&TokenRequest::new("alice"));
    assert_eq!(
        jsonwebtoken::decode_header(&new)?.kid.as_deref(),
        Some("rsa-3")
    );
    let jwks: JwkSet = client.get(issuer.jwks_url()).send().await?.json().await?;
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, ["rsa-1", "rsa-2", "rsa-3", "ec-1"]);
    verify(&jwks, &old, issuer.issuer_url())?;
    verify(&jwks, &new, issuer.issuer_url())?;

    let counted: Value = client
        .get(format!("{}/dev/requests", issuer.issuer_url()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(counted, json!({ "jwks": 1 }));
    issuer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn extra_claims_override_and_remove() -> anyhow::Result<()> {
    let issuer = start().await?;
    let req = TokenRequest::new("alice")
        .client_id("batch")
        .audience("other-api")
        .claim("roles", json!(["admin"]))
        .claim("sub", "mallory")
        .without_claim("sid")
        .without_claim("nbf");
    let claims = issuer.claims(&req);
    assert_eq!(claims["sub"], "mallory");
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["aud"], "other-api");
    assert_eq!(claims["client_id"], "batch");
    assert!(claims.get("sid").is_none());
    assert!(claims.get("nbf").is_none());
    assert!(claims.get("exp").is_some());
    issuer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sign_raw_uses_the_header_as_given() -> anyhow::Result<()> {
    let issuer = start().await?;
    let jwks: JwkSet = serde_json::from_value(issuer.jwks())?;
    let claims = issuer.claims(&TokenRequest::new("alice"));

    // RS384 with the RSA key verifies against the RSA public key.
    let mut header = issuer.header(Algorithm::RS384);
    assert_eq!(header.kid.as_deref(), Some("rsa-1"));
    let token = issuer.sign_raw(&header, &claims);
    let jwk = jwks
        .find("rsa-1")
        .ok_or_else(|| anyhow::anyhow!("no rsa-1"))?;
    let mut validation = Validation::new(Algorithm::RS384);
    validation.set_audience(&[DEFAULT_AUDIENCE]);
    jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk)?, &validation)?;

    // An unknown kid is kept.
    header.kid = Some("nobody".into());
    let token = issuer.sign_raw(&header, &claims);
    assert_eq!(
        jsonwebtoken::decode_header(&token)?.kid.as_deref(),
        Some("nobody")
    );

    // HS256 forgery: signed with the public key as the HMAC secret.
    let token = issuer.sign_raw(&issuer.header(Algorithm::HS256), &claims);
    assert_eq!(jsonwebtoken::decode_header(&token)?.alg, Algorithm::HS256);

    assert!(matches!(
        issuer.try_sign_raw(&Header::new(Algorithm::EdDSA), &claims),
        Err(IssuerError::UnsupportedAlgorithm(Algorithm::EdDSA))
    ));
    issuer.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_the_port() -> anyhow::Result<()> {
    let issuer = start().await?;
    let addr = issuer.addr();
    issuer.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}

#[tokio::test]
async fn suspend_and_resume_keep_the_address_and_the_keys() -> anyhow::Result<()> {
    let mut issuer = start().await?;
    let addr = issuer.addr();
    let jwks_before = issuer.jwks();
    issuer.suspend().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    issuer.resume().await?;
    assert_eq!(issuer.addr(), addr);
    let served: Value = reqwest::get(issuer.jwks_url()).await?.json().await?;
    assert_eq!(served, jwks_before);
    issuer.shutdown().await;
    Ok(())
}
