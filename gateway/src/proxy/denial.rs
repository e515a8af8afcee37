//! How each [`Denial`] of the access decision is worded over HTTP: its
//! problem code and status, the RFC 6750 challenge, `Retry-After`. The one
//! place where the domain's reasons become responses.

use std::time::Duration;

use super::problem::{ErrorCode, Problem};
use crate::access::Denial;
use crate::session::Refusal;

/// How long a client is told to wait before retrying when the issuer's keys
/// could not be loaded.
const ISSUER_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a client is told to wait before retrying when the store failed.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The configured parts of the wording (a live reload may change them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wording {
    /// The realm of `WWW-Authenticate` challenges (`server.realm`).
    pub realm: String,
    /// The status of the `license_unavailable` refusal
    /// (`sessions.license_unavailable_status`).
    pub license_unavailable_status: u16,
}

/// The problem response of a denial.
pub fn problem(denial: &Denial, wording: &Wording) -> Problem {
    let realm = wording.realm.as_str();
    match denial {
        Denial::MissingToken => Problem::missing_token(realm),
        Denial::InvalidToken(reason) => Problem::invalid_token(realm, reason),
        Denial::InsufficientScope(required) => Problem::insufficient_scope(realm, required),
        Denial::IssuerUnavailable => Problem::new(
            ErrorCode::IssuerUnavailable,
            "the signing keys of the token's issuer could not be loaded; try again shortly",
        )
        .retry_after(ISSUER_RETRY_AFTER),
        Denial::NoPool => Problem::new(ErrorCode::NoPool, "no license pool accepts this token"),
        Denial::Refused { pool, refusal } => refusal_problem(pool, refusal, wording),
        Denial::StoreUnavailable => Problem::new(
            ErrorCode::StoreUnavailable,
            "the session store is unavailable; no new session can be opened",
        )
        .retry_after(STORE_RETRY_AFTER),
        Denial::TokenShared => Problem::new(
            ErrorCode::TokenShared,
            "this session is already used from as many client addresses and user agents as its \
             pool allows; this client is refused",
        ),
        Denial::ClientLeft => Problem::new(
            ErrorCode::ClientClosedRequest,
            "the client went away while its request waited for a seat",
        ),
    }
}

fn refusal_problem(pool: &str, refusal: &Refusal, wording: &Wording) -> Problem {
    match refusal {
        Refusal::PoolFull {
            limit,
            in_use,
            retry_after,
        } => Problem::new(
            ErrorCode::LicenseUnavailable,
            format!("MaximumLicenseCountExceeded: all {limit} seats of pool `{pool}` are in use"),
        )
        .with_status(wording.license_unavailable_status)
        .with("pool", pool)
        .with("limit", *limit)
        .with("in_use", *in_use)
        .retry_after(*retry_after),
        Refusal::QueueFull {
            limit,
            in_use,
            waiting,
            retry_after,
        } => Problem::new(
            ErrorCode::LicenseUnavailable,
            format!(
                "MaximumLicenseCountExceeded: all {limit} seats of pool `{pool}` are in use and \
                 {waiting} callers already wait for one, as many as its queue holds"
            ),
        )
        .with_status(wording.license_unavailable_status)
        .with("pool", pool)
        .with("limit", *limit)
        .with("in_use", *in_use)
        .with("waiting", *waiting)
        .retry_after(*retry_after),
        Refusal::QueueTimeout { limit, retry_after } => Problem::new(
            ErrorCode::LicenseUnavailable,
            format!(
                "MaximumLicenseCountExceeded: all {limit} seats of pool `{pool}` stayed in use \
                 for as long as its queue lets a caller wait"
            ),
        )
        .with_status(wording.license_unavailable_status)
        .with("pool", pool)
        .with("limit", *limit)
        .retry_after(*retry_after),
        Refusal::Revoked => Problem::invalid_token(
            &wording.realm,
            &crate::auth::TokenError::Revoked.to_string(),
        ),
        Refusal::SubjectLimit { limit, retry_after } => Problem::new(
            ErrorCode::SessionLimit,
            format!("this user already holds {limit} session(s) in pool `{pool}`"),
        )
        .with("pool", pool)
        .with("limit", *limit)
        .retry_after(*retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wording() -> Wording {
        Wording {
            realm: "erp".into(),
            license_unavailable_status: 503,
        }
    }

    #[test]
    fn a_full_pool_is_worded_with_the_configured_status_and_its_numbers() {
        let denial = Denial::Refused {
            pool: "default".into(),
            refusal: Refusal::PoolFull {
                limit: 2,
                in_use: 2,
                retry_after: Duration::from_secs(61),
            },
        };
        let p = problem(&denial, &wording());
        assert_eq!((p.status, p.code), (503, ErrorCode::LicenseUnavailable));
        assert_eq!(p.retry_after, Some(61));
        assert_eq!(p.extra.get("in_use"), Some(&serde_json::json!(2)));
    }

    #[test]
    fn token_denials_carry_the_realm_in_their_challenge() {
        let p = problem(&Denial::MissingToken, &wording());
        assert_eq!(p.status, 401);
        assert_eq!(p.www_authenticate.as_deref(), Some("Bearer realm=\"erp\""));
        let p = problem(
            &Denial::InsufficientScope(vec!["erp.read".into()]),
            &wording(),
        );
        assert_eq!((p.status, p.code), (403, ErrorCode::InsufficientScope));
        assert!(p.www_authenticate.is_some_and(|c| c.contains("erp.read")));
    }

    #[test]
    fn failures_of_parts_ask_for_a_retry() {
        for (denial, code) in [
            (Denial::StoreUnavailable, ErrorCode::StoreUnavailable),
            (Denial::IssuerUnavailable, ErrorCode::IssuerUnavailable),
        ] {
            let p = problem(&denial, &wording());
            assert_eq!((p.status, p.code), (503, code));
            assert!(p.retry_after.is_some());
        }
    }
}
