//! Storage: events, their deliveries and every attempt, behind one trait so each
//! backend is one module: [`sqlite`] (embedded, one process) and [`postgres`]
//! (several replicas sharing one queue). The backend is chosen from the URL
//! scheme of `storage.url`.
//!
//! The contract every backend keeps (and `tests/store_contract.rs` checks on each):
//! - [`Store::ingest`] returns only after the event and all its delivery rows are
//!   committed in one transaction;
//! - a claim is a write that hands out a lease with a token; the attempt's result
//!   ([`Store::complete`]) and a renewal carry the token and are ignored when it
//!   is stale, so a process that was paused past its lease cannot overwrite a newer
//!   attempt; a delivery whose lease runs out is claimed again (at-least-once);
//! - every time that decides something (due times, leases, dedup windows, age)
//!   comes from the backend's clock, so processes with skewed clocks agree;
//!   callers hand over durations, never instants of their own clock.
//!
//! Backend-specific tuning (SQLite's group-commit writer thread, its lazy attempt
//! records, its in-memory leases) stays inside the backend.

pub mod limits;
pub mod postgres;
pub mod sqlite;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::config::RateLimit;
use crate::event::{Event, Status};
use crate::watch::{Rule, Subject, SubjectState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written right now (connection lost,
    /// disk full, file read-only or gone); the same call may succeed later.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database refused (a constraint, a bad statement).
    #[error("storage error: {0}")]
    Db(String),
    #[error("storage is shut down")]
    Closed,
    #[error("the transaction could not be committed")]
    Commit,
    #[error("not found")]
    NotFound,
    /// A retry asked for a delivery that is not dead: it is pending (maybe being
    /// sent right now) or already delivered, and a retry would send it twice.
    #[error("delivery {id} is {}; only a dead delivery is retried", .state.as_str())]
    NotDead { id: i64, state: State },
    /// Another claim holds the delivery now: this lease is stale.
    #[error("the lease on delivery {0} is no longer held")]
    LeaseLost(i64),
    /// `storage.url` names no usable backend, or its database refused us. Never
    /// carries the URL's password.
    #[error("storage.url: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether trying again later may succeed (the caller answers 503 and the
    /// sender retries), rather than the request itself being at fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Commit)
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
    /// The subject to update in the same transaction (SPEC §9).
    pub watch: Option<WatchUpdate>,
    /// Groups the event joins in the same transaction, instead of deliveries of
    /// its own to those destinations (SPEC §10, see `group`).
    pub groups: Vec<GroupJoin>,
    /// A digest: (its schedule's key, its scheduled time), recorded in the same
    /// transaction as that schedule's last run (see [`Store::last_digest`]).
    pub digest_run: Option<(String, i64)>,
}

/// An event joining a route's group: the open group of `key`, or a new one due
/// `wait` later (at once when `max` is reached).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupJoin {
    pub key: String,
    pub wait: Duration,
    pub max: u32,
    /// What the group's deliveries will be (taken from the event that opens it).
    pub deliveries: Vec<NewDelivery>,
}

impl NewEvent {
    /// The destinations the event goes to: its own deliveries and those its
    /// groups will have (what the ingest answer counts).
    pub fn planned(&self) -> usize {
        self.deliveries.len()
            + self
                .groups
                .iter()
                .map(|g| g.deliveries.len())
                .sum::<usize>()
    }
}

/// What an event does to its subject, applied by the backend inside the event's
/// transaction with [`crate::watch::apply`] on the subject as it is there.
#[derive(Debug, Clone)]
pub struct WatchUpdate {
    pub key: String,
    /// The subject's fields from a provider's event; `None` for hookrelay's own
    /// events, which keep the subject's.
    pub fields: Option<Arc<serde_json::Map<String, Value>>>,
    /// The `expect` rule watching the subject, if any.
    pub rule: Option<Arc<Rule>>,
    /// When the event was received (unix ms), if the backend's clock did not
    /// already stamp it: the subject's times are its events' `received_at`.
    pub at: Option<i64>,
    /// A `backup.missing` for this deadline: stored only if the subject's
    /// `next_deadline` is still exactly this (else another claim fired it, and
    /// the ingest answers [`Ingested::Skipped`]).
    pub claim: Option<i64>,
    /// A success's `backup.recovered`, built and stored too if, in the
    /// transaction, this event ends a bad run.
    pub recovered: Option<Recovery>,
}

