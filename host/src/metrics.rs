//! The broker's own traffic counters and latency histograms for `/metrics`: plain atomics
//! the data path bumps (the session driver from the core's inputs and outputs, the
//! connection's inbox and writer, expiry) and [`Metrics::expose`] writes out. Counters only
//! ever grow; every labelled family has its label values fixed per series, and the ones an
//! operator alerts on (refusal reasons, close codes, failed-login reasons) exist at 0 from
//! start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotline_protocol::{close_code, ErrorCode, ReceiptStatus};

use crate::admin::Exposition;

/// Why a send was refused, as the `reason` label says it: the `ErrorCode` of its
/// `SendFailed` in snake case. These series exist from start.
pub const REFUSAL_REASONS: &[&str] =
    &["invalid_argument", "unknown_recipient", "rejected", "too_large", "retryable", "rate_limited", "queue_full"];

/// Why a `Login` failed (the close code that ended it); these series exist from start.
pub const LOGIN_FAILURES: &[&str] = &["auth_failed", "internal"];

/// Why an upload to the media endpoint was refused (`hotline_media_uploads_refused_total`);
/// these series exist from start. `unauthorized`: missing or wrong credentials;
/// `too_large`: over `media.max_upload_bytes`; `bad_request`: a malformed header;
/// `cut_off`: the body ended early or the client went silent; `busy`: too many uploads at
/// once; `storage`: writing the file or its record failed.
pub const MEDIA_REFUSALS: &[&str] = &["unauthorized", "too_large", "bad_request", "cut_off", "busy", "storage"];

/// Why a text was not sent (`hotline_sms_failed_total`); these series exist from start.
/// `rejected`: the gateway refused it (a 4xx); `gave_up`: every attempt failed; `outbox`:
/// the outbox file could not be written; `queue_full`: too many texts waited already.
pub const SMS_FAILURES: &[&str] = &["rejected", "gave_up", "outbox", "queue_full"];

/// The `code` label of a connection that ended without a close code of the broker's: the
/// client went silent (idle timeout), reset it, or the transport failed.
pub const LOST: &str = "lost";

/// Upper bounds of `hotline_send_seconds`' buckets: a send is answered once durable, so
/// from well under a millisecond (no fsync) to a few seconds (a slow disk, a slow router).
const SEND_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of `hotline_delivery_seconds`' buckets: from an online recipient's round
/// trip (milliseconds) to a phone that was off for a day or a week.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
    604800.0,
];

/// Every figure the broker counts about its traffic. One per broker ([`crate::broker::Broker::metrics`]).
pub struct Metrics {
    /// `Send` frames handed to a session.
    pub messages_received: AtomicU64,
    /// Sends committed (answered `Sent`), one per send whatever its recipients.
    pub messages_stored: AtomicU64,
    /// Queue items those sends put in recipients' queues (one per recipient).
    pub message_items_stored: AtomicU64,
    /// `Message` frames put in a connection's mailbox (a message pushed again after a
    /// reconnection counts again).
    pub messages_delivered: AtomicU64,
    /// Recipients' acknowledgements of pushed messages, committed.
    pub messages_acknowledged: AtomicU64,
    /// Queued items (messages and receipts) the expiry sweep deleted.
    pub messages_expired: AtomicU64,
    /// Sends answered `SendFailed`, by reason.
    refused: Labelled,
    /// Receipts put in senders' queues: [delivered, read].
    receipts_queued: [AtomicU64; 2],
    /// `Receipt` frames put in a connection's mailbox.
    pub receipts_pushed: AtomicU64,
    /// Acknowledgements of receipts, committed.
    pub receipts_acknowledged: AtomicU64,
    /// Bytes read from clients' streams.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients' streams.
    pub bytes_out: AtomicU64,
    /// Sessions that logged in (`LoggedIn` sent).
    pub logins: AtomicU64,
    /// Logins refused, by the close code that ended them.
    login_failures: Labelled,
    /// Devices registered (`Registered` sent).
    pub registrations: AtomicU64,
    /// QUIC connections accepted (handshake done).
    pub connections_opened: AtomicU64,
    /// Connections ended, by close code name (or [`LOST`]).
    connections_closed: Labelled,
    /// From a `Send` frame decoded to its `Sent`/`SendFailed` in the mailbox.
    pub send_seconds: Histogram,
    /// From a message's timestamp to the commit of its recipient's acknowledgement.
    pub delivery_seconds: Histogram,
    /// The media endpoint's figures.
    pub media: MediaMetrics,
    /// Push wake-ups (`crate::push`), shared with the push threads.
    pub push: std::sync::Arc<crate::push::PushMetrics>,
    /// Registration texts and the host's limits on them.
    pub sms: Arc<SmsMetrics>,
}

