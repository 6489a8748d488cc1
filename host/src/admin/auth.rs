//! Who may use the admin endpoint. With `admin.token`, every route needs
//! `Authorization: Bearer <token>` (the console page also takes `/?token=`, once, from a
//! browser's address bar or its own form); without one the endpoint listens on loopback
//! only (`Config::validate`) and answers only requests addressed to a loopback name, so
//! that a web page cannot reach it through a DNS name it points at 127.0.0.1. A browser's
//! cross-site request that changes something (anything but GET and HEAD) is refused
//! either way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};

use crate::live::Live;

/// Lets the request through, or answers 401 (no or a wrong token) or 403 (a request from
/// another site, or to a name that is not loopback without a token).
pub(super) async fn require_token(State(live): State<Arc<Live>>, request: Request, next: Next) -> Response {
    let config = live.config();
    if let Some(refusal) = cross_site(request.method(), request.headers()) {
        return (StatusCode::FORBIDDEN, Json(serde_json::json!({"error": refusal}))).into_response();
    }
    let Some(token) = &config.admin.token else {
        if !loopback_host(request.headers()) {
            let error = "without admin.token the admin endpoint answers only requests to a loopback name (127.0.0.1, [::1], localhost)";
            return (StatusCode::FORBIDDEN, Json(serde_json::json!({"error": error}))).into_response();
        }
        return next.run(request).await;
    };
    let console = request.uri().path() == "/";
    let presented = bearer(request.headers()).or_else(|| if console { query_token(request.uri().query()) } else { None });
    if presented.as_deref().is_some_and(|presented| same(presented, token.expose())) {
        return next.run(request).await;
    }
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"hotline admin\"")];
    if console {
        let page = include_str!("token.html");
        return (StatusCode::UNAUTHORIZED, challenge, Html(page)).into_response();
    }
    let error = if presented.is_some() { "wrong admin token" } else { "this admin endpoint needs its token: send Authorization: Bearer <admin.token>" };
    (StatusCode::UNAUTHORIZED, challenge, Json(serde_json::json!({"error": error}))).into_response()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

/// `token=` in a query string, percent-decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| pair.strip_prefix("token=")).map(percent_decode)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares two tokens in time that does not depend on where they differ (nor on their
/// lengths: their hashes are compared).
fn same(presented: &str, token: &str) -> bool {
    let (a, b) = (Sha256::digest(presented.as_bytes()), Sha256::digest(token.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a browser's request from another site is refused: one that changes something
/// (not GET or HEAD) and carries an `Origin` other than the address it was sent to.
/// Command-line clients send no `Origin`.
fn cross_site(method: &Method, headers: &HeaderMap) -> Option<String> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    (origin_host != host).then(|| format!("refused a {method} from another site ({origin})"))
}

/// Whether the `Host` header names a loopback address (or is missing, as from HTTP/1.0).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return true };
    // Strip the port: "[::1]:9464", "127.0.0.1:9464", "localhost".
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_the_console_query() {
        assert_eq!(bearer(&headers(&[(header::AUTHORIZATION, "Bearer abc")])), Some("abc".into()));
        assert_eq!(bearer(&headers(&[(header::AUTHORIZATION, "bearer  abc ")])), Some("abc".into()));
        assert_eq!(bearer(&headers(&[(header::AUTHORIZATION, "Basic abc")])), None);
        assert_eq!(query_token(Some("x=1&token=a%2Bb%21")), Some("a+b!".into()));
        assert_eq!(query_token(Some("token=50%")), Some("50%".into()));
        assert_eq!(query_token(None), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
    }

    #[test]
    fn cross_site_changes_and_foreign_host_names_are_refused() {
        let host = (header::HOST, "127.0.0.1:9464");
        assert!(cross_site(&Method::POST, &headers(&[host.clone(), (header::ORIGIN, "http://127.0.0.1:9464")])).is_none());
        assert!(cross_site(&Method::POST, &headers(std::slice::from_ref(&host))).is_none());
        assert!(cross_site(&Method::POST, &headers(&[host.clone(), (header::ORIGIN, "https://evil.example")])).is_some());
        assert!(cross_site(&Method::GET, &headers(&[host.clone(), (header::ORIGIN, "https://evil.example")])).is_none());
        for name in ["127.0.0.1:9464", "localhost:1", "[::1]:9464", "LOCALHOST"] {
            assert!(loopback_host(&headers(&[(header::HOST, name)])), "{name}");
        }
        for name in ["evil.example:9464", "10.0.0.1:9464", "[2001:db8::1]:80"] {
            assert!(!loopback_host(&headers(&[(header::HOST, name)])), "{name}");
        }
    }
}