/// Builds a success's `backup.recovered` from the bad run it ended, as the
/// store's transaction finds it: the subject read before the event was routed
/// may be older than that (another replica's failure not heard of yet, another
/// webhook of the subject stored meanwhile), and it decides nothing.
#[derive(Clone)]
pub struct Recovery(Arc<RecoveryFn>);

/// (failures, down since, the previous success) -> the event to store.
type RecoveryFn = dyn Fn(u32, Option<i64>, Option<i64>) -> Result<NewEvent> + Send + Sync;

impl Recovery {
    pub fn new(
        build: impl Fn(u32, Option<i64>, Option<i64>) -> Result<NewEvent> + Send + Sync + 'static,
    ) -> Recovery {
        Recovery(Arc::new(build))
    }

    /// The `backup.recovered` to store with the event, if applying it (in the
    /// transaction) ended a bad run.
    pub fn after(&self, applied: &crate::watch::Applied) -> Result<Option<NewEvent>> {
        match applied.recovered {
            Some((failures, down_since)) => {
                (self.0)(failures, down_since, applied.last_success_at).map(Some)
            }
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recovery")
    }
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
            watch: None,
            groups: Vec::new(),
            digest_run: None,
        })
    }
}

fn unreadable(e: serde_json::Error) -> StoreError {
    StoreError::Db(format!("stored event unreadable: {e}"))
}

/// A stored event (as [`NewEvent::new`] writes it) with `raw` left as its JSON
/// text: the event's fields are parsed, `raw` is `null` and its text is returned
/// beside it. A drain spent about a tenth of its CPU building (and freeing) the
/// tree of `raw` only for the default webhook body to write it out again.
///
/// `raw` is the last field, written compact after the others, so the first
/// `,"raw":` ends the fields: no string can hold those bytes (its quotes would
/// be escaped) and no field before it is an object. Text laid out otherwise is
/// parsed whole, as before.
pub fn parse_stored_event(mut json: String) -> Result<(Event, Option<String>)> {
    const RAW: &str = r#","raw":"#;
    let Some(at) = json.find(RAW).filter(|_| json.ends_with('}')) else {
        return Ok((serde_json::from_str(&json).map_err(unreadable)?, None));
    };
    let mut head = String::with_capacity(at + 12);
    head.push_str(&json[..at]);
    head.push_str(r#","raw":null}"#);
    let event: Event = serde_json::from_str(&head).map_err(unreadable)?;
    json.truncate(json.len() - 1);
    json.drain(..at + RAW.len());
    Ok((event, Some(json)))
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
    Stored {
        event_id: String,
        deliveries: usize,
    },
    Duplicate {
        event_id: String,
    },
    /// The deadline it claimed was already fired (or moved): nothing stored.
    Skipped,
}

/// A claim on one delivery: its id and the token the claim handed out. A newer
/// claim of the same delivery gets another token, and then this one is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub token: i64,
}

/// A delivery leased to this process for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// The claim's token: [`Store::renew`] and [`Store::complete`] carry it.
    pub token: i64,
    pub event_id: String,
    pub destination: String,
    pub template: String,
    pub channel: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// How long the delivery's retry window had been running when it was claimed
    /// (since creation, or a manual retry), by the store's clock.
    pub age: Duration,
    /// When it was claimed, by this process's monotonic clock (to add the time
    /// since to `age`).
    pub claimed_at: std::time::Instant,
    /// The event; its `raw` is `null` while [`raw_text`](Self::raw_text) holds it.
    pub event: Event,
    /// `event.raw` as the stored JSON text, not parsed yet: the default webhook
    /// body writes it out without building a tree (see `templates::fast`);
    /// anything that needs the tree gets it from [`Claimed::take_event`].
    pub raw_text: Option<String>,
    /// The group this delivery sends (SPEC §10): rendered with its events.
    pub group: Option<i64>,
    /// The recipients earlier attempts reached, as the last one recorded them
    /// ([`Attempt::reached`]): this attempt does not send them the message again.
    pub reached: Vec<String>,
}

