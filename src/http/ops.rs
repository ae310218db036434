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

pub async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    match shared.store.queue_depth().await {
        Ok(d) => shared.metrics.set_queue_depth(&d),
        Err(e) => log::error!("metrics: cannot read queue depth: {e}"),
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(shared.metrics.encode())
}
