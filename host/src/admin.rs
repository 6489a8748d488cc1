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

/// The admin routes.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/{slot}/rollback", post(rollback))
        .with_state(broker)
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

async fn metrics(State(broker): State<Arc<Broker>>) -> String {
    let mut out = String::new();
    let stats = broker.committer.stats();
    let _ = writeln!(out, "# TYPE hotline_sessions gauge\nhotline_sessions {}", broker.sessions.len());
    let _ = writeln!(out, "# TYPE hotline_commit_queue gauge\nhotline_commit_queue {}", broker.committer.queue_len());
    let _ = writeln!(out, "# TYPE hotline_commit_groups_total counter\nhotline_commit_groups_total {}", stats.groups.load(Ordering::Relaxed));
    let _ = writeln!(out, "# TYPE hotline_commit_jobs_total counter\nhotline_commit_jobs_total {}", stats.jobs.load(Ordering::Relaxed));
    let report = broker.plugins.report();
    let _ = writeln!(out, "# TYPE hotline_plugin_calls_total counter");
    for v in &report.versions {
        let _ = writeln!(out, "hotline_plugin_calls_total{{slot=\"{}\",version=\"{}\",state=\"{}\"}} {}", v.slot, v.version, v.state, v.calls);
    }
    let _ = writeln!(out, "# TYPE hotline_plugin_errors_total counter");
    for v in &report.versions {
        let _ = writeln!(out, "hotline_plugin_errors_total{{slot=\"{}\",version=\"{}\",state=\"{}\"}} {}", v.slot, v.version, v.state, v.errors);
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
