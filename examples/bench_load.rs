//! Load generator for the benchmark (`bench/run.sh`). Loopback only.
//!
//! Sends SimpleBackups-shaped JSON (tests/fixtures/simplebackups/error.json) with a
//! fresh `id` per request (so dedup never short-circuits) and the send time in
//! `bench_sent_us` (µs since the Unix epoch; the sink computes arrival − send),
//! signed with `SB-Signature` when `--secret` is given.
//!
//! Modes:
//!   closed loop:  --connections N (--duration S | --count N)
//!   fixed rate:   --rate R --duration S   (open loop; latency is measured from the
//!                 scheduled send time, so a stall is not hidden by fewer sends)
//!   readiness:    --ready URL --since-ns T  (polls URL every 1 ms until 200; prints
//!                 ms since T, a CLOCK_REALTIME timestamp in ns taken before spawn)
//!
//! Prints one JSON object on stdout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

#[derive(Debug, Clone)]
struct Args {
    url: String,
    secret: Option<String>,
    connections: usize,
    duration: Option<f64>,
    count: Option<u64>,
    rate: Option<f64>,
    ready: Option<String>,
    since_ns: Option<u128>,
    timeout: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_load --url URL [--secret S] [--connections N] [--duration SECS | --count N] [--rate R] [--timeout SECS]\n       bench_load --ready URL --since-ns NS [--timeout SECS]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        secret: None,
        connections: 64,
        duration: None,
        count: None,
        rate: None,
        ready: None,
        since_ns: None,
        timeout: 30.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--url" => a.url = v(),
            "--secret" => a.secret = Some(v()),
            "--connections" => a.connections = v().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = Some(v().parse().unwrap_or_else(|_| usage())),
            "--count" => a.count = Some(v().parse().unwrap_or_else(|_| usage())),
            "--rate" => a.rate = Some(v().parse().unwrap_or_else(|_| usage())),
            "--ready" => a.ready = Some(v()),
            "--since-ns" => a.since_ns = Some(v().parse().unwrap_or_else(|_| usage())),
            "--timeout" => a.timeout = v().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let target = a.ready.as_deref().unwrap_or(&a.url);
    if target.is_empty() {
        usage();
    }
    // Never anywhere but loopback.
    let host_ok = url::Url::parse(target)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
        })
        .unwrap_or(false);
    if !host_ok {
        eprintln!("bench_load: refusing a non-loopback URL: {target}");
        std::process::exit(2);
    }
    a
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// The fixture, with `id` varied and the send time added.
fn body(id: u64) -> String {
    format!(
        r#"{{"id":{id},"type":"backup","status":"error","started_at":"2021-10-10 10:01:10","finished_at":"2021-10-10 10:10:10","backup":{{"id":4101,"name":"Acme Project","type":"file"}},"server":{{"id":2202,"name":"Acme Server"}},"storage":{{"id":3303,"name":"Acme Storage"}},"bench_sent_us":{}}}"#,
        now_us()
    )
}

#[derive(Default)]
struct Stats {
    /// Latencies of 2xx answers, in µs.
    lat_us: Vec<u64>,
    status: BTreeMap<String, u64>,
    ok: u64,
}

impl Stats {
    fn record(&mut self, r: &Result<u16, String>, lat: Duration) {
        let key = match r {
            Ok(s) => s.to_string(),
            Err(e) => e.clone(),
        };
        *self.status.entry(key).or_default() += 1;
        if matches!(r, Ok(s) if (200..300).contains(s)) {
            self.ok += 1;
            self.lat_us.push(lat.as_micros() as u64);
        }
    }
    fn merge(&mut self, o: Stats) {
        self.lat_us.extend(o.lat_us);
        self.ok += o.ok;
        for (k, v) in o.status {
            *self.status.entry(k).or_default() += v;
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn send(client: &reqwest::Client, a: &Args, id: u64) -> Result<u16, String> {
    let b = body(id);
    let mut req = client
        .post(&a.url)
        .header("content-type", "application/json");
    if let Some(s) = &a.secret {
        req = req.header("SB-Signature", hookrelay::auth::sign(s, b.as_bytes()));
    }
    match req.body(b).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            // Read the answer so the connection is reusable.
            let _ = r.bytes().await;
            Ok(s)
        }
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(e) if e.is_connect() => Err("connect_error".into()),
        Err(_) => Err("error".into()),
    }
}

async fn ready(a: &Args) {
    let url = a.ready.clone().unwrap_or_default();
    let since = a.since_ns.unwrap_or_else(|| now_us() * 1000);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().as_u16() == 200 {
                let ns = now_us() * 1000;
                let ms = (ns.saturating_sub(since)) as f64 / 1e6;
                println!("{}", json!({ "ready": true, "ms": ms }));
                return;
            }
        }
        if Instant::now() > deadline {
            println!("{}", json!({ "ready": false }));
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn run(a: Args) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections.max(1))
        .timeout(Duration::from_secs_f64(a.timeout))
        .tcp_nodelay(true)
        .build()
        .expect("client");
    // Ids unique across runs against the same database.
    let base = (now_us() / 1000) as u64 * 1000;
    let next = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let deadline = a.duration.map(|d| started + Duration::from_secs_f64(d));

    if let Some(rate) = a.rate {
        // Open loop at a fixed rate; at most `connections * 16` in flight.
        let dur = a.duration.unwrap_or(10.0);
        let total = a.count.unwrap_or((rate * dur).round() as u64);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let inflight = Arc::new(tokio::sync::Semaphore::new(a.connections.max(1) * 16));
        let mut handles = Vec::with_capacity(total as usize);
        for i in 0..total {
            let at = started + interval.mul_f64(i as f64);
            tokio::time::sleep_until(at.into()).await;
            let permit = inflight.clone().acquire_owned().await.expect("semaphore");
            let (client, a, stats) = (client.clone(), a.clone(), stats.clone());
            handles.push(tokio::spawn(async move {
                let r = send(&client, &a, base + i).await;
                let lat = at.elapsed();
                stats.lock().unwrap().record(&r, lat);
                drop(permit);
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    } else {
        let mut tasks = Vec::new();
        for _ in 0..a.connections.max(1) {
            let (client, a, stats, next) = (client.clone(), a.clone(), stats.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut local = Stats::default();
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if a.count.is_some_and(|c| i >= c) {
                        break;
                    }
                    let t = Instant::now();
                    let r = send(&client, &a, base + i).await;
                    local.record(&r, t.elapsed());
                }
                stats.lock().unwrap().merge(local);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut s = std::mem::take(&mut *stats.lock().unwrap());
    s.lat_us.sort_unstable();
    let sent: u64 = s.status.values().sum();
    println!(
        "{}",
        json!({
            "sent": sent,
            "ok": s.ok,
            "elapsed_s": elapsed,
            "ok_per_s": s.ok as f64 / elapsed,
            "p50_ms": pct(&s.lat_us, 0.50),
            "p99_ms": pct(&s.lat_us, 0.99),
            "max_ms": pct(&s.lat_us, 1.0),
            "status": s.status,
            "start_unix_us": now_us() - (elapsed * 1e6) as u128,
        })
    );
}

fn main() {
    let a = parse_args();
    // One thread: the generator shares 2 cores with the server under test.
    let threads = std::env::var("BENCH_LOAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    if a.ready.is_some() {
        rt.block_on(ready(&a));
    } else {
        rt.block_on(run(a));
    }
}
