//! `/metrics` as a Prometheus server reads it: the standard content type, text that a real
//! parser (prometheus-parse) reads line by line, a `# HELP` and a `# TYPE` for every family,
//! counters named `…_total` that never go down between two scrapes, plugin counters without
//! a label that moves, and the families an operator looks for, with plausible values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use hotline_client::Client;
use hotline_protocol::{ReceiptStatus, ServerFrame};
use hotline_tests::{eventually, take_messages, Broker};
use prometheus_parse::{LineInfo, Scrape, Value};

const ALICE: &str = "+15550300001";
const BOB: &str = "+15550300002";
const T: Duration = Duration::from_secs(10);

/// One scrape: every series (name and sorted labels) with its type and value.
struct Metrics {
    /// (name, labels) → value, for every sample.
    series: BTreeMap<(String, BTreeMap<String, String>), Value>,
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
                LineInfo::Type { metric_name, sample_type, .. } => {
                    assert!(helps.contains(&metric_name), "TYPE before (or without) HELP: {line:?}");
                    assert!(types.insert(metric_name.clone(), sample_type).is_none(), "a second TYPE for {metric_name}");
                }
                LineInfo::Sample { metric_name, timestamp, .. } => {
                    assert!(types.contains_key(metric_name), "sample before (or without) its TYPE: {line:?}");
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
        assert_eq!(scrape.samples.len(), sample_lines, "samples whose value did not parse:\n{body}");
        let mut series = BTreeMap::new();
        for sample in scrape.samples {
            assert!(matches!(sample.value, Value::Counter(_) | Value::Gauge(_)), "untyped: {sample:?}");
            assert!(scrape.docs.contains_key(&sample.metric), "no HELP for {}", sample.metric);
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
            Some(Value::Counter(v) | Value::Gauge(v)) => *v,
            other => panic!("{name}{labels:?}: {other:?}"),
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
    assert_eq!(calls.len(), 3, "one version per slot: {calls:?}");
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
