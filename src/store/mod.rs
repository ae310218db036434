//! Storage: events, their deliveries and every attempt, behind one trait so a
//! PostgreSQL backend can sit beside SQLite. The backend is chosen from the URL
//! scheme of `storage.url`.
//!
//! The contract every backend keeps: [`Store::ingest`] returns only after the event
//! and all its delivery rows are committed in one transaction; a delivery is
//! claimed with a lease, so one that was being sent when the process died is sent
//! again once the lease runs out (at-least-once), never dropped.

pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::event::{Event, Status};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Db(String),
    #[error("storage is shut down")]
    Closed,
    #[error("the transaction could not be committed")]
    Commit,
    #[error("not found")]
    NotFound,
    #[error("unsupported storage url: {0}")]
    Url(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            e => StoreError::Db(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One delivery the router decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub destination: String,
    pub template: String,
    /// Slack bot deliveries: the channel, rendered when the event arrived.
    pub channel: Option<String>,
}

/// An event to store with its deliveries.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub status: Status,
    /// The event as JSON, serialized by the caller so the single writer thread only
    /// writes. The event itself stays with the caller: its `raw` tree is many small
    /// allocations, cheaper freed on the thread that made them than on the writer.
    pub event_json: String,
    /// Provider's event id, else SHA-256 of the body.
    pub dedup_key: String,
    /// Zero turns dedup off.
    pub dedup_window: Duration,
    pub routed: bool,
    pub deliveries: Vec<NewDelivery>,
}

impl NewEvent {
    /// `raw_text`, when given, is the body `event.raw` was parsed from: it is
    /// stored as it came instead of serializing the parsed tree back (the same JSON,
    /// at a fraction of the cost). `event` is only borrowed mutably to set `raw`
    /// aside while the rest is serialized; it is left as it was.
    pub fn new(
        event: &mut Event,
        raw_text: Option<&str>,
        dedup_key: String,
        dedup_window: Duration,
        routed: bool,
        deliveries: Vec<NewDelivery>,
    ) -> Result<NewEvent> {
        let event_json = match raw_text {
            Some(text) => with_raw_text(event, text),
            None => serde_json::to_string(&*event),
        }
        .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(NewEvent {
            source: event.source.clone(),
            status: event.status,
            event_json,
            dedup_key,
            dedup_window,
            routed,
            deliveries,
        })
    }
}

/// The event as JSON with `raw_text` spliced in as `raw` (the last field).
fn with_raw_text(event: &mut Event, raw_text: &str) -> serde_json::Result<String> {
    const NULL_RAW: &str = r#","raw":null}"#;
    let raw = std::mem::take(&mut event.raw);
    // Room for the fields and the body at once: no regrowing while writing.
    let mut buf = Vec::with_capacity(512 + raw_text.len());
    let fields = serde_json::to_writer(&mut buf, &*event);
    event.raw = raw;
    fields?;
    // serde_json writes UTF-8 only.
    let mut json = String::from_utf8(buf).map_err(|e| serde::ser::Error::custom(e.to_string()))?;
    match json.strip_suffix(NULL_RAW) {
        Some(head) => {
            json.truncate(head.len());
            json.reserve(raw_text.len() + 8);
            json.push_str(r#","raw":"#);
            json.push_str(raw_text);
            json.push('}');
            Ok(json)
        }
        // Not the layout expected (it always is): the slow way.
        None => serde_json::to_string(&*event),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Stored { event_id: String, deliveries: usize },
    Duplicate { event_id: String },
}

/// A delivery leased to this process for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub event_id: String,
    pub destination: String,
    pub template: String,
    pub channel: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the delivery's retry window began (creation, or a manual retry), ms.
    pub window_start_ms: i64,
    pub event: Event,
}

/// What one attempt did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    RetryAt { at_ms: i64 },
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Delivered,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "delivered" => Some(State::Delivered),
            "dead" => Some(State::Dead),
            _ => None,
        }
    }
}

/// Filters of `GET /api/events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub limit: usize,
    pub status: Option<String>,
    pub source: Option<String>,
    /// An event id: list only older events.
    pub before: Option<String>,
}

/// The admin API's view of an attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub at: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// The admin API's view of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    pub destination: String,
    pub template: String,
    pub state: State,
    pub attempts: Vec<AttemptView>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