impl Claimed {
    /// The event with `raw` parsed (once), for a template, a group or a digest.
    pub fn take_event(&mut self) -> Result<Event> {
        let mut event = std::mem::take(&mut self.event);
        if let Some(text) = self.raw_text.take() {
            event.raw = serde_json::from_str(&text).map_err(unreadable)?;
        }
        Ok(event)
    }

    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.token,
        }
    }
}

/// What one attempt did. It started `duration_ms` before it is recorded (the
/// store dates it by its own clock).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// Who has the delivery's message so far, where one message goes to several
    /// recipients that each take it or not (an email's addresses over SMTP):
    /// stored with the delivery, in the statement that records the attempt, and
    /// handed to the next claim ([`Claimed::reached`]), so a retry on any process
    /// goes to the others only. Empty: none to skip (stored as NULL).
    pub reached: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Pending again, due this long after the record (by the store's clock).
    Retry {
        after: Duration,
    },
    Dead,
}

/// What [`Store::begin_ordered`] says about a send whose message belongs to an
/// ordered key (a PagerDuty `dedup_key`): one destination must never get an
/// older event's message after a newer event's of the same key (a trigger after
/// the resolve of a later success would leave an incident open for a good backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ordered {
    /// Send it: no later event of the key has been delivered there, and no other
    /// send of the key is in flight; this send holds the key until its attempt is
    /// recorded (or its lease runs out).
    Send,
    /// Do not send it: `event_id`, received after this delivery's event (by the
    /// store's order), has been delivered there as `action`.
    Superseded { event_id: String, action: String },
    /// Another delivery of the key is being sent now: ask again in (at most) this
    /// long.
    Wait(Duration),
}

/// What [`Store::take_send`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The send is taken from the rate limit: make it now, or hand it back
    /// ([`Store::give_back_send`]) if it is not made.
    Now(SendSlot),
    /// No send is allowed now: ask again in this long.
    Wait(Duration),
}

/// One send taken from a destination's rate limit, as the backend tells it
/// apart from the others (see [`Store::give_back_send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSlot(pub(crate) i64);

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

/// Whether `id` is an event id that says when its event was stored (a UUIDv7,
/// as every event id is): a cursor whose event is gone can still page.
pub fn id_has_time(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
}

/// Filters of `GET /api/events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub limit: usize,
    pub status: Option<String>,
    pub source: Option<String>,
    /// An event id: list only older events (see [`Store::list_events`]).
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

/// How busy a backend's ingest is, for backends that gather many webhooks into one
/// commit (both; on PostgreSQL each replica counts its own): see
/// [`IngestGauge::in_burst`].
#[derive(Debug)]
pub struct IngestGauge {
    /// Webhooks waiting for their commit.
    waiting: AtomicUsize,
    /// When fewer than [`BURST`] last waited (µs since `epoch`); by batches,
    /// when two batches in a row last held fewer than [`BURST_BATCH`] each on
    /// average.
    calm_at: AtomicU64,
    epoch: Instant,
    /// Judged by the batches taken, not by the count waiting: see
    /// [`IngestGauge::by_batches`].
    by_batches: bool,
    /// When the last batch was taken (µs since `epoch`), by batches.
    batch_at: AtomicU64,
    /// The size of the last batch taken, by batches.
    last_batch: AtomicUsize,
}

/// See [`IngestGauge::in_burst`].
pub const BURST: usize = 8;
/// See [`IngestGauge::in_burst`].
pub const BURST_SUSTAINED: Duration = Duration::from_millis(20);
/// See [`IngestGauge::by_batches`].
pub const BURST_BATCH: usize = 4;

impl Default for IngestGauge {
    fn default() -> Self {
        IngestGauge {
            waiting: AtomicUsize::new(0),
            calm_at: AtomicU64::new(0),
            epoch: Instant::now(),
            by_batches: false,
            batch_at: AtomicU64::new(0),
            last_batch: AtomicUsize::new(0),
        }
    }
}

