//! Media messages: uploading a file to the broker's media server over HTTPS, the JSON body
//! that describes it ([`MediaMessage`]), its thumbnail, and fetching it back with its hash
//! checked.
//!
//! The HTTP contract and the body are documented in docs/protocol.md ("Media over HTTPS",
//! "The media message"). Uploads and downloads stream between the file and the connection:
//! a file is never held in memory whole. The HTTP calls block (ureq); the `async` methods
//! run them on tokio's blocking pool.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hotline_client::media::{MediaClient, MediaMessage};
//! let media = MediaClient::new("https://127.0.0.1:4443", "hotline-data/tls/cert.pem".as_ref(), "+15551230001", "key")?;
//! let message = media.prepare("cat.jpg".as_ref(), Some("my cat".into())).await?;
//! // client.send_typed("+15551230002", message.kind(), message.to_body()).await?;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hotline_protocol::MessageKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ureq::http::{StatusCode, Uri};

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 96;

/// The JPEG quality of a thumbnail (1 to 100).
pub const THUMBNAIL_QUALITY: u8 = 70;

/// The media server's address when nothing else is said: the broker's default.
pub const DEFAULT_MEDIA_URL: &str = "https://127.0.0.1:4443";

/// How much of an error answer's text is kept.
const ERROR_TEXT_LIMIT: u64 = 4096;

/// What went wrong with an upload, a download or a media message.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The CA file could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {detail}")]
    Ca { path: PathBuf, detail: String },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    /// A URL (the media server's or one to fetch) is not an `https://host:port/...` URL.
    #[error("bad URL {url:?}: {detail}")]
    Url { url: String, detail: String },
    /// A URL to fetch points elsewhere than the media server this client was made for:
    /// it is not fetched, so the number's key is never sent to another server.
    #[error("{url} is not on the media server {server}; fetch it with --media set to its server if you trust it")]
    ForeignUrl { url: String, server: String },
    /// 401: the media server does not accept the number and key.
    #[error("the media server refused the credentials (wrong number or key?): {0}")]
    Unauthorized(String),
    /// 413: the file is larger than the media server accepts.
    #[error("the file ({size} bytes) is too large for the media server: {detail}")]
    TooLarge { size: u64, detail: String },
    /// 404: no such upload, or it has expired.
    #[error("no such media (unknown or expired): {0}")]
    NotFound(String),
    /// Another error answer from the media server.
    #[error("the media server answered {status}: {detail}")]
    Status { status: u16, detail: String },
    /// The media server could not be reached or the transfer broke off.
    #[error("media server {server}: {detail}")]
    Http { server: String, detail: String },
    /// The media server's answer is not what the protocol says.
    #[error("unexpected answer from the media server: {0}")]
    BadAnswer(String),
    /// The fetched bytes do not have the expected SHA-256 (nothing was kept).
    #[error("hash mismatch: expected sha256 {expected}, got {actual} ({size} bytes); nothing was saved")]
    HashMismatch { expected: String, actual: String, size: u64 },
    /// The expected hash is not 64 hex characters.
    #[error("{0:?} is not a SHA-256 (64 hex characters)")]
    BadHash(String),
    /// The image could not be decoded or the thumbnail not made.
    #[error("no thumbnail for {path}: {detail}")]
    Thumbnail { path: PathBuf, detail: String },
    /// A message body is not a media message.
    #[error("not a media message: {0}")]
    Message(String),
}

/// The body of a media message (kind `Media`): UTF-8 JSON describing an upload.
/// docs/protocol.md, "The media message".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaMessage {
    /// Where to fetch it (`https://host:port/media/<id>`), with the recipient's own
    /// number and key.
    pub url: String,
    /// The MIME type it was uploaded with.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, 64 lowercase hex characters.
    pub sha256: String,
    /// The file's name (no folder).
    pub name: String,
    /// Text to show with it.
    #[serde(default)]
    pub caption: Option<String>,
    /// For images: a JPEG of at most 96 px on its longest side, Base64 (standard, padded).
    #[serde(default)]
    pub thumbnail: Option<String>,
    /// For images: the width of the full image, in pixels.
    #[serde(default)]
    pub width: Option<u32>,
    /// For images: the height of the full image, in pixels.
    #[serde(default)]
    pub height: Option<u32>,
}

