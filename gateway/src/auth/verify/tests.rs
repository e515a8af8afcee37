//! Tests of token verification with the devkit issuer: the cache, claim
//! retention, token types, time claims at the extremes, and the parsing of
//! the `Authorization` header and the compact JWS.

use super::*;
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::devkit::{Issuer, TokenRequest};
use std::time::Duration;

fn policy(cache_size: usize) -> TokenPolicy {
    TokenPolicy {
        leeway: Duration::from_secs(30),
        max_lifetime: None,
        max_auth_age: None,
        required_claims: vec![],
        cache_size,
        max_token_bytes: 8192,
    }
}

async fn verifier_for(
    issuer: &crate::devkit::IssuerHandle,
    clock: ManualClock,
    cache_size: usize,
) -> Verifier {
    let config = IssuerConfig {
        issuer: issuer.issuer_url().to_string(),
        audiences: vec!["erp-api".into()],
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        keys: crate::config::KeySource::JwksUri(url::Url::parse(&issuer.jwks_url()).unwrap()),
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(60),
        http_timeout: Duration::from_secs(5),
        logout_audiences: vec!["erp-web".into()],
        require_logout_typ: false,
        access_token_types: vec!["at+jwt".into(), "jwt".into(), "".into()],
        min_rsa_bits: 2048,
        ca_pem: None,
    };
    let verifier = Verifier::new(&[config], policy(cache_size), Arc::new(clock)).unwrap();
    verifier.issuers()[0].refresh().await.unwrap();
    verifier
}

#[tokio::test]
async fn verified_tokens_are_cached_until_they_expire() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let verifier = verifier_for(&issuer, clock.clone(), 100).await;
    let token = issuer.mint(&TokenRequest::new("alice").expires_in(60));

    let (first, how) = verifier.verify(&token).await.unwrap();
    assert_eq!(how, Verified::Checked);
    assert_eq!(first.claims.subject(), Some("alice"));
    let (second, how) = verifier.verify(&token).await.unwrap();
    assert_eq!(how, Verified::Cached);
    assert_eq!(first, second);

    // Past exp + leeway the cached verification no longer counts.
    clock.advance(Duration::from_secs(60 + 31));
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::Expired
    );
}

#[tokio::test]
async fn a_zero_cache_checks_every_time_and_es256_verifies() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let verifier = verifier_for(&issuer, clock, 0).await;
    let token = issuer.mint(&TokenRequest::new("erin").alg(Algorithm::ES256));
    for _ in 0..2 {
        assert_eq!(verifier.verify(&token).await.unwrap().1, Verified::Checked);
    }
    let oversized = "a".repeat(9000);
    assert_eq!(
        verifier.verify(&oversized).await.unwrap_err(),
        TokenError::TooLarge
    );
}

#[tokio::test]
async fn a_retaining_verifier_checks_every_claim_and_keeps_only_the_named() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let verifier = verifier_for(&issuer, clock, 100)
        .await
        .retaining(["sub".to_string(), "email".to_string()].into());
    let token = issuer.mint(&TokenRequest::new("alice").claim("email", "a@example.com"));
    let (principal, _) = verifier.verify(&token).await.unwrap();
    assert_eq!(
        principal.claims.names().collect::<Vec<_>>(),
        ["email", "sub"]
    );
    // The jti was read before the other claims were dropped.
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(Some(principal.token_key.as_str()), payload["jti"].as_str());
    // Dropping happens after the checks: a wrong audience still fails.
    let other = issuer.mint(&TokenRequest::new("alice").audience("elsewhere"));
    assert_eq!(
        verifier.verify(&other).await.unwrap_err(),
        TokenError::WrongAudience
    );
}

#[tokio::test]
async fn only_access_tokens_are_accepted_whatever_their_audience() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let verifier = verifier_for(&issuer, clock, 100).await;
    let event = serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} });
    let not_access_tokens = [
        (
            "a Keycloak ID token",
            TokenRequest::new("alice").claim("typ", "ID"),
        ),
        (
            "a Keycloak logout token",
            TokenRequest::new("alice").claim("typ", "Logout"),
        ),
        (
            "logout+jwt typed",
            TokenRequest::new("alice").typ(Some("logout+jwt")),
        ),
        (
            "logout+jwt with the prefix",
            TokenRequest::new("alice").typ(Some("Application/Logout+JWT")),
        ),
        (
            "id+jwt typed",
            TokenRequest::new("alice").typ(Some("id+jwt")),
        ),
        (
            "events, no typ",
            TokenRequest::new("alice").typ(None).claim("events", event),
        ),
        (
            "an ID token typed JWT",
            TokenRequest::new("alice").claim("nonce", "n-1"),
        ),
        (
            "at_hash typed JWT",
            TokenRequest::new("alice").claim("at_hash", "x"),
        ),
        // Keycloak's `Bearer` is not in the default list.
        ("typ Bearer", TokenRequest::new("alice").typ(Some("Bearer"))),
        ("typ JOSE", TokenRequest::new("alice").typ(Some("JOSE"))),
    ];
    for (what, request) in not_access_tokens {
        let error = verifier.verify(&issuer.mint(&request)).await.unwrap_err();
        assert!(
            matches!(error, TokenError::NotAnAccessToken(_)),
            "{what}: {error:?}"
        );
        assert!(
            error.to_string().starts_with("not an access token"),
            "{what}"
        );
    }
    let keycloak = TokenRequest::new("alice").claim("typ", "Bearer");
    assert!(verifier.verify(&issuer.mint(&keycloak)).await.is_ok());
    for typ in [
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("AT+JWT"),
        Some("JWT"),
        None,
    ] {
        let token = issuer.mint(&TokenRequest::new("alice").typ(typ));
        assert!(verifier.verify(&token).await.is_ok(), "{typ:?} refused");
    }
}