impl IngestGauge {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A gauge for a backend whose commits answer a whole batch at once and take
    /// the next batch right after (PostgreSQL): the count waiting falls to zero at
    /// every commit, however saturated ingest is, and would never stay at
    /// [`BURST`] for long. There, ingest is saturated when every batch taken in the
    /// last [`BURST_SUSTAINED`] held [`BURST_BATCH`] or more webhooks (they arrive
    /// faster than one commit takes) and batches are still being taken. The
    /// backend reports each batch with [`IngestGauge::batch`].
    ///
    /// Judged over two batches in a row, not each alone: under a closed loop
    /// (`wrk -c32`) a commit answers its whole batch at once, the batcher takes
    /// the next batch at once, and it finds only the first few of the answered
    /// clients' next webhooks (the rest arrive during its commit): small and full
    /// batches alternate. Judged one by one, every small batch ended the burst and
    /// delivery ran at full concurrency beside a saturated ingest (on PostgreSQL
    /// ~900 deliveries/s beside ~3,800 webhooks/s, two thirds of the server's
    /// statement time).
    pub fn by_batches() -> Self {
        IngestGauge {
            by_batches: true,
            ..IngestGauge::default()
        }
    }

    /// A batch of `n` webhooks taken for one commit (see [`Self::by_batches`]).
    pub fn batch(&self, n: usize) {
        let now = self.now_us();
        self.batch_at.store(now, Ordering::Relaxed);
        let before = self.last_batch.swap(n, Ordering::Relaxed);
        if n + before < 2 * BURST_BATCH {
            self.calm_at.store(now, Ordering::Relaxed);
        }
    }

    fn counted(&self, waiting: usize) {
        if self.by_batches {
            return;
        }
        if waiting < BURST {
            self.calm_at.store(self.now_us(), Ordering::Relaxed);
        }
    }

    /// Counts one webhook as being stored until the guard is dropped (also when the
    /// request is dropped mid-way).
    pub fn storing(&self) -> StoringGuard<'_> {
        let waiting = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        self.counted(waiting);
        StoringGuard(self)
    }

    /// Whether ingest is saturated: [`BURST`] or more webhooks have been waiting
    /// for their commit at every moment of the last [`BURST_SUSTAINED`]. Webhooks
    /// arriving steadily below what the writer can take (an open loop of
    /// thousands a second) leave the count below `BURST` after each commit, many
    /// times in 20 ms; a closed loop of many clients (`wrk -c32`), or a writer
    /// stalled on a slow disk, keeps it up. Only then is delivery held back (see
    /// `worker`): it would take CPU that accepting needs, while below saturation
    /// it takes only what is spare.
    pub fn in_burst(&self) -> bool {
        let sustained = BURST_SUSTAINED.as_micros() as u64;
        if self.by_batches {
            let now = self.now_us();
            return now.saturating_sub(self.calm_at.load(Ordering::Relaxed)) >= sustained
                && now.saturating_sub(self.batch_at.load(Ordering::Relaxed)) < sustained;
        }
        self.waiting.load(Ordering::Relaxed) >= BURST
            && self
                .now_us()
                .saturating_sub(self.calm_at.load(Ordering::Relaxed))
                >= sustained
    }
}

/// See [`IngestGauge::storing`].
pub struct StoringGuard<'a>(&'a IngestGauge);

