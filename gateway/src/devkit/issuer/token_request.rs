//! [`TokenRequest`]: the description of a token to mint, with the defaults
//! of the `POST /token` form and builder methods for tests.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::{DEFAULT_AUDIENCE, DEFAULT_CLIENT_ID, DEFAULT_EXPIRES_IN, DEFAULT_SCOPE};

/// The description of a token for [`IssuerHandle::mint`]; the fields mirror
/// the `POST /token` form. Build it with [`TokenRequest::new`] and the
/// builder methods.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRequest {
    /// `sub`.
    pub username: String,
    /// `client_id` and `azp`.
    pub client_id: String,
    /// `scope`, space-separated.
    pub scope: String,
    /// `exp - iat` in seconds; negative for a token that is already expired.
    pub expires_in: i64,
    /// The signing algorithm (and so the key).
    pub alg: Algorithm,
    /// `aud`.
    pub audience: String,
    /// Claims merged over the defaults: a value replaces the default claim of
    /// that name, `null` removes it.
    pub extra: Map<String, Value>,
    /// The `typ` header; `None` leaves it out.
    pub typ: Option<String>,
}

impl TokenRequest {
    /// A token for `username` with the defaults: client [`DEFAULT_CLIENT_ID`],
    /// scope [`DEFAULT_SCOPE`], audience [`DEFAULT_AUDIENCE`],
    /// [`DEFAULT_EXPIRES_IN`] seconds, RS256.
    #[must_use]
    pub fn new(username: impl Into<String>) -> Self {
        TokenRequest {
            username: username.into(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            expires_in: DEFAULT_EXPIRES_IN,
            alg: Algorithm::RS256,
            audience: DEFAULT_AUDIENCE.to_owned(),
            extra: Map::new(),
            typ: Some("JWT".to_owned()),
        }
    }

    /// Sets the `typ` header (`JWT` by default): `at+jwt`, `logout+jwt`,
    /// `Bearer` as Keycloak sends it, or `None` for no `typ` at all.
    #[must_use]
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(str::to_owned);
        self
    }

    /// Sets `client_id` (and `azp`).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sets `scope`.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Sets the lifetime in seconds; negative means already expired.
    #[must_use]
    pub fn expires_in(mut self, seconds: i64) -> Self {
        self.expires_in = seconds;
        self
    }

    /// Sets the signing algorithm.
    #[must_use]
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Sets `aud`.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Sets claim `name` to `value`, replacing a default claim of that name.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Leaves claim `name` out of the token.
    #[must_use]
    pub fn without_claim(mut self, name: impl Into<String>) -> Self {
        self.extra.insert(name.into(), Value::Null);
        self
    }
}
