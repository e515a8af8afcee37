//! Writing the gateway's own answers: a complete response with
//! `Content-Length` and `Cache-Control: no-store`, and problem documents
//! with their `WWW-Authenticate`, `Retry-After` and `Allow` headers.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session as HttpSession;

use super::problem::{PROBLEM_JSON, Problem};

/// Writes a complete response with `Content-Length`, keeping the connection
/// alive (unlike `respond_error`, which turns keep-alive off).
pub(super) async fn respond(
    session: &mut HttpSession,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    problem: Option<&Problem>,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(6))?;
    header.insert_header(http::header::CONTENT_TYPE, content_type)?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(problem) = problem {
        if let Some(challenge) = &problem.www_authenticate {
            header.insert_header(http::header::WWW_AUTHENTICATE, challenge.as_str())?;
        }
        if let Some(secs) = problem.retry_after {
            header.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
        }
        if let Some(allow) = problem.allow {
            header.insert_header(http::header::ALLOW, allow)?;
        }
        for (name, value) in &problem.headers {
            header.append_header(name.clone(), value.clone())?;
        }
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

/// Answers an allowed CORS preflight: 204, no body, the policy's headers.
pub(super) async fn respond_preflight(
    session: &mut HttpSession,
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(204, Some(headers.len()))?;
    for (name, value) in headers {
        header.append_header(name.clone(), value.clone())?;
    }
    session.write_response_header(Box::new(header), true).await
}

pub(super) async fn respond_problem(
    session: &mut HttpSession,
    problem: &Problem,
) -> pingora::Result<()> {
    respond(
        session,
        problem.status,
        PROBLEM_JSON,
        problem.body(),
        Some(problem),
    )
    .await
}
