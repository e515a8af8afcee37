//! One JWKS document → the [`KeySet`] of keys a signature may be checked
//! with: which keys are dropped (symmetric, encryption, unknown kinds) or
//! refused as weak ([`KeyRejection`]), and each kept key parsed once per
//! algorithm it fits into an aws-lc public key.

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;

use super::JwksError;
use crate::clock::UnixMillis;

/// Why one key of a JWKS document was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// Not a signature key the gateway may use (`oct`, `use: enc`, unknown).
    #[error("not an asymmetric signature key")]
    NotForSignatures,
    /// The JWK does not parse or its material does not decode.
    #[error("malformed key")]
    Malformed,
    /// An RSA modulus below the floor.
    #[error("RSA modulus of {bits} bits (at least {min} required)")]
    WeakRsaModulus {
        /// The modulus size.
        bits: usize,
        /// The floor.
        min: usize,
    },
    /// An RSA public exponent that is even or below 3.
    #[error("RSA public exponent is even or below 3")]
    WeakRsaExponent,
    /// An EC point that is not on its curve (or a wrong-size coordinate).
    #[error("EC point is not on the curve")]
    InvalidPoint,
    /// An Ed25519 public key of small order.
    #[error("Ed25519 public key of small order")]
    SmallOrder,
}

/// The smallest RSA modulus accepted, in bits, unless the issuer's
/// `min_rsa_bits` says otherwise.
pub const MIN_RSA_BITS: usize = crate::config::DEFAULT_MIN_RSA_BITS as usize;

/// One key that may verify signatures.
#[derive(Clone)]
pub struct VerificationKey {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    /// The key family (RSA, EC, Ed).
    pub family: AlgorithmFamily,
    /// The curve of an EC or OKP key.
    pub curve: Option<EllipticCurve>,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<String>,
    /// The key, parsed once for each algorithm it [fits](Self::fits).
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("curve", &self.curve)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Whether this key may verify a signature made with `alg`: same family,
    /// the curve the algorithm requires, and the JWK's own `alg` if it has one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.family != alg.family() || alg.family() == AlgorithmFamily::Hmac {
            return false;
        }
        let curve_ok = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        };
        curve_ok && self.alg.as_deref().is_none_or(|a| a == algorithm_name(alg))
    }

    /// Whether `signature` (raw bytes, not base64) is a valid `alg`
    /// signature of `message` under this key. False for an algorithm the key
    /// does not fit.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

