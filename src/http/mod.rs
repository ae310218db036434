//! HTTP: every route registered here, and the one place errors become status
//! codes with a JSON `{"error": …}` body.

pub(crate) mod admin;
pub(crate) mod ingest;
mod ops;

use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::web::Bytes;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::config::ServerSettings;
use crate::startup::Shared;
use crate::worker::SHUTDOWN_GRACE;

/// A request refused with one clear sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, after: std::time::Duration) -> ApiError {
        self.retry_after = Some(after);
        self
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
        let mut res = error_json(self.status, &self.message);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            res.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(secs),
            );
        }
        res
    }
}

pub fn error_json(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// Answers a request whose body was not read and closes the connection after
/// it. The unread body travels inside the answer's own body until that is sent:
/// the server then sees it unread and closes, where a dropped chunked body would
/// otherwise be drained for as long as the client cares to trickle it.
pub(crate) fn closing(mut res: HttpResponse, unread: web::Payload) -> HttpResponse {
    res.head_mut().set_connection_type(ConnectionType::Close);
    res.map_body(|_, body| {
        let json = body.try_into_bytes().unwrap_or_default();
        WithUnreadBody {
            len: json.len() as u64,
            json: Some(json),
            _unread: unread,
        }
    })
    .map_into_boxed_body()
}

/// See [`closing`].
struct WithUnreadBody {
    len: u64,
    json: Option<Bytes>,
    _unread: web::Payload,
}

impl MessageBody for WithUnreadBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(self.get_mut().json.take().map(Ok))
    }
}

pub(crate) async fn not_found(body: web::Payload) -> HttpResponse {
    closing(error_json(StatusCode::NOT_FOUND, "no such endpoint"), body)
}

pub(crate) async fn method_not_allowed(body: web::Payload) -> HttpResponse {
    closing(
        error_json(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        body,
    )
}

/// File descriptors kept free for everything that is not an HTTP client: the
/// database, outgoing deliveries, logs.
const FD_RESERVE: usize = 512;

/// Open connections allowed at once: `server.max_connections`, and never so many
/// that idle clients could take the descriptors storage and deliveries need.
fn connection_cap(configured: usize) -> usize {
    let room = open_files_limit().map_or(usize::MAX, |n| n.saturating_sub(FD_RESERVE));
    configured.min(room).max(1)
}

/// The soft `RLIMIT_NOFILE` (raised to the hard limit by `main`), read from
/// `/proc` so the library needs no unsafe call; `None` where there is no `/proc`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Builds the server on an already bound listener.
pub fn server(
    listener: TcpListener,
    shared: Arc<Shared>,
    cfg: &ServerSettings,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(shared);
    let limits = web::Data::new(ingest::Limits::new(cfg));
    // actix counts connections per worker thread; set the count so the total is
    // what the cap says.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = connection_cap(cfg.max_connections).div_ceil(workers);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(limits.clone())
            // `/hooks/{source}` as a plain prefix: a path parameter would cost a
            // regex match per webhook; the handler reads the name itself.
            .service(web::scope("/hooks").default_service(web::to(ingest::ingest)))
            // HEAD too: uptime checkers and load balancers often probe with it.
            .service(
                web::resource("/healthz")
                    .route(web::get().to(ops::healthz))
                    .route(web::head().to(ops::healthz)),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(ops::readyz))
                    .route(web::head().to(ops::readyz)),
            )
            .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
            .service(admin::scope())
            .service(crate::ui::scope())
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .max_connections(per_worker)
    // The first request's headers must arrive within this (408 otherwise); the
    // body has its own deadline in `ingest`. Idle connections close after 5 s.
    // actix measures this deadline from a clock it refreshes every 500 ms, and a
    // deadline already past when set is never woken: hence at least 1 s.
    .client_request_timeout(cfg.read_timeout.max(MIN_HEADER_TIMEOUT))
    .keep_alive(IDLE_KEEP_ALIVE)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)?
    .run();
    Ok(server)
}

const MIN_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a connection may sit idle between requests.
const IDLE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
