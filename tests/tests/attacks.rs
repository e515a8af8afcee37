//! The attack suite (issue 7, item 1): forged and malformed tokens, headers
//! that point elsewhere for keys, oversized and non-UTF-8 input, request
//! smuggling shapes, spoofed identity headers and the admin surface, sent to
//! a real gateway process between the devkit issuer and backend.
//!
//! Every case asserts four things:
//!
//! 1. the documented status (and problem `type` where the gateway answers
//!    itself; Pingora's own 400 for an unreadable request has no body);
//! 2. nothing reached the backend: not a request, not a connection, not a
//!    byte ([`Target::untouched`]) — or, for smuggling shapes on a public
//!    route, exactly the one well-formed request in front of the smuggled
//!    one (and for a bad chunk size there, at most the bare request head on
//!    a connection that is then dropped);
//! 3. no session was opened: the seats in use (`GET /admin/v1/licenses`)
//!    are unchanged;
//! 4. the gateway is healthy afterwards: the canary's token still gets 200
//!    and its same session.
//!
//! Token cases ([`Target::refused`]) run over HTTP/1.1 and HTTP/2 (h2c with
//! prior knowledge) in turn, each asserting the same. The raw-byte cases
//! (smuggling shapes, header bytes) are HTTP/1.1's own: HTTP/2 frames every
//! header and body length, so their ambiguities have no HTTP/2 form.
//!
//! docs/security.md lists the cases with their status and test name.

use std::future::Future;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use session_gateway_e2e::{
    ConfigDoc, Devkit, Gateway, Issuer, RawConversation, RawResponse, Reply, TokenRequest,
    Tripwire, eventually, raw_conversation,
};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The admin token of the test gateways (read from a file).
const ADMIN_TOKEN: &str = "attack-suite-admin-token-0123456789";

/// The longest any test of this file may run.
const TEST_BUDGET: Duration = Duration::from_secs(120);

/// Runs a test body within [`TEST_BUDGET`].
async fn bounded(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(TEST_BUDGET, body)
        .await
        .map_err(|_| anyhow::anyhow!("test exceeded {TEST_BUDGET:?}"))?
}

/// The most header bytes Pingora's HTTP/2 server takes in one request (its
/// `SETTINGS_MAX_HEADER_LIST_SIZE`): a longer token is refused with 431
/// there, before the gateway sees it.
const H2_HEADER_LIST_LIMIT: usize = 64 * 1024;

/// A gateway under attack: the devkit, the gateway with its admin API on,
/// and a canary session opened before the first case.
struct Target {
    kit: Devkit,
    gw: Gateway,
    /// A client speaking HTTP/2 with prior knowledge (the listener has
    /// `server.h2c`): token cases run over both protocols.
    h2: reqwest::Client,
    canary: String,
    canary_session: String,
    _dir: tempfile::TempDir,
}

/// What the backend and the store looked like before a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    requests: u64,
    connections: u64,
    bytes: u64,
    seats: u64,
}

impl Target {
    /// The standard configuration, changed by `edit`.
    async fn start(edit: impl FnOnce(&mut ConfigDoc)) -> anyhow::Result<Self> {
        Self::start_with(|_, _, config| {
            edit(config);
            Ok(())
        })
        .await
    }

    /// The standard configuration, changed by `edit`, which also sees the
    /// devkit and a directory for files the configuration names.
    async fn start_with(
        edit: impl FnOnce(&Devkit, &std::path::Path, &mut ConfigDoc) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let kit = Devkit::start().await?;
        let mut config = kit.config();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("admin-token");
        std::fs::write(&path, ADMIN_TOKEN)?;
        config.set("admin", "token_file", path.display().to_string());
        config.set("server", "h2c", true);
        edit(&kit, dir.path(), &mut config)?;
        let gw = Gateway::start(BIN, &config).await?;
        let canary = kit.token("canary");
        let r = gw.get("/api/canary", &canary).await?;
        assert_eq!(r.status, 200, "canary: {:?}", r.json());
        let canary_session = r
            .forwarded_header("x-session-id")
            .ok_or_else(|| anyhow::anyhow!("canary: no X-Session-Id forwarded"))?;
        let h2 = session_gateway_e2e::h2c_client();
        let target = Self {
            kit,
            gw,
            h2,
            canary,
            canary_session,
            _dir: dir,
        };
        assert_eq!(target.seats_in_use().await?, 1, "canary seat");
        Ok(target)
    }

    /// The backend's counters and the seats in use now.
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let b = &self.kit.backend;
        Ok(Snapshot {
            requests: b.requests(),
            connections: b.connections(),
            bytes: b.bytes_received(),
            seats: self.seats_in_use().await?,
        })
    }

    /// Seats in use over all pools, from the admin API.
    async fn seats_in_use(&self) -> anyhow::Result<u64> {
        let r = self
            .gw
            .client()
            .get(self.gw.admin_url("/admin/v1/licenses"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?;
        let r = Reply::read(r).await?;
        anyhow::ensure!(r.status == 200, "licenses: {} {:?}", r.status, r.json());
        let pools = r.json()["pools"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(!pools.is_empty(), "licenses: no pools in {:?}", r.json());
        Ok(pools.iter().filter_map(|p| p["in_use"].as_u64()).sum())
    }

    /// Asserts that since `before` not a byte reached the backend and no
    /// seat was taken, then that the gateway still serves the canary.
    async fn untouched(&self, case: &str, before: Snapshot) -> anyhow::Result<()> {
        let b = &self.kit.backend;
        assert_eq!(
            (b.requests(), b.connections(), b.bytes_received()),
            (before.requests, before.connections, before.bytes),
            "{case}: reached the backend (requests, connections, bytes)"
        );
        self.no_session_and_healthy(case, before).await
    }

    /// Asserts that the seats in use are still those of `before`, and that
    /// the canary's next call succeeds on its same session.
    async fn no_session_and_healthy(&self, case: &str, before: Snapshot) -> anyhow::Result<()> {
        assert_eq!(
            self.seats_in_use().await?,
            before.seats,
            "{case}: a seat was taken"
        );
        let r = self.gw.get("/api/canary", &self.canary).await?;
        assert_eq!(r.status, 200, "{case}: unhealthy after: {:?}", r.json());
        assert_eq!(
            r.forwarded_header("x-session-id").as_deref(),
            Some(self.canary_session.as_str()),
            "{case}: canary session changed"
        );
        assert_eq!(
            self.seats_in_use().await?,
            before.seats,
            "{case}: seats after the canary"
        );
        Ok(())
    }

    /// Sends `token` to a session route and asserts a 401 `invalid_token`
    /// whose description mentions `why`, and that nothing changed.
    /// Over HTTP/1.1 and over HTTP/2 in turn.
    async fn refused(&self, case: &str, token: &str, why: &str) -> anyhow::Result<()> {
        for (protocol, client) in [("HTTP/1.1", self.gw.client()), ("HTTP/2", &self.h2)] {
            let case = format!("{case} over {protocol}");
            let before = self.snapshot().await?;
            let response = client
                .get(self.gw.url("/api/x"))
                .bearer_auth(token)
                .send()
                .await?;
            let expected = if protocol == "HTTP/2" {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            };
            assert_eq!(response.version(), expected, "{case}");
            let r = Reply::read(response).await?;
            if protocol == "HTTP/2" && token.len() > H2_HEADER_LIST_LIMIT {
                // Refused by the HTTP/2 layer before the gateway reads it.
                assert_eq!(r.status, 431, "{case}");
            } else {
                assert_invalid_token(&case, &r, why);
            }
            self.untouched(&case, before).await?;
        }
        Ok(())
    }

    /// Sends raw bytes and asserts what came back, that nothing reached the
    /// backend, and that nothing changed.
    async fn raw_refused(
        &self,
        case: &str,
        bytes: &[u8],
        check: impl FnOnce(&RawConversation),
    ) -> anyhow::Result<RawConversation> {
        let before = self.snapshot().await?;
        let answer = raw_conversation(self.gw.addr, bytes).await?;
        check(&answer);
        self.untouched(case, before).await?;
        Ok(answer)
    }
}

/// A 401 `invalid_token` problem whose detail mentions `why`.
fn assert_invalid_token(case: &str, r: &Reply, why: &str) {
    assert_eq!(r.status, 401, "{case}: {:?}", r.json());
    assert_eq!(r.problem(), "invalid_token", "{case}");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{case}"
    );
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{case}: {challenge}"
    );
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains(why),
        "{case}: expected `{why}` in `{detail}`"
    );
}

