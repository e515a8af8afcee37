//! `[[issuers]]`: who may sign tokens, for which audiences, with which
//! algorithms, and where their keys come from (discovery, a JWKS URL or a
//! JWKS file).

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, AlgorithmFamily};

use super::Check;
use super::tls_files::pem_certificates;
use crate::config::file::IssuerSection;
use crate::config::{ConfigError, IssuerConfig, KeySource};

/// `http://` is accepted only for loopback hosts (development, tests).
fn secure_url(c: &Check, key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).or_else(|e| c.fail(key, format!("`{text}` is not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => c.fail(
            key,
            "must use https (plain http is accepted only for loopback hosts)",
        ),
        other => c.fail(key, format!("scheme `{other}` is not supported; use https")),
    }
}

pub(super) fn issuer(
    c: &Check,
    key: &str,
    s: &IssuerSection,
    base_dir: &Path,
) -> Result<IssuerConfig, ConfigError> {
    if s.issuer.trim().is_empty() {
        return c.fail(format!("{key}.issuer"), "must be the issuer's `iss` value");
    }
    if s.audiences.is_empty() || s.audiences.iter().any(|a| a.is_empty()) {
        return c.fail(
            format!("{key}.audiences"),
            "must list at least one non-empty audience",
        );
    }
    if s.algorithms.is_empty() {
        return c.fail(
            format!("{key}.algorithms"),
            "must list at least one algorithm",
        );
    }
    let mut algorithms = Vec::new();
    for (i, name) in s.algorithms.iter().enumerate() {
        let akey = format!("{key}.algorithms[{i}]");
        if name.eq_ignore_ascii_case("none") {
            return c.fail(akey, "`none` means unsigned tokens and is never accepted");
        }
        let alg = Algorithm::from_str(name).or_else(|_| {
            c.fail(
                akey.clone(),
                format!("`{name}` is not a supported algorithm; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"),
            )
        })?;
        if alg.family() == AlgorithmFamily::Hmac {
            return c.fail(akey, format!("`{name}` is a shared-secret (HMAC) algorithm; an issuer's JWKS holds public keys, so only asymmetric algorithms are accepted"));
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let keys = match (&s.jwks_uri, &s.jwks_file) {
        (Some(_), Some(_)) => return c.fail(key, "set either jwks_uri or jwks_file, not both"),
        (Some(uri), None) => KeySource::JwksUri(secure_url(c, &format!("{key}.jwks_uri"), uri)?),
        (None, Some(path)) => {
            let path = base_dir.join(path);
            if let Err(e) = check_jwks_file(&path) {
                return c.fail(format!("{key}.jwks_file"), e);
            }
            KeySource::JwksFile(path)
        }
        (None, None) => {
            let base = secure_url(c, &format!("{key}.issuer"), &s.issuer)?;
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                base.as_str().trim_end_matches('/')
            );
            KeySource::Discovery(secure_url(c, &format!("{key}.issuer"), &discovery)?)
        }
    };
    let ca_pem = match (&s.ca_file, &keys) {
        (None, _) => None,
        (Some(_), KeySource::JwksFile(_)) => {
            return c.fail(
                format!("{key}.ca_file"),
                "has no effect with jwks_file (the keys are read from a file, not fetched)",
            );
        }
        (Some(path), _) => Some(pem_certificates(
            c,
            &format!("{key}.ca_file"),
            base_dir,
            path,
        )?),
    };
    let logout_audiences = match &s.logout_audiences {
        // Safe as a default only because access tokens and logout tokens
        // are told apart by type, whatever audience they share.
        None => s.audiences.clone(),
        Some(list) if list.is_empty() || list.iter().any(|a| a.trim().is_empty()) => {
            return c.fail(
                format!("{key}.logout_audiences"),
                "must list at least one non-empty client id (or be left out to use `audiences`)",
            );
        }
        Some(list) => list.clone(),
    };
    if s.access_token_types.is_empty() {
        return c.fail(
            format!("{key}.access_token_types"),
            "must list at least one token type (\"\" stands for tokens without `typ`)",
        );
    }
    let mut access_token_types = Vec::new();
    for (i, typ) in s.access_token_types.iter().enumerate() {
        let normalised = crate::config::token_type(Some(typ));
        if crate::config::NEVER_ACCESS_TOKEN_TYPES.contains(&normalised.as_str()) {
            return c.fail(
                format!("{key}.access_token_types[{i}]"),
                format!("`{typ}` is the type of tokens that are never access tokens"),
            );
        }
        if !access_token_types.contains(&normalised) {
            access_token_types.push(normalised);
        }
    }
    if !(LEAST_RSA_BITS..=MOST_RSA_BITS).contains(&s.min_rsa_bits) {
        return c.fail(
            format!("{key}.min_rsa_bits"),
            format!("must be between {LEAST_RSA_BITS} and {MOST_RSA_BITS} (2048 unless set)"),
        );
    }
    Ok(IssuerConfig {
        issuer: s.issuer.clone(),
        audiences: s.audiences.clone(),
        algorithms,
        keys,
        jwks_refresh: c.positive_duration(&format!("{key}.jwks_refresh"), &s.jwks_refresh)?,
        jwks_min_refetch: c.duration(&format!("{key}.jwks_min_refetch"), &s.jwks_min_refetch)?,
        http_timeout: c.positive_duration(&format!("{key}.http_timeout"), &s.http_timeout)?,
        logout_audiences,
        require_logout_typ: s.require_logout_typ,
        access_token_types,
        min_rsa_bits: s.min_rsa_bits as usize,
        ca_pem,
    })
}

/// The lowest `min_rsa_bits` an operator may set: 1024-bit keys of legacy
/// providers, never less (512-bit RSA is factored in hours).
const LEAST_RSA_BITS: u32 = 1024;
/// The highest `min_rsa_bits`: the largest modulus aws-lc verifies.
const MOST_RSA_BITS: u32 = 8192;

/// A JWKS file must be readable and hold a JSON object with a `keys` array
/// now, not only at the first key refresh (which would leave the gateway
/// running without keys). Its keys are judged when they load.
fn check_jwks_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let document: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if !document
        .get("keys")
        .is_some_and(serde_json::Value::is_array)
    {
        return Err(format!(
            "{} is not a JWKS (a JSON object with a `keys` array)",
            path.display()
        ));
    }
    Ok(())
}
