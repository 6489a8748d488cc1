//! The admin API's connection routes: `GET /api/connections` lists every open QUIC
//! connection, `POST /api/connections/{id}/kick` closes one (close code 0, `disconnected by
//! an operator`). The registry itself is [`crate::connections`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::broker::Broker;

/// `{"connections": [{"id", "remote", "phone", "connected_at_ms", "mailbox_items", "mailbox_bytes"}, …]}`, by id.
pub async fn list(State(broker): State<Arc<Broker>>) -> Response {
    Json(json!({ "connections": broker.connections.list() })).into_response()
}

/// `{"id": 7, "kicked": true}`, or 400 for an id that is not a number and 404 for one that
/// is not open.
pub async fn kick(State(broker): State<Arc<Broker>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        let error = format!("{id:?} is not a connection id (a number from GET /api/connections)");
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    };
    if broker.connections.kick(id) {
        Json(json!({ "id": id, "kicked": true })).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no open connection {id}") }))).into_response()
    }
}
