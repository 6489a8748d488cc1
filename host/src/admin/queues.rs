//! The admin API's queue, alert and account routes, and the queue families of `/metrics`:
//! `GET /api/queues` and `GET /api/alerts` read the monitor's last sample;
//! `POST /api/queues/{number}/purge`, `GET /api/accounts` and `DELETE /api/accounts/{number}`
//! act on storage through the store's operator methods.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::metrics::Exposition;
use crate::broker::Broker;
use crate::monitor::Monitor;
use hotline_core::Close;
use hotline_protocol::close_code;

/// Queues listed per kind when `top` is not given.
const DEFAULT_TOP: usize = 10;
/// Accounts per page when `limit` is not given, and at most.
const DEFAULT_ACCOUNTS: usize = 100;
const MAX_ACCOUNTS: usize = 10_000;

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "error": text.into() }))).into_response()
}

/// A non-negative integer query parameter, `default` when absent; the 400 answer's text
/// when it is not one.
fn number_param(params: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, String> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name} must be a non-negative integer, not {v:?}")),
    }
}

/// The last sample as `{"sampled_at_ms", "kinds": [{"kind", "total", "max", "non_empty", "top": [{"name", "items"}]}]}`,
/// each kind's top cut to `top`.
pub(super) fn report(monitor: &Monitor, top: usize) -> Value {
    let (sampled_at_ms, figures) = monitor.figures();
    let kinds: Vec<Value> = figures
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f.top.truncate(top);
            serde_json::to_value(f).unwrap_or_default()
        })
        .collect();
    json!({ "sampled_at_ms": sampled_at_ms, "kinds": kinds })
}

/// `GET /api/queues?top=N` (default 10, at most [`crate::monitor::TOP`]).
pub(super) async fn list(State(broker): State<Arc<Broker>>, Query(params): Query<HashMap<String, String>>) -> Response {
    match number_param(&params, "top", DEFAULT_TOP) {
        Ok(top) => Json(report(&broker.monitor, top.min(crate::monitor::TOP))).into_response(),
        Err(text) => error(StatusCode::BAD_REQUEST, text),
    }
}

/// `GET /api/alerts`: `{"active": [...], "history": [...]}`, plus each kind's rule.
pub(super) async fn alerts(State(broker): State<Arc<Broker>>) -> Response {
    let report = broker.monitor.alerts();
    let rules: serde_json::Map<String, Value> = broker
        .monitor
        .rules()
        .into_iter()
        .map(|(kind, rule)| (kind.name().to_string(), json!({"items": rule.items, "for_secs": rule.for_ms / 1000})))
        .collect();
    Json(json!({ "active": report.active, "history": report.history, "rules": rules })).into_response()
}

/// `POST /api/queues/{number}/purge`: deletes every item stored for `number`.
pub(super) async fn purge(State(broker): State<Arc<Broker>>, Path(number): Path<String>) -> Response {
    if !hotline_protocol::is_e164(&number) {
        return error(StatusCode::BAD_REQUEST, format!("{number:?} is not a number in E.164 form"));
    }
    match broker.committer.purge_queue(&number).await {
        Ok(purged) => {
            tracing::warn!(%number, purged, "an operator purged a stored queue");
            Json(json!({ "number": number, "purged": purged })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("purge failed: {e}")),
    }
}

/// `GET /api/accounts?after=NUMBER&limit=N`: a page of accounts in number order.
/// `after` may be the `next` of the previous page pasted as is: a query string decodes a raw
/// `+` to a space, and a number never holds a space, so spaces are read back as `+`
/// (`after=+1555...` and `after=%2B1555...` give the same page).
pub(super) async fn accounts(State(broker): State<Arc<Broker>>, Query(params): Query<HashMap<String, String>>) -> Response {
    let limit = match number_param(&params, "limit", DEFAULT_ACCOUNTS) {
        Ok(limit) => limit.clamp(1, MAX_ACCOUNTS),
        Err(text) => return error(StatusCode::BAD_REQUEST, text),
    };
    let after = params.get("after").map(|after| after.replace(' ', "+"));
    let store = broker.store.clone();
    let page = match tokio::task::spawn_blocking(move || store.list_accounts(after.as_deref(), limit)).await {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("listing accounts failed: {e}")),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("listing accounts failed: {e}")),
    };
    let accounts: Vec<Value> = page
        .accounts
        .iter()
        .map(|a| {
            json!({
                "phone": a.phone,
                "registered_at_ms": a.registered_at_ms,
                "online": broker.sessions.is_online(&a.phone),
                "queued": broker.store.queues().len(&a.phone),
                "push_token": a.push_token,
            })
        })
        .collect();
    Json(json!({ "accounts": accounts, "next": page.next })).into_response()
}

/// `DELETE /api/accounts/{number}`: removes the account and its queue; its session, if
/// online, is closed with `KEY_REVOKED` (the key no longer works).
pub(super) async fn remove_account(State(broker): State<Arc<Broker>>, Path(number): Path<String>) -> Response {
    if !hotline_protocol::is_e164(&number) {
        return error(StatusCode::BAD_REQUEST, format!("{number:?} is not a number in E.164 form"));
    }
    match broker.committer.remove_account(&number).await {
        Ok(Some(purged)) => {
            broker.sessions.kick(&number, Close::new(close_code::KEY_REVOKED, "this account was removed by an operator"));
            tracing::warn!(%number, purged, "an operator removed an account");
            Json(json!({ "phone": number, "removed": true, "purged": purged })).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("{number} is not registered")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("removing the account failed: {e}")),
    }
}

/// The queue and alert families of `/metrics`, from the monitor's last sample. Every kind
/// has a series from the start.
pub(super) fn expose(out: &mut Exposition, monitor: &Monitor) {
    let (_, figures) = monitor.figures();
    type Family = (&'static str, &'static str, fn(&crate::monitor::Figures) -> u64);
    let families: [Family; 3] = [
        ("hotline_queue_items", "Items in all queues of a kind (stored, mailbox, plugin, commit) at the last sample.", |f| f.total),
        ("hotline_queue_max_items", "Items in the largest queue of a kind at the last sample.", |f| f.max),
        ("hotline_queues_non_empty", "Queues of a kind holding at least one item at the last sample.", |f| f.non_empty),
    ];
    for (name, help, value) in families {
        out.family(name, "gauge", help);
        for f in figures.iter() {
            out.sample(name, &[("kind", f.kind.name())], value(f));
        }
    }
    let counts = monitor.alert_counts();
    out.family("hotline_queue_alert_active", "gauge", "1 while a kind's queue alert fires (GET /api/alerts names the queue).");
    for (kind, firing, _) in &counts {
        out.sample("hotline_queue_alert_active", &[("kind", kind.name())], u8::from(*firing));
    }
    out.family("hotline_queue_alerts_raised_total", "counter", "Queue alerts raised since start, by kind.");
    for (kind, _, raised) in &counts {
        out.sample("hotline_queue_alerts_raised_total", &[("kind", kind.name())], raised);
    }
    if let Some(stats) = monitor.webhook_stats() {
        out.counter("hotline_alert_webhook_delivered_total", "Alert events the webhook accepted (2xx).", stats.delivered);
        out.counter("hotline_alert_webhook_failed_attempts_total", "Alert webhook posts that failed (each is retried with back-off).", stats.failed_attempts);
        out.counter("hotline_alert_webhook_given_up_total", "Alert events given up after every attempt failed.", stats.given_up);
        out.counter("hotline_alert_webhook_dropped_total", "Alert events dropped because the webhook's queue was full.", stats.dropped);
    }
}
