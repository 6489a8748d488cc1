//! The media endpoint over real HTTPS against the real broker: uploads come back byte for
//! byte (whole, by range, HEAD), the same content is one file on disk under two ids,
//! credentials are required and checked, an oversized or cut-off upload leaves nothing on
//! disk, unknown ids are 404, expiry deletes the object and its file, QUIC clients are
//! served while an upload runs, a certificate reload (SIGHUP) applies to it, and a media
//! port in use stops the broker at start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hotline_protocol::ServerFrame;
use hotline_tests::{bin, eventually, Broker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(10);
const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

/// An answer: status, headers (names in lower case), body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTPS client of one broker's media endpoint, trusting its development certificate.
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(broker: &Broker) -> Http {
        let pem = std::fs::read(broker.data.join("tls/cert.pem")).unwrap();
        let cert = ureq::tls::Certificate::from_pem(&pem).unwrap();
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert]))).build();
        let agent = ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().new_agent();
        Http { agent, base: format!("https://{}", media_addr(broker)) }
    }

    fn run(&self, request: ureq::http::Request<impl ureq::AsSendBody>) -> Got {
        let mut response = self.agent.run(request).expect("HTTPS request");
        let status = response.status().as_u16();
        let headers = response.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("?").to_string())).collect();
        let body = response.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("reading the body");
        Got { status, headers, body }
    }

    fn request(&self, method: &str, path: &str, auth: Option<(&str, &str)>, headers: &[(&str, &str)]) -> ureq::http::request::Builder {
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some((user, password)) = auth {
            request = request.header("authorization", basic(user, password));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    }

    fn post(&self, auth: Option<(&str, &str)>, headers: &[(&str, &str)], body: &[u8]) -> Got {
        self.run(self.request("POST", "/media", auth, headers).body(body).unwrap())
    }

    fn get(&self, path: &str, auth: Option<(&str, &str)>, headers: &[(&str, &str)]) -> Got {
        self.run(self.request("GET", path, auth, headers).body(()).unwrap())
    }

    fn head(&self, path: &str, auth: Option<(&str, &str)>) -> Got {
        self.run(self.request("HEAD", path, auth, &[]).body(()).unwrap())
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn media_addr(broker: &Broker) -> SocketAddr {
    broker.media.expect("the broker serves media")
}

/// `n` bytes that are not all alike, different for each `seed`.
fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed)).collect()
}

/// The names of the files in `<data>/media/<sub>`.
fn files(broker: &Broker, sub: &str) -> Vec<String> {
    let dir: PathBuf = broker.data.join("media").join(sub);
    let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A TLS connection to the media endpoint written by hand: for requests a well-behaved
/// client library would not send (a body cut off midway, one sent slowly).
fn raw_tls(broker: &Broker) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    tls_stream(broker, &std::fs::read(broker.data.join("tls/cert.pem")).unwrap())
}

