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

use serde::Serialize;

use super::helpers::{emoji, headline_of};
use crate::event::Event;

/// The embedded default webhook body's registry key.
pub(super) const KEY: &str = "default.webhook.json";

/// What `default.webhook.json.hbs` renders for `e` (not a group, not a digest)
/// with `delivery_id`. `raw_text`, when given, is `e.raw` as JSON text not
/// parsed yet (a claimed delivery's, see `store::parse_stored_event`): it is
/// written as the tree parsed from it would be, without building the tree.
/// `None` only if `raw_text` is not JSON.
pub(super) fn default_webhook_body(
    e: &Event,
    raw_text: Option<&str>,
    delivery_id: &str,
) -> Option<String> {
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
    match raw_text {
        None => field(&mut out, "raw", &e.raw),
        Some(text) => {
            out.extend_from_slice(b",\n  \"raw\": ");
            let start = out.len();
            if compact(&mut out, text).is_err() {
                // A repeated key (the tree keeps the last value, in the first
                // one's place), a very wide object, or not JSON: the slow way.
                out.truncate(start);
                let raw: serde_json::Value = serde_json::from_str(text).ok()?;
                json(&mut out, &raw);
            }
        }
    }
    out.extend_from_slice(b"\n}\n");
    // serde_json writes UTF-8 only, and the rest is ASCII.
    Some(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Keys an object may have for [`compact`]: each key is compared with the ones
/// before it, so a wider object goes the slow way.
const MAX_KEYS: usize = 64;

/// Writes the JSON `text` as `serde_json` writes the tree parsed from it (the
/// compact form, strings escaped and numbers formatted as it does), reading it
/// once and allocating nothing per value. Fails on a key repeated within an
/// object (the tree would keep one), on an object of more than [`MAX_KEYS`] keys,
/// and on anything that is not one JSON value.
fn compact(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut keys = Vec::new();
    de::DeserializeSeed::deserialize(
        Copy {
            out,
            keys: &mut keys,
        },
        &mut de,
    )?;
    de.end()
}

mod de {
    pub(super) use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
}

/// One value copied from the deserializer to `out` (see [`compact`]). `keys`
/// holds the keys of the objects being copied, innermost last.
struct Copy<'a, 'de> {
    out: &'a mut Vec<u8>,
    keys: &'a mut Vec<std::borrow::Cow<'de, str>>,
}

impl<'de> de::DeserializeSeed<'de> for Copy<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Copy<'_, '_> {
    fn scalar<T: Serialize, E: de::Error>(self, v: T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, &v).map_err(E::custom)
    }
}

impl<'de> de::Visitor<'de> for Copy<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // As the tree holds it: a number (JSON text has no NaN nor infinity).
        match serde_json::Number::from_f64(v) {
            Some(n) => self.scalar(n),
            None => self.scalar(()),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            if !first {
                self.out.push(b',');
            }
            let item = Copy {
                out: &mut *self.out,
                keys: &mut *self.keys,
            };
            if seq.next_element_seed(item)?.is_none() {
                if !first {
                    // The comma written for an element that did not come.
                    self.out.pop();
                }
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mine = self.keys.len();
        while let Some(key) = map.next_key_seed(Key)? {
            if self.keys[mine..].contains(&key) {
                return Err(de::Error::custom("repeated key"));
            }
            if self.keys.len() - mine >= MAX_KEYS {
                return Err(de::Error::custom("too many keys"));
            }
            if self.keys.len() > mine {
                self.out.push(b',');
            }
            serde_json::to_writer(&mut *self.out, &*key).map_err(de::Error::custom)?;
            self.out.push(b':');
            self.keys.push(key);
            map.next_value_seed(Copy {
                out: &mut *self.out,
                keys: &mut *self.keys,
            })?;
        }
        self.keys.truncate(mine);
        self.out.push(b'}');
        Ok(())
    }
}

/// An object's key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

/// `,\n  "name": <value as {{json}} writes it>`.
fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
    // Not `write!`: the formatting machinery cost more than the copy, 22 times a body.
    out.extend_from_slice(b",\n  \"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": ");
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
