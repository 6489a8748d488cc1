//! `/metrics` as a Prometheus server reads it: the standard content type, text that a real
//! parser (prometheus-parse) reads line by line, a `# HELP` and a `# TYPE` for every family,
//! counters named `…_total` that never go down between two scrapes, plugin counters without
//! a label that moves, and the families an operator looks for, with plausible values; and
//! the broker's traffic counters and latency histograms after a known exchange, the
//! connection list of the admin API and an operator's kick.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use hotline_client::{Client, ClientError};
use hotline_protocol::{close_code, ErrorCode, ReceiptStatus, ServerFrame};
use hotline_tests::{eventually, take_messages, Broker};
use prometheus_parse::{LineInfo, Scrape, Value};

const ALICE: &str = "+15550300001";
const BOB: &str = "+15550300002";
const T: Duration = Duration::from_secs(10);

/// One scrape: every series (name and sorted labels) with its type and value.
struct Metrics {
    /// (name, labels) → value, for every sample. A histogram's buckets are one series
    /// under the family's name (`Value::Histogram`); its `_sum` and `_count` are series of
    /// their own (the parser leaves them untyped).
    series: BTreeMap<(String, BTreeMap<String, String>), Value>,
}

/// The family a sample line belongs to: its own name, or for a histogram's `_bucket`,
/// `_sum` and `_count` lines the histogram's.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, prometheus_parse::SampleType>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|family| types.get(*family) == Some(&prometheus_parse::SampleType::Histogram))
}