/// A TLS connection to the media endpoint trusting only the certificates in `ca_pem`
/// (the handshake happens at the first read or write).
fn tls_stream(broker: &Broker, ca_pem: &[u8]) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = TcpStream::connect(media_addr(broker)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

/// Whether a TLS handshake with the media endpoint succeeds when trusting only `ca_pem`.
fn handshake(broker: &Broker, ca_pem: &[u8]) -> bool {
    let mut stream = tls_stream(broker, ca_pem);
    let rustls::StreamOwned { conn, sock } = &mut stream;
    while conn.is_handshaking() {
        if conn.complete_io(sock).is_err() {
            return false;
        }
    }
    true
}

/// The head of an upload request with `extra` header lines (each ending in CRLF).
fn upload_head(broker: &Broker, key: &str, extra: &str) -> String {
    format!(
        "POST /media HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\n{extra}\r\n",
        media_addr(broker),
        basic(ALICE, key)
    )
}

/// Reads an HTTP response from a raw stream until the connection ends or `Content-Length`
/// bytes of body have come: the status and the text.
fn read_response(stream: &mut impl Read) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if bytes.is_empty() => panic!("no response: {e}"),
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

#[tokio::test]
async fn uploads_come_back_exactly_whole_by_range_and_head_and_equal_content_is_one_file() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let http = Http::new(&broker);
    let alice = Some((ALICE, key.as_str()));
    let bytes = content(300_000, 1);
    let sha = hex::encode(Sha256::digest(&bytes));

    let before = now_ms();
    let up = http.post(alice, &[("content-type", "image/png")], &bytes);
    assert_eq!(up.status, 201, "{}", up.text());
    assert!(up.header("content-type").unwrap().starts_with("application/json"));
    let json = up.json();
    let id = json["id"].as_str().unwrap().to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
    assert_eq!(json["url"], format!("https://{}/media/{id}", media_addr(&broker)));
    assert_eq!(json["size"], 300_000);
    assert_eq!(json["sha256"], sha);
    assert_eq!(json["mime"], "image/png");
    let expires = json["expires_at_ms"].as_u64().unwrap();
    let thirty_days = 30 * 24 * 3600 * 1000;
    assert!(expires >= before + thirty_days && expires <= now_ms() + thirty_days, "{expires}");
    assert_eq!(files(&broker, "blobs"), [sha.as_str()]);
    assert!(files(&broker, "tmp").is_empty());

    let path = format!("/media/{id}");
    let whole = http.get(&path, alice, &[]);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert!(whole.body == bytes, "the bytes differ");
    assert_eq!(whole.header("content-type"), Some("image/png"));
    assert_eq!(whole.header("content-length"), Some("300000"));
    assert_eq!(whole.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));

    let part = http.get(&path, alice, &[("range", "bytes=1000-1999")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/300000"));
    assert!(part.body == bytes[1000..2000], "range bytes differ");
    let from = http.get(&path, alice, &[("range", "bytes=299990-")]);
    assert_eq!((from.status, from.body.as_slice()), (206, &bytes[299_990..]));
    let suffix = http.get(&path, alice, &[("range", "bytes=-5")]);
    assert_eq!((suffix.status, suffix.header("content-range")), (206, Some("bytes 299995-299999/300000")));
    assert_eq!(suffix.body, bytes[299_995..]);
    let beyond = http.get(&path, alice, &[("range", "bytes=300000-")]);
    assert_eq!((beyond.status, beyond.header("content-range")), (416, Some("bytes */300000")));

    let head = http.head(&path, alice);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert!(head.body.is_empty());

    // Another number downloads it too: any registered number with the id may.
    let bob_key = broker.register(BOB).await.unwrap();
    assert!(http.get(&path, Some((BOB, &bob_key)), &[]).body == bytes);

    // The same content again: a new id, the same single file.
    let again = http.post(alice, &[], &bytes);
    assert_eq!(again.status, 201, "{}", again.text());
    let again = again.json();
    assert_ne!(again["id"], json["id"]);
    assert_eq!((again["sha256"].as_str(), again["mime"].as_str()), (Some(sha.as_str()), Some("application/octet-stream")));
    assert_eq!(files(&broker, "blobs"), [sha.as_str()]);
    let other = http.get(&format!("/media/{}", again["id"].as_str().unwrap()), alice, &[]);
    assert_eq!((other.status, other.header("content-type")), (200, Some("application/octet-stream")));
    assert!(other.body == bytes);

    for unknown in [format!("/media/{}", "0".repeat(32)), "/media/nope".to_string(), format!("/media/{}", id.to_uppercase())] {
        let got = http.get(&unknown, alice, &[]);
        assert_eq!(got.status, 404, "{unknown}: {}", got.text());
        assert!(got.header("content-type").unwrap().starts_with("text/plain"));
    }

    let delete = http.run(http.request("DELETE", &path, alice, &[]).body(()).unwrap());
    assert_eq!(delete.status, 405);
    assert!(delete.text().contains("GET and HEAD"), "{}", delete.text());

    assert_eq!(broker.metric("hotline_media_uploads_total").unwrap(), 2.0);
    // Whole, three ranges, Bob's and the second id's: 416, HEAD and 404 are not downloads.
    assert_eq!(broker.metric("hotline_media_downloads_total").unwrap(), 6.0);
    assert_eq!(broker.metric("hotline_media_files").unwrap(), 1.0);
    assert_eq!(broker.metric("hotline_media_objects").unwrap(), 2.0);
    assert_eq!(broker.metric("hotline_media_disk_bytes").unwrap(), 300_000.0);
    let (_, status) = broker.admin_get("/api/status").unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["media"]["disk_bytes"], 300_000, "{status}");

    // Kept across a restart.
    let mut broker = broker;
    broker.restart().unwrap();
    let http = Http::new(&broker);
    assert!(http.get(&path, alice, &[]).body == bytes);
    assert_eq!(broker.metric("hotline_media_objects").unwrap(), 2.0);
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_and_a_malformed_type_400() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let http = Http::new(&broker);
    let stored = http.post(Some((ALICE, &key)), &[], b"hello");
    assert_eq!(stored.status, 201);
    let path = format!("/media/{}", stored.json()["id"].as_str().unwrap());

    let wrong_key = "x".repeat(43);
    for (auth, says) in [
        (None, "credentials required"),
        (Some((ALICE, wrong_key.as_str())), "wrong or revoked key"),
        (Some((BOB, key.as_str())), "is not registered"),
        (Some(("alice", key.as_str())), "not an E.164 number"),
    ] {
        for got in [http.post(auth, &[], b"sneaky"), http.get(&path, auth, &[]), http.head(&path, auth)] {
            assert_eq!(got.status, 401, "{auth:?}: {}", got.text());
            assert_eq!(got.header("www-authenticate"), Some("Basic realm=\"hotline-media\""));
            if !got.body.is_empty() {
                assert!(got.text().contains(says), "{auth:?}: {}", got.text());
            }
        }
    }
    let garbled = http.run(http.request("GET", &path, None, &[("authorization", "Basic !!!")]).body(()).unwrap());
    assert_eq!(garbled.status, 401);

    let bad = http.post(Some((ALICE, &key)), &[("content-type", "not a type")], b"x");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("Content-Type"), "{}", bad.text());

    // Nothing of the refused uploads was kept.
    assert_eq!(files(&broker, "blobs").len(), 1);
    assert!(files(&broker, "tmp").is_empty());
    assert_eq!(broker.metric("hotline_media_uploads_total").unwrap(), 1.0);
    assert_eq!(broker.metric("hotline_media_uploads_refused_total{reason=\"unauthorized\"}").unwrap(), 4.0);
    assert_eq!(broker.metric("hotline_media_uploads_refused_total{reason=\"bad_request\"}").unwrap(), 1.0);
}

