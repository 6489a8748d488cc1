//! The admin HTTP endpoint (default 127.0.0.1:9464): health, Prometheus metrics, and the
//! plugin API behind `hotline plugins list|rollback`.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::broker::Broker;
use crate::policy::Slot;
use crate::server::UdpStats;

/// What the admin handlers read.
#[derive(Clone)]
struct Admin {
    broker: Arc<Broker>,
    udp: Arc<UdpStats>,
}

/// The admin routes.
pub fn router(broker: Arc<Broker>, udp: Arc<UdpStats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/{slot}/rollback", post(rollback))
        .with_state(Admin { broker, udp })
}

impl axum::extract::FromRef<Admin> for Arc<Broker> {
    fn from_ref(admin: &Admin) -> Arc<Broker> {
        admin.broker.clone()
    }
}

/// Liveness: fails (503, with the reason) once storage refuses writes or the committer has
/// stopped, which only a restart can clear.
async fn healthz(State(broker): State<Arc<Broker>>) -> Response {
    answer(&broker.store.health().report(), "ok\n")
}

/// Readiness: fails (503, with the reason) while the broker cannot accept messages.
async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    answer(&broker.store.health().report(), "ready\n")
}

/// `200` with `fine`, or `503` with why storage cannot take messages.
fn answer(health: &crate::store::HealthReport, fine: &'static str) -> Response {
    match health.refusal() {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        None => fine.into_response(),
    }
}

async fn plugins(State(broker): State<Arc<Broker>>) -> Json<crate::plugins::PluginsReport> {
    Json(broker.plugins.report())
}

async fn rollback(State(broker): State<Arc<Broker>>, Path(slot): Path<String>) -> Response {
    let Some(slot) = Slot::from_name(&slot) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("no slot {slot:?}")}))).into_response();
    };
    match broker.plugins.rollback(slot) {
        Ok(version) => Json(serde_json::json!({"slot": slot, "version": version})).into_response(),
        Err(e) => (StatusCode::CONFLICT, Json(serde_json::json!({"error": e}))).into_response(),
    }
}

