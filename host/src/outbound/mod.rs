//! The outbound webhook client: a blocking HTTPS POST of a JSON body to a provider (the SMS
//! gateway, the push gateway), signed, with a per-attempt time limit and retries with
//! doubling back-off for the failures that may pass (5xx, 429, time-outs, connections).
//! Blocking on purpose: callers run it on threads of their own, never on a tokio worker or
//! a plugin thread. Its counters feed `/metrics` ([`expose`]).
//!
//! Headers of every request: `Content-Type: application/json`, `X-Hotline-Request-Id` (the
//! same on every retry, so a gateway can drop duplicates), `X-Hotline-Timestamp` (Unix
//! seconds of the attempt), with a secret `X-Hotline-Signature: sha256=<hex>` (HMAC-SHA256
//! of `"<timestamp>.<body>"`, see [`signature`]), and the configured static header.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::admin::Exposition;
use crate::config::WebhookConfig;

/// Longest wait between two attempts, however many attempts are configured.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Characters of a refusing gateway's answer kept in [`OutboundError::Rejected`].
const BODY_CHARS: usize = 200;

/// What a delivered request took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The gateway's 2xx status.
    pub status: u16,
    /// Attempts made, the successful one included.
    pub attempts: u32,
}

/// A request that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The gateway refused the request (a 4xx other than 429, or another non-2xx status
    /// that retrying cannot change): not retried.
    #[error("the gateway refused the request with status {status}: {body:?}")]
    Rejected { status: u16, body: String },
    /// Every attempt failed (5xx, 429, time-out, connection).
    #[error("{attempts} attempts failed; the last: {last}")]
    GaveUp { attempts: u32, last: String },
    /// The configuration cannot work (bad URL, unreadable CA file).
    #[error("{0}")]
    Config(String),
}

/// A configured webhook; cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    url: String,
    agent: ureq::Agent,
    header: Option<(String, String)>,
    hmac: Option<ring::hmac::Key>,
    attempts: u32,
    backoff: Duration,
    counters: Arc<Counters>,
}

/// What a status means to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A 2xx.
    Delivered,
    /// Final: retrying cannot help.
    Rejected,
    /// May pass on a later attempt.
    Retry,
}

/// How a status answers an attempt: 2xx delivered; 429 and 5xx retried; anything else
/// (4xx, and the 1xx/3xx a POST should never get: redirects are not followed) refused.
fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Delivered,
        429 | 500..=599 => Class::Retry,
        _ => Class::Rejected,
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    /// The status and the first [`BODY_CHARS`] characters of the answer.
    Rejected(u16, String),
    /// Why it failed.
    Retry(String),
}

/// The signature header's value for a request at `timestamp` (Unix seconds) with `body`:
/// `sha256=` and the lowercase hex of HMAC-SHA256(`secret`, `"<timestamp>.<body>"`).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), timestamp, body)
}

