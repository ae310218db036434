//! hookrelay: receives backup providers' webhooks, stores them durably, routes them
//! through `relay.yaml` and delivers Slack, Microsoft Teams, email and webhook alerts,
//! retrying until the destination takes them.
#![forbid(unsafe_code)]

/// Settings: YAML + `${VAR}` + `HOOKRELAY__` overrides, validated with key paths.
pub mod config;
/// Slack, Teams, email, webhook and console senders behind one trait.
pub mod destinations;
/// The normalized event every provider payload becomes.
pub mod event;
/// One file per backup provider: raw payload -> normalized event.
pub mod providers;
/// Handlebars templates, helpers and per-destination escaping.
pub mod templates;