/// Registration texts: sent, failed, and code requests the host's limits refused.
pub struct SmsMetrics {
    /// Texts the provider took (a 2xx from the gateway, or a line in the outbox).
    pub sent: AtomicU64,
    /// Texts not sent, by [`SMS_FAILURES`] reason.
    failed: Labelled,
    /// Code requests refused by a host limit, by limit (`address`, `prefix`).
    refused: Labelled,
}

impl Default for SmsMetrics {
    fn default() -> SmsMetrics {
        SmsMetrics {
            sent: AtomicU64::new(0),
            failed: Labelled::new(SMS_FAILURES),
            refused: Labelled::new(&crate::sms::limits::Limit::ALL.map(|l| l.name())),
        }
    }
}

impl SmsMetrics {
    /// A text was not sent for `reason` (one of [`SMS_FAILURES`]).
    pub fn failed(&self, reason: &str) {
        self.failed.inc(reason);
    }

    /// A code request was refused by `limit`.
    pub fn refused(&self, limit: crate::sms::limits::Limit) {
        self.refused.inc(limit.name());
    }

    /// Texts not sent for `reason`.
    pub fn failed_count(&self, reason: &str) -> u64 {
        self.failed.get(reason)
    }

    fn expose(&self, out: &mut Exposition) {
        out.counter("hotline_sms_sent_total", "Registration texts the SMS provider took (the gateway answered 2xx, or the outbox line was written).", self.sent.load(Ordering::Relaxed));
        self.failed.expose(out, "hotline_sms_failed_total", "Registration texts not sent, by reason (rejected: the gateway refused, a 4xx; gave_up: every attempt failed; outbox: the file could not be written; queue_full: too many texts waited); the client got an error.", "reason");
        self.refused.expose(out, "hotline_sms_refused_total", "Code requests refused by the host's limits (sms.limits) before the registrar was asked, by limit (address, prefix).", "limit");
    }
}

/// The media endpoint's counters and what it holds on disk.
pub struct MediaMetrics {
    /// Uploads stored (answered `201`).
    pub uploads: AtomicU64,
    /// Bytes of those uploads (before deduplication).
    pub upload_bytes: AtomicU64,
    /// Downloads answered `200` or `206` (`HEAD` not counted).
    pub downloads: AtomicU64,
    /// Bytes sent in download bodies.
    pub download_bytes: AtomicU64,
    /// Uploads refused, by [`MEDIA_REFUSALS`] reason.
    refused: Labelled,
    /// Upload ids deleted by the sweep after `media.expiry_secs`.
    pub expired: AtomicU64,
    /// Upload ids not yet expired (set by the server and its sweep).
    pub objects: AtomicU64,
    /// Files (distinct contents) on disk.
    pub files: AtomicU64,
    /// Bytes of those files.
    pub disk_bytes: AtomicU64,
}

impl Default for MediaMetrics {
    fn default() -> MediaMetrics {
        MediaMetrics {
            uploads: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
            download_bytes: AtomicU64::new(0),
            refused: Labelled::new(MEDIA_REFUSALS),
            expired: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            files: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
        }
    }
}

