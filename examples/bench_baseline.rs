//! The ceiling for `bench/run.sh`: a bare actix-web server (same framework and
//! default worker count as hookrelay) whose POST handler reads the body and answers
//! 202 with a response of hookrelay's shape, doing nothing else.
//!
//!   bench_baseline --listen 127.0.0.1:PORT

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

async fn accept(body: web::Bytes) -> HttpResponse {
    let _ = body.len();
    HttpResponse::Accepted().json(json!({
        "event_id": "00000000-0000-7000-8000-000000000000",
        "deliveries": 1,
        "duplicate": false,
    }))
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ready" }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:18081".to_string();
    while let Some(k) = args.next() {
        match (k.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: bench_baseline --listen 127.0.0.1:PORT");
                std::process::exit(2);
            }
        }
    }
    if !listen.starts_with("127.0.0.1:") {
        eprintln!("bench_baseline: loopback only");
        std::process::exit(2);
    }
    HttpServer::new(|| {
        App::new()
            .route("/readyz", web::get().to(ready))
            .default_service(web::post().to(accept))
    })
    .bind(listen)?
    .run()
    .await
}
