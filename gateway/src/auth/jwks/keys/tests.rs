//! Tests of key hygiene: which keys of a JWKS document are kept, which are
//! refused and why, and that a kept key verifies only its own algorithm.

use super::*;
use serde_json::json;

const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"})
}

#[test]
fn keeps_signature_keys_and_drops_symmetric_and_encryption_keys() {
    let doc = json!({"keys": [
        rsa_jwk("a"),
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
        {"kty": "XYZ", "kid": "odd"},
        {"kid": "broken"}
    ]});
    let set = KeySet::parse(doc.to_string().as_bytes(), 1, MIN_RSA_BITS).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.skipped, 4);
    assert!(set.has_kid("a"));
    assert!(!set.has_kid("h"));
}

#[test]
fn candidates_respect_kid_family_and_pinned_alg() {
    let doc = json!({"keys": [rsa_jwk("a"), rsa_jwk("b")]});
    let set = KeySet::parse(doc.to_string().as_bytes(), 1, MIN_RSA_BITS).unwrap();
    assert_eq!(set.candidates(Some("a"), Algorithm::RS256).count(), 1);
    assert_eq!(set.candidates(None, Algorithm::RS256).count(), 2);
    // The JWKs pin RS256, so RS384 or PS256 may not use them.
    assert_eq!(set.candidates(None, Algorithm::RS384).count(), 0);
    assert_eq!(set.candidates(None, Algorithm::PS256).count(), 0);
    // An RSA key never verifies EC or HMAC signatures.
    assert_eq!(set.candidates(None, Algorithm::ES256).count(), 0);
    assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
    assert_eq!(set.candidates(Some("zzz"), Algorithm::RS256).count(), 0);
}

/// A fresh P-256 key pair and its public JWK.
fn ec_key(kid: &str) -> (aws_lc_rs::signature::EcdsaKeyPair, Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    assert_eq!((point.len(), point[0]), (65, 0x04));
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..])});
    (pair, jwk)
}

#[test]
fn parsed_keys_verify_only_their_own_algorithm() {
    let (pair, jwk) = ec_key("ec");
    let set = KeySet::parse(
        json!({"keys": [jwk]}).to_string().as_bytes(),
        1,
        MIN_RSA_BITS,
    )
    .unwrap();
    let key = set.candidates(Some("ec"), Algorithm::ES256).next().unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = pair.sign(&rng, b"header.payload").unwrap();
    assert!(key.verifies(Algorithm::ES256, b"header.payload", signature.as_ref()));
    assert!(!key.verifies(Algorithm::ES256, b"header.payloaD", signature.as_ref()));
    // Not parsed for what it does not fit, so it cannot verify there.
    for other in [Algorithm::ES384, Algorithm::RS256, Algorithm::HS256] {
        assert!(!key.verifies(other, b"header.payload", signature.as_ref()));
    }
}

#[test]
fn keys_that_do_not_parse_are_skipped() {
    let (_, mut off_curve) = ec_key("off");
    let mut y = URL_SAFE_NO_PAD
        .decode(off_curve["y"].as_str().unwrap())
        .unwrap();
    y[31] ^= 1;
    off_curve["y"] = URL_SAFE_NO_PAD.encode(&y).into();
    let (_, mut wrong_curve) = ec_key("p384");
    wrong_curve["crv"] = "P-384".into();
    let doc = json!({"keys": [
        off_curve,
        wrong_curve,
        {"kty": "RSA", "kid": "bad-b64", "n": "!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "enc-alg", "alg": "RSA-OAEP", "n": RSA_N, "e": "AQAB"},
        rsa_jwk("good")
    ]});
    let set = KeySet::parse(doc.to_string().as_bytes(), 1, MIN_RSA_BITS).unwrap();
    assert_eq!((set.len(), set.skipped), (1, 4));
    assert!(set.has_kid("good"));
}

fn okp(kid: &str, x: &[u8]) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(x)})
}

fn rejection(jwk: Value) -> KeyRejection {
    let jwk: Jwk = serde_json::from_value(jwk).unwrap();
    usable_key(&jwk, MIN_RSA_BITS).expect_err("key refused")
}

/// The identity point as an Ed25519 public key.
const IDENTITY: [u8; 32] = {
    let mut k = [0; 32];
    k[0] = 1;
    k
};

