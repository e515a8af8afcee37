//! The admin API under `/admin/v1` (docs/design.md §6): list, inspect and close
//! sessions, and see the seat use of every pool. Every request needs the
//! admin bearer token ([`AdminGate`]); every answer is JSON, every failure a
//! problem document ([`AdminError`]). The shapes are documented in
//! `docs/admin-api.md` and shared with the `session-gateway admin` client
//! through the types of this module.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /sessions?pool=&subject=&limit=&cursor=` | [`SessionList`] |
//! | `GET /sessions/{id}` | [`SessionView`] |
//! | `DELETE /sessions/{id}` | the closed [`SessionView`] |
//! | `DELETE /subjects/{sub}/sessions?issuer=` | [`ClosedSessions`] |
//! | `GET /licenses` | [`Licenses`] |
//! | `GET /revocations` | [`Revocations`] |
//! | `POST /revocations` | [`RevocationRecorded`] (201) |
//! | `DELETE /revocations/{id}` | [`DeletedRevocations`] |
//! | `GET /audit?after=&before=&pool=&subject=&event=&limit=` | [`super::audit::AuditList`] |
//! | `GET /usage…` | [`super::usage`]: usage history, peaks, monthly summary |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 ([`super::openapi`]) |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};

use super::error::AdminError;
use super::gate::AdminGate;
use super::pagination::{self, Cursor};
use crate::access::Access;
use crate::session::{Revocation, SUBJECT_REVOCATION_TTL_MS, SessionFilter, SessionView};

/// Where the API is mounted on the admin listener.
pub const PREFIX: &str = "/admin/v1";
/// Page size of `GET /sessions` without `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` of `GET /sessions`.
pub const MAX_LIMIT: usize = 1000;
/// The longest session id looked up (ids are 32 to 38 characters).
const MAX_SESSION_ID: usize = 64;

/// `GET /sessions`: one page of open sessions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The sessions of this page.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `DELETE /subjects/{sub}/sessions`: what was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedSessions {
    /// The sessions closed, oldest first.
    pub closed: Vec<SessionView>,
    /// How many.
    pub count: usize,
}

/// `GET /licenses`: seat use per pool, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licenses {
    /// One entry per pool.
    pub pools: Vec<PoolSeats>,
}

/// Seat use of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSeats {
    /// The pool's name.
    pub pool: String,
    /// Its seat limit, reserved seats included.
    pub limit: u32,
    /// Seats reserved for named groups.
    pub reserved: u32,
    /// Seats held by open sessions.
    pub in_use: u32,
    /// `limit - in_use` (never negative).
    pub free: u32,
    /// Callers waiting for a seat in the pool's queue (0 without one; absent
    /// from servers before the queue, hence the default).
    #[serde(default)]
    pub waiting: u32,
}

/// A revocation as the API shows it. Times are RFC 3339 UTC with
/// milliseconds; members that do not apply to its kind are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationView {
    /// What `DELETE /revocations/{id}` takes: the token id, or `subject:`
    /// and the subject key.
    pub id: String,
    /// `token` or `subject`.
    pub kind: String,
    /// The token's `jti` (or key), for `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The subject's issuer, for `subject` (absent for revocations recorded
    /// by versions that kept only the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The subject (`sub`), for `subject` (absent like `issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The hex key of issuer and subject, for `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key: Option<String>,
    /// Tokens issued before this are refused, for `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// When the revocation lapses.
    pub until: String,
}

impl From<&Revocation> for RevocationView {
    fn from(r: &Revocation) -> Self {
        let at = crate::clock::rfc3339_ms;
        match r {
            Revocation::Token { key, until_ms } => RevocationView {
                id: r.id(),
                kind: "token".into(),
                token_id: Some(key.clone()),
                issuer: None,
                subject: None,
                subject_key: None,
                not_before: None,
                until: at(*until_ms),
            },
            Revocation::Subject {
                subject,
                named,
                not_before_ms,
                until_ms,
            } => RevocationView {
                id: r.id(),
                kind: "subject".into(),
                token_id: None,
                issuer: named.as_ref().map(|n| n.issuer.clone()),
                subject: named.as_ref().map(|n| n.subject.clone()),
                subject_key: Some(subject.to_hex()),
                not_before: Some(at(*not_before_ms)),
                until: at(*until_ms),
            },
        }
    }
}

/// `GET /revocations`: the revocations in force, soonest to lapse first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// The revocations.
    pub revocations: Vec<RevocationView>,
}

/// `POST /revocations`: the revocation as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecorded {
    /// The revocation.
    pub revocation: RevocationView,
}