#[tokio::test]
async fn an_oversized_upload_gets_413_and_leaves_nothing_on_disk() {
    let broker = Broker::start_with_config("[media]\nmax_upload_bytes = 100000\n").unwrap();
    let key = broker.register(ALICE).await.unwrap();

    // Known from Content-Length: refused before any body is read.
    let mut stream = raw_tls(&broker);
    stream.write_all(upload_head(&broker, &key, "Content-Length: 100001\r\n").as_bytes()).unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("100000"), "{text}");

    // Chunked: refused once the streamed body passes the limit.
    let mut stream = raw_tls(&broker);
    stream.write_all(upload_head(&broker, &key, "Transfer-Encoding: chunked\r\n").as_bytes()).unwrap();
    for i in 0..4 {
        let chunk = content(25_000, i);
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
        stream.write_all(&chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    // The limit exactly so far; one byte more passes it. (Nothing after it: the broker
    // stops reading there, and bytes it never reads could reset the connection.)
    stream.write_all(b"1\r\nX").unwrap();
    stream.flush().unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 413, "{text}");

    assert!(files(&broker, "blobs").is_empty());
    assert!(files(&broker, "tmp").is_empty());
    assert_eq!(broker.metric("hotline_media_uploads_refused_total{reason=\"too_large\"}").unwrap(), 2.0);

    // Exactly the limit is fine.
    let http = Http::new(&broker);
    let fits = http.post(Some((ALICE, &key)), &[], &content(100_000, 9));
    assert_eq!(fits.status, 201, "{}", fits.text());
}

#[tokio::test]
async fn an_upload_cut_off_midway_leaves_nothing() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let mut stream = raw_tls(&broker);
    stream.write_all(upload_head(&broker, &key, "Content-Length: 400000\r\n").as_bytes()).unwrap();
    stream.write_all(&content(200_000, 3)).unwrap();
    stream.flush().unwrap();
    // The half that came is on disk, in tmp/, not in blobs/…
    eventually(T, || files(&broker, "tmp").len().eq(&1).then_some(())).expect("the upload streams into media/tmp");
    assert!(files(&broker, "blobs").is_empty());
    // …and goes when the connection does.
    drop(stream);
    eventually(T, || files(&broker, "tmp").is_empty().then_some(())).expect("the cut-off upload is deleted");
    assert!(files(&broker, "blobs").is_empty());
    eventually(T, || (broker.metric("hotline_media_uploads_refused_total{reason=\"cut_off\"}").ok()? == 1.0).then_some(()))
        .expect("the cut-off upload is counted");
    assert_eq!(broker.metric("hotline_media_uploads_total").unwrap(), 0.0);
    assert_eq!(broker.metric("hotline_media_objects").unwrap(), 0.0);

    // A broker killed during an upload leaves a temporary file; the next start deletes it.
    let mut broker = broker;
    let mut stream = raw_tls(&broker);
    stream.write_all(upload_head(&broker, &key, "Content-Length: 400000\r\n").as_bytes()).unwrap();
    stream.write_all(&content(200_000, 4)).unwrap();
    stream.flush().unwrap();
    eventually(T, || files(&broker, "tmp").len().eq(&1).then_some(())).unwrap();
    broker.kill().unwrap();
    drop(stream);
    assert_eq!(files(&broker, "tmp").len(), 1);
    broker.start_again().unwrap();
    assert!(files(&broker, "tmp").is_empty());
    assert!(files(&broker, "blobs").is_empty());
}