/// One response on the connection: a problem with `status` and `code`.
fn assert_raw_problem(case: &str, answer: &RawConversation, status: u16, code: &str) {
    assert_eq!(answer.statuses(), vec![status], "{case}: {answer:?}");
    let r = &answer.responses[0];
    assert_eq!(
        r.problem(),
        code,
        "{case}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json"),
        "{case}"
    );
}

/// Pingora's own answer to a request it cannot read: one bodiless 400, and
/// the connection closed (nothing after it is read).
fn assert_pingora_400(case: &str, answer: &RawConversation) {
    assert_eq!(answer.statuses(), vec![400], "{case}: {answer:?}");
    let r: &RawResponse = &answer.responses[0];
    assert!(r.body.is_empty(), "{case}: {:?}", r.body);
    assert!(answer.trailing.is_empty(), "{case}: {:?}", answer.trailing);
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(v.to_string())
}

/// A GET with these extra header lines (each ending in CRLF), asking the
/// gateway to close the connection after its answer.
fn raw_get(path: &str, extra: &[u8]) -> Vec<u8> {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: erp\r\nConnection: close\r\n").into_bytes();
    request.extend_from_slice(extra);
    request.extend_from_slice(b"\r\n");
    request
}

// ------------------------------------------------------------- algorithms

#[tokio::test]
async fn forged_algorithms_never_verify() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let claims = t.kit.issuer.claims(&TokenRequest::new("mallory"));
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "JWT"});
            // RFC 7519 unsecured form: an empty signature.
            let token = format!("{}.{}.", b64_json(&header), b64_json(&claims));
            t.refused(&format!("alg {alg}, empty signature"), &token, "malformed")
                .await?;
            let token = format!("{}.{}.c2ln", b64_json(&header), b64_json(&claims));
            t.refused(&format!("alg {alg}, some signature"), &token, "malformed")
                .await?;
            // `none` naming a real key changes nothing.
            let header = json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"});
            let token = format!("{}.{}.", b64_json(&header), b64_json(&claims));
            t.refused(&format!("alg {alg} with kid"), &token, "malformed")
                .await?;
        }
        // HS256 keyed with the issuer's public key: the classic confusion attack.
        let hs = t
            .kit
            .issuer
            .sign_raw(&Header::new(Algorithm::HS256), &claims);
        t.refused("HS256 with the PEM", &hs, "algorithm HS256 not allowed")
            .await?;
        // PS256 is a fine algorithm, but not on this issuer's allow-list.
        let ps = t
            .kit
            .issuer
            .sign_raw(&t.kit.issuer.header(Algorithm::PS256), &claims);
        t.refused("PS256 not allowed", &ps, "algorithm PS256 not allowed")
            .await?;
        // ES256 is allowed and verifies with the EC key.
        let es = t.kit.mint(&TokenRequest::new("erin").alg(Algorithm::ES256));
        assert_eq!(t.gw.get("/api/x", &es).await?.status, 200);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn hmac_keyed_with_the_public_key_never_verifies() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let claims = t.kit.issuer.claims(&TokenRequest::new("mallory"));
        let pem = t.kit.issuer.rsa_public_pem();
        let jwks = t.kit.issuer.jwks();
        let rsa_jwk = jwks["keys"][0].to_string();
        let ec_jwk = jwks["keys"][1].to_string();
        let secrets: [(&str, Vec<u8>); 5] = [
            ("SPKI PEM", pem.clone().into_bytes()),
            (
                "SPKI PEM without newline",
                pem.trim_end().as_bytes().to_vec(),
            ),
            ("RSA JWK", rsa_jwk.into_bytes()),
            ("JWKS document", jwks.to_string().into_bytes()),
            ("EC JWK", ec_jwk.into_bytes()),
        ];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for (form, secret) in &secrets {
                // A kid of a real key, as a forger would send.
                let mut header = Header::new(alg);
                header.kid = Some("rsa-1".into());
                let token =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))?;
                let case = format!("{alg:?} keyed with the {form}");
                t.refused(&case, &token, &format!("algorithm {alg:?} not allowed"))
                    .await?;
            }
        }
        Ok(())
    })
    .await
}

// ------------------------------------------------------ headers pointing elsewhere

