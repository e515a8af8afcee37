//! Token verification: issuers, their keys, and the checks of docs/design.md §4.
//!
//! * [`jwks`]: an issuer's signing keys, their cache and refresh;
//! * [`verify`]: the checks a token passes before it opens anything, and the
//!   verified-token cache.
//!
//! Tokens refused although they verify (logout, operator revocations) are
//! the access decision's to check: see `access::revocation_list`.

pub mod jwks;
pub mod verify;

/// The claims of a token ([`crate::claims`]), where verification yields them.
pub use crate::claims::Claims;
pub use jwks::{IssuerKeys, JwksError, KeySet};
pub use verify::{
    BearerError, Principal, SignedToken, TokenError, Verified, Verifier, bearer_token,
};
