//! Arbitrary text as a configuration file: TOML parsing, the schema and the
//! validation pass (`Config::from_toml`, what `check-config` and start-up run).
//!
//! Properties: nothing panics; an error is one non-empty line; an accepted
//! configuration's effective TOML (what `check-config` prints) is itself
//! accepted and describes the same pools, routes and issuers.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use session_gateway::config::Config;

/// Environment variables a configuration may name (admin token, upstream
/// credentials, Redis password): some exist, the rest do not.
fn env(name: &str) -> Option<String> {
    match name {
        "FUZZ_SECRET" | "ADMIN_TOKEN" | "ERP_API_KEY" | "REDIS_PASSWORD" => {
            Some("s3cr3t-value-0123456789abcdef".into())
        }
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths (jwks_file, TLS files) resolve in a directory that
    // does not exist: validation must say so, not fail otherwise.
    let base = Path::new("/nonexistent/fuzz-config");
    match Config::from_toml(text, "<fuzz>", base, &env) {
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains('\n'), "multi-line error: {message:?}");
        }
        Ok(config) => {
            let effective = config.effective_toml();
            let again = Config::from_toml(&effective, "<effective>", base, &env)
                .unwrap_or_else(|e| panic!("effective configuration refused: {e}\n{effective}"));
            assert_eq!(config.pools.len(), again.pools.len());
            for (a, b) in config.pools.iter().zip(&again.pools) {
                assert_eq!(a.name, b.name);
                assert_eq!(a.limit, b.limit);
            }
            assert_eq!(config.routes.len(), again.routes.len());
            for (a, b) in config.routes.iter().zip(&again.routes) {
                assert_eq!(a.path_prefix, b.path_prefix);
                assert_eq!(a.host, b.host);
                assert_eq!(a.policy, b.policy);
            }
            assert_eq!(config.issuers.len(), again.issuers.len());
            for (a, b) in config.issuers.iter().zip(&again.issuers) {
                assert_eq!(a.issuer, b.issuer);
                assert_eq!(a.keys, b.keys);
            }
            assert_eq!(config.server.listen, again.server.listen);
        }
    }
});
