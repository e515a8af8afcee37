//! The payload of a verified token.
//!
//! [`Claims`] keeps claims as JSON so identity rules, pool rules and header
//! mappings can name any claim, and offers typed accessors for the registered
//! ones. It is a sorted, exactly sized slice rather than a map: a verified
//! token is cached with its claims, and a B-tree node reserves room for eleven
//! entries whatever the token holds.
//!
//! Parsing refuses a payload that names a claim twice: JSON parsers disagree
//! on which duplicate wins, and a token whose `sub` means one thing to the
//! issuer and another to us is an attack, not a token.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The claims of a token, sorted by name, each name once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Box<[(Box<str>, Value)]>);

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueKeys;

        impl<'de> Visitor<'de> for UniqueKeys {
            type Value = Claims;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut claims: Vec<(Box<str>, Value)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    claims.push((name.into_boxed_str(), value));
                }
                claims.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if let Some(pair) = claims.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                    return Err(de::Error::custom(format_args!(
                        "claim `{}` appears twice",
                        pair[0].0
                    )));
                }
                Ok(Claims(claims.into_boxed_slice()))
            }
        }

        deserializer.deserialize_map(UniqueKeys)
    }
}

impl Claims {
    /// Claims from a JSON object (tests, the devkit).
    pub fn from_map(map: serde_json::Map<String, Value>) -> Self {
        let mut claims: Vec<(Box<str>, Value)> = map
            .into_iter()
            .map(|(name, value)| (name.into_boxed_str(), value))
            .collect();
        claims.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Claims(claims.into_boxed_slice())
    }

    /// Keeps only the claims `keep` accepts by name.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        if self.0.iter().all(|(name, _)| keep(name)) {
            return;
        }
        let kept: Vec<(Box<str>, Value)> = std::mem::take(&mut self.0)
            .into_vec()
            .into_iter()
            .filter(|(name, _)| keep(name))
            .collect();
        self.0 = kept.into_boxed_slice();
    }

    /// The names of the claims, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| &**name)
    }

    /// A claim by its exact name.
    fn exact(&self, name: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// A claim by name; a dotted name (`realm_access.roles`) also walks into
    /// nested objects when no claim has that exact name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.exact(name) {
            return Some(v);
        }
        let mut parts = name.split('.');
        let mut current = self.exact(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }

    /// A string claim.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// The values of a claim for matching and headers: a string, the strings
    /// of an array, or the text of a number or boolean.
    pub fn values(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(v) => scalar_text(v).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Whether the claim exists (and is not JSON `null`).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_null())
    }

    /// `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.str("iss")
    }

    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.str("sub")
    }

    /// The OAuth client: `client_id`, else `azp`.
    pub fn client(&self) -> Option<&str> {
        self.str("client_id").or_else(|| self.str("azp"))
    }

    /// `jti`.
    pub fn token_id(&self) -> Option<&str> {
        self.str("jti")
    }

    /// A NumericDate claim in whole seconds (fractions are truncated).
    /// `Err` if present but not a number. A value beyond `i64` (`1e300`,
    /// `u64::MAX`) saturates to `i64::MIN` or `i64::MAX` (Rust's float to
    /// integer `as` saturates): callers compare it with saturating
    /// arithmetic, so no date, however extreme, wraps into a valid one.
    pub fn numeric_date(&self, name: &str) -> Result<Option<i64>, String> {
        match self.exact(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| format!("claim `{name}` is not a valid date")),
            Some(_) => Err(format!("claim `{name}` must be a number of seconds")),
        }
    }

    /// `aud` as a list (a single string is a list of one).
    pub fn audiences(&self) -> Vec<&str> {
        match self.exact("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Granted scopes: the space-separated `scope` string, or `scp` as a
    /// string or array (Azure AD style).
    pub fn scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = Vec::new();
        for name in ["scope", "scp"] {
            match self.exact(name) {
                Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace()),
                Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
                _ => {}
            }
        }
        scopes
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Claims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn duplicate_claims_are_refused() {
        let err = parse(r#"{"sub":"alice","sub":"root"}"#).unwrap_err();
        assert!(
            err.to_string().contains("claim `sub` appears twice"),
            "{err}"
        );
    }

    #[test]
    fn non_object_payloads_are_refused() {
        assert!(parse("[1,2]").is_err());
        assert!(parse("\"sub\"").is_err());
    }

    #[test]
    fn accessors_read_registered_claims() {
        let c = parse(
            r#"{"iss":"https://idp","sub":"alice","azp":"erp-web","aud":["a","b"],
                "exp":1700000000.9,"scope":"erp.read erp.write","scp":["x"],
                "realm_access":{"roles":["cfo","user"]},"n":3}"#,
        )
        .unwrap();
        assert_eq!(c.issuer(), Some("https://idp"));
        assert_eq!(c.subject(), Some("alice"));
        assert_eq!(c.client(), Some("erp-web"));
        assert_eq!(c.audiences(), vec!["a", "b"]);
        assert_eq!(c.numeric_date("exp"), Ok(Some(1_700_000_000)));
        assert_eq!(c.numeric_date("nbf"), Ok(None));
        assert_eq!(c.scopes(), vec!["erp.read", "erp.write", "x"]);
        assert_eq!(c.values("realm_access.roles"), vec!["cfo", "user"]);
        assert_eq!(c.values("n"), vec!["3"]);
        assert!(c.values("missing").is_empty());
    }

    #[test]
    fn retain_keeps_only_the_named_claims_in_order() {
        let mut c = parse(r#"{"sub":"alice","email":"a@x","iss":"i","aud":"erp"}"#).unwrap();
        assert_eq!(
            c.names().collect::<Vec<_>>(),
            ["aud", "email", "iss", "sub"]
        );
        c.retain(|name| name != "email" && name != "aud");
        assert_eq!(c.names().collect::<Vec<_>>(), ["iss", "sub"]);
        assert_eq!(c.subject(), Some("alice"));
        assert_eq!(c.get("email"), None);
    }

    #[test]
    fn dates_at_the_extremes_saturate_and_never_fail_open() {
        let date = |json: &str| parse(json).unwrap().numeric_date("exp");
        assert_eq!(date(r#"{"exp":9007199254740992}"#), Ok(Some(1 << 53)));
        assert_eq!(date(r#"{"exp":1e16}"#), Ok(Some(10_000_000_000_000_000)));
        assert_eq!(date(r#"{"exp":2e16}"#), Ok(Some(20_000_000_000_000_000)));
        assert_eq!(date(r#"{"exp":1e300}"#), Ok(Some(i64::MAX)));
        assert_eq!(date(r#"{"exp":18446744073709551615}"#), Ok(Some(i64::MAX)));
        assert_eq!(date(r#"{"exp":-1}"#), Ok(Some(-1)));
        assert_eq!(date(r#"{"exp":-1e300}"#), Ok(Some(i64::MIN)));
        assert_eq!(date(r#"{"exp":-0.5}"#), Ok(Some(0)));
        assert_eq!(date(r#"{"exp":1700000000.999}"#), Ok(Some(1_700_000_000)));
        assert!(date(r#"{"exp":"1e16"}"#).is_err());
        assert!(date(r#"{"exp":true}"#).is_err());
    }

    #[test]
    fn client_id_wins_over_azp_and_bad_dates_are_errors() {
        let c = parse(r#"{"client_id":"svc","azp":"web","iat":"yesterday","aud":"one"}"#).unwrap();
        assert_eq!(c.client(), Some("svc"));
        assert!(c.numeric_date("iat").is_err());
        assert_eq!(c.audiences(), vec!["one"]);
    }
}