#[test]
fn the_identity_key_would_verify_anything() {
    // Why small-order keys must go: aws-lc accepts R = identity, S = 0
    // under the identity key for any message.
    let key = KeyMaterial::Point(IDENTITY.to_vec())
        .parse_for(Algorithm::EdDSA)
        .expect("aws-lc parses the identity point");
    let mut forged = IDENTITY.to_vec();
    forged.extend([0; 32]);
    assert!(key.verify_sig(b"any.claims", &forged).is_ok());
    assert_eq!(rejection(okp("weak", &IDENTITY)), KeyRejection::SmallOrder);
}

#[test]
fn small_order_ed25519_keys_are_refused_in_every_encoding() {
    for (i, point) in ED25519_SMALL_ORDER.iter().enumerate() {
        for sign in [0, 0x80] {
            let mut key = *point;
            key[31] |= sign;
            let doc = json!({"keys": [okp(&format!("small-{i}"), &key)]});
            let set = KeySet::parse(doc.to_string().as_bytes(), 1, MIN_RSA_BITS).unwrap();
            assert_eq!((set.len(), set.skipped), (0, 1), "{key:02x?}");
        }
    }
    // A real key stays.
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pair = Ed25519KeyPair::generate().unwrap();
    let doc = json!({"keys": [okp("real", pair.public_key().as_ref())]});
    let set = KeySet::parse(doc.to_string().as_bytes(), 1, MIN_RSA_BITS).unwrap();
    assert_eq!((set.len(), set.skipped), (1, 0));
    let key = set
        .candidates(Some("real"), Algorithm::EdDSA)
        .next()
        .unwrap();
    let signature = pair.sign(b"h.p");
    assert!(key.verifies(Algorithm::EdDSA, b"h.p", signature.as_ref()));
}

#[test]
fn the_rsa_minimum_is_the_issuers_setting() {
    let n2048 = URL_SAFE_NO_PAD.encode([0xc5; 256]);
    let n1024 = URL_SAFE_NO_PAD.encode([0xc5; 128]);
    let key = |n: &str| -> Jwk {
        serde_json::from_value(json!({"kty": "RSA", "kid": "k", "n": n, "e": "AQAB"})).unwrap()
    };
    assert_eq!(
        usable_key(&key(&n2048), 3072).err(),
        Some(KeyRejection::WeakRsaModulus {
            bits: 2048,
            min: 3072
        })
    );
    // A legacy provider's 1024-bit key, allowed only when set so.
    assert!(usable_key(&key(&n1024), 1024).is_ok());
    assert!(usable_key(&key(&n1024), MIN_RSA_BITS).is_err());
}

#[test]
fn weak_rsa_keys_are_refused() {
    let n1024 = URL_SAFE_NO_PAD.encode([0xc5; 128]);
    assert_eq!(
        rejection(json!({"kty": "RSA", "kid": "small", "n": n1024, "e": "AQAB"})),
        KeyRejection::WeakRsaModulus {
            bits: 1024,
            min: 2048
        }
    );
    // A leading zero byte does not make a modulus bigger.
    let mut padded = vec![0u8];
    padded.extend([0xc5; 255]);
    assert!(matches!(
        rejection(json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&padded), "e": "AQAB"})),
        KeyRejection::WeakRsaModulus { bits: 2040, .. }
    ));
    for e in ["AQ", "Ag", "AAE", "AQAA"] {
        assert_eq!(
            rejection(json!({"kty": "RSA", "kid": "e", "n": RSA_N, "e": e})),
            KeyRejection::WeakRsaExponent,
            "e = {e}"
        );
    }
    assert!(
        usable_key(
            &serde_json::from_value(rsa_jwk("ok")).unwrap(),
            MIN_RSA_BITS
        )
        .is_ok()
    );
}

#[test]
fn ec_points_off_the_curve_or_at_zero_are_refused() {
    let zero = URL_SAFE_NO_PAD.encode([0; 32]);
    assert_eq!(
        rejection(json!({"kty": "EC", "crv": "P-256", "x": zero, "y": zero})),
        KeyRejection::InvalidPoint
    );
    let (_, mut off) = ec_key("off");
    off["x"] = URL_SAFE_NO_PAD.encode([7; 32]).into();
    assert_eq!(rejection(off), KeyRejection::InvalidPoint);
}

#[test]
fn rejects_documents_that_are_not_a_jwks() {
    assert!(KeySet::parse(b"not json", 1, MIN_RSA_BITS).is_err());
    assert!(KeySet::parse(b"{\"keys\": 3}", 1, MIN_RSA_BITS).is_err());
    assert!(KeySet::parse(b"[]", 1, MIN_RSA_BITS).is_err());
}
