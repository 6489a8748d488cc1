//! `/metrics`: the broker's figures in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{process, queues, Admin};
use crate::broker::Broker;
use crate::server::TransportStats;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(State(Admin { broker, transport, .. }): State<Admin>) -> Response {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], exposition(&broker, &transport)).into_response()
}

/// Prometheus text: every family with its `# HELP` and `# TYPE`, counters named `…_total`,
/// and label sets that never change on a series (what moves is a gauge's label set, as with
/// `hotline_plugin_version_info`).
fn exposition(broker: &Broker, transport: &TransportStats) -> String {
    let mut out = Exposition::default();
    out.family("hotline_build_info", "gauge", "Always 1; the label says which broker version serves.");
    out.sample("hotline_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    if let Some(process) = process::read() {
        out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        out.sample("process_resident_memory_bytes", &[], process.resident_bytes);
        out.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        out.sample("process_cpu_seconds_total", &[], process.cpu_seconds);
        out.family("process_open_fds", "gauge", "Number of open file descriptors.");
        out.sample("process_open_fds", &[], process.open_fds);
        out.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        out.sample("process_start_time_seconds", &[], process.start_time_seconds);
    }

    let stats = broker.committer.stats();
    out.gauge("hotline_sessions", "Logged-in sessions (numbers online).", broker.sessions.len());
    out.gauge("hotline_commit_queue", "Jobs waiting for the storage committer.", broker.committer.queue_len());
    out.counter("hotline_commit_groups_total", "Commit groups written (one fsync each in fsync mode).", stats.groups.load(Ordering::Relaxed));
    out.counter("hotline_commit_jobs_total", "Storage jobs committed.", stats.jobs.load(Ordering::Relaxed));
    let health = broker.store.health().report();
    out.gauge("hotline_storage_poisoned", "1 once storage refuses writes after a failed write or fsync (until restart).", u8::from(health.poisoned_by.is_some()));
    out.gauge("hotline_committer_running", "1 while the committer thread serves; 0 once it stopped after a panic (until restart).", u8::from(health.committer_stopped.is_none()));
    out.counter("hotline_committer_job_panics_total", "Storage jobs that panicked and failed alone (a bug; see the log).", health.job_panics);
    out.counter("hotline_storage_failed_writes_total", "Commit groups or jobs that storage refused.", health.failed_writes);
    if let Ok(bytes) = broker.store.disk_space() {
        out.gauge("hotline_storage_disk_bytes", "Bytes the storage folder occupies on disk (allocated blocks).", bytes);
    }
    let gauges = [
        ("hotline_connection_inbound_bytes", "Bytes received from clients and not yet part of a whole frame handed to their session, all connections.", &broker.gauges.inbound_bytes),
        ("hotline_connection_mailbox_bytes", "Bytes of frames waiting in session mailboxes to be written, all connections.", &broker.gauges.mailbox_bytes),
        ("hotline_connection_pending_send_bytes", "Bytes of message bodies received and not yet committed, all connections.", &broker.gauges.pending_send_bytes),
    ];
    for (name, help, value) in gauges {
        out.gauge(name, help, value.load(Ordering::Relaxed));
    }
    let udp = transport.udp();
    out.gauge("hotline_quic_connections", "Connections the QUIC endpoint holds, closing ones included (a connection stays a few round trips after its session ended).", transport.quic_connections());
    out.gauge("hotline_udp_receive_buffer_bytes", "The QUIC socket's receive buffer as the kernel reports it.", udp.granted.receive);
    if let Some(drops) = udp.drops() {
        out.counter("hotline_udp_receive_drops_total", "Datagrams the kernel dropped at the QUIC socket because its receive buffer was full.", drops);
    }
    if let Some(memory) = crate::memory::allocator_stats() {
        out.gauge("hotline_memory_allocated_bytes", "Bytes the broker has allocated and not freed.", memory.allocated);
        out.gauge("hotline_memory_resident_bytes", "Bytes in pages the allocator holds from the system, free ones not yet returned included.", memory.resident);
    }
    broker.metrics.expose(&mut out, broker.connections.len());
    if let crate::backend::Backend::Cluster(cluster) = &broker.backend {
        cluster.metrics.expose(&mut out);
    }
    crate::outbound::expose(&mut out);
    queues::expose(&mut out, &broker.monitor);
    out.gauge("hotline_policy_questions", "Questions handed to the plugin threads and not yet answered (at most one per connection).", broker.policy.pending());

    let report = broker.plugins.report();
    out.family("hotline_plugin_version_info", "gauge", "1 per loaded plugin version; state is current, probation, canary, previous or rolled-back.");
    for v in &report.versions {
        out.sample("hotline_plugin_version_info", &[("slot", v.slot.name()), ("version", &v.version), ("state", v.state)], 1);
    }
    out.family("hotline_plugin_calls_total", "counter", "Calls to a plugin version (a batch of routed messages is one call).");
    for v in &report.versions {
        out.sample("hotline_plugin_calls_total", &[("slot", v.slot.name()), ("version", &v.version)], v.calls);
    }
    out.family("hotline_plugin_errors_total", "counter", "Failed plugin calls by kind: timeout, trap, instantiation, memory.");
    for v in &report.versions {
        for (kind, errors) in &v.error_kinds {
            out.sample("hotline_plugin_errors_total", &[("slot", v.slot.name()), ("version", &v.version), ("kind", kind)], *errors);
        }
    }
    out.family("hotline_plugin_call_duration_seconds", "histogram", "Plugin call durations of the serving versions (current, probation, canary).");
    for v in report.versions.iter().filter(|v| matches!(v.state, "current" | "probation" | "canary")) {
        let name = "hotline_plugin_call_duration_seconds";
        for bound in crate::plugins::METRIC_BOUNDS_US {
            let le = if bound == u64::MAX { "+Inf".to_string() } else { format!("{}", bound as f64 / 1e6) };
            out.sample(&format!("{name}_bucket"), &[("slot", v.slot.name()), ("version", &v.version), ("le", &le)], v.latency.at_most(bound));
        }
        out.sample(&format!("{name}_sum"), &[("slot", v.slot.name()), ("version", &v.version)], v.latency.sum_us as f64 / 1e6);
        out.sample(&format!("{name}_count"), &[("slot", v.slot.name()), ("version", &v.version)], v.latency.count());
    }
    out.family("hotline_plugin_canary_percent", "gauge", "Share of the users (by hash of their number) a running canary serves.");
    for c in &report.canaries {
        out.sample("hotline_plugin_canary_percent", &[("slot", c.slot.name()), ("version", &c.version)], c.percent);
    }
    out.counter("hotline_plugin_refused_total", "Plugin files refused since start, every slot.", broker.plugins.refused_total());
    out.counter("hotline_plugin_rollbacks_total", "Automatic plugin rollbacks (probation and canary) since start, every slot.", broker.plugins.rollbacks_total());
    out.family("hotline_plugin_counter_total", "counter", "A plugin's own counters (metrics.counter-add), by slot and name.");
    for (slot, counters) in &report.counters {
        for (name, value) in counters {
            let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
            out.sample("hotline_plugin_counter_total", &[("slot", slot), ("name", &name)], *value);
        }
    }
    out.text
}

/// Writes the text exposition format.
#[derive(Default)]
pub(crate) struct Exposition {
    pub(crate) text: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines that open a family.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line; label values are escaped.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                let value = value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n");
                let _ = write!(self.text, "{}{label}=\"{value}\"", if i == 0 { "" } else { "," });
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled gauge.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A family of one unlabelled counter.
    pub(crate) fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        debug_assert!(name.ends_with("_total"), "counter {name} does not end in _total");
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_escape_label_values_and_help() {
        let mut out = Exposition::default();
        out.family("x_total", "counter", "back\\slash and\nnewline");
        out.sample("x_total", &[("a", "q\"uote"), ("b", "back\\slash\nnl")], 3);
        out.gauge("y", "A gauge.", 0.5);
        assert_eq!(
            out.text,
            "# HELP x_total back\\\\slash and\\nnewline\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uote\",b=\"back\\\\slash\\nnl\"} 3\n\
             # HELP y A gauge.\n# TYPE y gauge\ny 0.5\n"
        );
    }
}
