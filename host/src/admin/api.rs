//! The JSON API under `/api`: plugins (list, rollback), the effective config, and the
//! status summary behind `hotline status`. (Queues, alerts and accounts: `queues.rs`;
//! connections: `connections.rs`.)

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Admin;
use crate::broker::Broker;
use crate::live::Live;
use crate::policy::Slot;

pub(super) async fn plugins(State(broker): State<Arc<Broker>>) -> Json<crate::plugins::PluginsReport> {
    Json(broker.plugins.report())
}

pub(super) async fn rollback(State(broker): State<Arc<Broker>>, Path(slot): Path<String>) -> Response {
    let Some(slot) = Slot::from_name(&slot) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": format!("no slot {slot:?}")}))).into_response();
    };
    match broker.plugins.rollback(slot) {
        Ok(version) => Json(serde_json::json!({"slot": slot, "version": version})).into_response(),
        Err(e) => (StatusCode::CONFLICT, Json(serde_json::json!({"error": e}))).into_response(),
    }
}

/// The effective config (file, flags and environment; as last reloaded), secrets as `***`.
pub(super) async fn config(State(live): State<Arc<Live>>) -> Json<Value> {
    Json(serde_json::to_value(&*live.config()).unwrap_or_default())
}

/// One look at the broker: what `hotline status` prints.
pub(super) async fn status(State(admin): State<Admin>) -> Json<Value> {
    let broker = &admin.broker;
    let plugins: Vec<Value> = broker
        .plugins
        .report()
        .versions
        .iter()
        .filter(|v| v.state == "current" || v.state == "probation")
        .map(|v| json!({"slot": v.slot, "version": v.version, "state": v.state}))
        .collect();
    let health = broker.store.health().report();
    let media = &broker.metrics.media;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": admin.live.uptime().as_secs(),
        "sessions": broker.sessions.len(),
        "connections": broker.connections.len(),
        "queues": super::queues::report(&broker.monitor, 3),
        "alerts_active": broker.monitor.alerts().active.len(),
        "plugins": plugins,
        "storage": {
            "disk_bytes": broker.store.disk_space().ok(),
            "poisoned": health.poisoned_by.is_some(),
            "refusal": health.refusal(),
        },
        "media": {
            "enabled": admin.live.config().media.enabled,
            "objects": get(&media.objects),
            "files": get(&media.files),
            "disk_bytes": get(&media.disk_bytes),
            "uploads": get(&media.uploads),
            "downloads": get(&media.downloads),
        },
    }))
}