#[tokio::test]
async fn key_locations_in_token_headers_are_never_followed() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let tripwire = Tripwire::start().await?;
        // Prove the tripwire counts: one connection of our own.
        drop(tokio::net::TcpStream::connect(tripwire.addr()).await?);
        eventually("the tripwire to count our probe", || async {
            Ok((tripwire.connections() == 1).then_some(()))
        })
        .await?;

        // The attacker's own issuer: its key signs, its JWKS would verify.
        let attacker = Issuer::start("127.0.0.1:0".parse()?).await?;
        let attacker_jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(attacker.jwks()["keys"][0].clone())?;
        // Claims of the trusted issuer, so only the key decides.
        let claims = t.kit.issuer.claims(&TokenRequest::new("mallory"));
        let fetches = t.kit.issuer.jwks_fetches();
        let url = tripwire.url("/jwks");

        let with = |edit: &dyn Fn(&mut Header)| {
            let mut header = attacker.header(Algorithm::RS256);
            edit(&mut header);
            attacker.sign_raw(&header, &claims)
        };
        let elsewhere = ["../../etc/passwd", "' OR 1=1 --", url.as_str()];
        // The kid is `rsa-1` in both issuers: the trusted key is tried and
        // the attacker's signature fails, wherever jku or x5u point.
        for place in elsewhere {
            t.refused(
                &format!("jku {place:?}"),
                &with(&|h| h.jku = Some(place.to_string())),
                "invalid signature",
            )
            .await?;
            t.refused(
                &format!("x5u {place:?}"),
                &with(&|h| h.x5u = Some(place.to_string())),
                "invalid signature",
            )
            .await?;
        }
        t.refused(
            "jwk (embedded attacker key)",
            &with(&|h| h.jwk = Some(attacker_jwk.clone())),
            "invalid signature",
        )
        .await?;
        t.refused(
            "jwk and jku, kid unknown",
            &with(&|h| {
                h.jwk = Some(attacker_jwk.clone());
                h.jku = Some(url.clone());
                h.kid = Some("attacker".into());
            }),
            "unknown signing key",
        )
        .await?;
        for kid in elsewhere.into_iter().chain(["/dev/zero", "rsa-1\u{0}"]) {
            t.refused(
                &format!("kid {kid:?}"),
                &with(&|h| h.kid = Some(kid.to_string())),
                "unknown signing key",
            )
            .await?;
        }
        // Genuinely signed by the trusted key, with a jku: still verified
        // against the configured JWKS only, and the jku never fetched.
        let mut header = t.kit.issuer.header(Algorithm::RS256);
        header.jku = Some(url.clone());
        header.x5u = Some(url.clone());
        let genuine = t.kit.issuer.sign_raw(&header, &claims);
        let before = t.snapshot().await?;
        let r = t.gw.get("/token-only/x", &genuine).await?;
        assert_eq!(r.status, 200, "genuine token with jku: {:?}", r.json());
        assert_eq!(t.kit.backend.requests(), before.requests + 1);

        assert_eq!(tripwire.connections(), 1, "the gateway followed a URL");
        assert_eq!(
            attacker.jwks_fetches(),
            0,
            "the attacker's JWKS was fetched"
        );
        let extra = t.kit.issuer.jwks_fetches() - fetches;
        assert!(extra <= 1, "{extra} refetches of the trusted JWKS");
        Ok(())
    })
    .await
}

// ------------------------------------------------------------- key hygiene

#[tokio::test]
async fn a_small_order_ed25519_key_verifies_nothing() -> anyhow::Result<()> {
    bounded(async {
        // The issuer's real keys plus an Ed25519 key at the identity point,
        // served from a file, with EdDSA allowed.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let t = Target::start_with(|kit, dir, config| {
            let mut jwks = kit.issuer.jwks();
            if let Some(keys) = jwks["keys"].as_array_mut() {
                keys.push(json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-weak",
                    "use": "sig", "x": b64(identity)}));
            }
            let path = dir.join("jwks.json");
            std::fs::write(&path, jwks.to_string())?;
            let issuer = config.item("issuers", 0);
            issuer.insert("jwks_file".into(), path.display().to_string().into());
            issuer.insert(
                "algorithms".into(),
                toml::Value::Array(vec!["RS256".into(), "ES256".into(), "EdDSA".into()]),
            );
            Ok(())
        })
        .await?;
        let claims = t.kit.issuer.claims(&TokenRequest::new("mallory"));
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed-weak"});
        // R = identity, S = 0: "valid" for any message under that key.
        let mut signature = identity.to_vec();
        signature.extend([0u8; 32]);
        let forged = format!(
            "{}.{}.{}",
            b64_json(&header),
            b64_json(&claims),
            b64(&signature)
        );
        t.refused(
            "R = identity, S = 0 under the identity key",
            &forged,
            "unknown signing key",
        )
        .await?;
        // The same forgery naming no kid: no key fits either.
        let header = json!({"alg": "EdDSA", "typ": "JWT"});
        let forged = format!(
            "{}.{}.{}",
            b64_json(&header),
            b64_json(&claims),
            b64(&signature)
        );
        let before = t.snapshot().await?;
        let r = t.gw.get("/api/x", &forged).await?;
        assert_eq!(r.status, 401, "forgery without kid: {:?}", r.json());
        assert_eq!(r.problem(), "invalid_token");
        t.untouched("forgery without kid", before).await?;
        assert!(
            t.gw.logs().contains("ed-weak"),
            "the refused key is not logged with its kid"
        );
        Ok(())
    })
    .await
}

// ----------------------------------------------------------------- signatures

#[tokio::test]
async fn stripped_or_tampered_signatures_are_refused() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let token = t.kit.token("mallory");
        let (signed, signature) = token.rsplit_once('.').unwrap_or_default();
        let (header, payload) = signed.split_once('.').unwrap_or_default();

        t.refused("signature stripped", &format!("{signed}."), "malformed")
            .await?;
        t.refused("signature part missing", signed, "malformed")
            .await?;
        let mut flipped = URL_SAFE_NO_PAD.decode(signature)?;
        flipped[0] ^= 1;
        t.refused(
            "one bit of the signature flipped",
            &format!("{signed}.{}", b64(&flipped)),
            "invalid signature",
        )
        .await?;
        let raw = URL_SAFE_NO_PAD.decode(signature)?;
        t.refused(
            "signature truncated",
            &format!("{signed}.{}", b64(&raw[..raw.len() / 2])),
            "invalid signature",
        )
        .await?;
        t.refused(
            "signature padded with `=`",
            &format!("{signed}.{signature}=="),
            "malformed",
        )
        .await?;
        // Claims changed under the original signature.
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
        claims["sub"] = "ceo".into();
        t.refused(
            "payload tampered",
            &format!("{header}.{}.{signature}", b64_json(&claims)),
            "invalid signature",
        )
        .await?;
        // Header changed under the original signature: another key's kid.
        let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
        h["kid"] = "ec-1".into();
        t.refused(
            "header kid swapped",
            &format!("{}.{payload}.{signature}", b64_json(&h)),
            "unknown signing key",
        )
        .await?;
        // A JWE-shaped token and extra parts.
        t.refused(
            "five parts (JWE shape)",
            &format!("{header}.{payload}.{signature}.a.b"),
            "malformed",
        )
        .await?;
        Ok(())
    })
    .await
}