impl MediaMetrics {
    /// An upload was refused for `reason` (one of [`MEDIA_REFUSALS`]).
    pub fn refused(&self, reason: &str) {
        self.refused.inc(reason);
    }

    fn expose(&self, out: &mut Exposition) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.counter("hotline_media_uploads_total", "Uploads to the media endpoint stored (answered 201).", get(&self.uploads));
        out.counter("hotline_media_upload_bytes_total", "Bytes of stored uploads (the same content uploaded twice counts twice).", get(&self.upload_bytes));
        self.refused.expose(out, "hotline_media_uploads_refused_total", "Uploads refused, by reason (unauthorized, too_large, bad_request, cut_off, busy, storage); nothing of them stays on disk.", "reason");
        out.counter("hotline_media_downloads_total", "Downloads from the media endpoint answered 200 or 206 (HEAD not counted).", get(&self.downloads));
        out.counter("hotline_media_download_bytes_total", "Bytes sent in download bodies.", get(&self.download_bytes));
        out.counter("hotline_media_expired_total", "Upload ids deleted by the sweep after media.expiry_secs.", get(&self.expired));
        out.gauge("hotline_media_objects", "Upload ids that can be downloaded.", get(&self.objects));
        out.gauge("hotline_media_files", "Files on disk in <data>/media/blobs (one per distinct content).", get(&self.files));
        out.gauge("hotline_media_disk_bytes", "Bytes of the files in <data>/media/blobs.", get(&self.disk_bytes));
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            messages_received: AtomicU64::new(0),
            messages_stored: AtomicU64::new(0),
            message_items_stored: AtomicU64::new(0),
            messages_delivered: AtomicU64::new(0),
            messages_acknowledged: AtomicU64::new(0),
            messages_expired: AtomicU64::new(0),
            refused: Labelled::new(REFUSAL_REASONS),
            receipts_queued: Default::default(),
            receipts_pushed: AtomicU64::new(0),
            receipts_acknowledged: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            login_failures: Labelled::new(LOGIN_FAILURES),
            registrations: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            connections_closed: Labelled::new(&CLOSE_CODE_NAMES.iter().copied().chain([LOST]).collect::<Vec<_>>()),
            send_seconds: Histogram::new(SEND_BUCKETS),
            delivery_seconds: Histogram::new(DELIVERY_BUCKETS),
            media: MediaMetrics::default(),
            push: Default::default(),
            sms: Arc::default(),
        }
    }
}

