//! The `hookrelay` command: `serve`, `check`, `render`, `send` (SPEC §1).
//! Exit codes: 0 ok, 1 invalid config or input, 2 usage error, 3 a delivery failed.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::config::{self, SourceKind};
use crate::destinations::Request;
use crate::relay::Relay;
use crate::startup::{http_client, Application};

#[derive(Parser, Debug)]
#[command(
    name = "hookrelay",
    version,
    about = "Relay backup providers' webhooks to Slack, Microsoft Teams, email and webhooks",
    propagate_version = true
)]
pub struct Cli {
    /// Config file [default: $HOOKRELAY_CONFIG, else relay.yaml]
    #[arg(short = 'c', long = "config", global = true, env = "HOOKRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: ingest, delivery workers, admin API
    Serve,
    /// Validate the config and every template; print a summary
    Check,
    /// Dry run: show the normalized event, matching routes and each request body
    Render(PayloadArgs),
    /// Like render, then deliver once and print each destination's outcome
    Send(PayloadArgs),
}

#[derive(clap::Args, Debug)]
pub struct PayloadArgs {
    /// The configured source whose provider parses the payload
    #[arg(long)]
    pub source: String,
    /// A JSON file with the payload
    pub payload: PathBuf,
}

/// `println!` that stops quietly when standard output is closed (`| head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

pub const EXIT_INVALID: i32 = 1;
pub const EXIT_DELIVERY_FAILED: i32 = 3;

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    match cli.command {
        Command::Serve => serve(&path).await,
        Command::Check => check(&path),
        Command::Render(a) => render(&path, &a, false).await,
        Command::Send(a) => render(&path, &a, true).await,
    }
}

/// Loads the config and builds the relay, printing every error of every section.
fn load(path: &Path) -> Result<Relay, i32> {
    let env = std::env::vars().collect();
    Relay::load(path, &env, &http_client()).map_err(|e| {
        eprintln!("{e}");
        EXIT_INVALID
    })
}

async fn serve(path: &Path) -> i32 {
    let env = std::env::vars().collect();
    let settings = match config::load_with_env(path, &env) {
        Ok(s) => s,
        Err(e) => {
            // Every error, those of routes and templates included, as `check` lists them.
            match Relay::load(path, &env, &http_client()) {
                Err(all) => eprintln!("{all}"),
                Ok(_) => eprintln!("{e}"),
            }
            return EXIT_INVALID;
        }
    };
    let listen = settings.server.listen.clone();
    let app = match Application::build(settings).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            return EXIT_INVALID;
        }
    };
    log::info!(
        "hookrelay {} listening on {listen} (port {}), config {}",
        env!("CARGO_PKG_VERSION"),
        app.port(),
        path.display()
    );
    match app.run_until_stopped().await {
        Ok(()) => {
            log::info!("hookrelay stopped");
            0
        }
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            EXIT_INVALID
        }
    }
}

