//! The media endpoint's routes: `POST /media` (an upload, streamed to disk while hashed)
//! and `GET`/`HEAD /media/{id}` (the bytes, one range at most), every request behind the
//! credentials of [`super::auth`]. Errors are a status with a short `text/plain` reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::{self, AuthError};
use super::Media;
use crate::broker::now_ms;
use crate::metrics::inc;
use crate::store::MediaRecord;

/// An upload whose next piece of body takes longer than this is cut off.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// The routes, with `media` as their state.
pub fn router(media: Arc<Media>) -> Router {
    Router::new()
        .route("/media", post(upload))
        .route("/media/{id}", get(download))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint: POST /media, GET /media/{id}") })
        .method_not_allowed_fallback(|| async { text(StatusCode::METHOD_NOT_ALLOWED, "the methods are POST /media, GET and HEAD /media/{id}") })
        .with_state(media)
}

/// A status with a short `text/plain` reason.
fn text(status: StatusCode, reason: impl Into<String>) -> Response {
    let mut body = reason.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The answer to credentials that do not let the request in.
fn refused(e: AuthError) -> Response {
    match e {
        AuthError::Storage(_) => {
            tracing::warn!(error = %e, "media request refused: storage");
            text(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        other => {
            let mut response = text(StatusCode::UNAUTHORIZED, other.to_string());
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hotline-media\""));
            response
        }
    }
}

/// `POST /media`: the body is the file; `Content-Type` its MIME type. A refused upload's
/// connection is closed after the answer (`Connection: close`): the rest of its body is
/// never read, so the connection cannot carry another request.
async fn upload(State(media): State<Arc<Media>>, request: Request) -> Response {
    match receive(&media, request).await {
        Ok(created) => created,
        Err(mut refused) => {
            refused.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            refused
        }
    }
}

/// Receives an upload: `201` with its JSON, or the refusal.
async fn receive(media: &Arc<Media>, request: Request) -> Result<Response, Response> {
    let metrics = &media.broker.metrics.media;
    let (parts, body) = request.into_parts();
    let uploader = match auth::check(media.broker.ports().accounts, &parts.headers) {
        Ok(phone) => phone,
        Err(e) => {
            metrics.refused(if matches!(e, AuthError::Storage(_)) { "storage" } else { "unauthorized" });
            return Err(refused(e));
        }
    };
    let mime = match content_type(&parts.headers) {
        Ok(mime) => mime,
        Err(reason) => {
            metrics.refused("bad_request");
            return Err(text(StatusCode::BAD_REQUEST, reason));
        }
    };
    let max = media.config.max_upload_bytes;
    let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, format!("the upload is larger than the limit of {max} bytes (media.max_upload_bytes)"));
    match content_length(&parts.headers) {
        Ok(Some(length)) if length > max => {
            metrics.refused("too_large");
            return Err(too_large());
        }
        Ok(_) => {}
        Err(reason) => {
            metrics.refused("bad_request");
            return Err(text(StatusCode::BAD_REQUEST, reason));
        }
    }
    let Ok(_permit) = media.uploads.clone().try_acquire_owned() else {
        metrics.refused("busy");
        let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "too many uploads at once; retry in a moment");
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(response);
    };

    let mut temp = match media.blobs.temp().await {
        Ok(temp) => temp,
        Err(e) => return Err(storage_failed(media, e)),
    };
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                metrics.refused("cut_off");
                tracing::debug!(error = %e, %uploader, received = size, "upload cut off");
                return Err(text(StatusCode::BAD_REQUEST, format!("the upload was cut off after {size} bytes")));
            }
            Err(_) => {
                metrics.refused("cut_off");
                return Err(text(StatusCode::REQUEST_TIMEOUT, format!("no more of the upload for {} s after {size} bytes", BODY_IDLE.as_secs())));
            }
        };
        let Ok(data) = frame.into_data() else { continue };
        size += data.len() as u64;
        if size > max {
            metrics.refused("too_large");
            return Err(too_large());
        }
        hasher.update(&data);
        if let Err(e) = temp.write(&data).await {
            return Err(storage_failed(media, e));
        }
    }
    if let Err(e) = temp.finish().await {
        return Err(storage_failed(media, e));
    }

    let sha256: [u8; 32] = hasher.finalize().into();
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let created_at_ms = now_ms();
    let expires_at_ms = created_at_ms.saturating_add(media.config.expiry_secs.saturating_mul(1000));
    let record = MediaRecord { sha256, size, mime: mime.clone(), uploader: uploader.clone(), created_at_ms, expires_at_ms };
    let committed = {
        let (media, record) = (media.clone(), record.clone());
        tokio::task::spawn_blocking(move || media.blobs.commit(temp, &media.broker.store, &id, &record)).await
    };
    match committed {
        Ok(Ok(new_file)) => {
            inc(&metrics.uploads);
            metrics.upload_bytes.fetch_add(size, Ordering::Relaxed);
            inc(&metrics.objects);
            if new_file {
                inc(&metrics.files);
                metrics.disk_bytes.fetch_add(size, Ordering::Relaxed);
            }
        }
        Ok(Err(e)) => return Err(storage_failed(media, e)),
        Err(e) => return Err(storage_failed(media, e)),
    }
    let id = hex::encode(id);
    let url = format!("{}/media/{id}", media.base_url(&parts.headers));
    tracing::debug!(%uploader, %id, size, "media uploaded");
    let json = serde_json::json!({
        "id": id,
        "url": url,
        "size": size,
        "sha256": hex::encode(sha256),
        "mime": mime,
        "expires_at_ms": expires_at_ms,
    });
    let mut response = (StatusCode::CREATED, axum::Json(json)).into_response();
    if let Ok(location) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Writing an upload failed on the broker's side: `503`, nothing kept.
