//! The ceiling for `bench/run.sh`: a bare actix-web server (same framework and
//! default worker count as hookrelay) whose POST handler reads the body and answers
//! 202 with a response of hookrelay's shape, doing nothing else.
//!
//!   bench_baseline --listen 127.0.0.1:PORT [--durable FILE]
//!
//! With `--durable FILE` it is the *durable* ceiling: before each 202 the body is
//! written to FILE and flushed to the disk (`fdatasync`), and nothing else is done.
//! One thread gathers every body waiting into one write and one flush (group
//! commit), so a flush answers a whole batch. FILE is filled with zeros up front and
//! then overwritten in a ring, so a flush carries data only, no change of size or
//! allocation: the cheapest durable write the disk offers. No server that makes
//! each webhook durable before answering can beat it on the same disk, whatever it
//! stores; `bench/run.sh` reports it beside hookrelay.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use std::io::{Seek, SeekFrom, Write};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// The ring's size.
const RING: u64 = 64 << 20;

type Flush = mpsc::Sender<(web::Bytes, oneshot::Sender<()>)>;

async fn accept(body: web::Bytes, durable: web::Data<Option<Flush>>) -> HttpResponse {
    if let Some(tx) = durable.get_ref() {
        let (done, flushed) = oneshot::channel();
        if tx.send((body, done)).is_err() || flushed.await.is_err() {
            return HttpResponse::InternalServerError().finish();
        }
    }
    HttpResponse::Accepted().json(json!({
        "event_id": "00000000-0000-7000-8000-000000000000",
        "deliveries": 1,
        "duplicate": false,
    }))
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ready" }))
}

/// Prepares FILE and starts the flushing thread.
fn durable(path: &str) -> std::io::Result<Flush> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(RING >> 20) {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    let (tx, rx) = mpsc::channel::<(web::Bytes, oneshot::Sender<()>)>();
    std::thread::spawn(move || {
        let mut at = 0u64;
        let mut buf = Vec::new();
        let mut waiting = Vec::new();
        while let Ok(first) = rx.recv() {
            waiting.push(first);
            while let Ok(more) = rx.try_recv() {
                waiting.push(more);
            }
            buf.clear();
            for (body, _) in &waiting {
                buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
                buf.extend_from_slice(body);
            }
            if at + buf.len() as u64 > RING {
                at = 0;
            }
            let ok = file.seek(SeekFrom::Start(at)).is_ok()
                && file.write_all(&buf).is_ok()
                && file.sync_data().is_ok();
            at += buf.len() as u64;
            for (_, done) in waiting.drain(..) {
                if ok {
                    let _ = done.send(());
                }
            }
        }
    });
    Ok(tx)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:18081".to_string();
    let mut file = None;
    while let Some(k) = args.next() {
        match (k.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--durable", Some(v)) => file = Some(v),
            _ => {
                eprintln!("usage: bench_baseline --listen 127.0.0.1:PORT [--durable FILE]");
                std::process::exit(2);
            }
        }
    }
    if !listen.starts_with("127.0.0.1:") {
        eprintln!("bench_baseline: loopback only");
        std::process::exit(2);
    }
    let flush = web::Data::new(match file {
        Some(f) => Some(durable(&f)?),
        None => None,
    });
    HttpServer::new(move || {
        App::new()
            .app_data(flush.clone())
            .route("/readyz", web::get().to(ready))
            .default_service(web::post().to(accept))
    })
    .bind(listen)?
    .run()
    .await
}