/// Adds one.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// A send was refused with `error`.
    pub fn refused(&self, error: ErrorCode) {
        self.refused.inc(&error_name(error));
    }

    /// A receipt of `status` was queued for its sender.
    pub fn receipt_queued(&self, status: ReceiptStatus) {
        let i = match status {
            ReceiptStatus::Delivered => 0,
            ReceiptStatus::Read => 1,
        };
        inc(&self.receipts_queued[i]);
    }

    /// A `Login` failed; the session closed with `code`.
    pub fn login_failed(&self, code: u32) {
        self.login_failures.inc(&close_code_name(code));
    }

    /// A connection ended with close `code`, or without one (`None`: lost).
    pub fn connection_closed(&self, code: Option<u32>) {
        match code {
            Some(code) => self.connections_closed.inc(&close_code_name(code)),
            None => self.connections_closed.inc(LOST),
        }
    }

    /// Writes every family (with `# HELP` and `# TYPE`) into `out`; `open_connections` is
    /// the `hotline_connections` gauge.
    pub(crate) fn expose(&self, out: &mut Exposition, open_connections: usize) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.gauge("hotline_connections", "Open QUIC connections (from the handshake to the close), logged in or not.", open_connections);
        out.counter("hotline_connections_opened_total", "QUIC connections accepted (handshake done).", get(&self.connections_opened));
        self.connections_closed.expose(
            out,
            "hotline_connections_closed_total",
            "Connections ended, by the close code the broker closed them with (code names as in docs/protocol.md; lost: the connection ended without one, e.g. idle timeout or reset).",
            "code",
        );
        out.counter("hotline_bytes_received_total", "Bytes read from clients' streams (frames, all connections).", get(&self.bytes_in));
        out.counter("hotline_bytes_sent_total", "Bytes written to clients' streams (frames, all connections).", get(&self.bytes_out));
        out.counter("hotline_logins_total", "Sessions that logged in (LoggedIn sent).", get(&self.logins));
        self.login_failures.expose(out, "hotline_login_failures_total", "Login frames that did not log in, by the close code that ended the session (auth_failed: unknown number or wrong key).", "reason");
        out.counter("hotline_registrations_total", "Devices registered (Registered sent).", get(&self.registrations));
        out.counter("hotline_messages_received_total", "Send frames taken by a session.", get(&self.messages_received));
        out.counter("hotline_messages_stored_total", "Sends committed to storage and answered Sent (one per send, whatever the number of recipients; a retry of a stored send counts again).", get(&self.messages_stored));
        out.counter("hotline_message_items_stored_total", "Queue items committed for messages: one per recipient of each stored send.", get(&self.message_items_stored));
        self.refused.expose(out, "hotline_messages_refused_total", "Sends answered SendFailed, by the error code's name.", "reason");
        out.counter("hotline_messages_delivered_total", "Message frames pushed to recipients' connections (a message pushed again after a reconnection counts again).", get(&self.messages_delivered));
        out.counter("hotline_messages_acknowledged_total", "Recipients' acknowledgements of pushed messages, committed (the message left the queue).", get(&self.messages_acknowledged));
        out.counter("hotline_messages_expired_total", "Queued items (messages and receipts) deleted by the expiry sweep after the time to live.", get(&self.messages_expired));
        out.family("hotline_receipts_queued_total", "counter", "Receipts committed into senders' queues, by status.");
        for (status, value) in ["delivered", "read"].iter().zip(&self.receipts_queued) {
            out.sample("hotline_receipts_queued_total", &[("status", status)], get(value));
        }
        out.counter("hotline_receipts_pushed_total", "Receipt frames pushed to senders' connections.", get(&self.receipts_pushed));
        out.counter("hotline_receipts_acknowledged_total", "Senders' acknowledgements of pushed receipts, committed.", get(&self.receipts_acknowledged));
        self.send_seconds.expose(out, "hotline_send_seconds", "Time from a Send frame decoded to its answer (Sent once durable, or SendFailed) queued for the client.");
        self.delivery_seconds.expose(out, "hotline_delivery_seconds", "Time from a message's timestamp (the broker accepted its Send) to the commit of the recipient's acknowledgement; messages to phones that were offline land in the big buckets.");
        self.media.expose(out);
        self.push.expose(out);
        self.sms.expose(out);
    }
}

/// The names of the close codes (`close_code`), by code.
const CLOSE_CODE_NAMES: [&str; 10] = [
    "normal",
    "malformed_frame",
    "frame_too_large",
    "unexpected_frame",
    "unsupported_version",
    "auth_failed",
    "key_revoked",
    "session_replaced",
    "internal",
    "timeout",
];

/// The name of close code `code` (as `hotline_connections_closed_total` labels it).
pub fn close_code_name(code: u32) -> String {
    const _: () = assert!(close_code::TIMEOUT as usize == CLOSE_CODE_NAMES.len() - 1);
    match CLOSE_CODE_NAMES.get(code as usize) {
        Some(name) => name.to_string(),
        None => format!("code_{code}"),
    }
}

