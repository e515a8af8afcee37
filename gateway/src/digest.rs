//! The 32-byte digests the gateway derives its keys from: session identity
//! and subject keys, revocation keys of tokens without `jti`, `sid` keys,
//! one-time ids. SHA-256 over a domain tag and length-prefixed parts, so no
//! choice of values collides by concatenation and no key holds raw claim
//! text. A value type with no dependencies, below every module that keys
//! something.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A 32-byte digest used as a store key; shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest32(pub [u8; 32]);

impl Digest32 {
    /// SHA-256 over length-prefixed parts.
    pub fn of_parts<'a>(domain: &str, parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut h = Sha256::new();
        h.update(domain.as_bytes());
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Digest32(h.finalize().into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses lowercase or uppercase hex.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest32(out))
    }

    /// Base64url without padding: 43 characters, the Redis store's compact
    /// spelling.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`Digest32::to_base64`]'s spelling.
    pub fn from_base64(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(Digest32(bytes.try_into().ok()?))
    }

    /// Either spelling: 64 hex digits or 43 base64url characters.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_hex(text).or_else(|| Self::from_base64(text))
    }
}

impl fmt::Debug for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Digest32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_round_trip() {
        let d = Digest32::of_parts("t", [b"x".as_slice()]);
        assert_eq!(d.to_base64().len(), 43);
        assert_eq!(Digest32::from_base64(&d.to_base64()), Some(d));
        assert_eq!(Digest32::parse(&d.to_base64()), Some(d));
        assert_eq!(Digest32::parse(&d.to_hex()), Some(d));
        assert_eq!(Digest32::parse(&d.to_base64()[1..]), None);
        assert_eq!(Digest32::from_base64("!".repeat(43).as_str()), None);
    }
}
