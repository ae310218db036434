//! Generic sources: normalized fields read from JSON Pointers (stub).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::Event;

pub fn normalize(_raw: &Value, _fields: &BTreeMap<String, String>) -> Event {
    Event::default()
}