/// An error code's name in snake case (`TooLarge` → `too_large`).
pub fn error_name(error: ErrorCode) -> String {
    let mut name = String::new();
    for c in format!("{error:?}").chars() {
        if c.is_ascii_uppercase() {
            if !name.is_empty() {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// A counter family with one label, its series made at start (and any other value on first
/// use).
struct Labelled {
    series: Mutex<BTreeMap<String, u64>>,
}

impl Labelled {
    fn new(values: &[&str]) -> Labelled {
        Labelled { series: Mutex::new(values.iter().map(|v| (v.to_string(), 0)).collect()) }
    }

    fn inc(&self, value: &str) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        match series.get_mut(value) {
            Some(n) => *n += 1,
            None => {
                series.insert(value.to_string(), 1);
            }
        }
    }

    fn get(&self, value: &str) -> u64 {
        self.series.lock().unwrap_or_else(|p| p.into_inner()).get(value).copied().unwrap_or(0)
    }

    fn expose(&self, out: &mut Exposition, name: &str, help: &str, label: &str) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        out.family(name, "counter", help);
        for (value, n) in &series {
            out.sample(name, &[(label, value)], n);
        }
    }
}

/// A Prometheus histogram with fixed buckets: a count per bucket (not cumulative; the
/// exposition adds them up), the sum in microseconds.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the `+Inf` bucket.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must grow");
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    /// Counts one observation of `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.bounds.iter().position(|&le| seconds <= le).unwrap_or(self.bounds.len());
        inc(&self.counts[bucket]);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `_bucket` series (cumulative, `+Inf` last), `_sum` and `_count`. `_count` is the
    /// `+Inf` bucket, so the two always agree.
    fn expose(&self, out: &mut Exposition, name: &str, help: &str) {
        out.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_string(), |le| le.to_string());
            out.sample(&bucket, &[("le", &le)], cumulative);
        }
        out.sample(&format!("{name}_sum"), &[], self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        out.sample(&format!("{name}_count"), &[], cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_close_code_names_are_snake_case() {
        assert_eq!(error_name(ErrorCode::TooLarge), "too_large");
        assert_eq!(error_name(ErrorCode::InvalidArgument), "invalid_argument");
        assert_eq!(error_name(ErrorCode::Retryable), "retryable");
        assert_eq!(close_code_name(close_code::NORMAL), "normal");
        assert_eq!(close_code_name(close_code::AUTH_FAILED), "auth_failed");
        assert_eq!(close_code_name(close_code::TIMEOUT), "timeout");
        assert_eq!(close_code_name(42), "code_42");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(10));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(3));
        let mut out = Exposition::default();
        h.expose(&mut out, "x_seconds", "X.");
        assert_eq!(
            out.text,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"0.01\"} 2\nx_seconds_bucket{le=\"0.1\"} 2\nx_seconds_bucket{le=\"1\"} 3\n\
             x_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 3.515\nx_seconds_count 4\n"
        );
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn labelled_series_exist_from_start_and_count() {
        let metrics = Metrics::default();
        metrics.refused(ErrorCode::TooLarge);
        metrics.connection_closed(Some(close_code::NORMAL));
        metrics.connection_closed(None);
        let mut out = Exposition::default();
        metrics.expose(&mut out, 3);
        for line in [
            "hotline_messages_refused_total{reason=\"too_large\"} 1",
            "hotline_messages_refused_total{reason=\"queue_full\"} 0",
            "hotline_connections_closed_total{code=\"normal\"} 1",
            "hotline_connections_closed_total{code=\"lost\"} 1",
            "hotline_connections_closed_total{code=\"timeout\"} 0",
            "hotline_login_failures_total{reason=\"auth_failed\"} 0",
            "hotline_receipts_queued_total{status=\"read\"} 0",
            "hotline_connections 3",
            "hotline_send_seconds_count 0",
            "hotline_media_uploads_refused_total{reason=\"too_large\"} 0",
            "hotline_media_disk_bytes 0",
            "hotline_sms_sent_total 0",
            "hotline_sms_failed_total{reason=\"gave_up\"} 0",
            "hotline_sms_refused_total{limit=\"prefix\"} 0",
        ] {
            assert!(out.text.lines().any(|l| l == line), "no line {line:?} in\n{}", out.text);
        }
        assert_eq!(metrics.refused.get("too_large"), 1);
    }
}