impl MediaMessage {
    /// The message body: the JSON bytes.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a media message serializes")
    }

    /// Reads a message body.
    pub fn from_body(body: &[u8]) -> Result<MediaMessage, MediaError> {
        serde_json::from_slice(body).map_err(|e| MediaError::Message(e.to_string()))
    }

    /// The kind to send it with: `Media { mime }`.
    pub fn kind(&self) -> MessageKind {
        MessageKind::Media { mime: self.mime.clone() }
    }

    /// The thumbnail's JPEG bytes, if there is one.
    pub fn thumbnail_jpeg(&self) -> Result<Option<Vec<u8>>, MediaError> {
        match &self.thumbnail {
            None => Ok(None),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Some)
                .map_err(|e| MediaError::Message(format!("thumbnail is not Base64: {e}"))),
        }
    }
}

/// The media server's answer to an upload (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The upload's id: 32 lowercase hex characters.
    pub id: String,
    /// Where to fetch it.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// The MIME type stored with it.
    pub mime: String,
    /// When it expires (unix milliseconds).
    pub expires_at_ms: u64,
}

/// A thumbnail made from an image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
    /// The full image's width, in pixels.
    pub width: u32,
    /// The full image's height, in pixels.
    pub height: u32,
}

impl Thumbnail {
    /// The JPEG in Base64 (standard, padded), as a [`MediaMessage`] carries it.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.jpeg)
    }
}

/// The MIME type for a file name, from its extension (`application/octet-stream` if unknown).
pub fn guess_mime(path: &Path) -> String {
    mime_guess::from_path(path).first_or_octet_stream().essence_str().to_string()
}

/// Whether the client makes thumbnails of this MIME type (the image formats it decodes:
/// JPEG, PNG, GIF, WebP).
pub fn thumbnails(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/gif" | "image/webp")
}

/// Makes a thumbnail of the image at `path`: a JPEG (quality [`THUMBNAIL_QUALITY`]) whose
/// longest side is at most [`THUMBNAIL_MAX_SIDE`] px, keeping the aspect ratio. The format
/// is read from the file's contents, not its name.
pub fn make_thumbnail(path: &Path) -> Result<Thumbnail, MediaError> {
    let fail = |detail: String| MediaError::Thumbnail { path: path.to_path_buf(), detail };
    let reader = image::ImageReader::open(path)
        .map_err(|e| MediaError::File { path: path.to_path_buf(), source: e })?
        .with_guessed_format()
        .map_err(|e| MediaError::File { path: path.to_path_buf(), source: e })?;
    let image = reader.decode().map_err(|e| fail(e.to_string()))?;
    let (width, height) = (image.width(), image.height());
    // JPEG has no alpha: flatten to RGB.
    let small = image.thumbnail(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY)
        .encode_image(&small)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Thumbnail { jpeg, width, height })
}

/// Decodes a thumbnail as JPEG (the whole image, not just its header) and returns its
/// width and height.
pub fn decode_thumbnail(jpeg: &[u8]) -> Result<(u32, u32), String> {
    let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).map_err(|e| e.to_string())?;
    Ok((image.width(), image.height()))
}

/// A client of the broker's media server for one registered number: uploads and fetches
/// with HTTP Basic authentication (the number and its key), trusting the same CA as the
/// QUIC connection. Cheap to clone.
#[derive(Clone)]
pub struct MediaClient {
    agent: ureq::Agent,
    /// `https://host:port`, no trailing slash.
    base: String,
    /// The base's scheme and authority, to compare fetched URLs with.
    origin: (String, String),
    /// The `Authorization` header's value.
    auth: Arc<str>,
}

