//! Token verification: issuers, their keys, and the checks of docs/design.md §4.
//!
//! * [`claims`]: the claims of a token and how the gateway reads them;
//! * [`jwks`]: an issuer's signing keys, their cache and refresh;
//! * [`verify`]: the checks a token passes before it opens anything, and the
//!   verified-token cache;
//! * [`revocation`]: tokens refused although they verify (logout, operator).

pub mod claims;
pub mod jwks;
pub mod revocation;
pub mod verify;

pub use claims::Claims;
pub use jwks::{IssuerKeys, JwksError, KeySet};
pub use revocation::RevocationList;
pub use verify::{
    BearerError, Principal, SignedToken, TokenError, Verified, Verifier, bearer_token,
};
