//! Tokens built from fuzzed JSON parts: a header and a payload made of
//! well-known claims with fuzzed values (or raw fuzzed JSON text), base64url
//! encoded and then *signed with the issuer's real keys*, so the fuzzer gets
//! past the signature check into the claim checks.
//!
//! Properties: nothing panics; an accepted token satisfies every check; the
//! cache gives the answer the full check gave; a token whose header names
//! `none`, an HMAC algorithm or an algorithm off the allow-list is refused.
#![no_main]

use arbitrary::Arbitrary;
use fuzz_support::{
    ALLOWED, AUDIENCE, ISSUER, NOW, assert_accepted_token_is_sound, caching_verifier, sign,
    verifier, verify,
};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

#[derive(Debug, Arbitrary)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Es256,
    Es384,
    Hs256,
    EdDsa,
    Named(String),
}

impl Alg {
    fn name(&self) -> String {
        match self {
            Alg::Rs256 => "RS256".into(),
            Alg::Rs384 => "RS384".into(),
            Alg::Rs512 => "RS512".into(),
            Alg::Ps256 => "PS256".into(),
            Alg::Es256 => "ES256".into(),
            Alg::Es384 => "ES384".into(),
            Alg::Hs256 => "HS256".into(),
            Alg::EdDsa => "EdDSA".into(),
            Alg::Named(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Kid {
    None,
    Rsa,
    Ec,
    Other(String),
}

/// A JSON value, small and biased towards what claims hold.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Near(i32),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn value(&self, depth: u8) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            // Times near "now", where the interesting comparisons are.
            Json::Near(d) => json!(NOW + i64::from(*d % 100_000)),
            Json::Str(s) => json!(s),
            Json::Arr(items) if depth < 4 => items.iter().map(|j| j.value(depth + 1)).collect(),
            Json::Obj(fields) if depth < 4 => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value(depth + 1)))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }
}

/// A claim: absent, the expected good value, or a fuzzed one.
#[derive(Debug, Arbitrary)]
enum Claim {
    Absent,
    Good,
    Fuzzed(Json),
}

#[derive(Debug, Arbitrary)]
enum Part {
    /// Built from fields.
    Fields,
    /// Raw text (any JSON or not).
    Raw(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    alg: Alg,
    kid: Kid,
    typ: Option<String>,
    crit: bool,
    header_extra: Vec<(String, Json)>,
    header: Part,
    iss: Claim,
    sub: Claim,
    aud: Claim,
    exp: Claim,
    nbf: Claim,
    iat: Claim,
    jti: Claim,
    extra: Vec<(String, Json)>,
    payload: Part,
    /// Sign with the key that fits `alg` (else a junk signature).
    signed: bool,
    junk_signature: Vec<u8>,
}

fn claim(map: &mut Map<String, Value>, name: &str, claim: &Claim, good: Value) {
    match claim {
        Claim::Absent => {}
        Claim::Good => {
            map.insert(name.into(), good);
        }
        Claim::Fuzzed(j) => {
            map.insert(name.into(), j.value(0));
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64_engine::encode;
    encode(bytes)
}

/// base64url without padding, without another dependency.
mod base64_engine {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

fuzz_target!(|input: Input| {
    let alg_name = input.alg.name();
    let header = match &input.header {
        Part::Raw(text) => text.clone(),
        Part::Fields => {
            let mut h = Map::new();
            for (k, v) in &input.header_extra {
                h.insert(k.clone(), v.value(0));
            }
            h.insert("alg".into(), json!(alg_name));
            match &input.kid {
                Kid::None => {}
                Kid::Rsa => {
                    h.insert("kid".into(), json!("rsa-fuzz"));
                }
                Kid::Ec => {
                    h.insert("kid".into(), json!("ec-fuzz"));
                }
                Kid::Other(k) => {
                    h.insert("kid".into(), json!(k));
                }
            }
            if let Some(typ) = &input.typ {
                h.insert("typ".into(), json!(typ));
            }
            if input.crit {
                h.insert("crit".into(), json!(["exp"]));
            }
            Value::Object(h).to_string()
        }
    };
    let payload = match &input.payload {
        Part::Raw(text) => text.clone(),
        Part::Fields => {
            let mut p = Map::new();
            for (k, v) in &input.extra {
                p.insert(k.clone(), v.value(0));
            }
            claim(&mut p, "iss", &input.iss, json!(ISSUER));
            claim(&mut p, "sub", &input.sub, json!("alice"));
            claim(&mut p, "aud", &input.aud, json!(AUDIENCE));
            claim(&mut p, "exp", &input.exp, json!(NOW + 300));
            claim(&mut p, "nbf", &input.nbf, json!(NOW - 10));
            claim(&mut p, "iat", &input.iat, json!(NOW - 10));
            claim(&mut p, "jti", &input.jti, json!("jti-1"));
            Value::Object(p).to_string()
        }
    };
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let alg: Option<Algorithm> = alg_name.parse().ok();
    let signature = match alg {
        Some(alg) if input.signed => sign(&message, alg),
        _ => None,
    }
    .unwrap_or_else(|| b64(&input.junk_signature));
    let token = format!("{message}.{signature}");

    let full = verify(verifier(), &token);
    if let Ok(principal) = &full {
        assert_accepted_token_is_sound(principal);
        // Only allowed algorithms ever verify (never none, never HMAC).
        let header: Value = serde_json::from_str(&header).expect("accepted header is JSON");
        let alg = header["alg"]
            .as_str()
            .and_then(|a| a.parse::<Algorithm>().ok());
        assert!(
            alg.is_some_and(|a| ALLOWED.contains(&a)),
            "accepted alg {:?}",
            header["alg"]
        );
        // Lifetime limit.
        if let Some(iat) = principal.claims.numeric_date("iat").ok().flatten() {
            assert!(principal.expires_at - iat <= fuzz_support::MAX_LIFETIME);
        }
    }
    let first = verify(caching_verifier(), &token);
    let second = verify(caching_verifier(), &token);
    assert_eq!(
        full.is_ok(),
        first.is_ok(),
        "cache-enabled verifier disagrees"
    );
    assert_eq!(first, second, "cached answer differs from the checked one");
});
