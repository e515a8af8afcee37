//! `[headers]`: the names of the identity headers the gateway sets on
//! proxied requests, refused when they are protocol headers or collide.

use std::collections::BTreeSet;
use std::str::FromStr;

use http::HeaderName;

use super::Check;
use crate::config::{ConfigError, FileConfig, IdentityHeaderNames};

// Parsers of `Check` that only `[headers]` uses, kept beside the rules they serve.
impl Check<'_> {
    fn header_name(&self, key: &str, text: &str) -> Result<HeaderName, ConfigError> {
        let name = HeaderName::from_str(text)
            .or_else(|_| self.fail(key, format!("`{text}` is not a valid HTTP header name")))?;
        // Protocol headers, among them every hop-by-hop header (RFC 9110
        // §7.6.1, plus the obsolete `Proxy-Connection` many proxies still
        // honour): a proxy on the way may drop or act on them.
        const RESERVED: &[&str] = &[
            "authorization",
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "cookie",
            "keep-alive",
            "proxy-authorization",
            "proxy-authenticate",
        ];
        // `Transfer_Encoding` is `Transfer-Encoding` to a CGI-style backend.
        if RESERVED.contains(&header_spelling(&name).as_str()) {
            return self.fail(
                key,
                format!("`{text}` is a protocol header and cannot carry identity"),
            );
        }
        Ok(name)
    }
}

pub(super) fn headers(c: &Check, file: &FileConfig) -> Result<IdentityHeaderNames, ConfigError> {
    let h = &file.headers;
    let names = IdentityHeaderNames {
        session_id: c.header_name("headers.session_id", &h.session_id)?,
        subject: c.header_name("headers.subject", &h.subject)?,
        client: c.header_name("headers.client", &h.client)?,
        pool: c.header_name("headers.pool", &h.pool)?,
        overdraft: c.header_name("headers.overdraft", &h.overdraft)?,
        claims: h
            .claims
            .iter()
            .map(|(claim, header)| {
                Ok((
                    claim.clone(),
                    c.header_name(&format!("headers.claims.{claim}"), header)?,
                ))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
    };
    let mut seen = BTreeSet::new();
    let all = [
        &names.session_id,
        &names.subject,
        &names.client,
        &names.pool,
        &names.overdraft,
    ]
    .into_iter()
    .chain(names.claims.iter().map(|(_, n)| n));
    // Compared as a CGI-style backend sees them (`X_Auth_Subject` is
    // `X-Auth-Subject` there): two spellings of one name would let a claim
    // value stand in for the subject or the session.
    for name in all {
        if !seen.insert(header_spelling(name)) {
            return c.fail(
                "headers",
                format!("header `{name}` is used twice (`_` and `-` count as the same)"),
            );
        }
    }
    Ok(names)
}

/// A header name as backends that treat `_` like `-` see it (lowercase).
fn header_spelling(name: &HeaderName) -> String {
    name.as_str().replace('_', "-")
}
