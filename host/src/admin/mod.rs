//! The admin HTTP endpoint (default 127.0.0.1:9464): the web console (`/`), the JSON API
//! (`/api/*`: plugins, canaries, config, status), health and Prometheus metrics, every route behind
//! the token check of [`auth`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::broker::Broker;
use crate::live::Live;
use crate::server::TransportStats;

mod api;
mod auth;
mod connections;
mod console;
mod metrics;
mod process;
mod queues;

pub use metrics::METRICS_CONTENT_TYPE;
pub(crate) use metrics::Exposition;

/// What the admin handlers read.
#[derive(Clone)]
struct Admin {
    broker: Arc<Broker>,
    transport: Arc<TransportStats>,
    live: Arc<Live>,
}

/// The admin endpoint: every route of [`routes`] behind the token check.
pub fn router(broker: Arc<Broker>, transport: Arc<TransportStats>, live: Arc<Live>) -> Router {
    routes()
        .layer(axum::middleware::from_fn_with_state(live.clone(), auth::require_token))
        .with_state(Admin { broker, transport, live })
}

/// Every admin route. (Add new ones here: [`router`] puts the token check over all of them.)
fn routes() -> Router<Admin> {
    Router::new()
        .route("/", get(console::page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/status", get(api::status))
        .route("/api/config", get(api::config))
        .route("/api/plugins", get(api::plugins))
        .route("/api/plugins/{slot}/rollback", post(api::rollback))
        .route(
            "/api/plugins/{slot}/canary",
            post(api::canary).layer(axum::extract::DefaultBodyLimit::max(api::MAX_PLUGIN_BYTES)),
        )
        .route("/api/plugins/{slot}/promote", post(api::promote))
        .route("/api/connections", get(connections::list))
        .route("/api/connections/{id}/kick", post(connections::kick))
        .route("/api/queues", get(queues::list))
        .route("/api/queues/{number}/purge", post(queues::purge))
        .route("/api/alerts", get(queues::alerts))
        .route("/api/accounts", get(queues::accounts))
        .route("/api/accounts/{number}", axum::routing::delete(queues::remove_account))
}

impl axum::extract::FromRef<Admin> for Arc<Broker> {
    fn from_ref(admin: &Admin) -> Arc<Broker> {
        admin.broker.clone()
    }
}

impl axum::extract::FromRef<Admin> for Arc<Live> {
    fn from_ref(admin: &Admin) -> Arc<Live> {
        admin.live.clone()
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