impl std::fmt::Debug for MediaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the key.
        f.debug_struct("MediaClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl MediaClient {
    /// A client of the media server at `base` (`https://host:port`) for `number` with its
    /// `key`, trusting the certificates in the PEM file `ca`.
    pub fn new(base: &str, ca: &Path, number: &str, key: &str) -> Result<MediaClient, MediaError> {
        let base = base.trim_end_matches('/').to_string();
        let origin = origin_of(&base)?;
        if !origin.0.eq_ignore_ascii_case("https") {
            return Err(MediaError::Url { url: base, detail: "the media server is reached over https".into() });
        }
        let ca_err = |detail: String| MediaError::Ca { path: ca.to_path_buf(), detail };
        let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(cert) = item.map_err(|e| ca_err(e.to_string()))? {
                certs.push(cert);
            }
        }
        if certs.is_empty() {
            return Err(ca_err("no certificate in file".into()));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            // Error answers are read and turned into MediaError here.
            .http_status_as_error(false)
            .https_only(true)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .timeout_per_write(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{number}:{key}"));
        Ok(MediaClient { agent, base, origin, auth: format!("Basic {credentials}").into() })
    }

    /// The media server's address, `https://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Uploads the file at `path` as `mime`, streaming it from disk. Blocks; see
    /// [`MediaClient::upload`] for async code.
    pub fn upload_blocking(&self, path: &Path, mime: &str) -> Result<Upload, MediaError> {
        let file = File::open(path).map_err(|e| MediaError::File { path: path.to_path_buf(), source: e })?;
        let size = file.metadata().map_err(|e| MediaError::File { path: path.to_path_buf(), source: e })?.len();
        let url = format!("{}/media", self.base);
        // Expect: 100-continue lets the server refuse (401, 413) before the body is sent.
        let answer = self
            .agent
            .post(&url)
            .header("Authorization", &*self.auth)
            .header("Content-Type", mime)
            .header("Content-Length", size.to_string())
            .header("Expect", "100-continue")
            .send(file)
            .map_err(|e| self.http_error(e))?;
        let status = answer.status();
        let mut body = answer.into_body();
        if status != StatusCode::CREATED {
            return Err(self.status_error(status, &mut body, size));
        }
        let upload: Upload = body
            .with_config()
            .limit(64 * 1024)
            .read_json()
            .map_err(|e| MediaError::BadAnswer(format!("201 with a body that is not an upload: {e}")))?;
        if upload.size != size {
            return Err(MediaError::BadAnswer(format!("stored {} bytes of {size}", upload.size)));
        }
        Ok(upload)
    }

    /// Downloads `url` into the file `dest`, streaming, and checks that its SHA-256 is
    /// `sha256` (hex: the one in the [`MediaMessage`], which the sender's client computed),
    /// or, when `None`, the server's `ETag` (which checks the transfer only). The bytes go
    /// to a temporary file beside `dest`, renamed over it only when complete and correct:
    /// on any error `dest` is left as it was. Returns the size and the hash.
    /// Blocks; see [`MediaClient::fetch`] for async code.
    pub fn fetch_blocking(&self, url: &str, sha256: Option<&str>, dest: &Path) -> Result<(u64, String), MediaError> {
        if let Some(hash) = sha256 {
            check_hash(hash)?;
        }
        let origin = origin_of(url)?;
        if !(origin.0.eq_ignore_ascii_case(&self.origin.0) && origin.1.eq_ignore_ascii_case(&self.origin.1)) {
            return Err(MediaError::ForeignUrl { url: url.to_string(), server: self.base.clone() });
        }
        let answer = self.agent.get(url).header("Authorization", &*self.auth).call().map_err(|e| self.http_error(e))?;
        let status = answer.status();
        let etag = answer.headers().get("etag").and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_string());
        let mut body = answer.into_body();
        if status != StatusCode::OK {
            return Err(self.status_error(status, &mut body, 0));
        }
        let expected = match (sha256, etag) {
            (Some(hash), _) => hash.to_ascii_lowercase(),
            (None, Some(etag)) => {
                check_hash(&etag).map_err(|_| MediaError::BadAnswer(format!("ETag {etag:?} is not a SHA-256")))?;
                etag.to_ascii_lowercase()
            }
            (None, None) => return Err(MediaError::BadAnswer("no ETag to check the download against; give the SHA-256".into())),
        };
        let file_err = |path: &Path, e: std::io::Error| MediaError::File { path: path.to_path_buf(), source: e };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Removed when dropped: a failed download leaves nothing.
        let mut tmp = tempfile::Builder::new()
            .prefix(".hotline-fetch-")
            .tempfile_in(dir)
            .map_err(|e| file_err(dir, e))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut reader = body.as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(MediaError::Http { server: self.base.clone(), detail: format!("download broke off: {e}") }),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(|e| file_err(tmp.path(), e))?;
            size += n as u64;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            return Err(MediaError::HashMismatch { expected, actual, size });
        }
        tmp.as_file().sync_all().map_err(|e| file_err(tmp.path(), e))?;
        tmp.persist(dest).map_err(|e| file_err(dest, e.error))?;
        Ok((size, actual))
    }

    /// Uploads the file at `path` (see [`MediaClient::upload_blocking`]) on tokio's blocking pool.
    pub async fn upload(&self, path: &Path, mime: &str) -> Result<Upload, MediaError> {
        let (this, path, mime) = (self.clone(), path.to_path_buf(), mime.to_string());
        blocking(move || this.upload_blocking(&path, &mime)).await
    }

    /// Downloads and checks `url` (see [`MediaClient::fetch_blocking`]) on tokio's blocking pool.
    pub async fn fetch(&self, url: &str, sha256: Option<&str>, dest: &Path) -> Result<(u64, String), MediaError> {
        let (this, url, sha256, dest) = (self.clone(), url.to_string(), sha256.map(str::to_string), dest.to_path_buf());
        blocking(move || this.fetch_blocking(&url, sha256.as_deref(), &dest)).await
    }

    /// Uploads the file at `path` and describes it in a [`MediaMessage`]: its MIME type
    /// from its extension ([`guess_mime`]) and, for an image the client decodes, a
    /// thumbnail and its dimensions. An image that cannot be decoded is refused before
    /// anything is uploaded (send it under another name, e.g. `.bin`, to send it as a file).
    pub async fn prepare(&self, path: &Path, caption: Option<String>) -> Result<MediaMessage, MediaError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| MediaError::File { path: path.to_path_buf(), source: std::io::ErrorKind::InvalidInput.into() })?;
        let mime = guess_mime(path);
        let thumbnail = if thumbnails(&mime) {
            let path = path.to_path_buf();
            Some(blocking(move || make_thumbnail(&path)).await?)
        } else {
            None
        };
        let upload = self.upload(path, &mime).await?;
        Ok(MediaMessage {
            url: upload.url,
            mime: upload.mime,
            size: upload.size,
            sha256: upload.sha256,
            name,
            caption,
            width: thumbnail.as_ref().map(|t| t.width),
            height: thumbnail.as_ref().map(|t| t.height),
            thumbnail: thumbnail.as_ref().map(Thumbnail::base64),
        })
    }

    /// A transport error in the client's words.
    fn http_error(&self, e: ureq::Error) -> MediaError {
        MediaError::Http { server: self.base.clone(), detail: e.to_string() }
    }

    /// An error answer: its status and (the start of) its text.
    fn status_error(&self, status: StatusCode, body: &mut ureq::Body, size: u64) -> MediaError {
        let text = body.with_config().limit(ERROR_TEXT_LIMIT).lossy_utf8(true).read_to_string().unwrap_or_default();
        let detail = match text.trim() {
            "" => status.canonical_reason().unwrap_or("no reason given").to_string(),
            text => text.to_string(),
        };
        match status {
            StatusCode::UNAUTHORIZED => MediaError::Unauthorized(detail),
            StatusCode::PAYLOAD_TOO_LARGE => MediaError::TooLarge { size, detail },
            StatusCode::NOT_FOUND => MediaError::NotFound(detail),
            other => MediaError::Status { status: other.as_u16(), detail },
        }
    }
}

