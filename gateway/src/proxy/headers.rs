//! The headers the upstream may trust.
//!
//! Identity headers (`X-Session-Id`, `X-Auth-Subject`, `X-Auth-Client`,
//! `X-License-Pool` and the configured claim headers) are removed from every
//! request first, in any letter case and also in their underscore spelling
//! (`X_Auth_Subject`), because CGI-style backends map both spellings to the
//! same variable. Only then are the gateway's own values added. The route's
//! `authorization` rule decides what happens to the client's credential.

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::auth::Principal;
use crate::config::{IdentityHeaderNames, UpstreamAuthorization};
use crate::session::Session;

/// What the upstream learns about the caller.
#[derive(Debug, Default)]
pub struct IdentityHeaders<'a> {
    /// The verified token, on `session` and `token` routes.
    pub principal: Option<&'a Principal>,
    /// The session, on `session` routes.
    pub session: Option<&'a Session>,
    /// Whether that session holds a seat beyond the pool's limit.
    pub overdraft: bool,
}

/// Rewrites the upstream request: strip spoofable headers, add ours, apply
/// the route's `Authorization` rule.
pub fn rewrite(
    request: &mut RequestHeader,
    names: &IdentityHeaderNames,
    identity: &IdentityHeaders<'_>,
    authorization: &UpstreamAuthorization,
) {
    strip_identity_headers(request, names);
    if let Some(principal) = identity.principal {
        if let Some(subject) = principal.claims.subject() {
            set(request, &names.subject, subject);
        }
        if let Some(client) = principal.claims.client() {
            set(request, &names.client, client);
        }
        for (claim, header) in &names.claims {
            let values = principal.claims.values(claim);
            if values.is_empty() {
                continue;
            }
            match string_list(&values) {
                Some(value) => set(request, header, &value),
                None => tracing::debug!(
                    claim = claim.as_str(),
                    "claim left out: a value is not printable ASCII"
                ),
            }
        }
    }
    if let Some(session) = identity.session {
        set(request, &names.session_id, &session.id);
        set(request, &names.pool, &session.pool);
        if identity.overdraft {
            set(request, &names.overdraft, "true");
        }
    }
    match authorization {
        UpstreamAuthorization::Pass => {}
        UpstreamAuthorization::Strip => {
            request.remove_header(&http::header::AUTHORIZATION);
        }
        UpstreamAuthorization::Replace(secret) => {
            if let Ok(value) = HeaderValue::from_str(secret.expose()) {
                let _ = request.insert_header(http::header::AUTHORIZATION, value);
            }
        }
    }
}

/// Removes every identity header, whatever its case or `_`/`-` spelling.
pub fn strip_identity_headers(request: &mut RequestHeader, names: &IdentityHeaderNames) {
    // Nearly every request carries none of them: look without allocating,
    // and collect only what is actually there.
    let is_ours = |name: &HeaderName| {
        names
            .all()
            .any(|o| same_spelling(name.as_str(), o.as_str()))
    };
    if !request.headers.keys().any(is_ours) {
        return;
    }
    let spoofed: Vec<HeaderName> = request
        .headers
        .keys()
        .filter(|n| is_ours(n))
        .cloned()
        .collect();
    for name in spoofed {
        request.remove_header(&name);
    }
}

/// Whether a received header name (lowercase, as `http` stores it) is `ours`
/// once `_` and `-` are taken as the same character, either way round: a
/// configured `X_Tenant` is `X-Tenant` to a CGI-style backend too.
fn same_spelling(received: &str, ours: &str) -> bool {
    let dash = |b: u8| if b == b'_' { b'-' } else { b };
    received.len() == ours.len()
        && received
            .bytes()
            .zip(ours.bytes())
            .all(|(r, o)| dash(r) == dash(o))
}

/// A claim's values as an RFC 8941 List of Strings (`"staff", "admin"`):
/// every value quoted, `"` and `\` escaped, so `["staff,admin"]` and
/// `["staff", "admin"]` never look alike, and a scalar is a one-item list.
/// `None` when a value holds a character a String cannot (outside printable
/// ASCII): the header is then left out rather than forwarded ambiguous.
pub fn string_list(values: &[String]) -> Option<String> {
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        for ch in value.chars() {
            match ch {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(ch);
                }
                ' '..='~' => out.push(ch),
                _ => return None,
            }
        }
        out.push('"');
    }
    Some(out)
}