/// The aws-lc parameters for `alg`. RSA accepts 2048- to 8192-bit keys;
/// ECDSA signatures are in the fixed-width `r || s` form JWS uses (RFC 7518
/// §3.4). `None` for HMAC and anything unknown.
fn lc_parameters(alg: Algorithm) -> Option<LcParameters> {
    use LcParameters::{Point, Rsa};
    Some(match alg {
        Algorithm::RS256 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Rsa(&lc::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Rsa(&lc::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Rsa(&lc::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Rsa(&lc::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Point(&lc::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Point(&lc::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Point(&lc::ED25519),
        _ => return None,
    })
}

enum LcParameters {
    Rsa(&'static lc::RsaParameters),
    Point(&'static dyn lc::VerificationAlgorithm),
}

/// The public key material of a JWK, decoded from base64url.
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed EC point (`04 || x || y`) or a raw Ed25519 key.
    Point(Vec<u8>),
}

impl KeyMaterial {
    fn parse_for(&self, alg: Algorithm) -> Option<ParsedPublicKey> {
        match (self, lc_parameters(alg)?) {
            (KeyMaterial::Rsa { n, e }, LcParameters::Rsa(params)) => {
                RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(params)
                    .ok()
            }
            (KeyMaterial::Point(bytes), LcParameters::Point(params)) => {
                ParsedPublicKey::new(params, bytes).ok()
            }
            _ => None,
        }
    }
}

/// Every algorithm a key may be parsed for.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The JOSE name of an algorithm (`RS256`, …).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Algorithms added to jsonwebtoken later are unknown here, and an
        // unknown name never matches an allow-list entry or a key.
        _ => "unknown",
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    /// Keys in the document that were dropped (unusable or malformed).
    pub skipped: usize,
    /// When it was loaded.
    pub loaded_ms: UnixMillis,
}

impl KeySet {
    /// Parses a JWKS document, keeping only keys fit for signature checks.
    /// A malformed key is skipped, not fatal, so one odd key at the issuer
    /// does not lock everybody out.
    pub fn parse(
        document: &[u8],
        loaded_ms: UnixMillis,
        min_rsa_bits: usize,
    ) -> Result<Self, JwksError> {
        let value: Value = serde_json::from_slice(document)
            .map_err(|e| JwksError::Invalid(format!("JWKS is not JSON: {e}")))?;
        let Some(entries) = value.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::Invalid("JWKS has no `keys` array".into()));
        };
        let mut set = KeySet {
            loaded_ms,
            ..KeySet::default()
        };
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
            match serde_json::from_value::<Jwk>(entry.clone())
                .map_err(|_| KeyRejection::Malformed)
                .and_then(|jwk| usable_key(&jwk, min_rsa_bits))
            {
                Ok(key) => set.keys.push(key),
                Err(KeyRejection::NotForSignatures) => {
                    tracing::debug!(kid, "JWKS key skipped: not a signature key");
                    set.skipped += 1;
                }
                Err(reason) => {
                    tracing::warn!(kid, reason = %reason, "JWKS key refused");
                    set.skipped += 1;
                }
            }
        }
        Ok(set)
    }

    /// Keys that may verify a token signed with `alg` and naming `kid`
    /// (all fitting keys when the token names none).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(move |k| k.fits(alg))
    }

    /// Whether a key with this `kid` exists (whatever its type).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn usable_key(jwk: &Jwk, min_rsa_bits: usize) -> Result<VerificationKey, KeyRejection> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return Err(KeyRejection::NotForSignatures);
    }
    let b64 = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| KeyRejection::Malformed)
    };
    let (family, curve, material) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let (n, e) = (b64(&p.n)?, b64(&p.e)?);
            check_rsa(&n, &e, min_rsa_bits)?;
            (AlgorithmFamily::Rsa, None, KeyMaterial::Rsa { n, e })
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let mut point = vec![0x04];
            point.extend(b64(&p.x)?);
            point.extend(b64(&p.y)?);
            (
                AlgorithmFamily::Ec,
                Some(p.curve.clone()),
                KeyMaterial::Point(point),
            )
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            let x = b64(&p.x)?;
            if p.curve == EllipticCurve::Ed25519 && is_small_order_ed25519(&x) {
                return Err(KeyRejection::SmallOrder);
            }
            (
                AlgorithmFamily::Ed,
                Some(p.curve.clone()),
                KeyMaterial::Point(x),
            )
        }
        // Symmetric keys never verify anything here: the gateway does not
        // share secrets with issuers, and an `oct` key in a public JWKS is
        // exactly what an HMAC key-confusion attack needs.
        _ => return Err(KeyRejection::NotForSignatures),
    };
    let mut key = VerificationKey {
        kid: jwk.common.key_id.clone(),
        family,
        curve,
        alg: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
        parsed: Vec::new(),
    };
    for alg in ASYMMETRIC {
        if key.fits(alg) {
            // A key that does not parse for an algorithm it fits (a point
            // off the curve — aws-lc checks the curve equation and that the
            // point is not the identity, which the uncompressed form cannot
            // encode anyway —, a malformed modulus) is malformed as a whole.
            let parsed = material.parse_for(alg).ok_or(match family {
                AlgorithmFamily::Ec => KeyRejection::InvalidPoint,
                _ => KeyRejection::Malformed,
            })?;
            key.parsed.push((alg, parsed));
        }
    }
    if key.parsed.is_empty() {
        return Err(KeyRejection::NotForSignatures);
    }
    Ok(key)
}

/// Refuses an RSA key whose modulus is below `min_bits` or whose public
/// exponent is even or below 3 (e = 1 makes the "signature" the message).
fn check_rsa(n: &[u8], e: &[u8], min_bits: usize) -> Result<(), KeyRejection> {
    let bits = |v: &[u8]| {
        let v = &v[v.iter().position(|&b| b != 0).unwrap_or(v.len())..];
        v.first().map_or(0, |&top| {
            (v.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
        })
    };
    let modulus = bits(n);
    if modulus < min_bits {
        return Err(KeyRejection::WeakRsaModulus {
            bits: modulus,
            min: min_bits,
        });
    }
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || bits(e) < 2 {
        return Err(KeyRejection::WeakRsaExponent);
    }
    Ok(())
}

/// The eight points of small order on edwards25519, encoded with the sign
/// bit (bit 255) cleared, plus the non-canonical encodings of y = 0 and
/// y = 1 (y + p still fits in 255 bits). Any key matching one of these
/// with either sign bit has order 1, 2, 4 or 8 (the list libsodium checks).
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = [
    // y = 0 (order 4, both signs of x)
    [0; 32],
    // y = 1: the identity (order 1)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 = -1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p, non-canonical 0 (order 4)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p + 1, non-canonical 1 (order 1)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether a 32-byte Ed25519 public key is a point of small order, in any
/// encoding (the sign bit is ignored: it selects x, not the order class).
fn is_small_order_ed25519(key: &[u8]) -> bool {
    let Ok(mut key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    key[31] &= 0x7f;
    ED25519_SMALL_ORDER.contains(&key)
}

#[cfg(test)]
mod tests;