#[tokio::test]
async fn access_token_types_are_configurable_but_never_admit_logout_tokens() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let mut config = verifier_for(&issuer, clock.clone(), 0).await.issuers()[0]
        .config()
        .clone();
    config.access_token_types = vec!["bearer".into()];
    let verifier = Verifier::new(&[config], policy(0), Arc::new(clock)).unwrap();
    verifier.issuers()[0].refresh().await.unwrap();
    let bearer = issuer.mint(&TokenRequest::new("alice").typ(Some("Bearer")));
    assert!(verifier.verify(&bearer).await.is_ok());
    for typ in [Some("JWT"), None] {
        let token = issuer.mint(&TokenRequest::new("alice").typ(typ));
        assert!(
            matches!(
                verifier.verify(&token).await,
                Err(TokenError::NotAnAccessToken(_))
            ),
            "{typ:?} accepted"
        );
    }
    let id_token = issuer.mint(
        &TokenRequest::new("alice")
            .typ(Some("Bearer"))
            .claim("nonce", "n"),
    );
    assert!(matches!(
        verifier.verify(&id_token).await,
        Err(TokenError::NotAnAccessToken(_))
    ));
}

#[tokio::test]
async fn time_claims_at_the_extremes_never_wrap() {
    let issuer = Issuer::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let now = clock.now_secs();
    let verifier = verifier_for(&issuer, clock, 0).await;
    let with = |name: &str, value: serde_json::Value| {
        issuer.mint(&TokenRequest::new("alice").claim(name, value))
    };
    // Far-future expiries are valid (no lifetime cap configured here).
    for exp in [
        serde_json::json!(1u64 << 53),
        serde_json::json!(1e16),
        serde_json::json!(2e16),
        serde_json::json!(1e300),
        serde_json::json!(i64::MAX),
        serde_json::json!(u64::MAX),
    ] {
        let (principal, _) = verifier.verify(&with("exp", exp.clone())).await.unwrap();
        assert!(principal.expires_at > now, "{exp}");
    }
    for exp in [
        serde_json::json!(-1),
        serde_json::json!(i64::MIN),
        serde_json::json!(-1e300),
    ] {
        assert_eq!(
            verifier
                .verify(&with("exp", exp.clone()))
                .await
                .unwrap_err(),
            TokenError::Expired,
            "{exp}"
        );
    }
    for iat in [
        serde_json::json!(1u64 << 53),
        serde_json::json!(1e16),
        serde_json::json!(1e300),
    ] {
        assert_eq!(
            verifier
                .verify(&with("iat", iat.clone()))
                .await
                .unwrap_err(),
            TokenError::IssuedInFuture,
            "{iat}"
        );
    }
    for iat in [
        serde_json::json!(-1),
        serde_json::json!(-1e300),
        serde_json::json!(0.5),
    ] {
        assert!(
            verifier.verify(&with("iat", iat.clone())).await.is_ok(),
            "{iat}"
        );
    }
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    assert_eq!(bearer_token(b"Bearer abc.def.ghi"), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(b"bearer abc"), Ok("abc"));
    assert_eq!(bearer_token(b"BEARER abc"), Ok("abc"));
    assert_eq!(
        bearer_token(b"Basic dXNlcjpwdw=="),
        Err(BearerError::NotBearer)
    );
    assert_eq!(bearer_token(b"Bearer"), Err(BearerError::NotBearer));
    assert_eq!(bearer_token(b"Bearer "), Err(BearerError::Malformed));
    assert_eq!(bearer_token(b"Bearer a b"), Err(BearerError::Malformed));
    assert_eq!(bearer_token(b"Bearer \xff"), Err(BearerError::Malformed));
}

#[test]
fn compact_jws_shape_is_checked() {
    assert!(CompactJws::split("a.b.c").is_ok());
    for bad in [
        "",
        "a.b",
        "a..c",
        "a.b.",
        ".b.c",
        "a.b.c.d.e",
        "a.b=.c",
        "a.b.c d",
    ] {
        assert!(
            matches!(CompactJws::split(bad), Err(TokenError::Malformed(_))),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn none_and_unknown_algorithms_are_malformed_headers() {
    for alg in ["none", "None", "NONE", "XS256"] {
        let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}"));
        let token = format!("{header}.e30.c2ln");
        let parts = CompactJws::split(&token).unwrap();
        assert!(
            matches!(parts.header(), Err(TokenError::Malformed(_))),
            "{alg}"
        );
    }
}

#[test]
fn duplicate_claims_are_malformed() {
    let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"a","sub":"b"}"#);
    let token = format!("e30.{payload}.c2ln");
    let parts = CompactJws::split(&token).unwrap();
    assert!(matches!(parts.claims(), Err(TokenError::Malformed(_))));
}
