//! hookrelay: receives backup providers' webhooks, stores them durably, routes them
//! through `relay.yaml` and delivers Slack, Microsoft Teams, email and webhook alerts,
//! retrying until the destination takes them.
#![forbid(unsafe_code)]

/// Tokens and HMAC signatures, constant-time.
pub mod auth;
/// `serve`, `check`, `render`, `send`.
pub mod cli;
/// Settings: YAML + `${VAR}` + `HOOKRELAY__` overrides, validated with key paths.
pub mod config;
/// Slack, Teams, email, webhook and console senders behind one trait.
pub mod destinations;
/// The daily digest (SPEC §10): scheduled summaries of every backup.
pub mod digest;
/// The normalized event every provider payload becomes.
pub mod event;
/// Grouping (SPEC §10): a route's events held and sent as one message.
pub mod group;
/// Ingest, health, metrics and admin endpoints.
pub mod http;
/// Prometheus metrics.
pub mod logging;
pub mod metrics;
/// One file per backup provider: raw payload -> normalized event.
pub mod providers;
/// The loaded relay: sources, destinations, routes and templates, built from settings.
pub mod relay;
/// Pure routing: routes + event -> deliveries.
pub mod routing;
/// Builds and runs the application; shared state; reload.
pub mod startup;
/// Durable storage of events, deliveries and attempts.
pub mod store;
/// Handlebars templates, helpers and per-destination escaping.
pub mod templates;
/// The web page (`/ui`): backups board, delivery log, event page; sign-in.
pub mod ui;
/// Backup watch: subjects, deadlines, missed and recovered backups.
pub mod watch;
/// Delivery loops: claim, render, send, retry or bury.
pub mod worker;
