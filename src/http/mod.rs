//! HTTP: every route registered here, and the one place errors become status
//! codes with a JSON `{"error": …}` body.

mod admin;
mod ingest;
mod ops;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::startup::Shared;
use crate::worker::SHUTDOWN_GRACE;

/// A request refused with one clear sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        error_json(self.status, &self.message)
    }
}

pub fn error_json(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

pub(crate) async fn not_found() -> HttpResponse {
    error_json(StatusCode::NOT_FOUND, "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> HttpResponse {
    error_json(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// Builds the server on an already bound listener.
pub fn server(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_body: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(ingest::BodyLimit(max_body)))
            // `/hooks/{source}` as a plain prefix: a path parameter would cost a
            // regex match per webhook; the handler reads the name itself.
            .service(web::scope("/hooks").default_service(web::to(ingest::ingest)))
            .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
            .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
            .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
            .service(admin::scope())
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)?
    .run();
    Ok(server)
}