#[tokio::test]
async fn expiry_removes_the_object_and_its_file() {
    let broker = Broker::start_with_config("[media]\nexpiry_secs = 2\nsweep_secs = 1\n").unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let http = Http::new(&broker);
    let alice = Some((ALICE, key.as_str()));
    let up = http.post(alice, &[], &content(5000, 5));
    assert_eq!(up.status, 201);
    let json = up.json();
    let path = format!("/media/{}", json["id"].as_str().unwrap());
    assert_eq!(http.get(&path, alice, &[]).status, 200);
    assert_eq!(files(&broker, "blobs"), [json["sha256"].as_str().unwrap()]);

    eventually(Duration::from_secs(20), || files(&broker, "blobs").is_empty().then_some(())).expect("the expired file is deleted");
    assert!(now_ms() >= json["expires_at_ms"].as_u64().unwrap());
    let gone = http.get(&path, alice, &[]);
    assert_eq!(gone.status, 404, "{}", gone.text());
    eventually(T, || (broker.metric("hotline_media_expired_total").ok()? == 1.0).then_some(())).unwrap();
    assert_eq!(broker.metric("hotline_media_objects").unwrap(), 0.0);
    assert_eq!(broker.metric("hotline_media_disk_bytes").unwrap(), 0.0);
}

#[tokio::test]
async fn quic_clients_are_served_while_an_upload_runs() {
    let broker = Broker::start().unwrap();
    let key = broker.register(ALICE).await.unwrap();
    let bob_key = broker.register(BOB).await.unwrap();

    // An upload that has sent half its body and waits.
    let mut stream = raw_tls(&broker);
    stream.write_all(upload_head(&broker, &key, "Content-Length: 2000000\r\n").as_bytes()).unwrap();
    let bytes = content(2_000_000, 6);
    stream.write_all(&bytes[..1_000_000]).unwrap();
    stream.flush().unwrap();
    eventually(T, || files(&broker, "tmp").len().eq(&1).then_some(())).unwrap();

    let mut alice = broker.login(ALICE, &key).await.unwrap();
    let mut bob = broker.login(BOB, &bob_key).await.unwrap();
    let cid = alice.send(BOB, b"while uploading".to_vec()).await.unwrap();
    assert!(matches!(alice.next_frame_within(T).await.unwrap(), ServerFrame::Sent { client_id, .. } if client_id == cid));
    assert!(matches!(bob.next_frame_within(T).await.unwrap(), ServerFrame::Message { from, body, .. } if from == ALICE && body == b"while uploading"));

    // The upload then finishes as if nothing happened.
    let finished = tokio::task::spawn_blocking(move || {
        stream.write_all(&bytes[1_000_000..]).unwrap();
        stream.flush().unwrap();
        read_response(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(finished.0, 201, "{}", finished.1);
    assert!(finished.1.contains(&hex::encode(Sha256::digest(content(2_000_000, 6)))), "{}", finished.1);
}

#[tokio::test]
async fn a_certificate_reload_applies_to_the_media_endpoint_too() {
    let broker = Broker::start().unwrap();
    let (cert, key) = (broker.data.join("tls/cert.pem"), broker.data.join("tls/key.pem"));
    let old = std::fs::read(&cert).unwrap();
    assert!(handshake(&broker, &old));
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let new = certified.cert.pem();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(&cert, &new).unwrap();
    assert!(!handshake(&broker, new.as_bytes()), "the new certificate is served before the reload");
    unsafe { libc::kill(broker.pid().unwrap() as i32, libc::SIGHUP) };
    eventually(T, || handshake(&broker, new.as_bytes()).then_some(())).expect("the reloaded certificate is served");
    assert!(!handshake(&broker, &old), "the old certificate is still served");
    // And the endpoint works on with it.
    let key = broker.register(ALICE).await.unwrap();
    let up = Http::new(&broker).post(Some((ALICE, &key)), &[], b"after the reload");
    assert_eq!(up.status, 201, "{}", up.text());
}

#[test]
fn a_media_port_in_use_is_a_clear_startup_error_and_media_can_be_off() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("hotline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--media", &port, "--data"])
        .arg(dir.path().join("data"))
        .env("HOTLINE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("binding the media endpoint media.listen = {port}")) && stderr.contains("in use"), "{stderr}");

    let broker = Broker::start_with_config("[media]\nenabled = false\n").unwrap();
    assert_eq!(broker.media, None);
    assert!(!broker.data.join("media").exists());
}
