//! The SMS gateway end to end: the real broker posts registration codes to an HTTPS
//! receiver this test runs on loopback (its own certificate, given as `ca_file`), signed
//! with `hmac_secret`; retries 5xx, gives a refusing gateway one attempt and the client an
//! error; and refuses a flood of code requests from one address (`sms.limits`) while other
//! addresses still register.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hotline_client::{Client, ClientError, ConnectOptions};
use hotline_protocol::ErrorCode;
use hotline_tests::{bin, refused, Broker};
use sha2::{Digest, Sha256};

const SECRET: &str = "whsec_e2e_secret";

/// One request the receiver got: its headers (names in lower case) and body.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no header {name}"))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTPS SMS gateway on 127.0.0.1: answers each request with the next status of its
/// script (200 once the script is used up) and keeps what it received.
struct Gateway {
    url: String,
    ca_file: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(script: &[u16]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca_file = dir.path().join("gateway-ca.pem");
        std::fs::write(&ca_file, certified.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let tls = Arc::new(tls);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/v1/sms", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let r = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
                let mut stream = rustls::StreamOwned::new(conn, stream);
                // A client that gave up mid-request (a time-out) is no request.
                let Some(request) = read_request(&mut stream) else { continue };
                r.lock().unwrap().push(request);
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let answer = if status == 400 { "unknown destination" } else { "" };
                let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len());
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        Gateway { url, ca_file, seen, _dir: dir }
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// The broker's config for this gateway, with `limits` as the `[sms.limits]` lines.
    fn config(&self, limits: &str) -> String {
        format!(
            "[sms]\nprovider = \"webhook\"\n\n[sms.webhook]\nurl = \"{}\"\nca_file = \"{}\"\nhmac_secret = \"{SECRET}\"\n\
             backoff_ms = 50\ntimeout_ms = 3000\n\n[sms.limits]\n{limits}\n",
            self.url,
            self.ca_file.display()
        )
    }
}

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /v1/sms "), "{line:?}");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let (name, value) = line.trim_end().split_once(':')?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers.iter().find(|(n, _)| n == "content-length")?.1.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { headers, body })
}

/// HMAC-SHA256 as RFC 2104 defines it, written here from SHA-256 alone (a check of the
/// broker's signature that shares no code with it).
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    hex::encode(Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize())
}

/// The request's signature checks out with the shared secret, as a gateway would verify it.
fn assert_signed(request: &Request) {
    let timestamp = request.header("x-hotline-timestamp");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(request.header("x-hotline-signature"), format!("sha256={}", hmac_sha256(SECRET.as_bytes(), &signed)));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(timestamp.parse().unwrap()) < 60, "timestamp {timestamp} is not now ({now})");
}

/// The 5-digit code in a text.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 5).unwrap_or_else(|| panic!("no code in {text:?}")).to_string()
}

async fn connect_from(broker: &Broker, local: &str) -> Client {
    Client::connect(&ConnectOptions { bind: Some(local.parse().unwrap()), ..broker.options() }).await.unwrap()
}

#[tokio::test]
async fn the_code_arrives_signed_at_the_gateway_and_registers_the_number() {
    let gateway = Gateway::start(&[]);
    let broker = Broker::start_with_config(&gateway.config("")).unwrap();
    let phone = "+15551230001";
    let mut client = broker.connect().await.unwrap();
    assert_eq!(client.request_code(phone).await.unwrap(), 600);
    let seen = gateway.seen();
    assert_eq!(seen.len(), 1, "one request per text");
    let request = &seen[0];
    assert_signed(request);
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    assert_eq!(body["to"], phone);
    assert_eq!(body["request_id"], request.header("x-hotline-request-id"));
    let key = client.verify(phone, &code_in(body["text"].as_str().unwrap())).await.unwrap();
    client.close().await;
    broker.login(phone, &key).await.expect("the registered number logs in");
    assert!(!broker.data.join("sms-outbox.jsonl").exists(), "the outbox is not used with the webhook provider");
    assert_eq!(broker.metric("hotline_sms_sent_total").unwrap(), 1.0);
    assert_eq!(broker.metric("hotline_outbound_requests_total{gateway=\"sms\",outcome=\"delivered\"}").unwrap(), 1.0);
}

