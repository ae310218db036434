//! centurylink payloads -> normalized event (stub).

use serde_json::Value;

use crate::event::Event;

pub fn normalize(_raw: &Value) -> Event {
    Event::default()
}
