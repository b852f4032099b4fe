//! The admin endpoint (`admin_listen`), served by axum (hyper):
//!
//! * `GET /ready`: 200 `ready` once every listener is bound; 503 `starting` before, 503
//!   `draining` once SIGTERM started a drain (readiness probes, Swarm health checks);
//! * `GET /healthz`: 200 `ok` while the process serves, drain included (liveness probes);
//! * `GET /metrics`: Prometheus text exposition format ([`crate::metrics`]);
//! * `GET /stats` (text, one `name value` per line), `GET /stats?format=json`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::warn;

use crate::Shared;

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn ready(State(sh): State<Arc<Shared>>) -> Response {
    if sh.is_ready() {
        text(StatusCode::OK, "ready\n")
    } else if sh.is_draining() {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn stats(State(sh): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let site = sh.snapshot().config.site.clone();
    if q.get("format").map(String::as_str) == Some("json") {
        ([(header::CONTENT_TYPE, "application/json")], sh.stats.render_json(&site)).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain")], sh.stats.render_text(&site)).into_response()
    }
}

async fn metrics(State(sh): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render(&sh)).into_response()
}

/// The admin routes over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "try /ready, /healthz, /stats or /metrics\n") })
        .with_state(shared)
}

/// Serves the admin endpoint on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        warn!("admin server ended: {e}");
    }
}