#[tokio::test]
async fn a_gateway_answering_503_twice_gets_the_text_on_the_third_attempt() {
    let gateway = Gateway::start(&[503, 503]);
    let broker = Broker::start_with_config(&gateway.config("")).unwrap();
    let phone = "+15551230002";
    let mut client = broker.connect().await.unwrap();
    assert_eq!(client.request_code(phone).await.unwrap(), 600);
    let seen = gateway.seen();
    assert_eq!(seen.len(), 3, "two failed attempts and the one that went through");
    for request in &seen {
        assert_eq!(request.body, seen[0].body, "the same text each time");
        assert_eq!(request.header("x-hotline-request-id"), seen[0].header("x-hotline-request-id"), "the same id each time");
        assert_signed(request);
    }
    let code = code_in(seen[2].json()["text"].as_str().unwrap());
    client.verify(phone, &code).await.expect("one registration");
    assert_eq!(broker.metric("hotline_outbound_attempts_failed_total{gateway=\"sms\"}").unwrap(), 2.0);
    assert_eq!(broker.metric("hotline_registrations_total").unwrap(), 1.0);
}

#[tokio::test]
async fn a_gateway_refusing_the_text_gets_one_attempt_and_the_client_an_error() {
    let gateway = Gateway::start(&[400]);
    let broker = Broker::start_with_config(&gateway.config("")).unwrap();
    let mut client = broker.connect().await.unwrap();
    match client.request_code("+15551230003").await {
        Err(ClientError::Refused { error: ErrorCode::Rejected, reason }) => {
            assert!(reason.contains("the code could not be sent"), "{reason}");
        }
        other => panic!("expected a Rejected refusal, got {other:?}"),
    }
    assert_eq!(gateway.seen().len(), 1, "a 4xx is not retried");
    assert_eq!(broker.metric("hotline_sms_failed_total{reason=\"rejected\"}").unwrap(), 1.0);
    // The connection serves on: the next request (the gateway now answers 200) goes through.
    assert_eq!(client.request_code("+15551230004").await.unwrap(), 600);
    assert_eq!(gateway.seen().len(), 2);
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_while_other_addresses_register() {
    let gateway = Gateway::start(&[]);
    let broker = Broker::start_with_config(&gateway.config("per_address_per_hour = 3\nper_prefix_per_hour = 4\nprefix_digits = 6")).unwrap();
    // Ten requests from 127.0.0.2: three reach the gateway, seven are refused by the host.
    let mut flood = connect_from(&broker, "127.0.0.2:0").await;
    let mut refusals = 0;
    for i in 0..10 {
        match flood.request_code(&format!("+155512000{i:02}")).await {
            Ok(_) => assert!(i < 3, "request {i} got through"),
            Err(ClientError::Refused { error: ErrorCode::RateLimited, reason }) => {
                assert!(i >= 3, "request {i} refused: {reason}");
                assert!(reason.contains("from this network address") && reason.contains("at most 3 an hour"), "{reason}");
                refusals += 1;
            }
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    assert_eq!(refusals, 7);
    assert_eq!(gateway.seen().len(), 3, "refused requests send nothing");
    // Another address registers (the fourth number of prefix +155512)…
    let phone = "+15551200100";
    let mut other = connect_from(&broker, "127.0.0.1:0").await;
    other.request_code(phone).await.unwrap();
    let text = gateway.seen().last().unwrap().json();
    assert_eq!(text["to"], phone);
    other.verify(phone, &code_in(text["text"].as_str().unwrap())).await.expect("another address registers");
    // …until the prefix has had its four: then only other prefixes.
    match other.request_code("+15551200101").await {
        Err(ClientError::Refused { error: ErrorCode::RateLimited, reason }) => assert!(reason.contains("numbers starting +155512"), "{reason}"),
        other => panic!("expected the prefix limit, got {other:?}"),
    }
    assert_eq!(other.request_code("+447700900123").await.unwrap(), 600);
    assert_eq!(broker.metric("hotline_sms_refused_total{limit=\"address\"}").unwrap(), 7.0);
    assert_eq!(broker.metric("hotline_sms_refused_total{limit=\"prefix\"}").unwrap(), 1.0);
    assert_eq!(broker.metric("hotline_sms_sent_total").unwrap(), 5.0);
}

#[test]
fn check_config_refuses_a_gateway_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hotline.toml");
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(bin("hotline")).arg("check-config").arg(&path).output().unwrap()
    };
    let webhook = |lines: &str| format!("[sms]\nprovider = \"webhook\"\n\n[sms.webhook]\n{lines}\n");
    let err = refused(check(webhook("url = \"http://sms.example.com/send\"")));
    assert!(err.contains("sms.webhook.url") && err.contains("use https://"), "{err}");
    let err = refused(check(webhook(&format!("url = \"https://sms.example.com/send\"\nca_file = \"{}\"", dir.path().join("missing.pem").display()))));
    assert!(err.contains("cannot read CA file"), "{err}");
    let err = refused(check("[sms]\nprovider = \"webhook\"\n".into()));
    assert!(err.contains("[sms.webhook] is not set"), "{err}");
    let out = check(webhook("url = \"https://sms.example.com/send\"\nhmac_secret = \"whsec_never_shown\""));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && shown.contains("https://sms.example.com/send") && !shown.contains("never_shown"), "{shown}");
}
