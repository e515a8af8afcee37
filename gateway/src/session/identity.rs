//! Session identity: the stable key of a session, derived from configured
//! claims (default `iss`, `sub`, `client_id|azp`).
//!
//! A refreshed token carries the same values for these claims, so it maps to
//! the same identity and reuses the same session and seat. The key is a
//! SHA-256 over the length-prefixed values, so no choice of claim values can
//! make two different identities collide by concatenation (`"ab"+"c"` vs
//! `"a"+"bc"`), and store keys never contain raw claim text.

use serde_json::Value;

use crate::claims::Claims;
pub use crate::digest::Digest32;

/// Which claims make up the identity: one entry per component, each a list
/// of alternative claim names (the first present one is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    components: Vec<Vec<String>>,
}

/// A token lacks what its session identity needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// None of a component's claims is present.
    #[error("token lacks the claim {0} needed for its session identity")]
    MissingClaim(String),
    /// The claim is present but not a string or number.
    #[error("claim `{0}` must be a string to form a session identity")]
    NotScalar(String),
}

/// The key of a session identity.
pub type IdentityKey = Digest32;

/// The key of a subject (issuer + `sub`), for per-subject caps.
pub type SubjectKey = Digest32;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The identity key (all configured components).
    pub key: IdentityKey,
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The client (`client_id` or `azp`), if any.
    pub client: Option<String>,
    /// Issuer + subject, for per-subject caps.
    pub subject_key: SubjectKey,
}

/// The revocation key of the tokens that carry an identity provider session
/// id (`sid`): a back-channel logout of that session revokes them all, and
/// the stores link sessions to it ([`super::IdpSession::key`]). It lives
/// with the other identity keys because it is one: who a `sid` belongs to.
pub fn sid_key(issuer: &str, sid: &str) -> String {
    Digest32::of_parts("sid", [issuer.as_bytes(), sid.as_bytes()]).to_hex()
}

/// The subject key of an issuer's subject.
pub fn subject_key(issuer: &str, subject: &str) -> SubjectKey {
    Digest32::of_parts("subject", [issuer.as_bytes(), subject.as_bytes()])
}

impl IdentityRule {
    /// A rule from components of alternative claim names.
    pub fn new(components: Vec<Vec<String>>) -> Self {
        Self { components }
    }

    /// The components, as configured.
    pub fn components(&self) -> &[Vec<String>] {
        &self.components
    }

    /// Derives the session identity of a verified token.
    pub fn derive(&self, claims: &Claims) -> Result<SessionIdentity, IdentityError> {
        let mut values: Vec<String> = Vec::with_capacity(self.components.len());
        for alternatives in &self.components {
            let found = alternatives
                .iter()
                .find_map(|name| claims.get(name).map(|v| (name, v)));
            let value = match found {
                Some((_, Value::String(s))) => s.clone(),
                Some((_, Value::Number(n))) => n.to_string(),
                Some((name, _)) => return Err(IdentityError::NotScalar(name.clone())),
                None => {
                    let names: Vec<String> =
                        alternatives.iter().map(|a| format!("`{a}`")).collect();
                    return Err(IdentityError::MissingClaim(names.join(" or ")));
                }
            };
            values.push(value);
        }
        let issuer = claims.issuer().unwrap_or_default().to_string();
        let subject = claims
            .subject()
            .ok_or_else(|| IdentityError::MissingClaim("`sub`".into()))?
            .to_string();
        Ok(SessionIdentity {
            key: Digest32::of_parts("identity", values.iter().map(|v| v.as_bytes())),
            subject_key: subject_key(&issuer, &subject),
            client: claims.client().map(str::to_string),
            issuer,
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        Claims::from_map(v.as_object().cloned().unwrap())
    }

    fn default_rule() -> IdentityRule {
        IdentityRule::new(vec![
            vec!["iss".into()],
            vec!["sub".into()],
            vec!["client_id".into(), "azp".into()],
        ])
    }

    #[test]
    fn refreshed_token_of_same_identity_has_same_key() {
        let a = claims(json!({"iss": "i", "sub": "alice", "azp": "web", "jti": "1", "exp": 10}));
        let b = claims(json!({"iss": "i", "sub": "alice", "azp": "web", "jti": "2", "exp": 99}));
        assert_eq!(
            default_rule().derive(&a).unwrap().key,
            default_rule().derive(&b).unwrap().key
        );
    }

    #[test]
    fn different_client_or_subject_is_a_different_identity() {
        let rule = default_rule();
        let base = rule
            .derive(&claims(json!({"iss": "i", "sub": "alice", "azp": "web"})))
            .unwrap();
        let other_client = rule
            .derive(&claims(json!({"iss": "i", "sub": "alice", "azp": "desk"})))
            .unwrap();
        let other_sub = rule
            .derive(&claims(json!({"iss": "i", "sub": "bob", "azp": "web"})))
            .unwrap();
        assert_ne!(base.key, other_client.key);
        assert_ne!(base.key, other_sub.key);
        assert_eq!(base.subject_key, other_client.subject_key);
        assert_ne!(base.subject_key, other_sub.subject_key);
    }

    #[test]
    fn concatenation_cannot_forge_an_identity() {
        let rule = IdentityRule::new(vec![vec!["a".into()], vec!["b".into()]]);
        let one = rule
            .derive(&claims(json!({"a": "ab", "b": "c", "sub": "s"})))
            .unwrap();
        let two = rule
            .derive(&claims(json!({"a": "a", "b": "bc", "sub": "s"})))
            .unwrap();
        assert_ne!(one.key, two.key);
    }

    #[test]
    fn client_id_is_preferred_over_azp_and_missing_claims_are_errors() {
        let rule = default_rule();
        let id = rule
            .derive(&claims(
                json!({"iss": "i", "sub": "s", "client_id": "c", "azp": "z"}),
            ))
            .unwrap();
        assert_eq!(id.client.as_deref(), Some("c"));
        let err = rule
            .derive(&claims(json!({"iss": "i", "sub": "s"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token lacks the claim `client_id` or `azp` needed for its session identity"
        );
        let err = rule
            .derive(&claims(json!({"iss": "i", "sub": ["s"], "azp": "z"})))
            .unwrap_err();
        assert_eq!(err, IdentityError::NotScalar("sub".into()));
    }

    #[test]
    fn hex_round_trips() {
        let d = Digest32::of_parts("x", [b"y".as_slice()]);
        assert_eq!(Digest32::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest32::from_hex("zz"), None);
    }
}