/// The admin API's view of a stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub event: Event,
    pub routed: bool,
    pub duplicates: u32,
    pub deliveries: Vec<DeliveryView>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores the event and its deliveries in one transaction, or finds the
    /// duplicate it repeats. Returns only after commit.
    async fn ingest(&self, e: NewEvent) -> Result<Ingested>;
    /// Leases up to `limit` due pending deliveries of `destination` for `lease`.
    async fn claim(&self, destination: &str, limit: usize, lease: Duration)
        -> Result<Vec<Claimed>>;
    /// Restarts a claimed delivery's lease: its send starts now, however long it
    /// waited after its claim.
    fn renew_lease(&self, delivery_id: i64, lease: Duration);
    /// When the next pending delivery of `destination` is due (ms), if any.
    async fn next_due(&self, destination: &str) -> Result<Option<i64>>;
    /// Destinations that have pending deliveries.
    async fn pending_destinations(&self) -> Result<Vec<String>>;
    /// Records an attempt and its outcome; `error` is kept as the last error.
    async fn complete(&self, delivery_id: i64, attempt: Attempt, outcome: Outcome) -> Result<()>;
    /// Marks every pending delivery of `destination` dead with `error` (a
    /// destination that is no longer configured).
    async fn bury(&self, destination: &str, error: &str) -> Result<usize>;
    async fn list_events(&self, q: EventQuery) -> Result<Vec<EventRecord>>;
    async fn get_event(&self, id: &str) -> Result<EventRecord>;
    async fn list_deliveries(
        &self,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<DeliveryView>>;
    /// Makes a delivery pending and due now, with a fresh retry window.
    async fn retry_delivery(&self, id: i64) -> Result<()>;
    /// Adds deliveries to an existing event (replay).
    async fn add_deliveries(&self, event_id: &str, d: Vec<NewDelivery>) -> Result<usize>;
    /// Pending deliveries per destination.
    async fn queue_depth(&self) -> Result<Vec<(String, i64)>>;
    /// A real round-trip to the database.
    async fn ping(&self) -> Result<()>;
}

/// Opens the backend `url` names: `sqlite://PATH`.
pub fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteStore::open(path)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Url(
            "postgres:// is not supported yet; use sqlite://PATH".into(),
        ));
    }
    Err(StoreError::Url("expected sqlite://PATH".into()))
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(crate::providers::rfc3339)
        .unwrap_or_default()
}

/// An item of `GET /api/events`: the normalized fields, `routed`, and delivery
/// counts by state.
pub fn event_summary(r: &EventRecord) -> Value {
    let mut m = r.event.fields_json();
    let mut counts = serde_json::Map::new();
    for s in [State::Pending, State::Delivered, State::Dead] {
        let n = r.deliveries.iter().filter(|d| d.state == s).count();
        counts.insert(s.as_str().into(), n.into());
    }
    // `id` in the normalized event is the provider's id; the stored id leads.
    m.insert(
        "provider_id".into(),
        m.get("id").cloned().unwrap_or(Value::Null),
    );
    m.insert("id".into(), Value::String(r.id.clone()));
    m.insert("routed".into(), Value::Bool(r.routed));
    m.insert("deliveries".into(), Value::Object(counts));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, SourceKind};

    #[test]
    fn the_stored_event_with_the_body_spliced_in_reads_back_as_the_event() {
        let bodies = [
            include_str!("../../tests/fixtures/simplebackups/error.json"),
            include_str!("../../tests/fixtures/cloud66/backup.verification.failed.json"),
            include_str!("../../tests/fixtures/centurylink/failed-text-only.json"),
            // Whitespace, escapes, a repeated key (the last one counts, as when parsed).
            " {\n \"status\" : \"error\", \"a\\\"b\": [1, 2.5, {\"c\": null}], \"status\": \"success\"}\n ",
        ];
        let cfg = SourceConfig {
            kind: SourceKind::Simplebackups,
            token: None,
            secret: None,
            hmac: None,
            fields: Default::default(),
            dedup_window: Duration::ZERO,
        };
        for body in bodies {
            let raw: Value = serde_json::from_str(body).unwrap();
            let mut event = crate::providers::normalize("sb", &cfg, raw, chrono::Utc::now());
            let before = event.clone();
            let spliced = NewEvent::new(
                &mut event,
                Some(body),
                "k".into(),
                Duration::ZERO,
                true,
                vec![],
            );
            assert_eq!(event, before, "the event is left as it was");
            let plain = NewEvent::new(&mut event, None, "k".into(), Duration::ZERO, true, vec![]);
            let read: Event = serde_json::from_str(&spliced.unwrap().event_json).unwrap();
            assert_eq!(read, before);
            let read_plain: Event = serde_json::from_str(&plain.unwrap().event_json).unwrap();
            assert_eq!(read_plain, before);
        }
    }
}