fn check(path: &Path) -> i32 {
    let relay = match load(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let s = &relay.settings;
    out!("{}: ok", path.display());
    out!("sources ({}):", s.sources.len());
    for (name, src) in &s.sources {
        let mut auth = Vec::new();
        if let Some(t) = &src.token {
            auth.push(format!(
                "token ({})",
                plural(t.clone().into_vec().len(), "token")
            ));
        }
        if let Some(x) = &src.secret {
            auth.push(format!(
                "SB-Signature ({})",
                plural(x.clone().into_vec().len(), "secret")
            ));
        }
        if let Some(h) = &src.hmac {
            auth.push(format!(
                "hmac {} ({})",
                h.header,
                plural(h.secret.clone().into_vec().len(), "secret")
            ));
        }
        if auth.is_empty() {
            auth.push("no authentication: anyone who can reach hookrelay can post".into());
        }
        let url_hint = if matches!(src.kind, SourceKind::Cloud66 | SourceKind::Centurylink)
            && src.token.is_some()
        {
            " (?token=… in the URL)"
        } else {
            ""
        };
        out!(
            "  {name:<16} {:<14} POST /hooks/{name}  {}{url_hint}",
            src.kind.as_str(),
            auth.join(", ")
        );
    }
    out!("destinations ({}):", s.destinations.len());
    for (name, d) in &s.destinations {
        let detail = d.kind.describe();
        let rate = d
            .rate_limit()
            .map(|r| {
                format!(
                    ", at most {} per {}",
                    r.count,
                    humantime::format_duration(r.per)
                )
            })
            .unwrap_or_default();
        let state = if d.common.enabled { "" } else { "  [disabled]" };
        out!(
            "  {name:<16} {:<8} {detail}{rate}{state}",
            d.kind.type_name()
        );
    }
    out!("routes ({}):", s.routes.len());
    for (i, r) in s.routes.iter().enumerate() {
        let cond = match &r.matches {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| format!("{k}={}", compact(v)))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "everything".into(),
        };
        out!(
            "  [{i}] {cond} -> {} (template {}{})",
            r.to.join(", "),
            r.template.as_deref().unwrap_or("default"),
            if r.continue_ { ", continue" } else { "" }
        );
    }
    let dir = &s.templates.dir;
    if dir.is_dir() {
        out!(
            "templates: embedded defaults, overridden by {}",
            dir.display()
        );
    } else {
        out!("templates: embedded defaults ({} not found)", dir.display());
    }
    // Only a SQLite file is shown: another URL may carry a password.
    if let Some(file) = s.storage.url.expose().strip_prefix("sqlite://") {
        out!("storage: SQLite {file}");
    }
    out!(
        "relative paths are resolved against {} (the config file's folder)",
        s.base_dir().display()
    );
    0
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

async fn render(path: &Path, a: &PayloadArgs, send: bool) -> i32 {
    let relay = match load(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(source) = relay.sources.get(&a.source) else {
        eprintln!(
            "unknown source {:?}; configured: {}",
            a.source,
            relay.sources.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return EXIT_INVALID;
    };
    let body = match std::fs::read(&a.payload) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", a.payload.display());
            return EXIT_INVALID;
        }
    };
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            eprintln!("{}: expected a JSON object", a.payload.display());
            return EXIT_INVALID;
        }
        Err(e) => {
            eprintln!("{}: not valid JSON: {e}", a.payload.display());
            return EXIT_INVALID;
        }
    };
    let mut event = crate::providers::normalize(&a.source, &source.cfg, raw, chrono::Utc::now());
    // The backup-watch fields as for the subject's first event (render reads no
    // database).
    crate::watch::prepare(&relay.watch, &mut event, None, crate::store::now_ms());
    out!("event:");
    out!("{}", pretty(&Value::Object(event.fields_json())));
    let (_, deliveries) = relay.plan(&event);
    // Only the routes the walk reaches: a later route that also matches gets
    // nothing once a matching route without `continue` has ended the walk.
    let walked = crate::routing::walk(&relay.routes, &event);
    if walked.is_empty() {
        out!("\nmatching routes: none (the event would be stored as unrouted)");
    } else {
        out!("\nmatching routes:");
        for &i in &walked {
            let to: Vec<String> = relay.routes[i]
                .to
                .iter()
                .map(|d| {
                    let first = walked
                        .iter()
                        .copied()
                        .find(|&j| relay.routes[j].to.contains(d));
                    if !relay
                        .destinations
                        .get(d)
                        .is_some_and(|x| x.cfg.common.enabled)
                    {
                        format!("{d} (disabled)")
                    } else if first != Some(i) {
                        format!("{d} (already from routes[{}])", first.unwrap_or(i))
                    } else {
                        d.clone()
                    }
                })
                .collect();
            out!("  routes[{i}] -> {}", to.join(", "));
        }
        let last = walked[walked.len() - 1];
        let unreached: Vec<String> = relay
            .routes
            .iter()
            .enumerate()
            .skip(last + 1)
            .filter(|(_, r)| r.matches(&event))
            .map(|(i, _)| format!("routes[{i}]"))
            .collect();
        if !unreached.is_empty() {
            out!(
                "  (also matching but not reached: {}; routes[{last}] ends the walk without `continue: true`)",
                unreached.join(", ")
            );
        }
    }
    let mut failed = false;
    let mut ctx = event.template_context();
    // Not stored: an id of its own, so a receiver never takes it for a repeat.
    let delivery_id = crate::relay::delivery_id(&uuid::Uuid::now_v7().to_string(), 0);
    crate::relay::set_delivery_id(&mut ctx, &delivery_id);
    for d in &deliveries {
        let ty = relay
            .destinations
            .get(&d.destination)
            .map(|x| x.type_name())
            .unwrap_or("?");
        out!(
            "\ndelivery to {} ({ty}, template {}):",
            d.destination,
            d.template
        );
        match relay.prepare(&d.destination, &d.template, d.channel.as_deref(), &ctx) {
            Ok((sender, req)) => {
                print_request(&req);
                if send {
                    match sender.send(&req, &delivery_id).await {
                        Ok(s) => out!(
                            "=> delivered{}",
                            s.status
                                .map(|x| format!(" (status {x})"))
                                .unwrap_or_default()
                        ),
                        Err(e) => {
                            failed = true;
                            out!(
                                "=> failed ({}): {}",
                                if e.is_transient() {
                                    "transient"
                                } else {
                                    "permanent"
                                },
                                e.message
                            );
                        }
                    }
                }
            }
            Err(e) => {
                failed = true;
                out!("cannot render: {e}");
            }
        }
    }
    if failed {
        if send {
            EXIT_DELIVERY_FAILED
        } else {
            EXIT_INVALID
        }
    } else {
        0
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn print_request(req: &Request) {
    match req {
        Request::Json(v) => out!("{}", pretty(v)),
        Request::Email {
            from,
            to,
            subject,
            text,
            html,
        } => {
            out!(
                "From: {from}\nTo: {}\nSubject: {subject}\n\n{text}",
                to.join(", ")
            );
            if let Some(h) = html {
                out!("\n--- HTML part ---\n{h}");
            }
        }
        Request::Console(s) => out!("{s}"),
    }
}
