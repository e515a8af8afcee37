//! The admin console: `GET /admin/` on the admin listener (never on the
//! proxy listener), four static files compiled into the binary. The page
//! holds no data: it asks for the admin token (a login form), keeps it in
//! the tab, and reads everything through the admin API with it, so the
//! console can do exactly what the token can and nothing else.
//!
//! Safety: a Content-Security-Policy that allows scripts, styles and fetches
//! from this listener only (no inline script, no form submission, no
//! framing); the API takes only a bearer token, never cookies, so a page of
//! another site cannot act through the browser (no CSRF); the script writes
//! every value as text, never as HTML. It needs no network beyond the admin
//! listener and no build step.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the console lives.
pub const PATH: &str = "/admin/";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");
const ICON: &str = include_str!("console/favicon.svg");

/// Scripts, styles and API calls from this listener only; nothing inline,
/// no plugins, no frames, no form submissions, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (outside the admin API's token gate: they serve the
/// same files to everyone, and the page asks for the token itself).
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent(PATH) }))
        .route(
            PATH,
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/admin/console.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/admin/console.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/admin/favicon.svg",
            get(|| async { page("image/svg+xml", ICON) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_and_writes_no_html() {
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(INDEX.contains("<script src=\"/admin/console.js\" defer></script>"));
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(forbidden), "{forbidden}");
        }
        // The API call never sends cookies.
        assert!(SCRIPT.contains("credentials: 'omit'"));
    }
}
