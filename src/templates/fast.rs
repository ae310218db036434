//! The default webhook body written directly from the event, byte for byte what
//! the embedded `templates/default.webhook.json.hbs` renders for one event.
//!
//! Why: a drain of the default setup (one webhook destination, no template of its
//! own) spent about a sixth of its CPU building the template context (every field
//! as a JSON value) and walking the template with Handlebars, for a body that is
//! the event's fields in a fixed order. The `.hbs` file stays the documented
//! truth: this is used only while that embedded file is the one in force, only for
//! a single event (a group's and a digest's bodies still go through Handlebars),
//! and a test renders every fixture, sample and odd event both ways and asserts
//! the same bytes (`tests.rs`, `fast_webhook_body_is_the_templates_bytes`).

use std::io::Write as _;

use serde::Serialize;

use super::helpers::{emoji, headline_of};
use crate::event::Event;

/// The embedded default webhook body's registry key.
pub(super) const KEY: &str = "default.webhook.json";

/// What `default.webhook.json.hbs` renders for `e` (not a group, not a digest)
/// with `delivery_id`.
pub(super) fn default_webhook_body(e: &Event, delivery_id: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let text = format!(
        "{} {}",
        emoji(e.status.as_str()),
        headline_of(&|k| e.field(k).unwrap_or_default())
    );
    let subject = e.subject();
    out.extend_from_slice(b"{\n  \"text\": ");
    json(&mut out, &text);
    field(&mut out, "source", &e.source);
    field(&mut out, "provider", &e.provider);
    field(&mut out, "event", &e.event);
    field(&mut out, "status", e.status.as_str());
    field(&mut out, "severity", e.severity());
    field(&mut out, "stack", &e.stack);
    field(&mut out, "environment", &e.environment);
    field(&mut out, "server", &e.server);
    field(&mut out, "account", &e.account);
    field(&mut out, "backup", &e.backup);
    field(&mut out, "database", &e.database);
    field(&mut out, "size_bytes", &e.size_bytes);
    field(&mut out, "occurred_at", &e.occurred_at);
    field(&mut out, "id", &e.id);
    field(&mut out, "message", &e.message);
    field(&mut out, "received_at", &e.received_at);
    field(&mut out, "delivery_id", delivery_id);
    field(&mut out, "subject", &subject);
    field(&mut out, "failures", &e.failures);
    field(&mut out, "last_success_at", &e.last_success_at);
    field(&mut out, "down_since", &e.down_since);
    field(&mut out, "raw", &e.raw);
    out.extend_from_slice(b"\n}\n");
    // serde_json writes UTF-8 only, and the rest is ASCII.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `,\n  "name": <value as {{json}} writes it>`.
fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    let _ = write!(out, ",\n  \"{name}\": ");
    json(out, value);
}

/// A value as `{{json x}}` writes it: `serde_json`'s compact form (`null` for a
/// missing field, as the template's context has it).
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        // Not reachable for strings, numbers and JSON values; what the helper
        // writes when serialization fails.
        out.extend_from_slice(b"null");
    }
}