/// The media server address for a broker at `server` when none is given: the same host,
/// port 4443 (the broker's default `media.listen`).
pub fn default_media_url(server: std::net::SocketAddr) -> String {
    match server.ip() {
        ip if ip.is_unspecified() => DEFAULT_MEDIA_URL.to_string(),
        std::net::IpAddr::V4(ip) => format!("https://{ip}:4443"),
        std::net::IpAddr::V6(ip) => format!("https://[{ip}]:4443"),
    }
}

/// Refuses a hash that is not 64 hex characters.
fn check_hash(hash: &str) -> Result<(), MediaError> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MediaError::BadHash(hash.to_string()));
    }
    Ok(())
}

/// The scheme and authority (`host:port`, the port made explicit) of an absolute URL.
fn origin_of(url: &str) -> Result<(String, String), MediaError> {
    let bad = |detail: &str| MediaError::Url { url: url.to_string(), detail: detail.to_string() };
    let uri: Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| bad(&e.to_string()))?;
    let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme (https://)"))?.to_ascii_lowercase();
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok((scheme, format!("{host}:{port}")))
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, MediaError> + Send + 'static) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(MediaError::Http { server: String::new(), detail: format!("the transfer task failed: {e}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MediaMessage {
        MediaMessage {
            url: "https://127.0.0.1:4443/media/0123456789abcdef0123456789abcdef".into(),
            mime: "image/png".into(),
            size: 12345,
            sha256: "ab".repeat(32),
            name: "cat.png".into(),
            caption: Some("my cat".into()),
            thumbnail: Some("/9j/4AAQ".into()),
            width: Some(640),
            height: Some(480),
        }
    }

    #[test]
    fn media_body_is_the_documented_json_and_round_trips() {
        let message = sample();
        let json: serde_json::Value = serde_json::from_slice(&message.to_body()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = ["url", "mime", "size", "sha256", "name", "caption", "thumbnail", "width", "height"];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(json["size"], 12345);
        assert_eq!(MediaMessage::from_body(&message.to_body()).unwrap(), message);
        assert_eq!(message.kind(), MessageKind::Media { mime: "image/png".into() });

        // A file without caption or thumbnail: the fields are null, and may be left out.
        let plain = MediaMessage { caption: None, thumbnail: None, width: None, height: None, mime: "application/pdf".into(), ..sample() };
        let json: serde_json::Value = serde_json::from_slice(&plain.to_body()).unwrap();
        assert!(json["caption"].is_null() && json["thumbnail"].is_null() && json["width"].is_null());
        let short = br#"{"url":"https://h:1/media/x","mime":"text/plain","size":1,"sha256":"00","name":"a.txt"}"#;
        assert_eq!(MediaMessage::from_body(short).unwrap().caption, None);
        assert!(matches!(MediaMessage::from_body(b"hello"), Err(MediaError::Message(_))));
    }

    #[test]
    fn thumbnail_of_a_png_is_a_small_jpeg_within_96_px() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        let image = image::RgbaImage::from_fn(640, 320, |x, y| image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 200]));
        image.save(&path).unwrap();
        let thumb = make_thumbnail(&path).unwrap();
        assert_eq!((thumb.width, thumb.height), (640, 320));
        assert!(thumb.jpeg.len() < 16 * 1024, "{} bytes", thumb.jpeg.len());
        let decoded = image::load_from_memory_with_format(&thumb.jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (96, 48));
        assert_eq!(decode_thumbnail(&thumb.jpeg).unwrap(), (96, 48));
        assert!(decode_thumbnail(b"\x89PNG not a jpeg").is_err());
        // Through Base64 and back.
        let message = MediaMessage { thumbnail: Some(thumb.base64()), ..sample() };
        assert_eq!(message.thumbnail_jpeg().unwrap().unwrap(), thumb.jpeg);

        // Not an image: a clear error naming the file.
        let fake = dir.path().join("fake.png");
        std::fs::write(&fake, b"not a picture").unwrap();
        let err = make_thumbnail(&fake).unwrap_err().to_string();
        assert!(err.contains("fake.png"), "{err}");
    }

    #[test]
    fn mime_types_come_from_the_extension() {
        assert_eq!(guess_mime(Path::new("a/cat.JPG")), "image/jpeg");
        assert_eq!(guess_mime(Path::new("cat.png")), "image/png");
        assert_eq!(guess_mime(Path::new("notes.txt")), "text/plain");
        assert_eq!(guess_mime(Path::new("report.pdf")), "application/pdf");
        assert_eq!(guess_mime(Path::new("blob")), "application/octet-stream");
        assert_eq!(guess_mime(Path::new("x.unknownext")), "application/octet-stream");
        assert!(thumbnails("image/webp") && !thumbnails("image/svg+xml") && !thumbnails("text/plain"));
    }

    #[test]
    fn fetch_refuses_other_servers_and_bad_hashes_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap().cert;
        std::fs::write(&ca, cert.pem()).unwrap();
        let media = MediaClient::new("https://127.0.0.1:4443/", &ca, "+15550000001", "secret").unwrap();
        assert_eq!(media.base(), "https://127.0.0.1:4443");
        assert!(!format!("{media:?}").contains("secret"));
        let dest = dir.path().join("out");
        let hash = "00".repeat(32);
        let err = media.fetch_blocking("https://evil.example:4443/media/00", Some(&hash), &dest).unwrap_err();
        assert!(matches!(err, MediaError::ForeignUrl { .. }), "{err}");
        let err = media.fetch_blocking("https://127.0.0.1/media/00", Some(&hash), &dest).unwrap_err();
        assert!(matches!(err, MediaError::ForeignUrl { .. }), "{err}");
        let err = media.fetch_blocking("https://127.0.0.1:4443/media/00", Some("abc"), &dest).unwrap_err();
        assert!(matches!(err, MediaError::BadHash(_)), "{err}");
        assert!(!dest.exists());
        assert!(matches!(MediaClient::new("http://127.0.0.1:4443", &ca, "+1", "k"), Err(MediaError::Url { .. })));
        assert!(matches!(MediaClient::new("https://127.0.0.1:4443", &dir.path().join("none.pem"), "+1", "k"), Err(MediaError::Ca { .. })));
    }

    #[test]
    fn default_media_url_follows_the_broker_host() {
        assert_eq!(default_media_url("127.0.0.1:4433".parse().unwrap()), "https://127.0.0.1:4443");
        assert_eq!(default_media_url("10.1.2.3:5000".parse().unwrap()), "https://10.1.2.3:4443");
        assert_eq!(default_media_url("[::1]:4433".parse().unwrap()), "https://[::1]:4443");
        assert_eq!(default_media_url("0.0.0.0:4433".parse().unwrap()), DEFAULT_MEDIA_URL);
    }
}