fn sign(key: &ring::hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut context = ring::hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Checks that `url` is an `https://` URL with a host, or an `http://` one to a loopback
/// host (`localhost`, 127.0.0.0/8, `[::1]`): a secret or a code never crosses a network in
/// clear text.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("{url:?} has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!("{url:?} is http:// to a host that is not loopback; use https://")),
        _ => Err(format!("{url:?} must start with https:// (or http:// for a loopback host)")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a static header's name and value (what `http` accepts in a request).
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    ureq::http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    ureq::http::HeaderValue::from_str(value).map_err(|_| format!("the value of header {name} is not a valid header value"))?;
    Ok(())
}

impl Webhook {
    /// A webhook for `config`; `name` ("sms", "push") names it in logs and metrics. Reads
    /// the CA file now.
    pub fn new(name: &'static str, config: &WebhookConfig) -> Result<Webhook, OutboundError> {
        check_url(&config.url).map_err(OutboundError::Config)?;
        let mut builder = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms.max(1))))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("hotline/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| OutboundError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
            let mut roots = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                    Ok(_) => {}
                    Err(e) => return Err(OutboundError::Config(format!("CA file {}: {e}", path.display()))),
                }
            }
            if roots.is_empty() {
                return Err(OutboundError::Config(format!("CA file {} holds no PEM certificate", path.display())));
            }
            let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&roots)).build();
            builder = builder.tls_config(tls);
        }
        let header = match &config.header {
            Some(h) => {
                check_header(&h.name, h.value.expose()).map_err(OutboundError::Config)?;
                Some((h.name.clone(), h.value.expose().to_string()))
            }
            None => None,
        };
        let hmac = config.hmac_secret.as_ref().map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.expose().as_bytes()));
        Ok(Webhook {
            inner: Arc::new(Inner {
                name,
                url: config.url.clone(),
                agent: builder.build().into(),
                header,
                hmac,
                attempts: config.attempts.max(1),
                backoff: Duration::from_millis(config.backoff_ms),
                counters: counters(name),
            }),
        })
    }

    /// The name it was made with.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// POSTs `body` (JSON bytes) with the headers above; retries 5xx, 429 and transport
    /// errors with back-off (doubling from `backoff_ms`, at most [`MAX_BACKOFF`]) up to
    /// `attempts`; a 4xx other than 429 is final at once. Blocking: call it from an
    /// outbound thread.
    pub fn post_json(&self, request_id: &str, body: &[u8]) -> Result<Delivered, OutboundError> {
        let inner = &*self.inner;
        let mut wait = inner.backoff;
        let mut last = String::new();
        for attempt in 1..=inner.attempts {
            match self.attempt(request_id, body) {
                Outcome::Delivered(status) => {
                    inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return Ok(Delivered { status, attempts: attempt });
                }
                Outcome::Rejected(status, body) => {
                    inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(gateway = inner.name, request_id, status, answer = %body, "the gateway refused the request; not retried");
                    return Err(OutboundError::Rejected { status, body });
                }
                Outcome::Retry(why) => {
                    inner.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    last = why;
                    if attempt < inner.attempts {
                        tracing::debug!(gateway = inner.name, request_id, attempt, error = %last, "a gateway request failed; retrying in {wait:?}");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        inner.counters.gave_up.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(gateway = inner.name, request_id, attempts = inner.attempts, error = %last, "every attempt of a gateway request failed; given up");
        Err(OutboundError::GaveUp { attempts: inner.attempts, last })
    }

    /// One POST, signed with the time of the attempt.
    fn attempt(&self, request_id: &str, body: &[u8]) -> Outcome {
        let inner = &*self.inner;
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut request = inner
            .agent
            .post(&inner.url)
            .header("Content-Type", "application/json")
            .header("X-Hotline-Request-Id", request_id)
            .header("X-Hotline-Timestamp", timestamp.to_string());
        if let Some(key) = &inner.hmac {
            request = request.header("X-Hotline-Signature", sign(key, timestamp, body));
        }
        if let Some((name, value)) = &inner.header {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                match classify(status) {
                    Class::Delivered => Outcome::Delivered(status),
                    Class::Retry => Outcome::Retry(format!("status {status}")),
                    Class::Rejected => {
                        let text = response.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                        Outcome::Rejected(status, text.chars().take(BODY_CHARS).collect())
                    }
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

/// One gateway's counters.
#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    rejected: AtomicU64,
    gave_up: AtomicU64,
    failed_attempts: AtomicU64,
}

/// The gateways' counters, by name; "sms" and "push" exist (at 0) from start.
static GATEWAYS: LazyLock<Mutex<BTreeMap<&'static str, Arc<Counters>>>> =
    LazyLock::new(|| Mutex::new(["sms", "push"].into_iter().map(|n| (n, Arc::default())).collect()));

fn counters(name: &'static str) -> Arc<Counters> {
    GATEWAYS.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_default().clone()
}

/// Writes `hotline_outbound_requests_total{gateway,outcome}` and
/// `hotline_outbound_attempts_failed_total{gateway}`.
pub(crate) fn expose(out: &mut Exposition) {
    let gateways: Vec<(&str, Arc<Counters>)> =
        GATEWAYS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, c)| (*n, c.clone())).collect();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let name = "hotline_outbound_requests_total";
    out.family(name, "counter", "Requests to an outbound gateway (sms, push), by how they ended: delivered (a 2xx), rejected (a 4xx, not retried), gave_up (every attempt failed).");
    for (gateway, c) in &gateways {
        for (outcome, value) in [("delivered", &c.delivered), ("rejected", &c.rejected), ("gave_up", &c.gave_up)] {
            out.sample(name, &[("gateway", gateway), ("outcome", outcome)], get(value));
        }
    }
    let name = "hotline_outbound_attempts_failed_total";
    out.family(name, "counter", "Attempts to an outbound gateway that failed and may be retried (5xx, 429, time-out, connection).");
    for (gateway, c) in &gateways {
        out.sample(name, &[("gateway", gateway)], get(&c.failed_attempts));
    }
}

#[cfg(test)]
mod tests;
