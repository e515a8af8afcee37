//! CORS for routes that set `[routes.cors]` (Fetch standard, "CORS
//! protocol"): the gateway answers a preflight itself, before any token
//! check, so a browser front end can ask before it sends its token, and no
//! session is opened by asking; and it marks the responses an allowed origin
//! may read, the gateway's own problems included (a script must be able to
//! read a 429 `license_unavailable`).

use http::{HeaderName, HeaderValue, Method, header};
use pingora::http::RequestHeader;

use crate::config::CorsConfig;

/// Response headers to add.
pub type CorsHeaders = Vec<(HeaderName, HeaderValue)>;

/// What a route's CORS policy makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDecision {
    /// No `Origin`: not a CORS request; nothing to add.
    NotCors,
    /// A preflight the policy allows: answer 204 with these headers.
    Preflight(CorsHeaders),
    /// A preflight the policy does not allow, and why.
    Refused(String),
    /// A CORS request from an allowed origin: add these headers to the
    /// response, whoever answers it.
    Allowed(CorsHeaders),
    /// A CORS request from another origin: answered as usual, without CORS
    /// headers, so the browser keeps the response from the page.
    Foreign,
}

/// Decides a request on a route with a CORS policy.
pub fn decide(policy: &CorsConfig, request: &RequestHeader) -> CorsDecision {
    let Some(origin) = request.headers.get(header::ORIGIN) else {
        return CorsDecision::NotCors;
    };
    let requested_method = request.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD);
    let preflight = request.method == Method::OPTIONS && requested_method.is_some();
    let allowed = origin
        .to_str()
        .is_ok_and(|o| policy.any_origin || policy.allow_origins.iter().any(|a| a == o));
    if !allowed {
        if preflight {
            return CorsDecision::Refused(format!(
                "origin `{}` may not call this route",
                String::from_utf8_lossy(origin.as_bytes())
            ));
        }
        return CorsDecision::Foreign;
    }
    let mut headers = origin_headers(policy, origin);
    if !preflight {
        if !policy.expose_headers.is_empty() {
            headers.push((
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                list(policy.expose_headers.iter().map(HeaderName::as_str)),
            ));
        }
        return CorsDecision::Allowed(headers);
    }
    let method = requested_method.and_then(|m| m.to_str().ok()).unwrap_or("");
    if !policy.allow_methods.iter().any(|m| m.as_str() == method) {
        return CorsDecision::Refused(format!("method `{method}` is not allowed on this route"));
    }
    let asked = request
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    for name in asked.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.to_ascii_lowercase();
        if !policy.allow_headers.iter().any(|h| h.as_str() == name) {
            return CorsDecision::Refused(format!("header `{name}` is not allowed on this route"));
        }
    }
    headers.push((
        header::ACCESS_CONTROL_ALLOW_METHODS,
        list(policy.allow_methods.iter().map(Method::as_str)),
    ));
    if !policy.allow_headers.is_empty() {
        headers.push((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            list(policy.allow_headers.iter().map(HeaderName::as_str)),
        ));
    }
    headers.push((
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(policy.max_age.as_secs()),
    ));
    CorsDecision::Preflight(headers)
}

/// The headers every allowed answer carries: the origin (or `*`), whether
/// credentials may be read, and `Vary: Origin` so a cache never hands one
/// origin's answer to another.
fn origin_headers(policy: &CorsConfig, origin: &HeaderValue) -> CorsHeaders {
    let mut headers = vec![(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        if policy.any_origin {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        },
    )];
    if policy.allow_credentials {
        headers.push((
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        ));
    }
    if !policy.any_origin {
        headers.push((header::VARY, HeaderValue::from_static("Origin")));
    }
    headers
}

/// Adds a CORS request's headers to the backend's response: the policy's
/// values replace the backend's own CORS headers, `Vary` is added to.
pub fn mark_response(
    response: &mut pingora::http::ResponseHeader,
    headers: &CorsHeaders,
) -> pingora::Result<()> {
    for (name, value) in headers {
        if *name == header::VARY {
            response.append_header(name.clone(), value.clone())?;
        } else {
            response.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> HeaderValue {
    let text: Vec<&str> = items.collect();
    // Methods and header names are tokens: a comma-joined list of them is
    // always a valid header value.
    HeaderValue::from_str(&text.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> CorsConfig {
        CorsConfig {
            allow_origins: vec!["https://erp.example.com".into()],
            any_origin: false,
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec![header::AUTHORIZATION, header::CONTENT_TYPE],
            expose_headers: vec![HeaderName::from_static("x-request-id")],
            max_age: Duration::from_secs(600),
            allow_credentials: false,
        }
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/api/x", None).expect("request");
        for (name, value) in headers {
            r.insert_header(name.to_string(), *value).expect("header");
        }
        r
    }

    fn value(headers: &CorsHeaders, name: HeaderName) -> Option<&str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn an_allowed_preflight_is_answered_with_the_policy() {
        let r = request(
            "OPTIONS",
            &[
                ("origin", "https://erp.example.com"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "Authorization, content-type",
                ),
            ],
        );
        let CorsDecision::Preflight(h) = decide(&policy(), &r) else {
            panic!("not a preflight answer");
        };
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://erp.example.com")
        );
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_ALLOW_METHODS),
            Some("GET, POST")
        );
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("authorization, content-type")
        );
        assert_eq!(value(&h, header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(value(&h, header::VARY), Some("Origin"));
        assert_eq!(value(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    }

    #[test]
    fn preflights_outside_the_policy_are_refused_with_the_reason() {
        let ask = |origin: &str, method: &str, headers: &str| {
            decide(
                &policy(),
                &request(
                    "OPTIONS",
                    &[
                        ("origin", origin),
                        ("access-control-request-method", method),
                        ("access-control-request-headers", headers),
                    ],
                ),
            )
        };
        let refused = |d: CorsDecision, word: &str| match d {
            CorsDecision::Refused(reason) => assert!(reason.contains(word), "{reason}"),
            other => panic!("{other:?}"),
        };
        refused(ask("https://evil.example", "GET", ""), "evil.example");
        refused(ask("https://erp.example.com", "DELETE", ""), "DELETE");
        refused(ask("https://erp.example.com", "GET", "x-debug"), "x-debug");
    }

    #[test]
    fn requests_get_headers_only_for_allowed_origins() {
        let from = |origin: &str| decide(&policy(), &request("GET", &[("origin", origin)]));
        let CorsDecision::Allowed(h) = from("https://erp.example.com") else {
            panic!("not allowed");
        };
        assert_eq!(
            value(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("x-request-id")
        );
        assert_eq!(from("https://evil.example"), CorsDecision::Foreign);
        assert_eq!(
            decide(&policy(), &request("GET", &[])),
            CorsDecision::NotCors
        );
        // OPTIONS without Access-Control-Request-Method is no preflight.
        assert!(matches!(
            decide(
                &policy(),
                &request("OPTIONS", &[("origin", "https://erp.example.com")])
            ),
            CorsDecision::Allowed(_)
        ));
    }

    #[test]
    fn any_origin_answers_a_star_without_vary() {
        let mut any = policy();
        any.any_origin = true;
        any.allow_origins.clear();
        let CorsDecision::Allowed(h) =
            decide(&any, &request("GET", &[("origin", "https://x.example")]))
        else {
            panic!("not allowed");
        };
        assert_eq!(value(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(value(&h, header::VARY), None);
    }
}
