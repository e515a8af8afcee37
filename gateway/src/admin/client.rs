//! A client of the admin API ([`super::api`]), used by the
//! `session-gateway admin` command. It speaks the same types as the server,
//! follows `next_cursor` for long lists, and turns every failure into one
//! [`ClientError`] whose message fits on one line.

use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use super::api::{
    ClosedSessions, DeletedRevocations, Licenses, MAX_LIMIT, PREFIX, RevocationRecorded,
    Revocations, SessionList,
};
use super::audit::AuditList;
use super::usage::{SummaryView, UsageReport};
use crate::config::Secret;
use crate::session::SessionView;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL given is not an `http(s)://host[:port]` URL.
    #[error("`{0}` is not an admin API URL (expected http://host:port)")]
    BadUrl(String),
    /// Nothing answered at the URL.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The admin listener's URL.
        url: String,
        /// Why (connection refused, timed out, …).
        reason: String,
    },
    /// The gateway refused the admin token (401).
    #[error("admin token rejected")]
    TokenRejected,
    /// The gateway answered with a problem document.
    #[error("{detail}")]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem code (`session_not_found`, …).
        code: String,
        /// The problem's detail.
        detail: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// The URL asked.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// A connection to one gateway's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
}

impl AdminClient {
    /// A client of the admin listener at `url` (e.g. `http://127.0.0.1:9190`)
    /// that presents `token`. Proxies from the environment are ignored: the
    /// admin listener is a local or private address.
    pub fn new(url: &str, token: Secret) -> Result<Self, ClientError> {
        let base = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self { http, base, token })
    }

    /// Open sessions, oldest first, optionally of one pool and/or subject.
    /// Follows `next_cursor` until `limit` sessions (all without a limit);
    /// `next_cursor` of the result is set when sessions were left out.
    pub async fn sessions(
        &self,
        pool: Option<&str>,
        subject: Option<&str>,
        limit: Option<usize>,
    ) -> Result<SessionList, ClientError> {
        let mut sessions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let wanted = limit.map_or(MAX_LIMIT, |l| l.saturating_sub(sessions.len()));
            let mut url = self.url(&["sessions"]);
            {
                let mut query = url.query_pairs_mut();
                if let Some(pool) = pool {
                    query.append_pair("pool", pool);
                }
                if let Some(subject) = subject {
                    query.append_pair("subject", subject);
                }
                query.append_pair("limit", &wanted.clamp(1, MAX_LIMIT).to_string());
                if let Some(cursor) = &cursor {
                    query.append_pair("cursor", cursor);
                }
            }
            let page: SessionList = self.call(reqwest::Method::GET, url).await?;
            sessions.extend(page.sessions);
            cursor = page.next_cursor;
            let full = limit.is_some_and(|l| sessions.len() >= l);
            if cursor.is_none() || full {
                break;
            }
        }
        Ok(SessionList {
            sessions,
            next_cursor: cursor,
        })
    }

    /// One open session.
    pub async fn session(&self, id: &str) -> Result<SessionView, ClientError> {
        self.call(reqwest::Method::GET, self.url(&["sessions", id]))
            .await
    }

    /// Closes one session; the session as it was.
    pub async fn kill(&self, id: &str) -> Result<SessionView, ClientError> {
        self.call(reqwest::Method::DELETE, self.url(&["sessions", id]))
            .await
    }

    /// Closes every session of a subject (`sub`) of `issuer` (the gateway's
    /// only issuer when `None`).
    pub async fn kill_subject(
        &self,
        subject: &str,
        issuer: Option<&str>,
    ) -> Result<ClosedSessions, ClientError> {
        let mut url = self.url(&["subjects", subject, "sessions"]);
        if let Some(issuer) = issuer {
            url.query_pairs_mut().append_pair("issuer", issuer);
        }
        self.call(reqwest::Method::DELETE, url).await
    }

    /// One page of the audit trail (`GET /audit`): `filters` are
    /// (parameter, value) pairs (`pool`, `subject`, `event`, and `after` or
    /// `before` with an event id).
    pub async fn audit(
        &self,
        filters: &[(&str, &str)],
        limit: usize,
    ) -> Result<AuditList, ClientError> {
        let mut url = self.url(&["audit"]);
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in filters {
                query.append_pair(name, value);
            }
            query.append_pair("limit", &limit.clamp(1, MAX_LIMIT).to_string());
        }
        self.call(reqwest::Method::GET, url).await
    }

    /// A usage report: `path` is `["usage"]` or `["usage", "peaks"]`,
    /// `params` its query parameters.
    pub async fn usage(
        &self,
        path: &[&str],
        params: &[(&str, String)],
    ) -> Result<UsageReport, ClientError> {
        self.call(reqwest::Method::GET, self.with_query(path, params))
            .await
    }

    /// `GET /usage` as CSV.
    pub async fn usage_csv(&self, params: &[(&str, String)]) -> Result<String, ClientError> {
        let mut params = params.to_vec();
        params.push(("format", "csv".into()));
        let url = self.with_query(&["usage"], &params);
        let bytes = self.fetch(reqwest::Method::GET, url.clone(), None).await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Unexpected {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// A month's summary (`GET /usage/summary`).
    pub async fn usage_summary(
        &self,
        params: &[(&str, String)],
    ) -> Result<SummaryView, ClientError> {
        self.call(
            reqwest::Method::GET,
            self.with_query(&["usage", "summary"], params),
        )
        .await
    }

    fn with_query(&self, path: &[&str], params: &[(&str, String)]) -> Url {
        let mut url = self.url(path);
        if !params.is_empty() {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
        }
        url
    }

    /// Seat use per pool.
    pub async fn licenses(&self) -> Result<Licenses, ClientError> {
        self.call(reqwest::Method::GET, self.url(&["licenses"]))
            .await
    }

    /// Records a revocation (`POST /revocations`); the revocation as stored.
    pub async fn revoke(
        &self,
        request: &serde_json::Value,
    ) -> Result<RevocationRecorded, ClientError> {
        self.send(
            reqwest::Method::POST,
            self.url(&["revocations"]),
            Some(request),
        )
        .await
    }

    /// The revocations in force, soonest to lapse first.
    pub async fn revocations(&self) -> Result<Revocations, ClientError> {
        self.call(reqwest::Method::GET, self.url(&["revocations"]))
            .await
    }

    /// Deletes the revocations with this id (see
    /// [`RevocationView::id`](super::api::RevocationView::id)); what was
    /// deleted.
    pub async fn delete_revocation(&self, id: &str) -> Result<DeletedRevocations, ClientError> {
        self.call(reqwest::Method::DELETE, self.url(&["revocations", id]))
            .await
    }

    /// The URL of an API path; each segment is percent-encoded, so a
    /// subject or id can never change the path.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(PREFIX.trim_start_matches('/').split('/'));
            path.extend(segments);
        }
        url
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<T, ClientError> {
        self.send(method, url, None).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let shown = url.to_string();
        let body = self.fetch(method, url, body).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
            url: shown,
            reason: e.to_string(),
        })
    }

    /// The body of a 2xx answer; every other answer is an error.
    async fn fetch(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status == 401 {
            return Err(ClientError::TokenRejected);
        }
        if !(200..300).contains(&status) {
            return Err(problem(status, &body));
        }
        Ok(body.to_vec())
    }

    fn unreachable(&self, error: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base.as_str().trim_end_matches('/').to_string(),
            reason: reason(error),
        }
    }
}

