//! What the fuzz targets share: one verifier with fixed keys and a fixed
//! clock (so a crash reproduces on any day), the signing keys that belong to
//! it, and an independent statement of which request paths must be refused.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey};
use session_gateway::auth::{Principal, TokenError, Verifier};
use session_gateway::clock::ManualClock;
use session_gateway::config::{IssuerConfig, KeySource, TokenPolicy};

/// `iss` of the one configured issuer.
pub const ISSUER: &str = "https://idp.fuzz.example";
/// The one accepted audience.
pub const AUDIENCE: &str = "erp-api";
/// The verifier's "now", seconds since the epoch (2025-06-15): seeds carry
/// `exp`/`iat` around it and stay valid forever.
pub const NOW: i64 = 1_750_000_000;
/// `tokens.leeway`.
pub const LEEWAY: i64 = 30;
/// `tokens.max_lifetime`.
pub const MAX_LIFETIME: i64 = 3600;
/// The algorithms the issuer allows.
pub const ALLOWED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::PS256,
    Algorithm::ES256,
];

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// A current-thread runtime to drive the async verifier.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn build_verifier(cache_size: usize) -> Verifier {
    let issuer = IssuerConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        algorithms: ALLOWED.to_vec(),
        // The same JWKS file the real gateway would read for `jwks_file`.
        keys: KeySource::JwksFile(keys_dir().join("jwks.json")),
        jwks_refresh: Duration::from_secs(300),
        // An unknown kid re-reads the file at most once per run.
        jwks_min_refetch: Duration::from_secs(86_400),
        http_timeout: Duration::from_secs(1),
        logout_audiences: vec![AUDIENCE.into()],
        require_logout_typ: false,
        access_token_types: vec!["at+jwt".into(), "jwt".into(), "".into()],
        min_rsa_bits: 2048,
            ca_pem: None,
    };
    let policy = TokenPolicy {
        leeway: Duration::from_secs(LEEWAY as u64),
        max_lifetime: Some(Duration::from_secs(MAX_LIFETIME as u64)),
        max_auth_age: None,
        required_claims: vec!["sub".into()],
        cache_size,
        max_token_bytes: 8192,
    };
    let clock = Arc::new(ManualClock::starting_at(NOW as u64 * 1000));
    let verifier = Verifier::new(&[issuer], policy, clock).expect("a verifier");
    runtime()
        .block_on(verifier.issuers()[0].refresh())
        .expect("fuzz/keys/jwks.json loads");
    verifier
}

/// The verifier without a token cache: every call is a full check.
pub fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| build_verifier(0))
}

/// The verifier with a token cache (to check that a cached answer is the
/// answer a full check gave).
pub fn caching_verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| build_verifier(1024))
}

/// Verifies with the given verifier on the shared runtime.
pub fn verify(verifier: &Verifier, token: &str) -> Result<Arc<Principal>, TokenError> {
    runtime()
        .block_on(verifier.verify(token))
        .map(|(principal, _)| principal)
}

/// What every accepted token must satisfy, whatever the input was.
pub fn assert_accepted_token_is_sound(principal: &Principal) {
    let claims = &principal.claims;
    assert_eq!(claims.issuer(), Some(ISSUER), "accepted a foreign issuer");
    assert!(
        claims.audiences().contains(&AUDIENCE),
        "accepted a token for another audience"
    );
    assert!(
        principal.expires_at.saturating_add(LEEWAY) >= NOW,
        "accepted an expired token"
    );
    if let Some(nbf) = principal.not_before {
        assert!(
            NOW.saturating_add(LEEWAY) >= nbf,
            "accepted a token before nbf"
        );
    }
    assert!(
        claims.has("sub"),
        "accepted a token without the required `sub`"
    );
    assert!(
        !principal.token_key.is_empty(),
        "accepted token has no revocation key"
    );
}

/// The issuer's private keys (fixed test keys, committed under `fuzz/keys/`:
/// RSA as PKCS#1 DER, P-256 as PKCS#8 DER, what `jsonwebtoken` reads
/// without its `use_pem` feature).
pub struct SigningKeys {
    /// RSA-2048, kid `rsa-fuzz`.
    pub rsa: EncodingKey,
    /// P-256, kid `ec-fuzz`.
    pub ec: EncodingKey,
}

/// The keys whose public halves are in `fuzz/keys/jwks.json`.
pub fn signing_keys() -> &'static SigningKeys {
    static K: OnceLock<SigningKeys> = OnceLock::new();
    K.get_or_init(|| {
        let read = |name: &str| std::fs::read(keys_dir().join(name)).expect("fuzz key file");
        SigningKeys {
            rsa: EncodingKey::from_rsa_der(&read("rsa-fuzz.der")),
            ec: EncodingKey::from_ec_der(&read("ec-fuzz.der")),
        }
    })
}

/// Signs `header_b64.payload_b64` with the key that fits `alg`; `None` for
/// algorithms the issuer has no key for (the caller then uses a junk
/// signature).
pub fn sign(message: &str, alg: Algorithm) -> Option<String> {
    let keys = signing_keys();
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => &keys.rsa,
        Algorithm::ES256 => &keys.ec,
        _ => return None,
    };
    jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).ok()
}

/// Why a request path must be refused, judged independently of the gateway's
/// router: percent-decode every `%XX` once (what a decoding backend does),
/// then look for what could make the gateway and the backend resolve the
/// path differently. `None` means the path is harmless.
///
/// Beyond that one decoding, a backend may decode again (`%252e`), read `%u`
/// escapes, accept overlong UTF-8 (`%c0%ae`) or NFKC-normalise (`．`): so a
/// `%` that is not `%XX`, a decoded `%XX`, a decoded C0/C1 byte or E0/F0
/// overlong lead, and the characters NFKC maps to `.`, `/` or `\` are
/// refused as well.
pub fn must_refuse(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("relative");
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && !(i + 2 < bytes.len() && hex(bytes[i + 1]).is_some() && hex(bytes[i + 2]).is_some())
        {
            return Some("stray percent");
        }
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = h * 16 + l;
            if c != b'.' && (c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')) {
                return Some("encoded unreserved character");
            }
            decoded.push(c);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    if decoded.contains(&b'\\') || decoded.contains(&0) {
        return Some("backslash or NUL");
    }
    for (at, &b) in decoded.iter().enumerate() {
        let next = decoded.get(at + 1).copied();
        let next2 = decoded.get(at + 2).copied();
        if b == b'%' && next.and_then(hex).is_some() && next2.and_then(hex).is_some() {
            return Some("encoded twice");
        }
        if matches!(b, 0xc0 | 0xc1)
            || (b == 0xe0 && next.is_some_and(|n| (0x80..0xa0).contains(&n)))
            || (b == 0xf0 && next.is_some_and(|n| (0x80..0x90).contains(&n)))
        {
            return Some("overlong UTF-8");
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    if text.contains([
        '\u{ff0e}', '\u{fe52}', '\u{2024}', '\u{ff0f}', '\u{ff3c}', '\u{fe68}',
    ]) {
        return Some("Unicode lookalike of a dot or slash");
    }
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() && i != last {
            return Some("empty segment");
        }
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        if name == b"." || name == b".." {
            return Some("dot-segment");
        }
    }
    None
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}
