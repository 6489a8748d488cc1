//! The webhook client against a hand-rolled HTTP/1.1 receiver on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use super::*;
use crate::config::{Secret, WebhookHeader};

/// One request as the receiver saw it: headers (names in lower case) and body.
#[derive(Debug)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Answers one request per status in `statuses` (with `answer` as the body), one
/// connection each; returns what it received.
fn receiver(statuses: &[u16], answer: &'static str) -> (String, std::thread::JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let statuses = statuses.to_vec();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for status in statuses {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST /sms "), "{line}");
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                let (name, value) = line.trim_end().split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let length: usize = headers.iter().find(|(n, _)| n == "content-length").unwrap().1.parse().unwrap();
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen.push(Seen { headers, body });
            write!(reader.get_mut(), "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len()).unwrap();
        }
        seen
    });
    (url, handle)
}

fn config(url: String) -> WebhookConfig {
    WebhookConfig { backoff_ms: 10, hmac_secret: Some(Secret::new("whsec_test")), ..WebhookConfig::new(url) }
}

#[test]
fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
    // Python: hmac.new(b"whsec_test", b'1700000000.{"to":"+15551230001"}', hashlib.sha256).hexdigest()
    assert_eq!(
        signature(b"whsec_test", 1_700_000_000, br#"{"to":"+15551230001"}"#),
        "sha256=3acc876afb66eeb9141dd8c648442fbb5db3065d1ed8254459e33742b6a3cdeb"
    );
}

#[test]
fn only_5xx_and_429_are_retried() {
    for status in [200, 202, 204] {
        assert_eq!(classify(status), Class::Delivered, "{status}");
    }
    for status in [429, 500, 502, 503, 504] {
        assert_eq!(classify(status), Class::Retry, "{status}");
    }
    for status in [400, 401, 403, 404, 408, 413, 422, 301, 302, 100] {
        assert_eq!(classify(status), Class::Rejected, "{status}");
    }
}

#[test]
fn urls_are_https_or_http_to_loopback() {
    for url in ["https://sms.example.com/send", "http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:9000/", "https://10.0.0.1/"] {
        assert_eq!(check_url(url), Ok(()), "{url}");
    }
    for (url, says) in [
        ("http://sms.example.com/send", "not loopback"),
        ("http://10.0.0.1/", "not loopback"),
        ("ftp://example.com/", "must start with https://"),
        ("sms.example.com", "must start with https://"),
        ("https://", "not a URL"),
    ] {
        let err = check_url(url).unwrap_err();
        assert!(err.contains(says), "{url}: {err}");
    }
}

#[test]
fn a_request_failing_twice_is_delivered_on_the_third_attempt_with_the_same_id() {
    let (url, received) = receiver(&[503, 429, 200], "");
    let mut config = config(url);
    config.header = Some(WebhookHeader { name: "Authorization".into(), value: Secret::new("Bearer t0ken") });
    let webhook = Webhook::new("test-retry", &config).unwrap();
    let body = br#"{"request_id":"r-1","to":"+15551230001","text":"Your code is 12345"}"#;
    assert_eq!(webhook.post_json("r-1", body), Ok(Delivered { status: 200, attempts: 3 }));
    let seen = received.join().unwrap();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(request.body, body);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-hotline-request-id"), Some("r-1"));
        assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
        let timestamp: u64 = request.header("x-hotline-timestamp").unwrap().parse().unwrap();
        assert_eq!(request.header("x-hotline-signature"), Some(signature(b"whsec_test", timestamp, body).as_str()));
    }
    let c = counters("test-retry");
    assert_eq!((c.delivered.load(Ordering::Relaxed), c.failed_attempts.load(Ordering::Relaxed)), (1, 2));
}

#[test]
fn a_4xx_is_final_at_once_and_keeps_the_answer() {
    let (url, received) = receiver(&[400], "unknown destination");
    let webhook = Webhook::new("test-reject", &config(url)).unwrap();
    let err = webhook.post_json("r-2", b"{}").unwrap_err();
    assert_eq!(err, OutboundError::Rejected { status: 400, body: "unknown destination".into() });
    assert_eq!(received.join().unwrap().len(), 1);
    assert_eq!(counters("test-reject").rejected.load(Ordering::Relaxed), 1);
}

#[test]
fn every_attempt_failing_gives_up_after_the_configured_number() {
    let (url, received) = receiver(&[500, 502], "");
    let webhook = Webhook::new("test-gave-up", &WebhookConfig { attempts: 2, ..config(url) }).unwrap();
    let err = webhook.post_json("r-3", b"{}").unwrap_err();
    assert_eq!(err, OutboundError::GaveUp { attempts: 2, last: "status 502".into() });
    assert_eq!(received.join().unwrap().len(), 2);
    // Nobody listening: a connection error, retried as well.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let webhook = Webhook::new("test-gave-up", &WebhookConfig { attempts: 2, ..config(url) }).unwrap();
    assert!(matches!(webhook.post_json("r-4", b"{}"), Err(OutboundError::GaveUp { attempts: 2, .. })));
    let mut out = Exposition::default();
    expose(&mut out);
    for line in [
        "hotline_outbound_requests_total{gateway=\"test-gave-up\",outcome=\"gave_up\"} 2",
        "hotline_outbound_attempts_failed_total{gateway=\"test-gave-up\"} 4",
        "hotline_outbound_requests_total{gateway=\"push\",outcome=\"delivered\"} 0",
    ] {
        assert!(out.text.lines().any(|l| l == line), "no {line:?} in\n{}", out.text);
    }
}

#[test]
fn a_bad_ca_file_or_url_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("ca.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (config, says) in [
        (WebhookConfig { ca_file: Some(dir.path().join("missing.pem")), ..WebhookConfig::new("https://example.com/") }, "cannot read CA file"),
        (WebhookConfig { ca_file: Some(empty), ..WebhookConfig::new("https://example.com/") }, "holds no PEM certificate"),
        (WebhookConfig::new("http://example.com/"), "not loopback"),
    ] {
        match Webhook::new("test-config", &config) {
            Err(OutboundError::Config(e)) => assert!(e.contains(says), "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
