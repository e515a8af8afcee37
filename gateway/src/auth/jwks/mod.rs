//! An issuer's signing keys: where they come from, how they are cached and
//! when they are fetched again.
//!
//! Keys are loaded from OIDC discovery, a `jwks_uri` or a local `jwks_file`,
//! and held in an [`ArcSwapOption`] so the hot path reads them without a lock.
//! They are refreshed periodically (by the server's JWKS background service);
//! a failed refresh keeps the old keys (stale-if-error). A token whose `kid`
//! is unknown triggers one refetch, single-flight and at most once per
//! `jwks_min_refetch`, so a key rotation is picked up at once while a flood of
//! made-up `kid`s cannot turn the gateway into a load generator against the
//! issuer.
//!
//! Keys the gateway cannot use safely are dropped when loading: symmetric
//! (`oct`) keys, keys marked for encryption, and keys of a kind we do not know.
//! So are weak public keys ([`KeyRejection`]): an RSA modulus under 2048 bits
//! or an even or tiny exponent, an EC point that is not on its curve, and an
//! Ed25519 key of small order — the identity point, for one, "verifies" the
//! signature `R = identity, S = 0` over any message. Each refused key is
//! logged with its `kid` when the document is loaded.
//!
//! Each key is parsed into an aws-lc public key once per load, for every
//! algorithm it may verify, so a signature check does not rebuild the key (for
//! RSA, its Montgomery context) on every token.
//!
//! This module holds an issuer's keys and fetches them; `keys.rs` turns one
//! JWKS document into the [`KeySet`] of keys fit to verify with.

mod keys;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;

use crate::clock::SharedClock;
use crate::config::{IssuerConfig, KeySource};
pub use keys::{KeyRejection, KeySet, MIN_RSA_BITS, VerificationKey, algorithm_name};

/// Why keys could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The discovery or JWKS request failed.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The JWKS file could not be read.
    #[error("reading {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The document is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

/// The keys of one issuer, with their refresh logic.
pub struct IssuerKeys {
    config: Arc<IssuerConfig>,
    current: ArcSwapOption<KeySet>,
    /// Serialises fetches; holds when the last refetch for an unknown key
    /// started (periodic refreshes do not count against that rate limit).
    fetch_gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped on every successful load, so waiters of a single-flight fetch
    /// see that someone else already refreshed.
    generation: AtomicU64,
    failures: AtomicU64,
    http: reqwest::Client,
    clock: SharedClock,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.config.issuer)
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Keys for an issuer, not loaded yet.
    pub fn new(config: Arc<IssuerConfig>, clock: SharedClock) -> Result<Self, JwksError> {
        let mut http = reqwest::Client::builder();
        if let Some(pem) = &config.ca_pem {
            // A private CA: it alone is trusted for this issuer.
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| JwksError::Invalid(format!("ca_file: {e}")))?;
            http = http.tls_built_in_root_certs(false);
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        let http = http
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            // Fetches are rare and may run on any of the server's runtimes;
            // pooled connections would be tied to the runtime that opened them.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("session-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JwksError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            current: ArcSwapOption::empty(),
            fetch_gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            http,
            clock,
        })
    }

    /// The issuer's configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The current keys, if they were ever loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Whether keys were ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Failed fetches so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Fetches the keys now (periodic refresh). On failure the old keys stay.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        let _gate = self.fetch_gate.lock().await;
        self.fetch_and_store().await
    }

    /// Fetches again because a token named a key we do not have. Returns the
    /// keys to retry with, or `None` when the refetch is rate-limited or fails.
    /// Concurrent callers share one fetch.
    pub async fn refetch_for_unknown_key(&self) -> Option<Arc<KeySet>> {
        let seen = self.generation.load(Ordering::Acquire);
        let mut gate = self.fetch_gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Someone refreshed while we waited for the gate.
            return self.keys();
        }
        if let Some(last) = *gate
            && last.elapsed() < self.config.jwks_min_refetch
        {
            return None;
        }
        *gate = Some(Instant::now());
        match self.fetch_and_store().await {
            Ok(keys) => Some(keys),
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "JWKS refetch failed");
                None
            }
        }
    }

    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, JwksError> {
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                if set.skipped > 0 {
                    tracing::warn!(
                        issuer = %self.config.issuer,
                        skipped = set.skipped,
                        "JWKS holds keys that cannot verify signatures; they are ignored"
                    );
                }
                self.current.store(Some(Arc::clone(&set)));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(set)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let document = match &self.config.keys {
            KeySource::JwksFile(path) => read_file(path).await?,
            KeySource::JwksUri(url) => self.get(url.as_str()).await?,
            KeySource::Discovery(url) => {
                let jwks_uri = self.discover(url.as_str()).await?;
                self.get(&jwks_uri).await?
            }
        };
        KeySet::parse(&document, self.clock.now_ms(), self.config.min_rsa_bits)
    }

    async fn discover(&self, url: &str) -> Result<String, JwksError> {
        let body = self.get(url).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            JwksError::Invalid(format!("discovery document {url} is not JSON: {e}"))
        })?;
        // OpenID Connect Discovery §4.3: the document must name the issuer we
        // asked about, or we would trust keys of someone else.
        let named = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if named != self.config.issuer {
            return Err(JwksError::Invalid(format!(
                "discovery document {url} names issuer `{named}`, expected `{}`",
                self.config.issuer
            )));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| JwksError::Invalid(format!("discovery document {url} has no jwks_uri")))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        Ok(body.to_vec())
    }

    /// How long to wait before the next periodic refresh: the configured
    /// interval once loaded, quick retries (capped) while never loaded.
    pub fn next_refresh_in(&self, consecutive_failures: u32) -> Duration {
        if self.is_loaded() {
            return self.config.jwks_refresh;
        }
        let backoff =
            Duration::from_millis(250u64.saturating_mul(1 << consecutive_failures.min(6)));
        backoff.min(self.config.jwks_refresh)
    }
}

/// Keeps an issuer's keys fresh until `shutdown` turns true: loads them at
/// once, retries quickly while they were never loaded, then refreshes every
/// `jwks_refresh`. A failed refresh keeps the previous keys.
pub async fn keep_fresh(
    issuer: Arc<IssuerKeys>,
    metrics: Arc<crate::telemetry::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        let result = issuer.refresh().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics
            .jwks_refreshes
            .with_label_values(&[issuer.config.issuer.as_str(), outcome])
            .inc();
        match result {
            Ok(keys) => {
                failures = 0;
                tracing::debug!(issuer = %issuer.config.issuer, keys = keys.len(), "JWKS loaded");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    issuer = %issuer.config.issuer,
                    %error,
                    stale = issuer.is_loaded(),
                    "JWKS refresh failed"
                );
            }
        }
        let wait = issuer.next_refresh_in(failures);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, JwksError> {
    tokio::fs::read(path).await.map_err(|e| JwksError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
