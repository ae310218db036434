//! CPU per render of the default messages, as a delivery renders them: every
//! fixture in `tests/fixtures/` normalized as at ingest, then for each destination
//! type (webhook, Slack, Teams) the context built from the stored event and the
//! exact request prepared (`Relay::prepare`, what a delivery worker calls), N times.
//! Also the parts on their own: the context, the stored event's parse (the
//! worker's input), and for the webhook the handlebars render alone.
//!
//!   cargo run --release --example bench_render [-- N [FILTER]]
//!
//! Figures are thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), so they survive a
//! loaded machine better than wall time; note `uptime` with them anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hookrelay::event::Event;
use hookrelay::relay::Relay;
use serde_json::Value;

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` `n` times per item and prints µs of CPU per call.
fn measure<T>(what: &str, items: &[T], n: usize, mut f: impl FnMut(&T)) {
    // `bench_render N FILTER`: only the measurements whose label holds FILTER (for perf).
    if let Some(only) = std::env::args().nth(2) {
        if !what.contains(&only) {
            return;
        }
    }
    // Warm-up.
    for it in items {
        f(it);
    }
    let t0 = cpu_ns();
    for _ in 0..n {
        for it in items {
            f(it);
        }
    }
    let per = (cpu_ns() - t0) as f64 / (n * items.len()) as f64 / 1000.0;
    println!("{what:<44} {per:>8.2} µs");
}

const CONFIG: &str = r#"
storage:
  url: "sqlite:///tmp/bench-render-unused.db"
sources:
  simplebackups: { kind: simplebackups, token: t1 }
  cloud66: { kind: cloud66, token: t2 }
  centurylink: { kind: centurylink, token: t3 }
destinations:
  hook: { type: webhook, url: "http://127.0.0.1:9/hook" }
  slack: { type: slack, webhook_url: "http://127.0.0.1:9/slack" }
  teams: { type: teams, webhook_url: "http://127.0.0.1:9/teams" }
routes:
  - to: [hook, slack, teams]
"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile_dir();
    let cfg_path = dir.join("relay.yaml");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let relay = Relay::load(
        &cfg_path,
        &BTreeMap::new(),
        &hookrelay::destinations::http_client(),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut events: Vec<Event> = Vec::new();
    let mut as_ingested: Vec<String> = Vec::new();
    for provider in ["simplebackups", "cloud66", "centurylink"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures").join(provider))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let body = std::fs::read_to_string(&f).unwrap();
            let raw: Value = serde_json::from_str(&body).unwrap();
            let source = &relay.sources[provider];
            let mut e =
                hookrelay::providers::normalize(provider, &source.cfg, raw, chrono::Utc::now());
            hookrelay::watch::prepare(&relay.watch, &mut e, None, hookrelay::store::now_ms());
            // Stored as ingest stores it: the body spliced in as it came.
            let new = hookrelay::store::NewEvent::new(
                &mut e,
                Some(&body),
                String::new(),
                std::time::Duration::ZERO,
                true,
                Vec::new(),
            )
            .unwrap();
            as_ingested.push(new.event_json);
            events.push(e);
        }
    }
    let stored: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    println!(
        "{} fixtures, {n} rounds each, mean stored event {} bytes",
        events.len(),
        stored.iter().map(String::len).sum::<usize>() / stored.len()
    );

    measure("parse the stored event (worker's input)", &stored, n, |s| {
        std::hint::black_box(serde_json::from_str::<Event>(s).unwrap());
    });
    // A claimed delivery to the default webhook, from the stored text to the
    // request: `raw` parsed into a tree and written out, or kept as text.
    measure(
        "hook: stored → request, raw as a tree",
        &as_ingested,
        n,
        |s| {
            let e: Event = serde_json::from_str(s).unwrap();
            let (_, req) = relay
                .prepare_direct("hook", "default", &e, None, "x-1")
                .unwrap();
            std::hint::black_box(req);
        },
    );
    measure(
        "hook: stored → request, raw as text",
        &as_ingested,
        n,
        |s| {
            let (e, raw) = hookrelay::store::parse_stored_event(s.clone()).unwrap();
            let (_, req) = relay
                .prepare_direct("hook", "default", &e, raw.as_deref(), "x-1")
                .unwrap();
            std::hint::black_box(req);
        },
    );
    measure(
        "stored text: clone (in the line above)",
        &as_ingested,
        n,
        |s| {
            std::hint::black_box(s.clone());
        },
    );
    measure("context: event.clone()", &events, n, |e| {
        std::hint::black_box(e.clone());
    });
    measure("context: clone + into_template_context", &events, n, |e| {
        let mut ctx = e.clone().into_template_context();
        hookrelay::relay::set_delivery_id(&mut ctx, "x-1");
        std::hint::black_box(ctx);
    });
    for dest in ["hook", "slack", "teams"] {
        measure(
            &format!("{dest}: clone + context + prepare"),
            &events,
            n,
            |e| {
                let mut ctx = e.clone().into_template_context();
                hookrelay::relay::set_delivery_id(&mut ctx, "x-1");
                let (_, req) = relay.prepare(dest, "default", None, ctx).unwrap();
                std::hint::black_box(req);
            },
        );
    }
    measure("hook: clone + direct default body", &events, n, |e| {
        let e = e.clone();
        let (_, req) = relay
            .prepare_direct("hook", "default", &e, None, "x-1")
            .unwrap();
        std::hint::black_box(req);
    });
    let contexts: Vec<handlebars::Context> = events
        .iter()
        .map(|e| {
            let mut ctx = e.clone().into_template_context();
            hookrelay::relay::set_delivery_id(&mut ctx, "x-1");
            handlebars::Context::from(ctx)
        })
        .collect();
    measure("hook: render_json_text alone", &contexts, n, |c| {
        let t = relay
            .templates
            .render_json_text("default", "webhook", c)
            .unwrap();
        std::hint::black_box(t);
    });
    measure("slack: render_body_in alone (parsed)", &contexts, n, |c| {
        let t = relay
            .templates
            .render_body_in("default", "slack", c)
            .unwrap();
        std::hint::black_box(t);
    });
    measure("teams: render_body_in alone (parsed)", &contexts, n, |c| {
        let t = relay
            .templates
            .render_body_in("default", "teams", c)
            .unwrap();
        std::hint::black_box(t);
    });
    for ty in ["slack", "teams"] {
        measure(
            &format!("{ty}: render text + JSON check"),
            &contexts,
            n,
            |c| {
                let t = relay.templates.render_json_text("default", ty, c).unwrap();
                std::hint::black_box(t);
            },
        );
    }
    let bodies: Vec<(&str, hookrelay::templates::Body)> = ["slack", "teams"]
        .iter()
        .flat_map(|ty| {
            contexts.iter().map(|c| {
                (
                    *ty,
                    relay.templates.render_body_in("default", ty, c).unwrap(),
                )
            })
        })
        .collect();
    measure(
        "slack+teams: prepare from the rendered body",
        &bodies,
        n,
        |(ty, b)| {
            let msg = hookrelay::destinations::Message {
                body: b.clone(),
                html: None,
                subject: None,
                channel: None,
            };
            let dest = if *ty == "slack" { "slack" } else { "teams" };
            let req = relay.destinations[dest].sender.prepare(&msg).unwrap();
            std::hint::black_box(req);
        },
    );
    measure(
        "slack+teams: copy of the rendered body",
        &bodies,
        n,
        |(_, b)| {
            std::hint::black_box(b.clone());
        },
    );
    let texts: Vec<String> = contexts
        .iter()
        .map(|c| {
            relay
                .templates
                .render_json_text("default", "webhook", c)
                .unwrap()
                .unwrap()
        })
        .collect();
    measure(
        "hook: JSON check of the text (IgnoredAny)",
        &texts,
        n,
        |t| {
            std::hint::black_box(serde_json::from_str::<serde::de::IgnoredAny>(t).unwrap());
        },
    );
    measure("json of raw (serde_json::to_string)", &events, n, |e| {
        std::hint::black_box(serde_json::to_string(&e.raw).unwrap());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("bench-render-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
