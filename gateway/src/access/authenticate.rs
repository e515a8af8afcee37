//! Authentication: the bearer token of a request, verified and checked
//! against this instance's revocations, and the scopes a route requires.

use std::sync::Arc;

use super::{Access, Denial};
use crate::auth::{BearerError, Principal, TokenError, Verified, bearer_token};

impl Access {
    /// Verifies the bearer token of a request. `authorization` holds every
    /// `Authorization` header of the request; more than one is refused.
    pub async fn authenticate(
        &self,
        authorization: &[&[u8]],
    ) -> Result<(Arc<Principal>, Verified), Denial> {
        let header = match authorization {
            [] => return Err(Denial::MissingToken),
            [one] => *one,
            _ => {
                return Err(Denial::InvalidToken(
                    "more than one Authorization header".into(),
                ));
            }
        };
        let token = bearer_token(header).map_err(|e| match e {
            BearerError::NotBearer => Denial::MissingToken,
            BearerError::Malformed => {
                self.count_rejection("malformed");
                Denial::InvalidToken("malformed Authorization header".into())
            }
        })?;
        let verifier = self.verifier();
        match verifier.verify(token).await {
            Ok((principal, _))
                if self.revocations.is_revoked(
                    &principal,
                    &principal.token_key,
                    self.clock.now_ms(),
                ) =>
            {
                self.count_rejection("revoked");
                Err(Denial::InvalidToken(TokenError::Revoked.to_string()))
            }
            Ok((principal, how)) => {
                let source = match how {
                    Verified::Cached => "cache",
                    Verified::Checked => "signature",
                };
                self.metrics
                    .tokens_verified
                    .with_label_values(&[source])
                    .inc();
                Ok((principal, how))
            }
            Err(e) => {
                self.count_rejection(e.reason());
                Err(match e {
                    TokenError::IssuerUnavailable => Denial::IssuerUnavailable,
                    other => Denial::InvalidToken(other.to_string()),
                })
            }
        }
    }

    /// Refuses a principal that lacks any of the route's scopes.
    pub fn check_scopes(&self, principal: &Principal, required: &[String]) -> Result<(), Denial> {
        let granted = principal.claims.scopes();
        if required.iter().all(|s| granted.contains(&s.as_str())) {
            Ok(())
        } else {
            Err(Denial::InsufficientScope(required.to_vec()))
        }
    }

    /// Counts a refused token by reason.
    pub(super) fn count_rejection(&self, reason: &str) {
        self.metrics
            .token_rejections
            .with_label_values(&[reason])
            .inc();
    }
}
