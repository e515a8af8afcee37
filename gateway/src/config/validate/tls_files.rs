//! Certificate and key files named by the configuration (Redis TLS, an
//! issuer's CA bundle, an upstream's CA bundle and client certificate):
//! read and checked at validation, so a missing or malformed file is
//! refused by `check-config` and before the gateway serves, with its key
//! path, never found at the first connection.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Check;
use crate::config::{ConfigError, Secret};

/// A file of one or more PEM certificates, read and checked; its text.
pub(super) fn pem_certificates(
    c: &Check,
    key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<Vec<u8>, ConfigError> {
    certificates(c, key, base_dir, path).map(|(pem, _)| pem)
}

/// A file of one or more PEM certificates, read and checked; each
/// certificate in DER, in file order.
pub(super) fn certificate_ders(
    c: &Check,
    key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    certificates(c, key, base_dir, path).map(|(_, ders)| ders)
}

fn certificates(
    c: &Check,
    key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), ConfigError> {
    let pem = read_file(c, key, base_dir, path)?;
    let ders = match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => return c.fail(key, format!("`{path}` holds no PEM certificate")),
        Err(e) => return c.fail(key, format!("`{path}` is not valid PEM ({e})")),
    };
    for (i, der) in ders.iter().enumerate() {
        // The TLS layer parses each certificate again when it connects;
        // what it cannot parse is refused here.
        if let Err(e) = x509_parser::parse_x509_certificate(der.as_ref()) {
            return c.fail(
                key,
                format!("certificate {} of `{path}` is not X.509 ({e})", i + 1),
            );
        }
    }
    Ok((pem, ders.into_iter().map(|d| d.as_ref().to_vec()).collect()))
}

/// A file holding one PEM private key (PKCS#8, PKCS#1 or SEC1), its text.
pub(super) fn pem_private_key(
    c: &Check,
    key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<Secret, ConfigError> {
    let pem = read_file(c, key, base_dir, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return c.fail(
            key,
            format!("`{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"),
        );
    }
    match String::from_utf8(pem) {
        Ok(text) => Ok(Secret::new(text)),
        Err(_) => c.fail(key, format!("`{path}` is not PEM text")),
    }
}

/// A certificate and its key, both or neither: `(cert key, key key)` name
/// the two settings for the messages.
pub(super) fn client_identity(
    c: &Check,
    (cert_key, key_key): (&str, &str),
    (cert, private): (&Option<String>, &Option<String>),
    base_dir: &Path,
) -> Result<Option<(Vec<u8>, Secret)>, ConfigError> {
    match (cert, private) {
        (None, None) => Ok(None),
        (Some(_), None) => c.fail(
            key_key,
            format!("is needed with {cert_key} (the client certificate's private key)"),
        ),
        (None, Some(_)) => c.fail(
            cert_key,
            format!("is needed with {key_key} (the certificate of that key)"),
        ),
        (Some(cert), Some(private)) => Ok(Some((
            pem_certificates(c, cert_key, base_dir, cert)?,
            pem_private_key(c, key_key, base_dir, private)?,
        ))),
    }
}

fn read_file(c: &Check, key: &str, base_dir: &Path, path: &str) -> Result<Vec<u8>, ConfigError> {
    let full = base_dir.join(path);
    std::fs::read(&full).or_else(|e| c.fail(key, format!("cannot read {}: {e}", full.display())))
}