impl Metrics {
    /// Scrapes `/metrics`, checking the response and the format on the way.
    fn scrape(broker: &Broker) -> Metrics {
        let (status, headers, body) = broker.admin_get_with_headers("/metrics").unwrap();
        assert_eq!(status, 200, "{body}");
        let content_type = headers.iter().find(|(name, _)| name == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("text/plain; version=0.0.4; charset=utf-8"));

        // Line by line: every line is one the parser reads (none it would skip), each family
        // has one HELP and one TYPE, both before its samples, and no sample has a timestamp.
        let mut helps = BTreeSet::new();
        let mut types = BTreeMap::new();
        let mut sample_lines = 0;
        for line in body.lines() {
            match LineInfo::parse(line) {
                LineInfo::Doc { metric_name, doc } => {
                    assert!(!doc.trim().is_empty(), "empty HELP: {line:?}");
                    assert!(helps.insert(metric_name.to_string()), "a second HELP for {metric_name}");
                }
                LineInfo::Type { metric_name, metric_alias, sample_type } => {
                    // The parser names a histogram's type after its `_bucket` lines.
                    let family = metric_alias.unwrap_or(metric_name);
                    assert!(helps.contains(&family), "TYPE before (or without) HELP: {line:?}");
                    assert!(types.insert(family.clone(), sample_type).is_none(), "a second TYPE for {family}");
                }
                LineInfo::Sample { metric_name, timestamp, .. } => {
                    assert!(family_of(metric_name, &types).is_some(), "sample before (or without) its TYPE: {line:?}");
                    assert_eq!(timestamp, None, "{line:?}");
                    sample_lines += 1;
                }
                LineInfo::Empty | LineInfo::Ignored => panic!("a line the parser does not read: {line:?}"),
            }
        }
        assert_eq!(helps, types.keys().cloned().collect::<BTreeSet<_>>(), "HELP without TYPE");
        for (name, kind) in &types {
            if *kind == prometheus_parse::SampleType::Counter {
                assert!(name.ends_with("_total"), "counter {name} does not end in _total");
            }
        }

        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let bucket_lines = body.lines().filter(|l| !l.starts_with('#') && l.contains("_bucket{")).count();
        let histogram_series = scrape.samples.iter().filter(|s| matches!(s.value, Value::Histogram(_))).count();
        assert_eq!(scrape.samples.len() + bucket_lines - histogram_series, sample_lines, "samples whose value did not parse:\n{body}");
        // A histogram's `_count` series, by name and labels, to check its buckets against.
        let counts: BTreeMap<(String, BTreeMap<String, String>), f64> = scrape
            .samples
            .iter()
            .filter_map(|s| match s.value {
                Value::Untyped(v) if s.metric.ends_with("_count") => {
                    Some(((s.metric.clone(), s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()), v))
                }
                _ => None,
            })
            .collect();
        let mut series = BTreeMap::new();
        for sample in scrape.samples {
            let family = family_of(&sample.metric, &types).unwrap_or_else(|| panic!("no TYPE for {}", sample.metric));
            match &sample.value {
                Value::Counter(_) | Value::Gauge(_) => {}
                Value::Histogram(buckets) => {
                    // Cumulative: counts never fall as the bound grows, `+Inf` last, equal
                    // to the `_count` line.
                    assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "{sample:?}");
                    assert_eq!(buckets.last().map(|b| b.less_than), Some(f64::INFINITY), "{sample:?}");
                    let count = format!("{}_count", sample.metric);
                    let labels = sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    assert_eq!(counts.get(&(count.clone(), labels)).copied(), buckets.last().map(|b| b.count), "{count} {:?}", sample.labels);
                }
                Value::Untyped(_) if family != sample.metric => {} // a histogram's `_sum` or `_count`
                _ => panic!("untyped: {sample:?}"),
            }
            assert!(scrape.docs.contains_key(family), "no HELP for {}", sample.metric);
            let labels: BTreeMap<String, String> = sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let key = (sample.metric.clone(), labels);
            assert!(series.insert(key.clone(), sample.value).is_none(), "a series twice: {key:?}");
        }
        Metrics { series }
    }

    /// The value of the series `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = (name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        match self.series.get(&key) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{name}{labels:?}: {other:?}"),
        }
    }

    /// The cumulative buckets of histogram `name`: (upper bound, count).
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        match self.series.get(&(name.to_string(), BTreeMap::new())) {
            Some(Value::Histogram(buckets)) => buckets.iter().map(|b| (b.less_than, b.count)).collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// The label sets of every series of `name`.
    fn labels_of(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.series.keys().filter(|(n, _)| n == name).map(|(_, labels)| labels).collect()
    }

    /// Every counter series with its value.
    fn counters(&self) -> impl Iterator<Item = (&(String, BTreeMap<String, String>), f64)> {
        self.series.iter().filter_map(|(key, value)| match value {
            Value::Counter(v) => Some((key, *v)),
            _ => None,
        })
    }

    /// Every figure that must never go down: counters, histogram buckets, `_sum`, `_count`.
    fn monotonic(&self) -> Vec<(String, f64)> {
        let mut figures = Vec::new();
        for ((name, labels), value) in &self.series {
            match value {
                Value::Counter(v) | Value::Untyped(v) => figures.push((format!("{name}{labels:?}"), *v)),
                Value::Histogram(buckets) => {
                    figures.extend(buckets.iter().map(|b| (format!("{name}{labels:?} le={}", b.less_than), b.count)))
                }
                _ => {}
            }
        }
        figures
    }

    /// Asserts that no figure of `self` is lower in `later`.
    fn assert_none_went_down(&self, later: &Metrics) {
        let later: BTreeMap<String, f64> = later.monotonic().into_iter().collect();
        for (key, before) in self.monotonic() {
            let after = *later.get(&key).unwrap_or_else(|| panic!("{key} was {before}, now gone"));
            assert!(after >= before, "{key} went down: {before} → {after}");
        }
    }
}

