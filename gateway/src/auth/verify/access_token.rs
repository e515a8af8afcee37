//! Only access tokens open anything: a logout, ID or security event token,
//! or a token whose `typ` the issuer's `access_token_types` does not list,
//! is refused even when its signature and audience are right (RFC 8725
//! §3.11, RFC 9068 §4).

use super::TokenError;
use crate::claims::Claims;
use crate::config::IssuerConfig;

/// Claims only ID tokens carry (OpenID Connect Core §2, §3.1.3.6, §3.3.2.11):
/// an ID token typed plain `JWT` is recognised by them.
const ID_TOKEN_CLAIMS: &[&str] = &["nonce", "at_hash", "c_hash", "s_hash"];

/// Values of Keycloak's `typ` claim for tokens that are not access tokens:
/// ID, logout, refresh and offline tokens.
const KEYCLOAK_OTHER_KINDS: &[&str] = &["ID", "Logout", "Refresh", "Offline"];

/// Refuses a token that is not an access token of this issuer: typed as a
/// logout, ID or security event token, carrying the claims of one (`events`,
/// `nonce`, …) whatever the audiences say — a provider's ID token has the
/// client id as audience, which may well be configured — or with a `typ`
/// not in `access_token_types` (RFC 8725 §3.11, RFC 9068 §4).
pub fn check_access_token_type(
    config: &IssuerConfig,
    typ: Option<&str>,
    claims: &Claims,
) -> Result<(), TokenError> {
    let typ = crate::config::token_type(typ);
    let refuse = |why: String| Err(TokenError::NotAnAccessToken(why));
    if crate::config::NEVER_ACCESS_TOKEN_TYPES.contains(&typ.as_str()) {
        return refuse(format!("a token of type `{typ}`"));
    }
    if claims.has("events") {
        return refuse("a security event token (claim `events`), such as a logout token".into());
    }
    if let Some(claim) = ID_TOKEN_CLAIMS.iter().find(|c| claims.has(c)) {
        return refuse(format!("an ID token (claim `{claim}`)"));
    }
    // Keycloak names the kind of its tokens in a `typ` claim (`Bearer` for
    // access tokens) while its header says plain `JWT`.
    if let Some(kind) = claims.str("typ").filter(|k| {
        KEYCLOAK_OTHER_KINDS
            .iter()
            .any(|o| k.eq_ignore_ascii_case(o))
    }) {
        return refuse(format!("a token of kind `{kind}` (claim `typ`)"));
    }
    if !config.access_token_types.contains(&typ) {
        return refuse(if typ.is_empty() {
            "a token without `typ` is not accepted from this issuer".into()
        } else {
            format!("type `{typ}` is not accepted from this issuer")
        });
    }
    Ok(())
}
