//! Health, readiness and metrics.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error_json;
use crate::startup::Shared;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when a webhook would be stored now: storage commits a real write (to
/// the file the config names, for SQLite). The config is loaded by then.
pub async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    match shared.store.ready().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(e) => {
            log::error!("readyz: {e}");
            error_json(StatusCode::SERVICE_UNAVAILABLE, "storage is not usable")
        }
    }
}

/// Metrics in the Prometheus text format, or OpenMetrics when `Accept` asks for it.
pub async fn metrics(req: actix_web::HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    use crate::metrics::{wants_openmetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
    let relay = shared.relay.load();
    let configured = relay.destinations.keys().map(String::as_str);
    match shared.store.queue_depth().await {
        Ok(d) => shared.metrics.set_queue_depth(configured, &d),
        Err(e) => log::error!("metrics: cannot read queue depth: {e}"),
    }
    match shared.store.list_subjects(None).await {
        Ok(s) => shared.metrics.set_subjects(&s),
        Err(e) => log::error!("metrics: cannot read the backup-watch subjects: {e}"),
    }
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if wants_openmetrics(accept) {
        HttpResponse::Ok()
            .content_type(OPENMETRICS_CONTENT_TYPE)
            .body(shared.metrics.encode())
    } else {
        HttpResponse::Ok()
            .content_type(PROMETHEUS_CONTENT_TYPE)
            .body(shared.metrics.encode_prometheus())
    }
}