async fn metrics(State(Admin { broker, udp }): State<Admin>) -> String {
    let mut out = String::new();
    let stats = broker.committer.stats();
    let _ = writeln!(out, "# TYPE hotline_sessions gauge\nhotline_sessions {}", broker.sessions.len());
    let _ = writeln!(out, "# TYPE hotline_commit_queue gauge\nhotline_commit_queue {}", broker.committer.queue_len());
    let _ = writeln!(out, "# TYPE hotline_commit_groups_total counter\nhotline_commit_groups_total {}", stats.groups.load(Ordering::Relaxed));
    let _ = writeln!(out, "# TYPE hotline_commit_jobs_total counter\nhotline_commit_jobs_total {}", stats.jobs.load(Ordering::Relaxed));
    let health = broker.store.health().report();
    let _ = writeln!(out, "# HELP hotline_storage_poisoned 1 once storage refuses writes after a failed write or fsync (until restart).");
    let _ = writeln!(out, "# TYPE hotline_storage_poisoned gauge\nhotline_storage_poisoned {}", u8::from(health.poisoned_by.is_some()));
    let _ = writeln!(out, "# HELP hotline_committer_running 1 while the committer thread serves; 0 once it stopped after a panic (until restart).");
    let _ = writeln!(out, "# TYPE hotline_committer_running gauge\nhotline_committer_running {}", u8::from(health.committer_stopped.is_none()));
    let _ = writeln!(out, "# HELP hotline_committer_job_panics_total Storage jobs that panicked and failed alone (a bug; see the log).");
    let _ = writeln!(out, "# TYPE hotline_committer_job_panics_total counter\nhotline_committer_job_panics_total {}", health.job_panics);
    let _ = writeln!(out, "# HELP hotline_storage_failed_writes_total Commit groups or jobs that storage refused.");
    let _ = writeln!(out, "# TYPE hotline_storage_failed_writes_total counter\nhotline_storage_failed_writes_total {}", health.failed_writes);
    if let Ok(bytes) = broker.store.disk_space() {
        let _ = writeln!(out, "# HELP hotline_storage_disk_bytes Bytes the storage folder occupies on disk (allocated blocks).");
        let _ = writeln!(out, "# TYPE hotline_storage_disk_bytes gauge\nhotline_storage_disk_bytes {bytes}");
    }
    let gauges = [
        ("hotline_connection_inbound_bytes", "Bytes of decoded frames waiting for their session, all connections.", &broker.gauges.inbound_bytes),
        ("hotline_connection_mailbox_bytes", "Bytes of frames waiting in session mailboxes to be written, all connections.", &broker.gauges.mailbox_bytes),
        ("hotline_connection_pending_send_bytes", "Bytes of message bodies received and not yet committed, all connections.", &broker.gauges.pending_send_bytes),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", value.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP hotline_udp_receive_buffer_bytes The QUIC socket's receive buffer as the kernel reports it.");
    let _ = writeln!(out, "# TYPE hotline_udp_receive_buffer_bytes gauge\nhotline_udp_receive_buffer_bytes {}", udp.granted.receive);
    if let Some(drops) = udp.drops() {
        let _ = writeln!(out, "# HELP hotline_udp_receive_drops_total Datagrams the kernel dropped at the QUIC socket because its receive buffer was full.");
        let _ = writeln!(out, "# TYPE hotline_udp_receive_drops_total counter\nhotline_udp_receive_drops_total {drops}");
    }
    if let Some(memory) = crate::memory::allocator_stats() {
        let _ = writeln!(out, "# HELP hotline_memory_allocated_bytes Bytes the broker has allocated and not freed.");
        let _ = writeln!(out, "# TYPE hotline_memory_allocated_bytes gauge\nhotline_memory_allocated_bytes {}", memory.allocated);
        let _ = writeln!(out, "# HELP hotline_memory_resident_bytes Bytes in pages the allocator holds from the system, free ones not yet returned included.");
        let _ = writeln!(out, "# TYPE hotline_memory_resident_bytes gauge\nhotline_memory_resident_bytes {}", memory.resident);
    }
    let _ = writeln!(out, "# HELP hotline_policy_questions Questions handed to the plugin threads and not yet answered (at most one per connection).");
    let _ = writeln!(out, "# TYPE hotline_policy_questions gauge\nhotline_policy_questions {}", broker.policy.pending());
    let report = broker.plugins.report();
    let _ = writeln!(out, "# TYPE hotline_plugin_calls_total counter");
    for v in &report.versions {
        let _ = writeln!(out, "hotline_plugin_calls_total{{slot=\"{}\",version=\"{}\",state=\"{}\"}} {}", v.slot, v.version, v.state, v.calls);
    }
    let _ = writeln!(out, "# HELP hotline_plugin_errors_total Failed plugin calls by kind: timeout, trap, instantiation, memory.");
    let _ = writeln!(out, "# TYPE hotline_plugin_errors_total counter");
    for v in &report.versions {
        for (kind, errors) in &v.error_kinds {
            let _ = writeln!(
                out,
                "hotline_plugin_errors_total{{slot=\"{}\",version=\"{}\",state=\"{}\",kind=\"{kind}\"}} {errors}",
                v.slot, v.version, v.state
            );
        }
    }
    let refused = broker.plugins.refused_total();
    let rolled = broker.plugins.rollbacks_total();
    let _ = writeln!(out, "# TYPE hotline_plugin_refused_total counter\nhotline_plugin_refused_total {refused}");
    let _ = writeln!(out, "# TYPE hotline_plugin_rollbacks_total counter\nhotline_plugin_rollbacks_total {rolled}");
    let _ = writeln!(out, "# TYPE hotline_plugin_counter counter");
    for (slot, counters) in &report.counters {
        for (name, value) in counters {
            let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
            let _ = writeln!(out, "hotline_plugin_counter{{slot=\"{slot}\",name=\"{name}\"}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HealthReport;

    async fn body(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_fails_naming_a_stopped_committer_and_a_poisoned_store() {
        let healthy = HealthReport { poisoned_by: None, failed_writes: 0, committer_stopped: None, job_panics: 3 };
        assert_eq!(body(answer(&healthy, "ready\n")).await, (StatusCode::OK, "ready\n".into()));

        let stopped = HealthReport { committer_stopped: Some("it panicked: boom".into()), ..healthy.clone() };
        let (status, text) = body(answer(&stopped, "ready\n")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("the storage committer stopped: it panicked: boom; restart the broker"), "{text}");

        let both = HealthReport { poisoned_by: Some("I/O error: No space left on device".into()), failed_writes: 7, ..stopped };
        let (status, text) = body(answer(&both, "ok\n")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("committer stopped") && text.contains("No space left on device (7 writes refused)"), "{text}");
    }
}