impl Drop for StoringGuard<'_> {
    fn drop(&mut self) {
        let waiting = self.0.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.counted(waiting);
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores the event and its deliveries in one transaction, or finds the
    /// duplicate it repeats. Returns only after commit; new deliveries wake the
    /// delivery loops of every process sharing the store.
    async fn ingest(&self, e: NewEvent) -> Result<Ingested>;
    /// Leases up to `limit` due pending deliveries of `destination` for `lease`,
    /// each with a fresh token.
    async fn claim(&self, destination: &str, limit: usize, lease: Duration)
        -> Result<Vec<Claimed>>;
    /// Restarts a lease from now (its send starts now, however long it waited
    /// after its claim). [`StoreError::LeaseLost`] if another claim took it.
    async fn renew(&self, lease: Lease, duration: Duration) -> Result<()>;
    /// Records an attempt and its outcome (`error` is kept as the last error;
    /// `reached` replaces the delivery's, see [`Attempt::reached`]). Returns false,
    /// changing nothing, when the lease is stale: another claim has taken the
    /// delivery since.
    async fn complete(&self, lease: Lease, attempt: Attempt, outcome: Outcome) -> Result<bool>;
    /// How long until the next pending delivery of `destination` is due (zero:
    /// now), if any. A lease running out counts as due.
    async fn next_due(&self, destination: &str) -> Result<Option<Duration>>;
    /// Destinations that have pending deliveries.
    async fn pending_destinations(&self) -> Result<Vec<String>>;
    /// Marks every pending delivery of `destination` dead with `error` (a
    /// destination that is no longer configured, on a store no other process
    /// shares: see [`is_shared`](Store::is_shared)).
    async fn bury(&self, destination: &str, error: &str) -> Result<usize>;
    /// Before sending delivery `lease` to `destination`, whose message belongs to
    /// `key` and does `action` there (see [`Ordered`]): decided under the key's
    /// lock against every process on the store. A delivery's place is its
    /// event's received order (a group's: its newest event), which for the
    /// events of one subject is the order they were applied to it, whichever
    /// processes stored them (a `backup.recovered` takes its success's place).
    /// On [`Ordered::Send`] the delivery is recorded as this key's, so once it is
    /// delivered the deliveries of older events of the key are superseded.
    /// [`StoreError::LeaseLost`] if another claim has the delivery.
    async fn begin_ordered(
        &self,
        lease: Lease,
        destination: &str,
        key: &str,
        action: &str,
    ) -> Result<Ordered>;
    /// Events newest first. `before` names an event: only older ones. One that
    /// retention deleted pages from where it was (its UUIDv7 id says when it was
    /// stored); [`StoreError::NotFound`] only for an id that cannot say (not a
    /// UUIDv7).
    async fn list_events(&self, q: EventQuery) -> Result<Vec<EventRecord>>;
    async fn get_event(&self, id: &str) -> Result<EventRecord>;
    /// The newest deliveries first.
    async fn list_deliveries(
        &self,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<DeliveryView>> {
        self.list_deliveries_before(state, limit, None).await
    }
    /// [`list_deliveries`](Store::list_deliveries) older than delivery `before`
    /// (which need not exist any more: ids only grow).
    async fn list_deliveries_before(
        &self,
        state: Option<State>,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<DeliveryView>>;
    /// Makes a dead delivery pending and due now, with a fresh retry window (and
    /// a new token: a send of it still in flight cannot overwrite it). A delivery
    /// that is not dead is left as it is ([`StoreError::NotDead`]), decided in the
    /// same statement as the change, so a retry never races a send.
    async fn retry_delivery(&self, id: i64) -> Result<()>;
    /// Adds deliveries to an existing event (replay).
    async fn add_deliveries(&self, event_id: &str, d: Vec<NewDelivery>) -> Result<usize>;
    /// Pending deliveries per destination.
    async fn queue_depth(&self) -> Result<Vec<(String, i64)>>;
    /// Marks dead with `error` the pending deliveries of `destination` that nobody
    /// is sending: not leased, their retry window (of `window`) over for `idle` or
    /// more, and due, untaken, as long. For a destination this process's config
    /// lacks on a store other processes share: a replica that has it ends its own
    /// deliveries when their window is over; these are the ones no replica took.
    async fn bury_unsent(
        &self,
        destination: &str,
        window: Duration,
        idle: Duration,
        error: &str,
    ) -> Result<usize>;
    /// Whether a webhook would be stored now: a real write, committed, to the
    /// database `storage.url` names (not just a read on a connection).
    async fn ready(&self) -> Result<()>;
    /// Deletes up to `batch` events older than `retention` whose deliveries have
    /// all ended, with their deliveries and attempts; returns how many.
    async fn purge(&self, retention: Duration, batch: usize) -> Result<usize>;
    /// Takes one send of `destination` if its rate limit and any pause allow one
    /// now ([`Take::Now`]), else says how long to wait. Shared by every process
    /// on the store.
    async fn take_send(&self, destination: &str, limit: Option<RateLimit>) -> Result<Take>;
    /// Hands back a send taken with `limit` whose send was not made after all
    /// (it waits for another send of its key, it was superseded, nothing was
    /// sent): the limit is as if it had never been taken, so the next real send
    /// is not held back by it. Handing back a send the limit no longer counts
    /// (its window is over), or one already handed back, changes nothing. On a
    /// shared store, a send handed back after another process took the next one
    /// stays taken (the limit cannot tell the sends of that window apart any
    /// more): it is handed back within milliseconds of its take, while the next
    /// take can come only once the spacing of the limit has passed.
    async fn give_back_send(
        &self,
        destination: &str,
        limit: Option<RateLimit>,
        slot: SendSlot,
    ) -> Result<()>;
    /// How long `destination` is paused for (zero: not paused).
    async fn paused_for(&self, destination: &str) -> Result<Duration>;
    /// Pauses `destination` for `duration` (a `Retry-After`), on every process.
    async fn pause(&self, destination: &str, duration: Duration) -> Result<()>;
    /// The subject `key` as stored (SPEC §9), if it exists.
    async fn get_subject(&self, _key: &str) -> Result<Option<Subject>> {
        Ok(None)
    }
    /// Every subject (or those in `state`), worst first: the items of
    /// `GET /api/backups`.
    async fn list_subjects(&self, _state: Option<SubjectState>) -> Result<Vec<Subject>> {
        Ok(Vec::new())
    }
    /// Up to `limit` subjects whose `next_deadline` has passed (store clock).
    async fn due_subjects(&self, _limit: usize) -> Result<Vec<Subject>> {
        Ok(Vec::new())
    }
    /// Watches `key` from now on (an `expect` rule that names it): created as
    /// `new` with its first deadline counted from now, unless it exists.
    async fn watch_subject(
        &self,
        _key: &str,
        _fields: &serde_json::Map<String, Value>,
        _rule: Arc<Rule>,
    ) -> Result<()> {
        Ok(())
    }
    /// The subject's `expect` rule changed (a reload): its deadline is reckoned
    /// again from its last success (or last event), a missing one's kept.
    async fn set_rule(&self, _key: &str, _rule: Option<Arc<Rule>>) -> Result<()> {
        Ok(())
    }
    // Groups (SPEC §10); each backend's are in its `group` module.

    /// Queues the deliveries of up to `limit` due groups (`due_at` passed, by the
    /// store's clock), each in the transaction that marks it sent, so a group goes
    /// out once whichever process flushes it. Returns how many went out.
    async fn flush_groups(&self, limit: usize) -> Result<usize>;
    /// The events of group `id`, oldest first.
    async fn group_events(&self, id: i64) -> Result<Vec<Event>>;
    /// The group event `event_id` joined, if any (the last one, if several).
    async fn group_of(&self, event_id: &str) -> Result<Option<crate::group::GroupView>>;

    /// The scheduled time of the last digest stored for schedule `key` (the
    /// newest one recorded by [`NewEvent::digest_run`]), kept whatever retention
    /// deletes while the schedule is configured (see
    /// [`prune_digest_runs`](Store::prune_digest_runs)); `None` if none was
    /// recorded.
    async fn last_digest(&self, key: &str) -> Result<Option<i64>>;
    /// Retention of those records: deletes the last runs of schedules not in
    /// `configured` (the config's digest keys) scheduled more than `retention`
    /// ago (the store's clock); returns how many. A configured schedule's is
    /// kept however old it is: it is where its next digest counts from.
    async fn prune_digest_runs(&self, retention: Duration, configured: &[String]) -> Result<usize>;

    /// The store's clock (unix ms): what decides a digest's time, so replicas
    /// with skewed clocks agree.
    async fn clock_ms(&self) -> Result<i64> {
        Ok(now_ms())
    }
    /// From `since_ms` up to (not at) `until_ms` (store clock): webhooks received
    /// (hookrelay's own events left out), and deliveries that ended delivered and
    /// dead in that time (a digest's own left out).
    async fn digest_counts(&self, since_ms: i64, until_ms: i64) -> Result<crate::digest::Counts>;

    /// Backends that gather webhooks into one commit say how busy that is.
    fn ingest_gauge(&self) -> Option<&IngestGauge> {
        None
    }

    /// Whether other processes (replicas) may share this store: then a
    /// destination this process's config lacks may be in theirs.
    fn is_shared(&self) -> bool {
        false
    }

    // Read queries of the web page (`ui`); each backend's are in its `ui` module.

    /// [`list_events`](Store::list_events) limited to events that have at least one
    /// delivery in `state` (the delivery log's filter).
    async fn list_events_with_delivery(
        &self,
        q: EventQuery,
        state: State,
    ) -> Result<Vec<EventRecord>>;

    /// The outcome of every event received at or after `since_ms` (the store's
    /// clock), oldest first, with its subject (the board's 14-day strip).
    async fn outcomes_since(&self, since_ms: i64) -> Result<Vec<SubjectOutcome>>;
}

/// One event's outcome for the board: whose it is, what it said, when.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectOutcome {
    pub event_id: String,
    pub subject: String,
    pub source: String,
    pub stack: Option<String>,
    pub server: Option<String>,
    pub backup: Option<String>,
    /// The event's `status`.
    pub status: String,
    pub received_ms: i64,
}

/// `subject` as stored with the event; for events stored without one, the
/// default key (`source/stack/server/backup`, empty values left out).
pub fn subject_key(
    subject: Option<String>,
    source: &str,
    stack: Option<&str>,
    server: Option<&str>,
    backup: Option<&str>,
) -> String {
    subject.filter(|s| !s.is_empty()).unwrap_or_else(|| {
        [Some(source), stack, server, backup]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// What opening a store needs besides the URL.
pub struct Options {
    /// Woken when deliveries become due (stored here, or by another process).
    pub wake: Arc<Notify>,
}

/// Opens the backend `url` names: `sqlite://PATH` or `postgres://…`
/// (`postgresql://…`), creating or migrating its schema.
pub async fn open(url: &str, opts: Options) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.to_string();
        let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&path, opts))
            .await
            .map_err(|_| StoreError::Closed)??;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return postgres::open(url, opts).await;
    }
    Err(StoreError::Config(
        "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
    ))
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
            let spliced = spliced.unwrap().event_json;
            let plain = plain.unwrap().event_json;
            let read: Event = serde_json::from_str(&spliced).unwrap();
            assert_eq!(read, before);
            let read_plain: Event = serde_json::from_str(&plain).unwrap();
            assert_eq!(read_plain, before);
            // Claimed with `raw` left as text: the same event once it is parsed.
            for json in [spliced, plain] {
                let (head, raw_text) = parse_stored_event(json.clone()).unwrap();
                assert_eq!(head.raw, Value::Null, "{json}");
                let raw_text = raw_text.expect("raw split off");
                let raw: Value = serde_json::from_str(&raw_text).unwrap();
                assert_eq!(
                    Event {
                        raw,
                        ..head.clone()
                    },
                    before,
                    "{json}"
                );
                let mut c = claimed(head, Some(raw_text));
                assert_eq!(c.take_event().unwrap(), before);
            }
        }
    }

    fn claimed(event: Event, raw_text: Option<String>) -> Claimed {
        Claimed {
            id: 1,
            token: 1,
            event_id: "e".into(),
            destination: "d".into(),
            template: "default".into(),
            channel: None,
            attempts: 0,
            age: Duration::ZERO,
            claimed_at: Instant::now(),
            event,
            raw_text,
            group: None,
            reached: Vec::new(),
        }
    }

    /// `parse_stored_event` ends the fields at the first `,"raw":`, which holds
    /// only while every field before `raw` is a scalar. Built without `..`, so a
    /// new field of `Event` has to be given a value here, and one that serializes
    /// as an object or array fails this test rather than a delivery.
    #[test]
    fn every_field_stored_before_raw_is_a_scalar_and_strings_cannot_end_the_fields() {
        let tricky = r#"x,"raw":{"y":1}"#.to_string();
        let event = Event {
            source: tricky.clone(),
            provider: "simplebackups".into(),
            event: Some(tricky.clone()),
            status: Status::Failure,
            stack: Some(tricky.clone()),
            environment: Some(tricky.clone()),
            server: Some(tricky.clone()),
            account: Some(tricky.clone()),
            backup: Some(tricky.clone()),
            database: Some(tricky.clone()),
            size_bytes: Some(u64::MAX),
            occurred_at: Some("2026-12-01T00:00:00Z".into()),
            id: Some(tricky.clone()),
            message: Some(tricky.clone()),
            received_at: "2026-12-01T00:00:01Z".into(),
            subject: Some(tricky.clone()),
            failures: 3,
            last_success_at: Some("2026-11-30T00:00:00Z".into()),
            down_since: Some("2026-11-30T01:00:00Z".into()),
            raw: serde_json::json!({"id": 1, "raw": {"nested": [1, 2]}}),
        };
        let Value::Object(fields) = serde_json::to_value(&event).unwrap() else {
            panic!("an event serializes as an object");
        };
        let keys: Vec<&String> = fields.keys().collect();
        assert_eq!(keys.last().map(|k| k.as_str()), Some("raw"), "raw is last");
        for (k, v) in fields.iter().filter(|(k, _)| *k != "raw") {
            assert!(!v.is_object() && !v.is_array(), "{k} is not a scalar: {v}");
        }
        let mut stored = event.clone();
        let json = NewEvent::new(&mut stored, None, "k".into(), Duration::ZERO, true, vec![])
            .unwrap()
            .event_json;
        let (head, raw_text) = parse_stored_event(json).unwrap();
        let raw: Value = serde_json::from_str(&raw_text.expect("raw split off")).unwrap();
        assert_eq!(Event { raw, ..head }, event);
    }

    #[test]
    fn a_stored_event_laid_out_otherwise_is_parsed_whole_or_refused() {
        // `raw` not where hookrelay writes it: parsed whole, as before.
        let json =
            r#"{"raw":{"a":1},"source":"s","provider":"p","status":"failure","received_at":"t"}"#;
        let (e, raw_text) = parse_stored_event(json.into()).unwrap();
        assert_eq!(raw_text, None);
        assert_eq!(e.raw, serde_json::json!({"a": 1}));
        assert_eq!(e.source, "s");
        // Broken fields: refused at once; a broken `raw`: refused when it is needed.
        let err = parse_stored_event(r#"{"source":,"raw":{}}"#.into()).unwrap_err();
        assert!(err.to_string().contains("stored event unreadable"), "{err}");
        let head = r#"{"source":"s","provider":"p","status":"failure","received_at":"t""#;
        let (e, raw_text) = parse_stored_event(format!(r#"{head},"raw":{{"a":}}"#)).unwrap();
        assert_eq!(raw_text.as_deref(), Some(r#"{"a":"#));
        let err = claimed(e, raw_text).take_event().unwrap_err();
        assert!(err.to_string().contains("stored event unreadable"), "{err}");
    }

    /// Polls `f` every millisecond until it holds, for at most 5 s.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn by_batches_a_burst_is_full_batches_for_a_sustained_spell() {
        let g = IngestGauge::by_batches();
        // Many webhooks waiting, but no batch taken: the count alone never makes
        // a burst here (it falls to zero at every commit).
        let held: Vec<_> = (0..BURST * 4).map(|_| g.storing()).collect();
        g.batch(1);
        assert!(!g.in_burst());
        drop(held);
        // Full batches, one after another: a burst once they have lasted.
        assert!(eventually(|| {
            g.batch(BURST_BATCH);
            g.in_burst()
        }));
        // One small batch between full ones (a closed loop's batches alternate):
        // still a burst. Two small ones in a row: calm at once.
        g.batch(BURST_BATCH * 2);
        assert!(g.in_burst());
        g.batch(1);
        assert!(g.in_burst());
        g.batch(BURST_BATCH * 2);
        assert!(g.in_burst());
        g.batch(BURST_BATCH - 1);
        assert!(g.in_burst());
        g.batch(BURST_BATCH - 1);
        assert!(!g.in_burst());
        assert!(eventually(|| {
            g.batch(BURST_BATCH * 2);
            g.in_burst()
        }));
        // No batch taken any more (ingest stopped): the burst ends by itself.
        assert!(eventually(|| !g.in_burst()));
    }
}
