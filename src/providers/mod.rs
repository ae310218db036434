//! Providers: one file per backup provider, each turning a raw JSON payload into the
//! normalized [`Event`] of SPEC §4.
//!
//! Adding a provider: one file here, one `SourceKind` variant in `config.rs`, one
//! arm in [`normalize`], and a fixture in `tests/fixtures/`.

pub mod centurylink;
pub mod cloud66;
pub mod generic;
pub mod simplebackups;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::{SourceConfig, SourceKind};
use crate::event::Event;

/// Normalized fields a `kind: generic` source may map with JSON Pointers.
pub const GENERIC_FIELDS: &[&str] = &[
    "event",
    "status",
    "stack",
    "environment",
    "server",
    "account",
    "backup",
    "database",
    "size_bytes",
    "occurred_at",
    "id",
    "message",
];

/// Normalizes `raw` as the source's provider would send it. Never fails: a payload
/// that does not look like the provider's still yields an event, with
/// `status: unknown` and whatever fields could be found.
pub fn normalize(
    source: &str,
    cfg: &SourceConfig,
    raw: Value,
    received_at: DateTime<Utc>,
) -> Event {
    let mut e = match cfg.kind {
        SourceKind::Cloud66 => cloud66::normalize(&raw),
        SourceKind::Centurylink => centurylink::normalize(&raw),
        SourceKind::Simplebackups => simplebackups::normalize(&raw),
        SourceKind::Generic => generic::normalize(&raw, &cfg.fields),
    };
    e.source = source.to_string();
    e.provider = cfg.kind.as_str().to_string();
    e.received_at = rfc3339(received_at);
    e.raw = raw;
    e
}

/// RFC 3339 in UTC with a `Z`, whole seconds unless the input had fractions.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