fn storage_failed(media: &Media, e: impl std::fmt::Display) -> Response {
    media.broker.metrics.media.refused("storage");
    tracing::error!(error = %e, "media upload failed");
    text(StatusCode::SERVICE_UNAVAILABLE, "the broker could not store the upload; retry later")
}

/// The MIME type of an upload: `Content-Type`, or `application/octet-stream` without one.
fn content_type(headers: &HeaderMap) -> Result<String, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok("application/octet-stream".into());
    };
    let malformed = || format!("malformed Content-Type {:?}: expected type/subtype, e.g. image/jpeg", String::from_utf8_lossy(value.as_bytes()));
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let (essence, params) = text.split_once(';').unwrap_or((text, ""));
    let (kind, subtype) = essence.trim().split_once('/').ok_or_else(malformed)?;
    if !is_token(kind) || !is_token(subtype) {
        return Err(malformed());
    }
    for param in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').ok_or_else(malformed)?;
        let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        if !is_token(name) || !(is_token(value) || quoted) {
            return Err(malformed());
        }
    }
    Ok(text.to_string())
}

/// An RFC 9110 token: one or more of the characters allowed in header names.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `Content-Length`, if the request has one.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| "malformed Content-Length".to_string()),
    }
}

/// `GET` (or `HEAD`) `/media/{id}`.
async fn download(State(media): State<Arc<Media>>, method: Method, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check(media.broker.ports().accounts, &headers) {
        return refused(e);
    }
    let not_found = || text(StatusCode::NOT_FOUND, format!("no media {id:?} (unknown or expired)"));
    let Some(key) = parse_id(&id) else { return not_found() };
    let record = match media.broker.store.media_get(&key) {
        Ok(Some(record)) if record.expires_at_ms > now_ms() => record,
        Ok(_) => return not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "media record unreadable");
            return text(StatusCode::SERVICE_UNAVAILABLE, "the broker cannot read its storage; retry later");
        }
    };
    let size = record.size;
    let (status, start, len) = match byte_range(headers.get(header::RANGE), size) {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part(first, last) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Range::Unsatisfiable => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, format!("the range is outside the {size} bytes"));
            response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
            return response;
        }
    };
    let path = media.blobs.path(&record.sha256);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the file of a media record is missing");
            return not_found();
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        if start > 0 {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
                tracing::warn!(path = %path.display(), error = %e, "media file unreadable");
                return text(StatusCode::SERVICE_UNAVAILABLE, "the broker cannot read the file; retry later");
            }
        }
        inc(&media.broker.metrics.media.downloads);
        media.broker.metrics.media.download_bytes.fetch_add(len, Ordering::Relaxed);
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&record.mime).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", hex::encode(record.sha256))).expect("hex"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{size}", start + len - 1);
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("ascii"));
    }
    response
}

