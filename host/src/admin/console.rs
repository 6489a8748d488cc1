//! The web console at `/`: one static page (console.html, embedded in the binary) whose
//! script polls the JSON API every second and calls its rollback and kick routes.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The page. It holds no data: everything it shows comes from `/api/*`.
pub(super) async fn page() -> Response {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        // The address bar may hold `?token=` for a moment: never sent on.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    ];
    (headers, Html(include_str!("console.html"))).into_response()
}