/// `DELETE /revocations/{id}`: what was deleted (revocations of one token
/// or subject with different times share an id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedRevocations {
    /// The revocations deleted.
    pub deleted: Vec<RevocationView>,
    /// How many.
    pub count: usize,
}

/// What the handlers share.
pub(super) struct Api {
    pub(super) access: Arc<Access>,
    gate: AdminGate,
}

/// The routes under [`PREFIX`], behind the gate.
pub fn router(access: Arc<Access>, gate: AdminGate) -> Router {
    let api = Arc::new(Api { access, gate });
    Router::new()
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", get(get_session).delete(close_session))
        .route("/subjects/{sub}/sessions", delete(close_subject))
        .route("/licenses", get(licenses))
        .route("/revocations", get(list_revocations).post(revoke))
        .route("/revocations/{id}", delete(delete_revocation))
        .route("/audit", get(super::audit::read))
        .route("/usage", get(super::usage::history))
        .route("/usage/peaks", get(super::usage::peaks))
        .route("/usage/summary", get(super::usage::summary))
        .route("/openapi.json", get(super::openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Arc::clone(&api), admit))
        .with_state(api)
}

/// Lets a request through only with the admin token.
async fn admit(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    match api.gate.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            if error == AdminError::WrongToken {
                tracing::warn!(
                    method = %request.method(),
                    path = %request.uri().path(),
                    "admin API: request with a wrong admin token refused"
                );
            }
            error.into_response()
        }
    }
}

