//! The listeners' certificates chosen by the host name a client asks for
//! (SNI, `[server] tls.certificates`): an exact name first, then a wildcard
//! of its parent domain, else the default certificate (`tls.cert`), which
//! also serves clients that name no host.

use std::collections::HashMap;
use std::sync::Arc;

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    ClientHello, CryptoProvider, ResolvesServerCert, install_default_crypto_provider,
    load_certs_and_key_files,
};

use crate::config::TlsFiles;

/// The certificates of the TLS listeners, by name.
#[derive(Debug)]
pub struct CertificatesByName {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By parent domain: `*.erp.example.com` is kept under `erp.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertificatesByName {
    /// Loads every certificate (checked by the configuration's validation
    /// already; a failure here is still an error, never a panic).
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let load = |cert: &std::path::Path, key: &std::path::Path| {
            certified_key(&cert.display().to_string(), &key.display().to_string())
        };
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for named in &files.by_name {
            let key = load(&named.cert, &named.key)?;
            for name in &named.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), Arc::clone(&key)),
                    None => exact.insert(name.clone(), Arc::clone(&key)),
                };
            }
        }
        Ok(Self {
            exact,
            wildcard,
            default: load(&files.cert, &files.key)?,
        })
    }

    /// The certificate for a host name (lowercase, as rustls passes it).
    fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return Arc::clone(&self.default);
        };
        if let Some(key) = self.exact.get(&name) {
            return Arc::clone(key);
        }
        // A wildcard covers exactly one label.
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .map_or_else(|| Arc::clone(&self.default), Arc::clone)
    }
}

impl ResolvesServerCert for CertificatesByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

/// A certificate chain and its key, ready to sign handshakes.
fn certified_key(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    let (chain, private_key) = match load_certs_and_key_files(cert, key) {
        Ok(Some(pair)) => pair,
        Ok(None) => return Err(format!("{cert} / {key}: no certificate chain or key")),
        Err(e) => return Err(format!("cannot load {cert} / {key}: {e}")),
    };
    install_default_crypto_provider();
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider installed".to_string())?;
    let signing = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| format!("the key in {key}: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(
        dir: &std::path::Path,
        name: &str,
        hosts: &[&str],
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(hosts).unwrap();
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn exact_names_then_one_label_wildcards_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "default", &["localhost"]);
        let (a_cert, a_key) = pair(dir.path(), "a", &["a.example.test"]);
        let (w_cert, w_key) = pair(dir.path(), "w", &["*.erp.example.test"]);
        let files = TlsFiles {
            cert,
            key,
            by_name: vec![
                crate::config::NamedCertificate {
                    names: vec!["a.example.test".into()],
                    cert: a_cert,
                    key: a_key,
                },
                crate::config::NamedCertificate {
                    names: vec!["*.erp.example.test".into()],
                    cert: w_cert,
                    key: w_key,
                },
            ],
        };
        let certs = CertificatesByName::load(&files).unwrap();
        let chain = |name: Option<&str>| certs.for_name(name).cert[0].clone();
        let (default, a, w) = (
            certs.default.cert[0].clone(),
            certs.exact["a.example.test"].cert[0].clone(),
            certs.wildcard["erp.example.test"].cert[0].clone(),
        );
        assert_ne!(default, a);
        assert_eq!(chain(Some("A.Example.Test")), a);
        assert_eq!(chain(Some("a.example.test.")), a);
        assert_eq!(chain(Some("eu.erp.example.test")), w);
        assert_eq!(
            chain(Some("x.eu.erp.example.test")),
            default,
            "one label only"
        );
        assert_eq!(chain(Some("erp.example.test")), default);
        assert_eq!(chain(None), default);
    }
}
