//! The bearer token of an `Authorization` header (RFC 6750 §2.1).

/// Reads the token of an `Authorization` header: the `Bearer` scheme,
/// case-insensitive (RFC 7235 §2.1), exactly one space-separated token.
pub fn bearer_token(authorization: &[u8]) -> Result<&str, BearerError> {
    let text = std::str::from_utf8(authorization).map_err(|_| BearerError::Malformed)?;
    let (scheme, rest) = text.split_once(' ').ok_or(BearerError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// A problem with the `Authorization` header itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Another scheme (Basic, …) or no scheme: no bearer token was presented.
    #[error("no bearer token")]
    NotBearer,
    /// `Bearer` with an empty or malformed credential.
    #[error("malformed Authorization header")]
    Malformed,
}
