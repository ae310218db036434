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
use serde_json::json;

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

/// The first `"bench_sent_us": N` in the body, wherever it is (at the top or under
/// `raw`). A scan rather than a JSON parse: the sink shares the machine's two cores
/// with hookrelay, and parsing every body into a tree cost it ~28 µs of CPU per
/// request during a drain, CPU the relay under test then did not have.
fn sent_us(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bench_sent_us\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = &body[at + KEY.len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

async fn receive(req: HttpRequest, body: web::Bytes, sink: web::Data<Mutex<Sink>>) -> HttpResponse {
    let now = now_us();
    if req.path() == "/reset" {
        *sink.lock().unwrap() = Sink::default();
        return HttpResponse::Ok().json(json!({ "reset": true }));
    }
    let sent = sent_us(&body);
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