/// Alice sends `n` messages to Bob, Bob takes and acknowledges them, Alice takes the `Sent`
/// and delivered receipts and acknowledges the receipts.
async fn exchange(alice: &mut Client, bob: &mut Client, n: usize) {
    for i in 0..n {
        alice.send(BOB, format!("message {i}").into_bytes()).await.unwrap();
    }
    take_messages(bob, n).await;
    let (mut sent, mut delivered) = (0, 0);
    while sent < n || delivered < n {
        match alice.next_frame_within(T).await.unwrap() {
            ServerFrame::Sent { .. } => sent += 1,
            ServerFrame::Receipt { id, status: ReceiptStatus::Delivered, .. } => {
                alice.ack(id).await.unwrap();
                delivered += 1;
            }
            other => panic!("expected Sent or a delivered receipt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_counters_never_go_down() -> Result<()> {
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let broker = Broker::start()?;
    let alice_key = broker.register(ALICE).await?;
    let bob_key = broker.register(BOB).await?;
    let mut alice = broker.login(ALICE, &alice_key).await?;
    let mut bob = broker.login(BOB, &bob_key).await?;
    exchange(&mut alice, &mut bob, 3).await;

    let first = Metrics::scrape(&broker);
    // Two clients are logged in (a registration's session may not be gone yet).
    assert!(first.value("hotline_sessions", &[]) >= 2.0);
    assert_eq!(first.value("hotline_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(first.value("hotline_commit_jobs_total", &[]) >= 5.0, "two registrations, three sends");
    assert_eq!(first.value("hotline_storage_poisoned", &[]), 0.0);
    assert_eq!(first.value("hotline_committer_running", &[]), 1.0);

    // The process figures describe the broker process.
    let rss = first.value("process_resident_memory_bytes", &[]);
    let measured = broker.rss_bytes()? as f64;
    assert!(rss > 1e6 && (rss / measured - 1.0).abs() < 0.5, "process_resident_memory_bytes {rss}, /proc says {measured}");
    assert!(first.value("process_open_fds", &[]) >= 5.0, "stdio, the sockets and storage files are open");
    assert!(first.value("process_cpu_seconds_total", &[]) > 0.0);
    let start_time = first.value("process_start_time_seconds", &[]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    assert!(start_time >= started - 2.0 && start_time <= now + 1.0, "process_start_time_seconds {start_time}, test started at {started}, now {now}");

    // Plugin calls and errors are counted per slot and version (no state, which moves); the
    // state is on the info series, one current version per slot.
    let calls = first.labels_of("hotline_plugin_calls_total");
    let infos = first.labels_of("hotline_plugin_version_info");
    assert_eq!(calls.len(), 4, "one version per slot: {calls:?}");
    // The notifier is loaded (and listed) though push is off: it is never called then.
    let notifier: Vec<_> = infos.iter().filter(|l| l["slot"] == "notifier" && l["state"] == "current").collect();
    assert_eq!(notifier.len(), 1, "notifier: {infos:?}");
    assert_eq!(first.value("hotline_plugin_calls_total", &[("slot", "notifier"), ("version", notifier[0]["version"].as_str())]), 0.0);
    // Push wake-ups: every series exists from start, at 0 with push off.
    for outcome in ["sent", "failed", "no_token", "dropped"] {
        assert_eq!(first.value("hotline_push_wakeups_total", &[("outcome", outcome)]), 0.0);
    }
    for decision in ["wake", "skip", "failed"] {
        assert_eq!(first.value("hotline_push_notifier_decisions_total", &[("decision", decision)]), 0.0);
    }
    assert_eq!(first.value("hotline_push_dropped_total", &[]), 0.0);
    for slot in ["router", "registrar", "receipts"] {
        let current: Vec<_> = infos.iter().filter(|l| l["slot"] == slot && l["state"] == "current").collect();
        assert_eq!(current.len(), 1, "{slot}: {infos:?}");
        let version = current[0]["version"].as_str();
        assert_eq!(first.value("hotline_plugin_version_info", &[("slot", slot), ("version", version), ("state", "current")]), 1.0);
        let called = first.value("hotline_plugin_calls_total", &[("slot", slot), ("version", version)]);
        assert!(called >= 1.0, "{slot} was called: {called}");
        for kind in ["timeout", "trap", "instantiation", "memory"] {
            assert_eq!(first.value("hotline_plugin_errors_total", &[("slot", slot), ("version", version), ("kind", kind)]), 0.0);
        }
    }
    for labels in first.labels_of("hotline_plugin_calls_total").into_iter().chain(first.labels_of("hotline_plugin_errors_total")) {
        assert!(!labels.contains_key("state"), "{labels:?}");
    }

    // More traffic, a second scrape: no counter went down, and the ones this traffic moves
    // went up.
    exchange(&mut alice, &mut bob, 4).await;
    let second = Metrics::scrape(&broker);
    first.assert_none_went_down(&second);
    for (key, before) in first.counters() {
        let after = match second.series.get(key) {
            Some(Value::Counter(v)) => *v,
            other => panic!("{key:?} was a counter at {before}, now {other:?}"),
        };
        assert!(after >= before, "{key:?} went down: {before} → {after}");
    }
    let grew = |name: &str, labels: &[(&str, &str)]| second.value(name, labels) > first.value(name, labels);
    assert!(grew("hotline_commit_jobs_total", &[]));
    let router = infos.iter().find(|l| l["slot"] == "router").unwrap()["version"].as_str();
    assert!(grew("hotline_plugin_calls_total", &[("slot", "router"), ("version", router)]));

    // Both clients gone, no session is left.
    alice.close().await;
    bob.close().await;
    eventually(T, || (broker.metric("hotline_sessions").ok()? == 0.0).then_some(()))?;
    Ok(())
}

/// A request with an empty body on the admin endpoint: the status and the JSON body.
fn admin(broker: &Broker, method: &str, path: &str) -> Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(broker.admin)?;
    stream.set_read_timeout(Some(T))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", broker.admin)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
}

#[tokio::test]
async fn traffic_is_counted_and_an_operator_lists_and_kicks_connections() -> Result<()> {
    const N: usize = 5;
    const MAX_BODY: usize = 1000;
    let broker = Broker::start_with_config(&format!("[limits]\nmax_body_bytes = {MAX_BODY}\n"))?;
    let fresh = Metrics::scrape(&broker);
    // The series an operator alerts on exist from start, at 0.
    for reason in ["invalid_argument", "unknown_recipient", "rejected", "too_large", "retryable", "rate_limited", "queue_full"] {
        assert_eq!(fresh.value("hotline_messages_refused_total", &[("reason", reason)]), 0.0, "{reason}");
    }
    for code in ["normal", "malformed_frame", "auth_failed", "timeout", "lost"] {
        assert_eq!(fresh.value("hotline_connections_closed_total", &[("code", code)]), 0.0, "{code}");
    }
    assert_eq!(fresh.value("hotline_login_failures_total", &[("reason", "auth_failed")]), 0.0);
    assert_eq!(fresh.value("hotline_send_seconds_count", &[]), 0.0);
    assert_eq!(fresh.value("hotline_connections", &[]), 0.0);

    let alice_key = broker.register(ALICE).await?;
    let bob_key = broker.register(BOB).await?;
    let mut alice = broker.login(ALICE, &alice_key).await?;
    let mut bob = broker.login(BOB, &bob_key).await?;
    exchange(&mut alice, &mut bob, N).await;
    // One send over the body limit, refused.
    let too_large = alice.send(BOB, vec![b'x'; MAX_BODY + 1]).await?;
    match alice.next_frame_within(T).await? {
        ServerFrame::SendFailed { client_id, error: ErrorCode::TooLarge, .. } if client_id == too_large => {}
        other => panic!("expected SendFailed(TooLarge), got {other:?}"),
    }
    // One login with a wrong key, refused with close code 5.
    let mut intruder = broker.connect().await?;
    match intruder.login(BOB, "not the key").await {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, close_code::AUTH_FAILED),
        other => panic!("expected the login to be refused, got {other:?}"),
    }

    // Acks have no answer: wait until the broker has applied them (and the receipts' acks).
    let figure = |name: &str, labels: &[(&str, &str)]| Metrics::scrape(&broker).value(name, labels);
    eventually(T, || (figure("hotline_messages_acknowledged_total", &[]) == N as f64).then_some(()))?;
    eventually(T, || (figure("hotline_receipts_acknowledged_total", &[]) == N as f64).then_some(()))?;
    eventually(T, || (figure("hotline_connections_closed_total", &[("code", "auth_failed")]) == 1.0).then_some(()))?;
    let after = Metrics::scrape(&broker);
    fresh.assert_none_went_down(&after);
    let n = N as f64;
    for (name, labels, expected) in [
        ("hotline_messages_received_total", &[][..], n + 1.0),
        ("hotline_messages_stored_total", &[], n),
        ("hotline_message_items_stored_total", &[], n),
        ("hotline_messages_refused_total", &[("reason", "too_large")], 1.0),
        ("hotline_messages_refused_total", &[("reason", "unknown_recipient")], 0.0),
        ("hotline_messages_delivered_total", &[], n),
        ("hotline_messages_acknowledged_total", &[], n),
        ("hotline_receipts_queued_total", &[("status", "delivered")], n),
        ("hotline_receipts_queued_total", &[("status", "read")], 0.0),
        ("hotline_receipts_pushed_total", &[], n),
        ("hotline_logins_total", &[], 2.0),
        ("hotline_login_failures_total", &[("reason", "auth_failed")], 1.0),
        ("hotline_registrations_total", &[], 2.0),
        // Two registrations, two logins, the intruder.
        ("hotline_connections_opened_total", &[], 5.0),
        ("hotline_send_seconds_count", &[], n + 1.0),
        ("hotline_delivery_seconds_count", &[], n),
    ] {
        assert_eq!(after.value(name, labels), expected, "{name}{labels:?}");
    }
    assert!(after.value("hotline_bytes_received_total", &[]) > (N * "message 0".len()) as f64 + MAX_BODY as f64);
    assert!(after.value("hotline_bytes_sent_total", &[]) > (N * "message 0".len()) as f64);
    // Every send was answered within the test's patience, every delivery too.
    let sends = after.buckets("hotline_send_seconds");
    assert_eq!(sends.iter().find(|(le, _)| *le == 10.0).map(|(_, count)| *count), Some(n + 1.0), "{sends:?}");
    let deliveries = after.buckets("hotline_delivery_seconds");
    assert_eq!(deliveries.iter().find(|(le, _)| *le == 30.0).map(|(_, count)| *count), Some(n), "{deliveries:?}");
    let sum = after.value("hotline_send_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 10.0 * (n + 1.0), "hotline_send_seconds_sum {sum}");

    // The admin API lists the two logged-in connections (the registrations' and the
    // intruder's are gone).
    let listed = eventually(T, || {
        let (status, body) = admin(&broker, "GET", "/api/connections").ok()?;
        assert_eq!(status, 200, "{body}");
        let connections = body["connections"].as_array()?.clone();
        (connections.len() == 2).then_some(connections)
    })?;
    let phones: BTreeSet<&str> = listed.iter().filter_map(|c| c["phone"].as_str()).collect();
    assert_eq!(phones, BTreeSet::from([ALICE, BOB]), "{listed:?}");
    for c in &listed {
        assert!(c["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{c}");
        assert!(c["connected_at_ms"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{c}");
        assert!(c["mailbox_items"].is_u64() && c["mailbox_bytes"].is_u64(), "{c}");
    }
    assert_eq!(after.value("hotline_connections", &[]), 2.0);
    let bob_id = listed.iter().find(|c| c["phone"] == BOB).unwrap()["id"].as_u64().unwrap();

    // Unknown and malformed ids are refused; Bob's connection is kicked with close code 0.
    assert_eq!(admin(&broker, "POST", "/api/connections/999999/kick")?.0, 404);
    let (status, body) = admin(&broker, "POST", "/api/connections/bob/kick")?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("bob")), "{body}");
    let normal_before = after.value("hotline_connections_closed_total", &[("code", "normal")]);
    let (status, body) = admin(&broker, "POST", &format!("/api/connections/{bob_id}/kick"))?;
    assert_eq!((status, body), (200, serde_json::json!({"id": bob_id, "kicked": true})));
    match bob.next_frame_within(T).await {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!(code, close_code::NORMAL);
            assert_eq!(reason, "disconnected by an operator");
        }
        other => panic!("expected Bob's connection to be closed, got {other:?}"),
    }
    eventually(T, || (figure("hotline_connections_closed_total", &[("code", "normal")]) == normal_before + 1.0).then_some(()))?;
    let (_, body) = admin(&broker, "GET", "/api/connections")?;
    let left: Vec<_> = body["connections"].as_array().unwrap().iter().map(|c| c["phone"].clone()).collect();
    assert_eq!(left, vec![serde_json::json!(ALICE)]);
    let last = Metrics::scrape(&broker);
    after.assert_none_went_down(&last);
    assert_eq!(last.value("hotline_connections", &[]), 1.0);
    assert_eq!(last.value("hotline_sessions", &[]), 1.0, "Bob's session left the directory");
    alice.close().await;
    Ok(())
}

#[tokio::test]
async fn a_connection_that_goes_silent_is_counted_lost_not_closed_with_a_code() -> Result<()> {
    let broker = Broker::start()?;
    // A client that says Hello and then goes silent: no keep-alive before its idle timeout
    // of one second, which the broker's side of the connection adopts (the shorter wins).
    let mut options = broker.options();
    options.keep_alive = Duration::from_secs(30);
    options.idle_timeout = Duration::from_secs(1);
    let silent = Client::connect(&options).await?;
    let before = Metrics::scrape(&broker);
    assert_eq!(before.value("hotline_connections", &[]), 1.0);
    assert_eq!(before.value("hotline_connections_closed_total", &[("code", "lost")]), 0.0);
    eventually(T, || (broker.metric("hotline_connections_closed_total{code=\"lost\"}").ok()? == 1.0).then_some(()))?;
    let after = Metrics::scrape(&broker);
    before.assert_none_went_down(&after);
    assert_eq!(after.value("hotline_connections", &[]), 0.0);
    assert_eq!(after.value("hotline_connections_closed_total", &[("code", "normal")]), 0.0, "the silent client got no close");
    drop(silent);
    Ok(())
}
