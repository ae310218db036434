//! The normalized event (SPEC §4): what every provider's payload is turned into,
//! what routes match on and what templates see.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The outcome a provider reported, folded into one small vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failure,
    Partial,
    Missing,
    #[default]
    Unknown,
    /// hookrelay's own `backup.recovered` event (SPEC §9), never a provider's.
    Recovered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Partial => "partial",
            Status::Missing => "missing",
            Status::Unknown => "unknown",
            Status::Recovered => "recovered",
        }
    }

    /// `critical` for failure and missing, `warning` for partial and unknown,
    /// `info` for success and recovered.
    pub fn severity(self) -> &'static str {
        match self {
            Status::Failure | Status::Missing => "critical",
            Status::Partial | Status::Unknown => "warning",
            Status::Success | Status::Recovered => "info",
        }
    }

    /// Every status, as routes and templates spell them.
    pub const NAMES: &'static [&'static str] = &[
        "success",
        "failure",
        "partial",
        "missing",
        "unknown",
        "recovered",
    ];

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "success" => Status::Success,
            "failure" => Status::Failure,
            "partial" => Status::Partial,
            "missing" => Status::Missing,
            "unknown" => Status::Unknown,
            "recovered" => Status::Recovered,
            _ => return None,
        })
    }
}

/// Every severity, as routes and templates spell them.
pub const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// One webhook, normalized. Fields a provider does not have stay `None` and render
/// as empty strings in templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub source: String,
    pub provider: String,
    pub event: Option<String>,
    pub status: Status,
    pub stack: Option<String>,
    pub environment: Option<String>,
    pub server: Option<String>,
    pub account: Option<String>,
    pub backup: Option<String>,
    pub database: Option<String>,
    pub size_bytes: Option<u64>,
    /// RFC 3339, UTC.
    pub occurred_at: Option<String>,
    /// The provider's own id for this event, where it has one.
    pub id: Option<String>,
    pub message: Option<String>,
    /// RFC 3339, UTC: when hookrelay accepted the webhook.
    pub received_at: String,
    /// Backup watch (SPEC §9), computed at ingest: the subject's key (the
    /// `watch.by` fields' non-empty values joined by `/`). Read it with
    /// [`Event::subject`], which falls back to the default fields.
    #[serde(default)]
    pub subject: Option<String>,
    /// Consecutive failure/partial/missing outcomes of the subject, this event
    /// included (0 for a success).
    #[serde(default)]
    pub failures: u32,
    /// RFC 3339: the subject's previous success before this event.
    #[serde(default)]
    pub last_success_at: Option<String>,
    /// RFC 3339: when the current run of failures began (none when ok).
    #[serde(default)]
    pub down_since: Option<String>,
    /// The whole original payload.
    pub raw: Value,
}

/// The normalized field names, in the order `render` and the admin API show them.
/// Routes may match on these (and on `raw.<path>`); templates may use them freely.
pub const FIELDS: &[&str] = &[
    "source",
    "provider",
    "event",
    "status",
    "severity",
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
    "subject",
    "received_at",
    "failures",
    "last_success_at",
    "down_since",
];

