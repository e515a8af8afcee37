//! Revocations: refusals of tokens that verify but must not be admitted
//! (a logout, an operator's revocation), as the stores keep and share them,
//! and the news a shared store passes on when the fleet records one.
//!
//! The values and their stored text form live here, beside the sessions,
//! because the stores check them inside each admission; the instance's own
//! mirror of the list is `auth::revocation`.

use std::sync::Arc;

use super::identity::{self, SubjectKey};
use crate::clock::UnixMillis;

/// What a shared store hears about revocations.
#[derive(Debug, Clone)]
pub enum RevocationNews {
    /// An instance recorded this revocation.
    Revoked(Revocation),
    /// The store (re)subscribed to the revocation channel: messages may have
    /// been missed meanwhile, so the list should be fetched again.
    Resubscribed,
}

/// Who hears [`RevocationNews`]; called on the store's own runtime, so it
/// must not block.
pub type RevocationListener = Arc<dyn Fn(RevocationNews) + Send + Sync>;

/// How long a subject-wide revocation stays in force: longer than any access
/// token lives, so every token issued before it has expired by then.
pub const SUBJECT_REVOCATION_TTL_MS: u64 = 24 * 3600 * 1000;

/// A refusal of tokens that are otherwise valid, shared by the fleet until
/// it lapses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// One token, by its `jti` (or the SHA-256 of the token when it has
    /// none), until it expires.
    Token {
        /// The token key.
        key: String,
        /// When the revocation lapses (the token's expiry).
        until_ms: UnixMillis,
    },
    /// Every token of a subject issued before `not_before_ms`.
    Subject {
        /// Issuer + subject: what tokens are matched by.
        subject: SubjectKey,
        /// The issuer and subject the key was derived from, so operators see
        /// whom the revocation concerns; `None` for revocations recorded by
        /// versions that stored only the key.
        named: Option<SubjectName>,
        /// Tokens issued (`iat`) before this are refused.
        not_before_ms: UnixMillis,
        /// When the revocation lapses.
        until_ms: UnixMillis,
    },
}

/// The issuer and subject (`iss`, `sub`) of a subject revocation, as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectName {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
}

/// How the [`Revocation::id`] of a subject revocation starts; the rest is
/// the hex subject key.
pub const SUBJECT_REVOCATION_ID_PREFIX: &str = "subject:";

impl Revocation {
    /// A revocation of every token of `subject` of `issuer` issued before
    /// `not_before_ms`, which keeps the names beside the key.
    pub fn of_subject(
        issuer: &str,
        subject: &str,
        not_before_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> Self {
        Revocation::Subject {
            subject: identity::subject_key(issuer, subject),
            named: Some(SubjectName {
                issuer: issuer.to_string(),
                subject: subject.to_string(),
            }),
            not_before_ms,
            until_ms,
        }
    }

    /// Whether it refuses a token: by the token's key, by the revocation key
    /// of its identity provider session (`sid:<sid key>`), or by its subject
    /// when it was issued before the subject's not-before (a token without
    /// `iat` counts as issued before). Lapse is the caller's to check.
    pub fn refuses(
        &self,
        token_key: &str,
        sid_revocation: Option<&str>,
        subject: Option<&SubjectKey>,
        issued_ms: Option<UnixMillis>,
    ) -> bool {
        match self {
            Revocation::Token { key, .. } => {
                key == token_key || sid_revocation == Some(key.as_str())
            }
            Revocation::Subject {
                subject: revoked,
                not_before_ms,
                ..
            } => subject == Some(revoked) && issued_ms.unwrap_or(0) < *not_before_ms,
        }
    }

    /// When it lapses.
    pub fn until_ms(&self) -> UnixMillis {
        match self {
            Revocation::Token { until_ms, .. } | Revocation::Subject { until_ms, .. } => *until_ms,
        }
    }

    /// The stable id an operator deletes it by: a token revocation's key, or
    /// `subject:` and the hex subject key. Revocations of the same token or
    /// subject share their id whatever their times, so deleting by id lifts
    /// the refusal completely. The Redis store's `delete_revocation.lua`
    /// derives the same id from the encoded form.
    pub fn id(&self) -> String {
        match self {
            Revocation::Token { key, .. } => key.clone(),
            Revocation::Subject { subject, .. } => {
                format!("{SUBJECT_REVOCATION_ID_PREFIX}{}", subject.to_hex())
            }
        }
    }

    /// A compact text form (stored by the Redis store):
    /// `t|<until>|<key>` or `s|<until>|<subject key>|<not before>`, the
    /// latter followed by `|<issuer length>|<issuer><subject>` when the names
    /// are known. The length prefix lets issuer and subject hold any
    /// character, `|` included.
    pub fn encode(&self) -> String {
        match self {
            Revocation::Token { key, until_ms } => format!("t|{until_ms}|{key}"),
            Revocation::Subject {
                subject,
                named,
                not_before_ms,
                until_ms,
            } => {
                let mut text = format!("s|{until_ms}|{}|{not_before_ms}", subject.to_hex());
                if let Some(SubjectName { issuer, subject }) = named {
                    text.push_str(&format!("|{}|{issuer}{subject}", issuer.len()));
                }
                text
            }
        }
    }

    /// Parses [`Revocation::encode`]'s form, old subject revocations (no
    /// names) included. Names that do not hash to the stored key are
    /// dropped rather than shown: the key is what is enforced.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '|');
        let kind = parts.next()?;
        let until_ms = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        match kind {
            "t" => Some(Revocation::Token {
                key: rest.to_string(),
                until_ms,
            }),
            "s" => {
                let mut fields = rest.splitn(4, '|');
                let subject = identity::Digest32::from_hex(fields.next()?)?;
                let not_before_ms = fields.next()?.parse().ok()?;
                let named = match (fields.next(), fields.next()) {
                    (None, _) => None,
                    (Some(length), Some(names)) => {
                        let length: usize = length.parse().ok()?;
                        let issuer = names.get(..length)?;
                        let sub = names.get(length..)?;
                        (identity::subject_key(issuer, sub) == subject).then(|| SubjectName {
                            issuer: issuer.to_string(),
                            subject: sub.to_string(),
                        })
                    }
                    (Some(_), None) => return None,
                };
                Some(Revocation::Subject {
                    subject,
                    named,
                    not_before_ms,
                    until_ms,
                })
            }
            _ => None,
        }
    }
}
