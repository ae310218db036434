//! A fast local destination for the benchmark (`bench/run.sh`): answers every POST
//! with 200, counts requests, and records arrival − send time when the body carries
//! `bench_sent_us` (at the top or under `raw`, where hookrelay's default webhook
//! template puts the original payload).
//!
//!   bench_sink --listen 127.0.0.1:PORT
//!   GET  /stats  -> {"count","with_ts","p50_ms","p99_ms","max_ms","first_unix_us","last_unix_us"}
//!   POST /reset  -> clears everything
//!   POST <any other path> -> 200 {"ok":true}

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

#[derive(Default)]
struct Sink {
    count: u64,
    lat_us: Vec<u64>,
    first_us: u128,
    last_us: u128,
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

fn sent_us(v: &Value) -> Option<u64> {
    v.get("bench_sent_us")
        .or_else(|| v.get("raw").and_then(|r| r.get("bench_sent_us")))
        .and_then(Value::as_u64)
}

async fn receive(req: HttpRequest, body: web::Bytes, sink: web::Data<Mutex<Sink>>) -> HttpResponse {
    let now = now_us();
    if req.path() == "/reset" {
        *sink.lock().unwrap() = Sink::default();
        return HttpResponse::Ok().json(json!({ "reset": true }));
    }
    let sent = serde_json::from_slice::<Value>(&body)
        .ok()
        .as_ref()
        .and_then(sent_us);
    let mut s = sink.lock().unwrap();
    s.count += 1;
    if s.first_us == 0 {
        s.first_us = now;
    }
    s.last_us = now;
    if let Some(t) = sent {
        s.lat_us.push((now as u64).saturating_sub(t));
    }
    HttpResponse::Ok().json(json!({ "ok": true }))
}

fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i] as f64 / 1000.0)
}

async fn stats(sink: web::Data<Mutex<Sink>>) -> HttpResponse {
    let s = sink.lock().unwrap();
    let mut lat = s.lat_us.clone();
    drop(s);
    lat.sort_unstable();
    let s = sink.lock().unwrap();
    HttpResponse::Ok().json(json!({
        "count": s.count,
        "with_ts": lat.len(),
        "p50_ms": pct(&lat, 0.50),
        "p99_ms": pct(&lat, 0.99),
        "max_ms": pct(&lat, 1.0),
        "first_unix_us": s.first_us as u64,
        "last_unix_us": s.last_us as u64,
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:18082".to_string();
    while let Some(k) = args.next() {
        match (k.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: bench_sink --listen 127.0.0.1:PORT");
                std::process::exit(2);
            }
        }
    }
    if !listen.starts_with("127.0.0.1:") {
        eprintln!("bench_sink: loopback only");
        std::process::exit(2);
    }
    let sink = web::Data::new(Mutex::new(Sink::default()));
    HttpServer::new(move || {
        App::new()
            .app_data(sink.clone())
            .app_data(web::PayloadConfig::new(4 << 20))
            .route("/stats", web::get().to(stats))
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .bind(listen)?
    .run()
    .await
}
