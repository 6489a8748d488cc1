//! The JSON API under `/api`: plugins (list, rollback, canary, promote), the effective config, and the
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

/// The largest plugin file `POST /api/plugins/{slot}/canary` takes (a Python or JS
/// component is 12-40 MB).
pub(super) const MAX_PLUGIN_BYTES: usize = 256 << 20;

#[derive(serde::Deserialize)]
pub(super) struct CanaryQuery {
    percent: u8,
}

/// `POST /api/plugins/{slot}/canary?percent=P` with the component file as the body: starts
/// a canary (or changes its share). Compiling may take tens of seconds.
pub(super) async fn canary(
    State(broker): State<Arc<Broker>>,
    Path(slot): Path<String>,
    axum::extract::Query(query): axum::extract::Query<CanaryQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Some(slot) = Slot::from_name(&slot) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no slot {slot:?}")}))).into_response();
    };
    let plugins = broker.plugins.clone();
    let started = tokio::task::spawn_blocking(move || plugins.start_canary(slot, body.to_vec(), query.percent)).await;
    match started {
        Ok(Ok(version)) => Json(json!({"slot": slot, "version": version, "percent": query.percent})).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": e}))).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": format!("the canary load failed: {e}")}))).into_response(),
    }
}

/// `POST /api/plugins/{slot}/promote`: makes the running canary current.
pub(super) async fn promote(State(broker): State<Arc<Broker>>, Path(slot): Path<String>) -> Response {
    let Some(slot) = Slot::from_name(&slot) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no slot {slot:?}")}))).into_response();
    };
    match broker.plugins.promote(slot) {
        Ok(version) => Json(json!({"slot": slot, "version": version})).into_response(),
        Err(e) => (StatusCode::CONFLICT, Json(json!({"error": e}))).into_response(),
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
        .filter(|v| matches!(v.state, "current" | "probation" | "canary"))
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