// ------------------------------------------------------------ token JSON

#[tokio::test]
async fn duplicate_huge_and_nested_token_json_is_refused() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|c| {
            // The largest limit the configuration allows, so the JSON
            // parser, not the size check, meets the deep nesting.
            c.set("tokens", "max_token_bytes", 65_536);
        })
        .await?;
        let issuer = &t.kit.issuer;
        let header = br#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#;
        let claims = issuer.claims(&TokenRequest::new("mallory"));
        let body = claims.to_string();
        let body = body.trim_start_matches('{');
        let signed = |header: &[u8], payload: &[u8]| {
            issuer
                .sign_bytes(Algorithm::RS256, header, payload)
                .map_err(anyhow::Error::from)
        };

        // Genuine signature over claims that name something twice.
        for (name, dup) in [
            ("sub", r#""sub":"ceo""#),
            ("iss", r#""iss":"https://evil.example""#),
            ("exp", r#""exp":4102444800"#),
            ("aud", r#""aud":"payroll""#),
        ] {
            let payload = format!("{{{dup},{body}");
            t.refused(
                &format!("duplicate claim {name}"),
                &signed(header, payload.as_bytes())?,
                &format!("claim `{name}` appears twice"),
            )
            .await?;
        }
        // A header naming `alg` twice: parsers disagree on which one wins.
        t.refused(
            "duplicate header alg",
            &signed(
                br#"{"alg":"RS256","alg":"none","kid":"rsa-1"}"#,
                claims.to_string().as_bytes(),
            )?,
            "malformed",
        )
        .await?;
        // An extension the token insists on (RFC 7515 §4.1.11).
        t.refused(
            "crit header",
            &signed(
                br#"{"alg":"RS256","kid":"rsa-1","crit":["b64"],"b64":false}"#,
                claims.to_string().as_bytes(),
            )?,
            "unsupported `crit` header",
        )
        .await?;
        // Claims that are not an object.
        t.refused(
            "payload is an array",
            &signed(header, b"[1,2]")?,
            "malformed",
        )
        .await?;
        // Not UTF-8 inside the (signed) payload and header.
        t.refused(
            "payload not UTF-8",
            &signed(header, b"{\"sub\":\"\xff\xfe\"}")?,
            "malformed",
        )
        .await?;
        t.refused(
            "header not UTF-8",
            &signed(
                b"{\"alg\":\"RS256\",\"x\":\"\xff\"}",
                claims.to_string().as_bytes(),
            )?,
            "malformed",
        )
        .await?;
        // Deep nesting, within the size limit, under a genuine signature.
        let depth = 20_000;
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let payload = format!("{{\"deep\":{nested},{body}");
        t.refused(
            "payload nested 20000 deep",
            &signed(header, payload.as_bytes())?,
            "malformed",
        )
        .await?;
        let deep_header = format!("{{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"deep\":{nested}}}");
        t.refused(
            "header nested 20000 deep",
            &signed(deep_header.as_bytes(), claims.to_string().as_bytes())?,
            "malformed",
        )
        .await?;
        // Larger than tokens.max_token_bytes, in the header or the payload:
        // refused before any parsing.
        let padded_header = format!(
            "{{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"{}\"}}",
            "x".repeat(70_000)
        );
        t.refused(
            "header above max_token_bytes",
            &signed(padded_header.as_bytes(), claims.to_string().as_bytes())?,
            "token too large",
        )
        .await?;
        let mut huge = claims.clone();
        huge["padding"] = "x".repeat(70_000).into();
        t.refused(
            "token above max_token_bytes",
            &issuer.sign_raw(&issuer.header(Algorithm::RS256), &huge),
            "token too large",
        )
        .await?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------- bytes and sizes on the wire

#[tokio::test]
async fn non_utf8_and_oversized_headers_are_refused() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let token = t.kit.token("mallory");

        // Non-UTF-8 bytes in the token.
        let mut line = format!("Authorization: Bearer {token}").into_bytes();
        line[30] = 0xff;
        line.extend_from_slice(b"\r\n");
        t.raw_refused("token with a 0xff byte", &raw_get("/api/x", &line), |a| {
            assert_raw_problem("token with a 0xff byte", a, 401, "invalid_token")
        })
        .await?;
        // Non-UTF-8 bytes in other headers, without a token.
        t.raw_refused(
            "identity header with 0xff, no token",
            &raw_get("/api/x", b"X-Auth-Subject: \xff\xfeceo\r\n"),
            |a| assert_raw_problem("identity header with 0xff", a, 401, "missing_token"),
        )
        .await?;
        t.raw_refused(
            "Host with 0xff, no token",
            b"GET /api/x HTTP/1.1\r\nHost: erp\xff.example\r\nConnection: close\r\n\r\n",
            |a| assert_raw_problem("Host with 0xff", a, 400, "bad_request"),
        )
        .await?;

        // Non-UTF-8 bytes in the path: Pingora cannot read the request line.
        t.raw_refused(
            "path with 0xff, no token",
            b"GET /api/\xff HTTP/1.1\r\nHost: erp\r\nConnection: close\r\n\r\n",
            |a| assert_pingora_400("path with 0xff", a),
        )
        .await?;
        // An Authorization header above max_token_bytes (8 KiB) but within
        // Pingora's header limit: the gateway's own 401.
        let big = format!("Authorization: Bearer {}\r\n", "a".repeat(100_000));
        t.raw_refused(
            "100 kB Authorization",
            &raw_get("/api/x", big.as_bytes()),
            |a| {
                assert_raw_problem("100 kB Authorization", a, 401, "invalid_token");
                assert!(
                    String::from_utf8_lossy(&a.responses[0].body).contains("token too large"),
                    "{a:?}"
                );
            },
        )
        .await?;
        // Above Pingora's 1 MiB request-header limit: Pingora's bodiless 400,
        // connection closed.
        let huge = format!("Authorization: Bearer {}\r\n", "a".repeat(2 << 20));
        t.raw_refused(
            "2 MiB Authorization",
            &raw_get("/api/x", huge.as_bytes()),
            |a| assert_pingora_400("2 MiB Authorization", a),
        )
        .await?;
        // More header lines than Pingora parses (256): its 400.
        let many: String = (0..300).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
        t.raw_refused(
            "300 header lines",
            &raw_get("/api/x", many.as_bytes()),
            |a| assert_pingora_400("300 header lines", a),
        )
        .await?;
        // The same with a valid token: still nothing forwarded.
        let many_with_token = format!("Authorization: Bearer {token}\r\n{many}");
        t.raw_refused(
            "300 header lines with a valid token",
            &raw_get("/api/x", many_with_token.as_bytes()),
            |a| assert_pingora_400("300 header lines with a valid token", a),
        )
        .await?;
        // Many Authorization headers: refused as ambiguous.
        let repeated: String = (0..100)
            .map(|_| format!("Authorization: Bearer {token}\r\n"))
            .collect();
        t.raw_refused(
            "100 Authorization headers",
            &raw_get("/api/x", repeated.as_bytes()),
            |a| assert_raw_problem("100 Authorization headers", a, 401, "invalid_token"),
        )
        .await?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------- smuggling

/// A smuggled request that would reach the backend if a desync happened.
const SMUGGLED: &str = "GET /public/smuggled HTTP/1.1\r\nHost: erp\r\n\r\n";

#[tokio::test]
async fn smuggling_shapes_never_reach_the_backend() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;

        // Framing Pingora refuses itself: one bodiless 400 and the
        // connection closed; the smuggled request behind it is never read.
        let refused: Vec<(&str, String)> = vec![
            (
                "two different Content-Lengths",
                format!(
                    "POST /public/x HTTP/1.1\r\nHost: erp\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                    SMUGGLED.len()
                ),
            ),
            (
                "Content-Length list of different values",
                format!(
                    "POST /public/x HTTP/1.1\r\nHost: erp\r\nContent-Length: 0, {}\r\n\r\n{SMUGGLED}",
                    SMUGGLED.len()
                ),
            ),
            (
                "Content-Length with a sign",
                format!("POST /public/x HTTP/1.1\r\nHost: erp\r\nContent-Length: +0\r\n\r\n{SMUGGLED}"),
            ),
            (
                "Transfer-Encoding: chunked, identity",
                format!(
                    "POST /public/x HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"
                ),
            ),
            (
                "Transfer-Encoding: identity",
                format!(
                    "POST /public/x HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"
                ),
            ),
            (
                "Transfer-Encoding in HTTP/1.0",
                format!(
                    "POST /public/x HTTP/1.0\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
                ),
            ),
            (
                "obs-fold continuation line",
                format!(
                    "GET /public/x HTTP/1.1\r\nHost: erp\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\n\r\n{SMUGGLED}"
                ),
            ),
            (
                "two Host headers",
                format!("GET /public/x HTTP/1.1\r\nHost: erp\r\nHost: admin.internal\r\n\r\n{SMUGGLED}"),
            ),
            (
                "absolute-form authority other than Host",
                format!("GET http://erp.internal/public/x HTTP/1.1\r\nHost: erp\r\n\r\n{SMUGGLED}"),
            ),
            (
                "userinfo in Host",
                format!("GET /public/x HTTP/1.1\r\nHost: admin@erp\r\n\r\n{SMUGGLED}"),
            ),
            (
                "space before the colon",
                format!(
                    "POST /public/x HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
                ),
            ),
        ];
        for (case, request) in &refused {
            t.raw_refused(case, request.as_bytes(), |a| assert_pingora_400(case, a))
                .await?;
        }

        // On a protected route without a token the gateway answers before
        // reading the body. Conflicting framing (Content-Length and
        // Transfer-Encoding) makes Pingora drop keep-alive, so the smuggled
        // request is never parsed.
        let protected = format!(
            "POST /api/x HTTP/1.1\r\nHost: erp\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
            SMUGGLED.len() + 5
        );
        t.raw_refused("CL.TE on a protected route", protected.as_bytes(), |a| {
            assert_raw_problem("CL.TE on a protected route", a, 401, "missing_token");
            assert!(a.responses[0].closes(), "{a:?}");
        })
        .await?;
        // A request pipelined behind a refused one (in the same write):
        // Pingora answers the refusal and closes; the request behind it is
        // dropped, never forwarded.
        let pipelined = format!("GET /api/x HTTP/1.1\r\nHost: erp\r\n\r\n{SMUGGLED}");
        t.raw_refused("request pipelined behind a refusal", pipelined.as_bytes(), |a| {
            assert_raw_problem("pipelined behind a refusal", a, 401, "missing_token")
        })
        .await?;
        for (case, chunk) in [
            ("bad chunk size `zz`", "zz\r\nhello\r\n0\r\n\r\n"),
            ("negative chunk size", "-1\r\nhello\r\n0\r\n\r\n"),
            ("overflowing chunk size", "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ] {
            let request = format!(
                "POST /api/x HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{SMUGGLED}"
            );
            t.raw_refused(case, request.as_bytes(), |a| {
                assert_raw_problem(case, a, 401, "missing_token")
            })
            .await?;
        }

        // On a public route the request in front is forwarded: the backend
        // must see exactly that one well-formed request, never the smuggled
        // one behind it.
        for (case, request) in [
            (
                "CL.TE on a public route",
                format!(
                    "POST /public/front HTTP/1.1\r\nHost: erp\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
                    SMUGGLED.len() + 5
                ),
            ),
            (
                "TE.CL on a public route",
                format!(
                    "POST /public/front HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{SMUGGLED}"
                ),
            ),
        ] {
            let before = t.snapshot().await?;
            let answer = raw_conversation(t.gw.addr, request.as_bytes()).await?;
            assert_eq!(answer.statuses(), vec![200], "{case}: {answer:?}");
            assert!(answer.responses[0].closes(), "{case}: keep-alive kept");
            assert_eq!(t.kit.backend.requests(), before.requests + 1, "{case}");
            let seen = t.kit.backend.last_request().expect("forwarded");
            assert_eq!(seen.path, "/public/front", "{case}");
            assert!(seen.body.is_empty(), "{case}: body {:?}", seen.body);
            assert!(
                seen.header("content-length").is_none()
                    || seen.header("transfer-encoding").is_none(),
                "{case}: both framings forwarded: {:?}",
                seen.headers
            );
            t.no_session_and_healthy(case, before).await?;
        }
        // A chunk size that is not a number, on a public route: the gateway
        // answers its own 400 and closes. Pingora streams the request
        // upstream while it reads the body, so the request head alone may
        // already have reached the backend (a race, seen in both outcomes);
        // the backend never gets a complete request, and the aborted
        // upstream connection is never reused, so nothing can desync.
        for (case, chunk) in [
            ("bad chunk size on a public route", "zz\r\nhello\r\n0\r\n\r\n"),
            (
                "overflowing chunk size on a public route",
                "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
        ] {
            let head =
                "POST /public/front HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\n\r\n";
            let request = format!("{head}{chunk}{SMUGGLED}");
            let before = t.snapshot().await?;
            let answer = raw_conversation(t.gw.addr, request.as_bytes()).await?;
            assert_raw_problem(case, &answer, 400, "bad_request");
            assert!(answer.responses[0].closes(), "{case}: keep-alive kept");
            let backend = &t.kit.backend;
            assert_eq!(backend.requests(), before.requests, "{case}: forwarded");
            let leaked = backend.bytes_received() - before.bytes;
            // The head as the gateway forwards it: the client's, plus the
            // forwarding and trace headers it writes (a 32-digit request id,
            // a new trace).
            let forwarding = format!(
                "x-forwarded-for: 127.0.0.1\r\nforwarded: for=127.0.0.1;proto=http\r\n\
                 x-forwarded-proto: http\r\nx-request-id: {}\r\ntraceparent: 00-{}-{}-00\r\n",
                "0".repeat(32),
                "0".repeat(32),
                "0".repeat(16)
            );
            let upstream_head = (head.len() + forwarding.len()) as u64;
            assert!(
                leaked == 0 || leaked == upstream_head,
                "{case}: {leaked} bytes reached the backend, not the head alone ({upstream_head})"
            );
            let connections = backend.connections();
            t.no_session_and_healthy(case, before).await?;
            if leaked > 0 {
                assert!(
                    backend.connections() > connections,
                    "{case}: the aborted upstream connection was reused"
                );
            }
        }
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------- Host

/// Routes bound to `erp.example.com` (session) in front of a public
/// catch-all: a Host the gateway misreads would land on the catch-all and
/// reach the backend unauthenticated.
fn host_bound_routes(config: &mut ConfigDoc) {
    // With h2c, a plain-text request shorter than the HTTP/2 preface (24
    // bytes, as the HTTP/1.0 cases below) waits for more bytes before it is
    // read as HTTP/1.x; these raw HTTP/1 cases run without it.
    config.set("server", "h2c", false);
    config.clear("routes");
    config.push(
        "routes",
        "name = \"erp\"\nhost = \"erp.example.com\"\npath_prefix = \"/\"\nupstream = \"erp\"\npolicy = \"session\"",
    );
    config.push(
        "routes",
        "name = \"api\"\npath_prefix = \"/api/\"\nupstream = \"erp\"\npolicy = \"session\"",
    );
    config.push(
        "routes",
        "name = \"catch-all\"\npath_prefix = \"/\"\nupstream = \"erp\"\npolicy = \"public\"",
    );
}

#[tokio::test]
async fn missing_or_malformed_host_is_refused_before_routing() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(host_bound_routes).await?;
        let mut cases: Vec<(String, Vec<u8>)> = vec![(
            "no Host on HTTP/1.1".into(),
            b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        )];
        for host in [
            "a, b",
            "erp.example.com, evil",
            "erp.example.com/",
            "erp.example.com?x",
            "erp.example.com#x",
            "?x",
            "#x",
            ":80:80",
            "erp.example.com:80:80",
            "\\x",
            "erp.example.com\\x",
            "[erp.example.com]",
            "erp.example.com:",
            "erp..example.com",
            "%65rp.example.com",
            "",
        ] {
            cases.push((
                format!("Host {host:?}"),
                format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes(),
            ));
        }
        // Absolute-form without Host on HTTP/1.1: still missing.
        cases.push((
            "absolute-form without Host".into(),
            b"GET http://erp.example.com/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ));
        for (case, request) in &cases {
            t.raw_refused(case, request, |a| {
                assert_raw_problem(case, a, 400, "bad_request")
            })
            .await?;
        }
        // A well-formed Host in any case and with a port is routed by it:
        // the session route, which wants a token.
        for host in ["ERP.example.com:8443", "erp.example.com."] {
            let case = format!("Host {host:?} without a token");
            let request = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            t.raw_refused(&case, request.as_bytes(), |a| {
                assert_raw_problem(&case, a, 401, "missing_token")
            })
            .await?;
        }
        // The authority of an absolute-form target names the host: it
        // routes to the session route, not the catch-all.
        let case = "absolute-form target with its Host";
        t.raw_refused(
            case,
            b"GET http://erp.example.com/x HTTP/1.1\r\nHost: erp.example.com\r\nConnection: close\r\n\r\n",
            |a| assert_raw_problem(case, a, 401, "missing_token"),
        )
        .await?;
        // HTTP/1.0 may omit Host: only host-less routes match, here the
        // public catch-all, which forwards.
        let before = t.snapshot().await?;
        let answer =
            raw_conversation(t.gw.addr, b"GET /x HTTP/1.0\r\n\r\n").await?;
        assert_eq!(answer.statuses(), vec![200], "HTTP/1.0 without Host: {answer:?}");
        assert_eq!(t.kit.backend.requests(), before.requests + 1);
        t.no_session_and_healthy("HTTP/1.0 without Host", before).await?;
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------ paths

#[tokio::test]
async fn every_spelling_of_dot_segments_is_refused() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        // On the public route, where nothing else would stop them.
        for path in [
            "/public/%252e%252e/api/x",
            "/public/..%252fapi/x",
            "/public/%252e%252e%252fapi/x",
            "/public/%c0%ae%c0%ae/api/x",
            "/public/..%c0%afapi/x",
            "/public/%u002e%u002e/api/x",
            "/public/%ef%bc%8e%ef%bc%8e/api/x",
            "/public/..%ef%bc%8fapi/x",
            "/public/%",
        ] {
            let case = format!("path {path}");
            t.raw_refused(&case, &raw_get(path, b""), |a| {
                assert_raw_problem(&case, a, 400, "bad_request")
            })
            .await?;
        }
        // A fullwidth dot as raw UTF-8 in the request line: refused too
        // (by Pingora or the gateway), never forwarded.
        let case = "raw fullwidth dots";
        let mut request = b"GET /public/".to_vec();
        request.extend_from_slice("\u{ff0e}\u{ff0e}".as_bytes());
        request.extend_from_slice(b"/api/x HTTP/1.1\r\nHost: erp\r\nConnection: close\r\n\r\n");
        t.raw_refused(case, &request, |a| {
            assert_eq!(a.statuses(), vec![400], "{case}: {a:?}")
        })
        .await?;
        Ok(())
    })
    .await
}

/// Known limitation, recorded rather than hidden: a bare LF inside a chunk
/// extension (`2;\nxx\r\n`) should be refused (RFC 9112 §7.1.1, §2.2), but
/// the chunk-size line is parsed by httparse inside Pingora's body reader,
/// and the gateway's hooks only ever see the decoded chunk data. Pingora
/// re-frames the body it forwards, so the backend gets well-formed chunks;
/// the risk is a proxy in front of the gateway that reads the line
/// differently. When Pingora starts refusing it, this test fails and the
/// limitation in docs/security.md can go.
#[tokio::test]
async fn a_bare_lf_in_a_chunk_extension_is_still_accepted() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let request = "POST /public/chunked HTTP/1.1\r\nHost: erp\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2;\nxx\r\nab\r\n0\r\n\r\n";
        let before = t.snapshot().await?;
        let answer = raw_conversation(t.gw.addr, request.as_bytes()).await?;
        assert_eq!(answer.statuses(), vec![200], "{answer:?}");
        assert_eq!(t.kit.backend.requests(), before.requests + 1);
        let seen = t.kit.backend.last_request().expect("forwarded");
        assert_eq!(seen.path, "/public/chunked");
        // httparse takes every byte up to CRLF as the extension (`\nxx`),
        // so the chunk is `ab`; a parser that ends the line at the bare LF
        // reads the chunk as `xx` instead. The extension itself is not
        // forwarded: Pingora re-frames the body.
        assert_eq!(seen.body, b"ab");
        t.no_session_and_healthy("bare LF in a chunk extension", before)
            .await?;
        Ok(())
    })
    .await
}

// ----------------------------------------------------------- identity headers

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_backend() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|config| {
            config
                .item("routes", 1)
                .insert("authorization".into(), "strip".into());
            // A configured claim header is an identity header too.
            let mut claims = toml::Table::new();
            claims.insert("scope".into(), "X-Auth-Scope".into());
            config.table("headers").insert("claims".into(), claims.into());
        })
        .await?;
        let (kit, gw) = (&t.kit, &t.gw);
        let token = kit.token("alice");
        let r = gw
            .client()
            .get(gw.url("/api/x"))
            .bearer_auth(&token)
            .header("X-Auth-Subject", "ceo")
            .header("x-session-id", "forged")
            .header("X-License-Pool", "vip")
            .header("X-AUTH-CLIENT", "root")
            .send()
            .await?;
        let r = Reply::read(r).await?;
        assert_eq!(r.status, 200);
        let seen = kit.backend.last_request().expect("forwarded");
        assert_eq!(seen.header_values("x-auth-subject"), vec!["alice"]);
        assert_eq!(seen.header_values("x-auth-client"), vec!["erp-web"]);
        assert_eq!(seen.header_values("x-license-pool"), vec!["default"]);
        assert_ne!(seen.header("x-session-id"), Some("forged"));
        // The session route passes Authorization through by default.
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        let alice_session = seen.header("x-session-id").map(str::to_string);

        // Every spelling at once, on the wire: mixed case, `_` for `-`,
        // repeated, and values that are not UTF-8.
        let spoofed: &[u8] = b"x-auth-subject: ceo\r\nX_AUTH_SUBJECT: ceo\r\nX_Auth_Subject: \xffceo\r\n\
X-Session-ID: forged\r\nx_session_id: forged\r\nX-LICENSE-POOL: vip\r\nX_License_Pool: vip\r\n\
x-auth-client: root\r\nX_AUTH_CLIENT: \xferoot\r\nX-Auth-Scope: erp.admin\r\nx_auth_scope: erp.admin\r\n";
        let mut headers = format!("Authorization: Bearer {token}\r\n").into_bytes();
        headers.extend_from_slice(spoofed);
        let before = t.snapshot().await?;
        let answer = raw_conversation(gw.addr, &raw_get("/api/x", &headers)).await?;
        assert_eq!(answer.statuses(), vec![200], "{answer:?}");
        assert_eq!(kit.backend.requests(), before.requests + 1);
        let seen = kit.backend.last_request().expect("forwarded");
        assert_eq!(seen.header_values("x-auth-subject"), vec!["alice"]);
        assert_eq!(seen.header_values("x-auth-client"), vec!["erp-web"]);
        assert_eq!(seen.header_values("x-license-pool"), vec!["default"]);
        assert_eq!(
            seen.header_values("x-session-id"),
            vec![alice_session.as_deref().unwrap_or("?")]
        );
        // Claim headers are RFC 8941 Lists of Strings.
        let scope = format!("\"{}\"", session_gateway::devkit::DEFAULT_SCOPE);
        assert_eq!(seen.header_values("x-auth-scope"), vec![scope.as_str()]);
        for (name, _) in &seen.headers {
            assert!(!name.contains('_'), "underscore spelling forwarded: {name}");
        }

        // Hop-by-hop abuse: naming the identity headers in `Connection`
        // must not make a proxy drop the gateway's own values.
        let hop = format!(
            "Authorization: Bearer {token}\r\nConnection: close, X-Auth-Subject, X-Session-Id, X-License-Pool, X-Auth-Client\r\n"
        );
        let request = format!(
            "GET /api/x HTTP/1.1\r\nHost: erp\r\n{hop}\r\n"
        );
        let before = t.snapshot().await?;
        let answer = raw_conversation(gw.addr, request.as_bytes()).await?;
        assert_eq!(answer.statuses(), vec![200], "{answer:?}");
        assert_eq!(kit.backend.requests(), before.requests + 1);
        let seen = kit.backend.last_request().expect("forwarded");
        assert_eq!(seen.header_values("x-auth-subject"), vec!["alice"]);
        assert_eq!(seen.header_values("x-auth-client"), vec!["erp-web"]);
        assert_eq!(seen.header_values("x-license-pool"), vec!["default"]);
        assert_eq!(
            seen.header_values("x-session-id"),
            vec![alice_session.as_deref().unwrap_or("?")]
        );
        // Without a token the spoofed headers get the request refused, and
        // nothing is forwarded.
        t.raw_refused("spoofed headers, no token", &raw_get("/api/x", spoofed), |a| {
            assert_raw_problem("spoofed headers, no token", a, 401, "missing_token")
        })
        .await?;

        // Public routes get none of them, and the token route strips Authorization.
        let raw = "GET /public/x HTTP/1.1\r\nHost: erp\r\nX_Auth_Subject: ceo\r\nX-Session-Id: forged\r\n\r\n";
        let responses = session_gateway_e2e::raw_exchange(gw.addr, &[raw.as_bytes()]).await?;
        assert!(responses[0].starts_with("HTTP/1.1 200"), "{}", responses[0]);
        let seen = kit.backend.last_request().expect("forwarded");
        assert!(seen.header("x_auth_subject").is_none() && seen.header("x-auth-subject").is_none());
        assert!(seen.header("x-session-id").is_none());

        let r = gw.get("/token-only/x", &token).await?;
        assert_eq!(r.status, 200);
        assert!(
            kit.backend
                .last_request()
                .expect("forwarded")
                .header("authorization")
                .is_none()
        );
        // Alice's and the canary's seats, nothing else.
        assert_eq!(t.seats_in_use().await?, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dash_spellings_of_an_underscore_claim_header_are_stripped() -> anyhow::Result<()> {
    bounded(async {
        // A claim header configured with `_`: its `-` spelling is the same
        // variable to a CGI-style backend.
        let t = Target::start(|config| {
            let mut claims = toml::Table::new();
            claims.insert("scope".into(), "X_Auth_Scope".into());
            config.table("headers").insert("claims".into(), claims.into());
        })
        .await?;
        let raw = "GET /public/x HTTP/1.1\r\nHost: erp\r\nX-Auth-Scope: erp.admin\r\nx-AUTH_scope: erp.admin\r\nConnection: close\r\n\r\n";
        let before = t.snapshot().await?;
        let answer = raw_conversation(t.gw.addr, raw.as_bytes()).await?;
        assert_eq!(answer.statuses(), vec![200], "{answer:?}");
        assert_eq!(t.kit.backend.requests(), before.requests + 1);
        let seen = t.kit.backend.last_request().expect("forwarded");
        for (name, value) in &seen.headers {
            assert!(
                !name.replace('_', "-").eq_ignore_ascii_case("x-auth-scope"),
                "spoofed {name}: {value} forwarded"
            );
        }
        t.no_session_and_healthy("dash spelling of X_Auth_Scope", before)
            .await?;
        // With a token, the gateway's own value is the only one.
        let token = t.kit.token("alice");
        let r = t
            .gw
            .client()
            .get(t.gw.url("/api/x"))
            .bearer_auth(&token)
            .header("X-Auth-Scope", "erp.admin")
            .send()
            .await?;
        assert_eq!(Reply::read(r).await?.status, 200);
        let seen = t.kit.backend.last_request().expect("forwarded");
        assert!(seen.header("x-auth-scope").is_none(), "{:?}", seen.headers);
        assert_eq!(seen.header_values("x_auth_scope").len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn array_claims_reach_the_backend_unambiguously() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|config| {
            let mut claims = toml::Table::new();
            claims.insert("roles".into(), "X-Auth-Roles".into());
            config
                .table("headers")
                .insert("claims".into(), claims.into());
        })
        .await?;
        let mut seen = Vec::new();
        for (user, roles) in [
            ("one-element", json!(["staff,admin"])),
            ("two-elements", json!(["staff", "admin"])),
        ] {
            let token = t.kit.mint(&TokenRequest::new(user).claim("roles", roles));
            let r = t.gw.get("/token-only/x", &token).await?;
            assert_eq!(r.status, 200, "{user}: {:?}", r.json());
            let request = t.kit.backend.last_request().expect("forwarded");
            seen.push(request.header_values("x-auth-roles").join("|"));
        }
        assert_eq!(seen, [r#""staff,admin""#, r#""staff", "admin""#]);
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------- upgrades

#[tokio::test]
async fn upgrades_are_refused_unless_the_route_allows_them() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|config| {
            config.push(
                "routes",
                "name = \"ws\"\npath_prefix = \"/ws/\"\nupstream = \"erp\"\npolicy = \"session\"\nupgrades = \"allow\"",
            );
        })
        .await?;
        let token = t.kit.token("alice");
        let upgrade = |path: &str, extra: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: erp\r\nAuthorization: Bearer {token}\r\n\
Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
            )
        };
        // A valid token on a session route that does not allow upgrades:
        // refused before the access decision, so no seat is taken.
        for (case, request) in [
            ("WebSocket upgrade on a session route", upgrade("/api/x", "")),
            ("WebSocket upgrade on a public route", upgrade("/public/x", "")),
            (
                "Upgrade without Connection: upgrade",
                format!("GET /api/x HTTP/1.1\r\nHost: erp\r\nAuthorization: Bearer {token}\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"),
            ),
        ] {
            t.raw_refused(case, request.as_bytes(), |a| {
                assert_raw_problem(case, a, 403, "upgrade_refused")
            })
            .await?;
        }
        // A route that allows them forwards the upgrade request after its
        // usual checks (the devkit backend answers it like any request).
        let before = t.snapshot().await?;
        let answer = raw_conversation(t.gw.addr, upgrade("/ws/x", "").as_bytes()).await?;
        assert_eq!(answer.statuses(), vec![200], "allowed upgrade: {answer:?}");
        assert_eq!(t.kit.backend.requests(), before.requests + 1);
        let seen = t.kit.backend.last_request().expect("forwarded");
        assert_eq!(seen.path, "/ws/x");
        Ok(())
    })
    .await
}

// ------------------------------------------------------------------- admin

#[tokio::test]
async fn admin_endpoints_are_not_on_the_proxy_listener() -> anyhow::Result<()> {
    bounded(async {
        let t = Target::start(|_| {}).await?;
        let admin_host = t.gw.admin.to_string();
        for (method, path) in [
            ("GET", "/admin/v1/licenses"),
            ("GET", "/admin/v1/sessions"),
            ("DELETE", "/admin/v1/subjects/canary/sessions"),
            ("POST", "/admin/v1/revocations"),
            ("GET", "/metrics"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/.gateway/admin/v1/licenses"),
            ("GET", "/.gateway/metrics"),
        ] {
            for host in ["erp", admin_host.as_str()] {
                let case = format!("{method} {path} (Host {host}) on the proxy listener");
                let request = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                t.raw_refused(&case, request.as_bytes(), |a| {
                    assert_raw_problem(&case, a, 404, "not_found")
                })
                .await?;
            }
        }
        // An absolute-form request line naming the admin listener: routed
        // by its path like any other request, never sent to that authority.
        let case = "absolute-form URI of the admin listener";
        let request = format!(
            "GET http://{admin_host}/admin/v1/licenses HTTP/1.1\r\nHost: {admin_host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
        );
        t.raw_refused(case, request.as_bytes(), |a| {
            assert_raw_problem(case, a, 404, "not_found")
        })
        .await?;
        // The canary's session survived the DELETE above.
        assert_eq!(t.seats_in_use().await?, 1);
        Ok(())
    })
    .await
}
