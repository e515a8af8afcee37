//! Arbitrary bytes as an `Authorization` header and as a bearer token, fed to
//! the real verifier (fixed JWKS with an RSA and an EC key, fixed clock).
//!
//! Properties: nothing panics; whatever is accepted satisfies every check
//! (issuer, audience, time, required claims); the verified-token cache gives
//! the answer the full check gave.
#![no_main]

use fuzz_support::{assert_accepted_token_is_sound, caching_verifier, verifier, verify};
use libfuzzer_sys::fuzz_target;
use session_gateway::auth::bearer_token;

fuzz_target!(|data: &[u8]| {
    // The header as a client sends it…
    if let Ok(token) = bearer_token(data) {
        check(token);
    }
    // …and the bytes as the token itself.
    if let Ok(token) = std::str::from_utf8(data) {
        check(token);
    }
});

fn check(token: &str) {
    let full = verify(verifier(), token);
    if let Ok(principal) = &full {
        assert_accepted_token_is_sound(principal);
    }
    // Twice through the caching verifier: the second answer may come from
    // the cache and must not differ from a full check.
    let first = verify(caching_verifier(), token);
    let second = verify(caching_verifier(), token);
    assert_eq!(
        full.is_ok(),
        first.is_ok(),
        "cache-enabled verifier disagrees"
    );
    assert_eq!(first, second, "cached answer differs from the checked one");
}