fn set(request: &mut RequestHeader, name: &HeaderName, value: &str) {
    // A claim value with control characters cannot be a header value; the
    // header is then left out rather than forwarded mangled.
    if let Ok(value) = HeaderValue::from_str(value) {
        let _ = request.insert_header(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use crate::config::Secret;
    use serde_json::json;

    fn names() -> IdentityHeaderNames {
        IdentityHeaderNames {
            session_id: HeaderName::from_static("x-session-id"),
            subject: HeaderName::from_static("x-auth-subject"),
            client: HeaderName::from_static("x-auth-client"),
            pool: HeaderName::from_static("x-license-pool"),
            overdraft: HeaderName::from_static("x-license-overdraft"),
            claims: vec![("roles".into(), HeaderName::from_static("x-auth-roles"))],
        }
    }

    fn request() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/api/x", None).unwrap();
        r.append_header("X-Auth-Subject", "mallory").unwrap();
        r.append_header("x-auth-subject", "mallory2").unwrap();
        r.append_header("X_Auth_Subject", "mallory3").unwrap();
        r.append_header("X-SESSION-ID", "forged").unwrap();
        r.append_header("x-auth-roles", "admin").unwrap();
        r.append_header("Authorization", "Bearer t").unwrap();
        r.append_header("Accept", "application/json").unwrap();
        r
    }

    fn principal() -> Principal {
        Principal {
            claims: Claims::from_map(
                json!({"sub": "alice", "client_id": "erp-web", "roles": ["a", "b"]})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
            issuer: 0,
            expires_at: 0,
            not_before: None,
            issued_at: None,
            token_key: String::new(),
        }
    }

    #[test]
    fn spoofed_identity_headers_are_always_removed() {
        let mut r = request();
        rewrite(
            &mut r,
            &names(),
            &IdentityHeaders::default(),
            &UpstreamAuthorization::Pass,
        );
        for h in [
            "x-auth-subject",
            "x_auth_subject",
            "x-session-id",
            "x-auth-roles",
        ] {
            assert!(r.headers.get(h).is_none(), "{h} kept");
        }
        assert_eq!(r.headers.get("accept").unwrap(), "application/json");
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer t");
    }

    #[test]
    fn gateway_values_replace_client_values() {
        let mut r = request();
        let p = principal();
        rewrite(
            &mut r,
            &names(),
            &IdentityHeaders {
                principal: Some(&p),
                session: None,
                overdraft: false,
            },
            &UpstreamAuthorization::Strip,
        );
        let all: Vec<_> = r.headers.get_all("x-auth-subject").iter().collect();
        assert_eq!(all, vec!["alice"]);
        assert_eq!(r.headers.get("x-auth-client").unwrap(), "erp-web");
        assert_eq!(r.headers.get("x-auth-roles").unwrap(), "\"a\", \"b\"");
        assert!(r.headers.get("authorization").is_none());
        assert!(r.headers.get("x-session-id").is_none());
    }

    #[test]
    fn dash_spellings_of_an_underscore_name_are_removed_too() {
        let mut names = names();
        names
            .claims
            .push(("tenant".into(), HeaderName::from_static("x_tenant")));
        let mut r = RequestHeader::build("GET", b"/api/x", None).unwrap();
        r.append_header("X-Tenant", "other").unwrap();
        r.append_header("x_tenant", "other").unwrap();
        r.append_header("X-Tenant-Id", "kept").unwrap();
        strip_identity_headers(&mut r, &names);
        assert!(r.headers.get("x-tenant").is_none());
        assert!(r.headers.get("x_tenant").is_none());
        assert_eq!(r.headers.get("x-tenant-id").unwrap(), "kept");
    }

    #[test]
    fn array_claims_are_unambiguous_string_lists() {
        let list = |v: &[&str]| string_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(list(&["staff,admin"]).unwrap(), r#""staff,admin""#);
        assert_eq!(list(&["staff", "admin"]).unwrap(), r#""staff", "admin""#);
        assert_ne!(list(&["staff,admin"]), list(&["staff", "admin"]));
        assert_eq!(
            list(&[r#"a", "b"#, r"c\d"]).unwrap(),
            r#""a\", \"b", "c\\d""#
        );
        assert_eq!(
            list(&["alice@example.com"]).unwrap(),
            r#""alice@example.com""#
        );
        assert_eq!(list(&["caf\u{e9}"]), None);
        assert_eq!(list(&["a\nb"]), None);
    }

    #[test]
    fn authorization_can_be_replaced() {
        let mut r = request();
        rewrite(
            &mut r,
            &names(),
            &IdentityHeaders::default(),
            &UpstreamAuthorization::Replace(Secret::new("Basic ZXJwOnB3".into())),
        );
        assert_eq!(r.headers.get("authorization").unwrap(), "Basic ZXJwOnB3");
    }
}