/// `GET /sessions`.
async fn list_sessions(
    State(api): State<Arc<Api>>,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let query = ListQuery::parse(query.as_deref(), &api)?;
    let sessions = api.access.sessions(&query.filter).await?;
    let page = pagination::page(sessions, query.cursor.as_ref(), query.limit);
    Ok(json(&SessionList {
        sessions: page.sessions.iter().map(|s| s.view()).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// `GET /sessions/{id}`.
async fn get_session(
    State(api): State<Arc<Api>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let id = session_id(id)?;
    match api.access.session(&id).await? {
        Some(session) => Ok(json(&session.view())),
        None => Err(AdminError::SessionNotFound(id)),
    }
}

/// `DELETE /sessions/{id}`: closes the session (reason `admin`).
async fn close_session(
    State(api): State<Arc<Api>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let id = session_id(id)?;
    match api.access.close_session(&id).await? {
        Some(closed) => Ok(json(&closed.session.view())),
        None => Err(AdminError::SessionNotFound(id)),
    }
}

/// `DELETE /subjects/{sub}/sessions?issuer=`: closes every session of the
/// subject, in every pool (reason `admin`).
async fn close_subject(
    State(api): State<Arc<Api>>,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    let Path(subject) = subject.map_err(|e| AdminError::bad_parameter("sub", e.body_text()))?;
    let params = params(query.as_deref(), &["issuer"])?;
    let issuer = api.issuer(params.get("issuer").map(String::as_str))?;
    let mut closed = api.access.close_subject(&issuer, &subject).await?;
    closed.sort_by(|a, b| {
        (a.session.created_ms, &a.session.id).cmp(&(b.session.created_ms, &b.session.id))
    });
    Ok(json(&ClosedSessions {
        count: closed.len(),
        closed: closed.iter().map(|c| c.session.view()).collect(),
    }))
}

/// `GET /licenses`.
async fn licenses(State(api): State<Arc<Api>>) -> Result<Response, AdminError> {
    let usage = api.access.usage().await?;
    Ok(json(&Licenses {
        pools: usage
            .into_iter()
            .map(|u| PoolSeats {
                free: u.limit.saturating_sub(u.in_use),
                pool: u.pool,
                limit: u.limit,
                reserved: u.reserved,
                in_use: u.in_use,
                waiting: u.waiting,
            })
            .collect(),
    }))
}

/// `POST /revocations` body: a token by id until a time, or every token of
/// a subject issued before a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRequest {
    /// A token's `jti`.
    token_id: Option<String>,
    /// With `token_id`: until when (RFC 3339), normally the token's `exp`.
    until: Option<String>,
    /// A subject (`sub`).
    subject: Option<String>,
    /// With `subject`: its issuer (default: the only configured one).
    issuer: Option<String>,
    /// With `subject`: tokens issued before this (RFC 3339) are refused
    /// (default: now).
    not_before: Option<String>,
}

pub(super) fn time_ms(parameter: &str, text: &str) -> Result<u64, AdminError> {
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| AdminError::BadParameter {
            parameter: parameter.into(),
            reason: format!("`{text}` is not an RFC 3339 time"),
        })
}

/// How far in the past a `not_before` may lie and still count as now: the
/// second a script took from `date` and a little clock skew.
const NOT_BEFORE_LEEWAY_MS: u64 = 5_000;

/// A time of a revocation request that must lie after `now - leeway_ms`:
/// a revocation dated in the past would lapse at once or spare tokens the
/// operator meant to refuse.
fn future_time_ms(
    parameter: &str,
    text: &str,
    now: u64,
    leeway_ms: u64,
) -> Result<u64, AdminError> {
    let ms = time_ms(parameter, text)?;
    if ms.saturating_add(leeway_ms) <= now {
        return Err(AdminError::bad_parameter(
            parameter,
            format!(
                "`{text}` is in the past (now is {}); give a time from now on",
                crate::clock::rfc3339_ms(now)
            ),
        ));
    }
    Ok(ms)
}

async fn revoke(State(api): State<Arc<Api>>, body: Bytes) -> Result<Response, AdminError> {
    let bad = |reason: String| AdminError::BadParameter {
        parameter: "body".into(),
        reason,
    };
    let request: RevocationRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a revocation: {e}")))?;
    let now = api.access.verifier().clock().now_ms();
    let revocation = match request {
        RevocationRequest {
            token_id: Some(key),
            until: Some(until),
            subject: None,
            issuer: None,
            not_before: None,
        } if !key.is_empty() => Revocation::Token {
            key,
            // A revocation that ends now or earlier never refuses anything.
            until_ms: future_time_ms("until", &until, now, 0)?,
        },
        RevocationRequest {
            token_id: None,
            until: None,
            subject: Some(subject),
            issuer,
            not_before,
        } if !subject.is_empty() => {
            let issuer = api.issuer(issuer.as_deref())?;
            let not_before_ms = match not_before {
                Some(text) => future_time_ms("not_before", &text, now, NOT_BEFORE_LEEWAY_MS)?,
                None => now,
            };
            Revocation::of_subject(
                &issuer,
                &subject,
                not_before_ms,
                not_before_ms.max(now) + SUBJECT_REVOCATION_TTL_MS,
            )
        }
        _ => {
            return Err(bad(
                "give either `token_id` with `until`, or `subject` (with optional `issuer` and `not_before`)".into(),
            ));
        }
    };
    api.access.revoke(revocation.clone()).await?;
    let mut response = json(&RevocationRecorded {
        revocation: RevocationView::from(&revocation),
    });
    *response.status_mut() = axum::http::StatusCode::CREATED;
    Ok(response)
}

/// `GET /revocations`.
async fn list_revocations(State(api): State<Arc<Api>>) -> Result<Response, AdminError> {
    let mut list = api.access.revocations().await?;
    list.sort_by_key(|r| (r.until_ms(), r.id()));
    Ok(json(&Revocations {
        revocations: list.iter().map(RevocationView::from).collect(),
    }))
}

/// `DELETE /revocations/{id}`: lifts the revocations with this id for the
/// fleet, at once on this instance.
async fn delete_revocation(
    State(api): State<Arc<Api>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let Path(id) = id.map_err(|e| AdminError::bad_parameter("id", e.body_text()))?;
    let mut deleted = api.access.delete_revocation(&id).await?;
    if deleted.is_empty() {
        return Err(AdminError::RevocationNotFound(id));
    }
    deleted.sort_by_key(Revocation::until_ms);
    Ok(json(&DeletedRevocations {
        count: deleted.len(),
        deleted: deleted.iter().map(RevocationView::from).collect(),
    }))
}

async fn not_found(uri: Uri) -> AdminError {
    AdminError::NotFound(format!("{PREFIX}{}", uri.path()))
}

async fn method_not_allowed(method: Method) -> AdminError {
    AdminError::MethodNotAllowed(method.to_string())
}

/// A 200 JSON answer that no cache keeps.
pub(super) fn json<T: Serialize>(value: &T) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(value)).into_response()
}

/// The session id of a path. An id that cannot be one (ids are short and
/// alphanumeric) is not found without asking the store.
fn session_id(path: Result<Path<String>, PathRejection>) -> Result<String, AdminError> {
    let Path(id) = path.map_err(|e| AdminError::bad_parameter("id", e.body_text()))?;
    if id.is_empty()
        || id.len() > MAX_SESSION_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        let shown: String = id.chars().take(MAX_SESSION_ID).collect();
        return Err(AdminError::SessionNotFound(shown));
    }
    Ok(id)
}