impl Event {
    pub fn severity(&self) -> &'static str {
        self.status.severity()
    }

    /// The backup job this event is about (SPEC §9): the non-empty values of
    /// `source`, `stack`, `server` and `backup` joined by `/`, e.g.
    /// `c66/my-production-app/server-abc123/myapp_production`. PagerDuty uses it as
    /// the `dedup_key`, so a success resolves the incident its failure opened.
    /// These are the default `watch.by` fields: an event the backup watch has
    /// seen carries the key of its configured ones, which wins.
    pub fn subject(&self) -> String {
        if let Some(key) = self.subject.as_ref().filter(|k| !k.is_empty()) {
            return key.clone();
        }
        [
            Some(&self.source),
            self.stack.as_ref(),
            self.server.as_ref(),
            self.backup.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .collect::<Vec<_>>()
        .join("/")
    }

    /// A normalized field as a string, for routing. `None` when the provider did not
    /// supply it. `raw.<dotted.path>` reads the original payload.
    pub fn field(&self, name: &str) -> Option<String> {
        if let Some(path) = name.strip_prefix("raw.") {
            return lookup_dotted(&self.raw, path).and_then(scalar_string);
        }
        let opt = |v: &Option<String>| v.clone();
        match name {
            "source" => Some(self.source.clone()),
            "provider" => Some(self.provider.clone()),
            "event" => opt(&self.event),
            "status" => Some(self.status.as_str().to_string()),
            "severity" => Some(self.severity().to_string()),
            "stack" => opt(&self.stack),
            "environment" => opt(&self.environment),
            "server" => opt(&self.server),
            "account" => opt(&self.account),
            "backup" => opt(&self.backup),
            "database" => opt(&self.database),
            "size_bytes" => self.size_bytes.map(|n| n.to_string()),
            "occurred_at" => opt(&self.occurred_at),
            "id" => opt(&self.id),
            "message" => opt(&self.message),
            "subject" => Some(self.subject()),
            "received_at" => Some(self.received_at.clone()),
            "failures" => Some(self.failures.to_string()),
            "last_success_at" => opt(&self.last_success_at),
            "down_since" => opt(&self.down_since),
            _ => None,
        }
    }

    /// The normalized fields without `raw`, every known field present (`null` where
    /// the provider lacks it). This is what the admin API lists.
    pub fn fields_json(&self) -> Map<String, Value> {
        // Room for every field, `raw` and `delivery_id`: no regrowth while filling.
        let mut m = Map::with_capacity(FIELDS.len() + 2);
        let s = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        m.insert("source".into(), Value::String(self.source.clone()));
        m.insert("provider".into(), Value::String(self.provider.clone()));
        m.insert("event".into(), s(&self.event));
        m.insert("status".into(), Value::String(self.status.as_str().into()));
        m.insert("severity".into(), Value::String(self.severity().into()));
        m.insert("stack".into(), s(&self.stack));
        m.insert("environment".into(), s(&self.environment));
        m.insert("server".into(), s(&self.server));
        m.insert("account".into(), s(&self.account));
        m.insert("backup".into(), s(&self.backup));
        m.insert("database".into(), s(&self.database));
        m.insert(
            "size_bytes".into(),
            self.size_bytes.map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("occurred_at".into(), s(&self.occurred_at));
        m.insert("id".into(), s(&self.id));
        m.insert("message".into(), s(&self.message));
        m.insert("subject".into(), Value::String(self.subject()));
        m.insert(
            "received_at".into(),
            Value::String(self.received_at.clone()),
        );
        m.insert("failures".into(), Value::from(self.failures));
        m.insert("last_success_at".into(), s(&self.last_success_at));
        m.insert("down_since".into(), s(&self.down_since));
        m
    }

    /// What templates see: every normalized field plus `raw`.
    pub fn template_context(&self) -> Value {
        let mut m = self.fields_json();
        m.insert("raw".into(), self.raw.clone());
        Value::Object(m)
    }

    /// [`template_context`](Self::template_context) without copying `raw`, for
    /// an event that is not needed afterwards.
    pub fn into_template_context(mut self) -> Value {
        let raw = std::mem::take(&mut self.raw);
        let mut m = self.fields_json();
        m.insert("raw".into(), raw);
        Value::Object(m)
    }
}

/// Follows `a.b.0.c` through objects and arrays.
pub fn lookup_dotted<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A JSON scalar as the string a route compares against; objects, arrays and null
/// have no string form.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_paths_follow_objects_and_arrays() {
        let e = Event {
            raw: json!({"stack": {"cloud": "aws", "ns": ["a", "b"], "n": 3}}),
            ..Default::default()
        };
        assert_eq!(e.field("raw.stack.cloud").as_deref(), Some("aws"));
        assert_eq!(e.field("raw.stack.ns.1").as_deref(), Some("b"));
        assert_eq!(e.field("raw.stack.n").as_deref(), Some("3"));
        assert_eq!(e.field("raw.stack.missing"), None);
        assert_eq!(e.field("raw.stack"), None);
    }

    #[test]
    fn subject_joins_the_non_empty_watch_fields() {
        let e = Event {
            source: "c66".into(),
            stack: Some("my-production-app".into()),
            server: Some("server-abc123".into()),
            backup: Some("myapp_production".into()),
            account: Some("not part of it".into()),
            ..Default::default()
        };
        assert_eq!(
            e.subject(),
            "c66/my-production-app/server-abc123/myapp_production"
        );
        assert_eq!(e.field("subject").as_deref(), Some(e.subject().as_str()));
        let e = Event {
            source: "sb".into(),
            stack: Some(" ".into()),
            server: None,
            backup: Some("Acme Project".into()),
            ..Default::default()
        };
        assert_eq!(e.subject(), "sb/Acme Project");
    }

    #[test]
    fn severity_follows_status() {
        assert_eq!(Status::Failure.severity(), "critical");
        assert_eq!(Status::Missing.severity(), "critical");
        assert_eq!(Status::Partial.severity(), "warning");
        assert_eq!(Status::Unknown.severity(), "warning");
        assert_eq!(Status::Success.severity(), "info");
        assert_eq!(Status::Recovered.severity(), "info");
    }
}
