//! The `hookrelay` command: `serve`, `check`, `render`, `send` (SPEC §1).
//! Exit codes: 0 ok, 1 invalid config or input, 2 usage error, 3 a delivery failed.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::config::{self, SourceKind};
use crate::destinations::Request;
use crate::event::Event;
use crate::relay::Relay;
use crate::startup::{http_client, Application};
use crate::store::NewDelivery;

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
    #[arg(long, required_unless_present = "digest")]
    pub source: Option<String>,
    /// A JSON file with the payload; several files render as one group (as a
    /// route with `group` sends them), the first one's routes deciding
    #[arg(required_unless_present = "digest")]
    pub payload: Vec<PathBuf>,
    /// Instead of a payload: a sample digest (42 backups, one failing, one
    /// missing) for each `digest` entry, or to every destination when none is set
    #[arg(long, conflicts_with_all = ["source", "payload"])]
    pub digest: bool,
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
    for w in settings.warnings() {
        log::warn!("{}: {w}", path.display());
    }
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
    let env = std::env::vars().collect();
    let relay = match Relay::load(path, &env, &http_client()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            // The warnings too: they are still due once the errors are fixed.
            let warnings = config::load_partial(path, &env)
                .map(|(s, _)| s.warnings())
                .unwrap_or_default();
            if !warnings.is_empty() {
                eprintln!("warnings ({}):", warnings.len());
                for w in &warnings {
                    eprintln!("  {w}");
                }
            }
            return EXIT_INVALID;
        }
    };
    let s = &relay.settings;
    let warnings = s.warnings();
    if warnings.is_empty() {
        out!("{}: ok", path.display());
    } else {
        out!(
            "{}: ok, {}",
            path.display(),
            plural(warnings.len(), "warning")
        );
        out!("warnings ({}):", warnings.len());
        for w in &warnings {
            out!("  {w}");
        }
    }
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
        let cond = conditions(r.matches.as_ref(), "everything");
        let group = r
            .group
            .as_ref()
            .map(|g| {
                let by = if g.by.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", g.by.join(", "))
                };
                format!(
                    ", grouped: wait {}{by}, at most {}",
                    crate::watch::human(g.wait),
                    g.max
                )
            })
            .unwrap_or_default();
        out!(
            "  [{i}] {cond} -> {} (template {}{}{group})",
            r.to.join(", "),
            r.template.as_deref().unwrap_or("default"),
            if r.continue_ { ", continue" } else { "" }
        );
    }
    if !relay.watch.rules.is_empty() {
        out!(
            "backup watch ({}, subjects by {}):",
            plural(relay.watch.rules.len(), "rule"),
            relay.watch.by.join(", ")
        );
        for (r, x) in relay.watch.rules.iter().zip(&s.watch.expect) {
            let cond = conditions(x.matches.as_ref(), "every subject");
            let pinned = r
                .pinned
                .as_ref()
                .map(|(key, _)| format!(", watches {key} from start"))
                .unwrap_or_default();
            let remind = r
                .remind
                .map(|d| format!(", reminds every {}", crate::watch::human(d)))
                .unwrap_or_default();
            out!("  [{}] {cond}: {}{remind}{pinned}", r.index, r.describe());
        }
    }
    if !s.digest.is_empty() {
        out!("digests ({}):", s.digest.len());
        for (i, d) in s.digest.iter().enumerate() {
            out!(
                "  [{i}] {} ({}) -> {} (template {})",
                d.cron.trim(),
                d.tz.as_deref().unwrap_or("UTC"),
                d.to.join(", "),
                d.template
            );
        }
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

/// A `match` as `key=value …`, or `none` when it matches everything.
fn conditions(m: Option<&serde_json::Map<String, Value>>, none: &str) -> String {
    match m {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => none.into(),
    }
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
    if a.digest {
        return render_digest(&relay, send).await;
    }
    let name = a.source.clone().unwrap_or_default();
    let Some(source) = relay.sources.get(&name) else {
        eprintln!(
            "unknown source {name:?}; configured: {}",
            relay.sources.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        return EXIT_INVALID;
    };
    let mut events = Vec::new();
    for file in &a.payload {
        let body = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return EXIT_INVALID;
            }
        };
        // Refused here as `serve` refuses it, so a payload that renders is one
        // hookrelay would take.
        let max = relay.settings.server.max_body_bytes;
        let raw = match crate::http::ingest::check_payload(&body, max) {
            Ok(v) => v,
            Err((why, status)) => {
                eprintln!(
                    "{}: {why} (hookrelay serve would answer {status})",
                    file.display()
                );
                return EXIT_INVALID;
            }
        };
        let mut event = crate::providers::normalize(&name, &source.cfg, raw, chrono::Utc::now());
        // The backup-watch fields as for the subject's first event (render reads
        // no database).
        crate::watch::prepare(&relay.watch, &mut event, None, crate::store::now_ms());
        events.push(event);
    }
    let Some(event) = events.first().cloned() else {
        eprintln!("no payload given");
        return EXIT_INVALID;
    };
    out!("event:");
    out!("{}", pretty(&Value::Object(event.fields_json())));
    if events.len() > 1 {
        out!(
            "\n(and {} more: rendered as one group of {}, as a route with `group` sends them)",
            events.len() - 1,
            events.len()
        );
    }
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
    let mut ctx = event.template_context();
    if events.len() > 1 {
        if let Some(m) = ctx.as_object_mut() {
            m.insert("count".into(), events.len().into());
            m.insert(
                "events".into(),
                events.iter().map(Event::template_context).collect(),
            );
        }
    }
    deliver(&relay, &deliveries, ctx, send).await
}