impl Api {
    /// The issuer a subject belongs to: the one named, which must be
    /// configured, or else the only configured one.
    fn issuer(&self, named: Option<&str>) -> Result<String, AdminError> {
        let verifier = self.access.verifier();
        let configured: Vec<&str> = verifier
            .issuers()
            .iter()
            .map(|i| i.config().issuer.as_str())
            .collect();
        match (named, configured.as_slice()) {
            (Some(issuer), _) if configured.contains(&issuer) => Ok(issuer.to_string()),
            (Some(_), _) => Err(AdminError::bad_parameter(
                "issuer",
                format!(
                    "not a configured issuer; configured: {}",
                    configured.join(", ")
                ),
            )),
            (None, [only]) => Ok((*only).to_string()),
            (None, _) => Err(AdminError::bad_parameter(
                "issuer",
                format!(
                    "required: several issuers are configured ({})",
                    configured.join(", ")
                ),
            )),
        }
    }
}

/// The query of `GET /sessions`, validated.
#[derive(Debug, PartialEq, Eq)]
struct ListQuery {
    filter: SessionFilter,
    limit: usize,
    cursor: Option<Cursor>,
}

impl ListQuery {
    fn parse(query: Option<&str>, api: &Api) -> Result<Self, AdminError> {
        let mut params = params(query, &["pool", "subject", "limit", "cursor"])?;
        let pool = params.remove("pool");
        if let Some(pool) = &pool
            && api.access.pools().get(pool).is_none()
        {
            let pools = api.access.pools();
            let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            return Err(AdminError::bad_parameter(
                "pool",
                format!("no pool named `{pool}`; pools: {}", names.join(", ")),
            ));
        }
        let limit = page_limit(params.remove("limit"), DEFAULT_LIMIT)?;
        let cursor = match params.remove("cursor") {
            None => None,
            Some(text) => Some(Cursor::decode(&text).ok_or_else(|| {
                AdminError::bad_parameter("cursor", "not a `next_cursor` of this API")
            })?),
        };
        Ok(Self {
            filter: SessionFilter {
                pool,
                subject: params.remove("subject"),
            },
            limit,
            cursor,
        })
    }
}

/// A page's `limit` parameter: 1 to [`MAX_LIMIT`], `default` when absent.
pub(super) fn page_limit(text: Option<String>, default: usize) -> Result<usize, AdminError> {
    match text {
        None => Ok(default),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                AdminError::bad_parameter(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

/// The parameters of a query string: each known at most once, none empty,
/// no unknown ones (a misspelt filter must not silently widen a list).
pub(super) fn params(
    query: Option<&str>,
    known: &[&str],
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut out = BTreeMap::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(AdminError::bad_parameter(
                &name,
                format!("unknown parameter; known: {}", known.join(", ")),
            ));
        }
        if value.is_empty() {
            return Err(AdminError::bad_parameter(&name, "must not be empty"));
        }
        if out.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(AdminError::bad_parameter(&name, "given more than once"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_error(query: &str) -> (String, String) {
        match params(Some(query), &["pool", "limit"]) {
            Err(AdminError::BadParameter { parameter, reason }) => (parameter, reason),
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn revocation_times_must_not_lie_in_the_past() {
        let now = 1_800_000_000_000; // 2027-01-15T08:00:00Z
        let text = "2027-01-15T08:00:00Z";
        assert_eq!(
            future_time_ms("until", "2027-01-15T08:00:01Z", now, 0),
            Ok(now + 1000)
        );
        match future_time_ms("until", text, now, 0) {
            Err(AdminError::BadParameter { parameter, reason }) => {
                assert_eq!(parameter, "until");
                assert!(reason.contains("in the past"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // `not_before` may lag a little behind.
        assert_eq!(
            future_time_ms("not_before", text, now + 4_000, NOT_BEFORE_LEEWAY_MS),
            Ok(now)
        );
        assert!(future_time_ms("not_before", text, now + 5_000, NOT_BEFORE_LEEWAY_MS).is_err());
        assert!(matches!(
            future_time_ms("until", "soon", now, 0),
            Err(AdminError::BadParameter { parameter, .. }) if parameter == "until"
        ));
    }

    #[test]
    fn query_strings_are_strict() {
        let ok = params(Some("pool=a%20b&limit=5"), &["pool", "limit"]).unwrap();
        assert_eq!(ok["pool"], "a b");
        assert_eq!(ok["limit"], "5");
        assert!(params(None, &["pool"]).unwrap().is_empty());
        assert_eq!(param_error("pol=a").0, "pol");
        assert_eq!(param_error("pool=").0, "pool");
        assert_eq!(
            param_error("limit=1&limit=2"),
            ("limit".into(), "given more than once".into())
        );
    }
}