/// An upload id: 32 lowercase hex characters.
fn parse_id(id: &str) -> Option<[u8; 16]> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    hex::decode(id).ok()?.try_into().ok()
}

/// What a `Range` header asks of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// No range, or one the server ignores (not `bytes=`, several ranges, malformed): all.
    Full,
    /// Bytes `first..=last`, within the content.
    Part(u64, u64),
    /// A range that starts beyond the content (or asks for no bytes): `416`.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`, one range only (RFC 9110 §14.1.2).
fn byte_range(header: Option<&HeaderValue>, size: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.to_str().ok()).and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Full };
    let number = |s: &str| if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(size.saturating_sub(n), size - 1),
            None => Range::Full,
        },
        (first, "") => match number(first) {
            Some(a) if a >= size => Range::Unsatisfiable,
            Some(a) => Range::Part(a, size - 1),
            None => Range::Full,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => Range::Full,
            (Some(a), Some(_)) if a >= size => Range::Unsatisfiable,
            (Some(a), Some(b)) => Range::Part(a, b.min(size - 1)),
            _ => Range::Full,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, size: u64) -> Range {
        byte_range(Some(&HeaderValue::from_str(spec).unwrap()), size)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range(None, 10), Range::Full);
        assert_eq!(range("bytes=0-4", 10), Range::Part(0, 4));
        assert_eq!(range("bytes=5-", 10), Range::Part(5, 9));
        assert_eq!(range("bytes=-3", 10), Range::Part(7, 9));
        assert_eq!(range("bytes=-30", 10), Range::Part(0, 9));
        assert_eq!(range("bytes=8-100", 10), Range::Part(8, 9));
        assert_eq!(range("bytes=10-", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=10-12", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Range::Unsatisfiable);
        assert_eq!(range("bytes=-1", 0), Range::Unsatisfiable);
        assert_eq!(range("bytes=5-2", 10), Range::Full);
        assert_eq!(range("bytes=0-1,3-4", 10), Range::Full);
        assert_eq!(range("items=0-1", 10), Range::Full);
        assert_eq!(range("bytes=x-1", 10), Range::Full);
    }

    #[test]
    fn content_types_are_type_slash_subtype_with_parameters() {
        let ct = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            content_type(&headers)
        };
        assert_eq!(content_type(&HeaderMap::new()).unwrap(), "application/octet-stream");
        assert_eq!(ct("image/jpeg").unwrap(), "image/jpeg");
        assert_eq!(ct("text/plain; charset=utf-8").unwrap(), "text/plain; charset=utf-8");
        assert_eq!(ct("audio/ogg; codecs=\"opus\"").unwrap(), "audio/ogg; codecs=\"opus\"");
        for bad in ["image", "image/", "/jpeg", "image/jp eg", "a/b; c", "a/b/c"] {
            assert!(ct(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_32_lowercase_hex() {
        assert_eq!(parse_id(&"0a".repeat(16)), Some([10; 16]));
        assert_eq!(parse_id(&"0A".repeat(16)), None);
        assert_eq!(parse_id("0a"), None);
        assert_eq!(parse_id(&"zz".repeat(16)), None);
    }
}
