//! `GET /admin/v1/openapi.json`: the admin API described as OpenAPI 3.1
//! (`openapi.json` beside this file, compiled in). The end-to-end test
//! `tests/tests/openapi.rs` checks every documented answer against the
//! real ones, so the document cannot drift from the code unnoticed.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(super) async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DOCUMENT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&str> = doc["paths"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for route in [
            "/sessions",
            "/sessions/{id}",
            "/subjects/{sub}/sessions",
            "/licenses",
            "/revocations",
            "/revocations/{id}",
            "/audit",
            "/usage",
            "/usage/peaks",
            "/usage/summary",
            "/reload",
            "/openapi.json",
        ] {
            assert!(paths.contains(&route), "{route}");
        }
        assert_eq!(paths.len(), 12, "{paths:?}");
    }
}