/// The error of a non-2xx answer: its problem document, or the status.
fn problem(status: u16, body: &[u8]) -> ClientError {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = doc["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:session-gateway:error:"))
        .unwrap_or("")
        .to_string();
    let detail = match doc["detail"].as_str() {
        Some(detail) => detail.to_string(),
        None => format!("the admin API answered HTTP {status}"),
    };
    ClientError::Problem {
        status,
        code,
        detail,
    }
}

/// The innermost cause of a transport error, in words an operator knows.
fn reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => io.to_string(),
            };
        }
        innermost = e.to_string();
        source = e.source();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> AdminClient {
        AdminClient::new(url, Secret::new("t".repeat(16))).unwrap()
    }

    #[test]
    fn paths_are_built_segment_by_segment() {
        let c = client("http://127.0.0.1:9190");
        assert_eq!(
            c.url(&["subjects", "a/b c?", "sessions"]).as_str(),
            "http://127.0.0.1:9190/admin/v1/subjects/a%2Fb%20c%3F/sessions"
        );
        let c = client("http://gw.internal:9190/");
        assert_eq!(
            c.url(&["licenses"]).as_str(),
            "http://gw.internal:9190/admin/v1/licenses"
        );
    }

    #[test]
    fn only_http_urls_are_accepted() {
        for bad in ["127.0.0.1:9190", "ftp://x", "not a url"] {
            assert!(matches!(
                AdminClient::new(bad, Secret::new("t".repeat(16))),
                Err(ClientError::BadUrl(_))
            ));
        }
    }

    #[test]
    fn problem_documents_become_their_detail() {
        let body = br#"{"type":"urn:session-gateway:error:session_not_found","detail":"no open session with id `x`"}"#;
        match problem(404, body) {
            ClientError::Problem { code, detail, .. } => {
                assert_eq!(code, "session_not_found");
                assert_eq!(detail, "no open session with id `x`");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            problem(502, b"bad gateway").to_string(),
            "the admin API answered HTTP 502"
        );
    }
}