/// Renders the sample digest for each `digest` entry (or, with none, to every
/// destination with the default digest templates).
async fn render_digest(relay: &Relay, send: bool) -> i32 {
    let Some((what, ctx)) = crate::digest::sample_contexts().into_iter().next() else {
        return EXIT_INVALID;
    };
    out!("digest: {what}");
    let deliveries: Vec<NewDelivery> = if relay.digests.is_empty() {
        out!("(no `digest` configured: the default digest to every destination)");
        relay
            .destinations
            .keys()
            .map(|d| NewDelivery {
                destination: d.clone(),
                template: "digest".into(),
                channel: None,
            })
            .collect()
    } else {
        relay
            .digests
            .iter()
            .flat_map(|g| {
                out!(
                    "digest[{}]: {}, to {}",
                    g.index,
                    g.describe(),
                    g.to.join(", ")
                );
                g.to.iter().map(|d| NewDelivery {
                    destination: d.clone(),
                    template: g.template.clone(),
                    channel: None,
                })
            })
            .collect()
    };
    deliver(relay, &deliveries, ctx, send).await
}

/// Prints (and with `send` delivers) each delivery's exact request; the exit code.
async fn deliver(relay: &Relay, deliveries: &[NewDelivery], mut ctx: Value, send: bool) -> i32 {
    let mut failed = false;
    // Not stored: an id of its own, so a receiver never takes it for a repeat.
    let delivery_id = crate::relay::delivery_id(&uuid::Uuid::now_v7().to_string(), 0);
    crate::relay::set_delivery_id(&mut ctx, &delivery_id);
    for d in deliveries {
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
        match relay.prepare(
            &d.destination,
            &d.template,
            d.channel.as_deref(),
            ctx.clone(),
        ) {
            Ok((_, Request::Nothing(reason))) => {
                // The template chose to send nothing: there is no request, and
                // `send` has nothing to deliver.
                out!("(nothing is sent: {reason})");
            }
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
        Request::JsonText(t) => out!("{}", t.trim_end()),
        Request::Nothing(reason) => out!("(nothing is sent: {reason})"),
    }
}
