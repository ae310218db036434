//! The PostgreSQL backend: several replicas sharing one queue.
//!
//! - Ingest: webhooks are gathered into one transaction (multi-row
//!   `INSERT … SELECT unnest(…)`), each answered only after its commit; dedup is a
//!   unique key in `dedup` with `ON CONFLICT`, so two replicas receiving the same
//!   event store it once. One `NOTIFY` per committed batch with new deliveries.
//! - Claims: `FOR UPDATE SKIP LOCKED` in a `MATERIALIZED` CTE that moves the row's
//!   `visible_at` to `now() + lease` and bumps its `lease_token`: the token is the
//!   lease. `complete`/`renew` match on it, so a replica paused past its lease
//!   changes nothing when it comes back. A killed replica's rows become visible
//!   again when `visible_at` passes.
//! - Every time that decides something is the database's `now()`; callers pass
//!   durations. No transaction is held open across an HTTP send: a claim, a
//!   renewal and a result are each one short statement.
//! - Each replica keeps one `LISTEN` connection; while it is down the loops are
//!   woken every second instead (polling).
//! - Rate limits and `Retry-After` pauses live in `destination_limits`, one row per
//!   destination updated atomically, so they hold for all replicas together. A
//!   pause is also announced (`NOTIFY`) when it is recorded, and each replica keeps
//!   the pauses it heard of in memory while its `LISTEN` connection is up: the
//!   delivery loop checks the pause before every send, and this way that check is
//!   no round trip to the database.
//! - Every webhook reads its subject before it is stored (`watch::subject_for`).
//!   Each replica keeps the subjects as last committed in memory while its
//!   `LISTEN` connection is up: a subject write is announced (`NOTIFY`, with the
//!   writing replica's id) in its transaction, the other replicas forget the
//!   subject when they hear of it, and the writer keeps what it committed. So that
//!   read is no round trip while a subject's webhooks come to one replica. That
//!   read only gives the event its fields: the event is applied to the subject
//!   again, and whether it ends a bad run (its `backup.recovered`) decided, under
//!   the subject's lock in the event's transaction. Its rank among the subject's
//!   events (the order PagerDuty's sends go in) is drawn there too, so it follows
//!   the order the subject took its events in (see `rank_applied`).
//! - The schema is migrated under an advisory lock: replicas starting at the same
//!   moment migrate once.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use super::*;

mod group;
mod ui;

/// The channel new deliveries are announced on.
const CHANNEL: &str = "hookrelay_due";
/// The channel pauses are announced on: "MS DESTINATION", the pause's length
/// left when it was recorded, by the database's clock.
const PAUSE_CHANNEL: &str = "hookrelay_pause";
/// The channel subject writes are announced on: "REPLICA KEY", or "REPLICA *"
/// for a key too long for a payload (every subject is forgotten).
const SUBJECT_CHANNEL: &str = "hookrelay_subject";
/// Subjects kept in memory at most per replica; past that they are all forgotten
/// and read again (a subject is a backup job: there are few).
const MAX_SUBJECTS: usize = 4096;
/// Webhooks in one ingest transaction at most.
const MAX_BATCH: usize = 256;
/// Ingest transactions in flight at once per replica. Each takes its own share of
/// the webhooks: all of one subject go to the same one (see [`PgStore::ingest`]).
const BATCHERS: usize = 4;
/// Connections per replica.
const POOL_SIZE: usize = 16;
/// Taken by the replica that migrates; the others wait for it.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_7265_6c61; // "hookrela"

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq         bigserial PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    source      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    dedup_key   text NOT NULL,
    status      text NOT NULL,
    routed      boolean NOT NULL,
    duplicates  integer NOT NULL DEFAULT 0,
    event       text NOT NULL
);
CREATE INDEX events_received ON events (received_at);
-- One row per (source, key) while its window runs: the unique key that makes a
-- repeat a duplicate whichever replica receives it.
CREATE TABLE dedup (
    source     text NOT NULL,
    dedup_key  text NOT NULL,
    event_id   text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (source, dedup_key)
);
CREATE INDEX dedup_event ON dedup (event_id);
CREATE TABLE deliveries (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination  text NOT NULL,
    template     text NOT NULL,
    channel      text,
    state        text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    window_start timestamptz NOT NULL DEFAULT now(),
    -- When it may be claimed: its next attempt, or the end of its lease.
    visible_at   timestamptz NOT NULL DEFAULT now(),
    lease_token  bigint NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_due ON deliveries (destination, visible_at) WHERE state = 'pending';
CREATE TABLE attempts (
    seq         bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    status      integer,
    error       text,
    duration_ms bigint NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
-- Shared limits: the next time a send is allowed (rate limit) and a pause.
CREATE TABLE destination_limits (
    destination  text PRIMARY KEY,
    next_send    timestamptz NOT NULL DEFAULT 'epoch',
    paused_until timestamptz NOT NULL DEFAULT 'epoch'
);
-- The readiness probe's row: /readyz commits a write here.
CREATE TABLE probe (
    id integer PRIMARY KEY,
    at timestamptz NOT NULL
);
"#,
    r#"
-- Backup watch (SPEC §9): one row per subject, updated in each event's
-- transaction under a per-subject advisory lock. Times are unix ms of the
-- database's clock; next_deadline is when a missed backup fires.
CREATE TABLE subjects (
    key             text PRIMARY KEY,
    state           text NOT NULL,
    failures        integer NOT NULL DEFAULT 0,
    last_event_at   bigint,
    last_success_at bigint,
    down_since      bigint,
    next_deadline   bigint,
    rule            text,
    fields          text NOT NULL
);
CREATE INDEX subjects_deadline ON subjects (next_deadline) WHERE next_deadline IS NOT NULL;
"#,
    r#"
-- Grouping (SPEC §10): held groups (one open group per key, taking events until
-- due_at or max), the events of each in order, and the group a delivery sends.
CREATE TABLE event_groups (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL,
    state       text NOT NULL,
    first_event text NOT NULL,
    count       integer NOT NULL,
    max         integer NOT NULL,
    due_at      timestamptz NOT NULL,
    deliveries  text NOT NULL
);
CREATE UNIQUE INDEX event_groups_open ON event_groups (key) WHERE state = 'open';
CREATE INDEX event_groups_due ON event_groups (due_at) WHERE state <> 'sent';
CREATE INDEX event_groups_first ON event_groups (first_event);
CREATE TABLE group_events (
    group_id bigint NOT NULL REFERENCES event_groups (id) ON DELETE CASCADE,
    seq      integer NOT NULL,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, seq)
);
CREATE INDEX group_events_event ON group_events (event_id);
ALTER TABLE deliveries ADD COLUMN group_id bigint;
"#,
    r#"
-- A claim takes the first pending rows of a destination in (visible_at, id)
-- order. With id in the index that is the index's own order, so a claim reads
-- the rows it takes and stops; without it, each claim sorted every due row of the
-- destination (a backlog of 20,000 read ~10,000 index entries per claim).
CREATE INDEX deliveries_pending ON deliveries (destination, visible_at, id) WHERE state = 'pending';
DROP INDEX deliveries_due;
"#,
    r#"
-- Ordered sends (a PagerDuty dedup_key, see Store::begin_ordered): written just
-- before a delivery is sent, under the key's advisory lock, the key its message
-- belongs to, its place (its event's seq; a group's newest event's), what it did
-- (trigger, resolve), and the claim and attempt that are sending it: while its
-- lease_token and attempts are still those and its lease runs, the send is in
-- flight and no other send of the key starts. A delivered one supersedes the
-- deliveries of older events of its key.
ALTER TABLE deliveries ADD COLUMN order_key text;
ALTER TABLE deliveries ADD COLUMN order_seq bigint;
ALTER TABLE deliveries ADD COLUMN order_action text;
ALTER TABLE deliveries ADD COLUMN order_token bigint;
ALTER TABLE deliveries ADD COLUMN order_attempt integer;
CREATE INDEX deliveries_order ON deliveries (destination, order_key, order_seq)
    WHERE order_key IS NOT NULL;
-- Whether a send of the key is in flight is asked of its pending rows only,
-- under the key's lock. Without this index it read every pending row of the
-- destination due later (deliveries_pending: a backlog of retries, 5,000 rows
-- for the key's 3) or every row of the key ever sent (deliveries_order).
CREATE INDEX deliveries_order_pending ON deliveries (destination, order_key)
    WHERE state = 'pending' AND order_key IS NOT NULL;
-- A backup.recovered is stored after its whole batch, behind any later webhook
-- of its subject in that batch: its place among them is its success's seq,
-- kept here (NULL: the event's own seq).
ALTER TABLE events ADD COLUMN order_seq bigint;
"#,
    r#"
-- Each digest schedule's last run (its scheduled time, unix ms), written with the
-- digest: where the next one counts from, whatever retention has deleted.
CREATE TABLE digest_runs (
    key          text PRIMARY KEY,
    scheduled_at bigint NOT NULL
);
"#,
    r#"
-- The recipients a delivery's earlier attempts reached (an email some addresses
-- took while others were refused for now), written in the statement that records
-- each attempt: the retry skips them, on whichever replica claims it. NULL: none.
ALTER TABLE deliveries ADD COLUMN reached text[];
"#,
    r#"
-- When a delivery ended (delivered or dead; NULL while pending): the digest
-- counts the alerts delivered and given up since the previous digest by it,
-- wherever they were queued. Rows that ended before: a recorded attempt set
-- visible_at to its end; a buried row kept its last due time (or the end of the
-- lease it was buried under), the nearest there is, never later than now.
-- Indexed for the digest, which reads only the rows ended since.
ALTER TABLE deliveries ADD COLUMN ended_at timestamptz;
UPDATE deliveries SET ended_at = LEAST(visible_at, now()) WHERE state IN ('delivered', 'dead');
CREATE INDEX deliveries_ended ON deliveries (ended_at) WHERE ended_at IS NOT NULL;
"#,
];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let transient = match e.as_db_error() {
            // Connection lost, server shutting down, out of resources, a
            // serialization failure or deadlock: the same call may succeed later.
            Some(db) => {
                let code = db.code().code();
                ["08", "53", "57", "40", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }
            // No answer from the server at all (I/O, closed connection); not a
            // value that could not be sent (a bug, not an outage).
            None => {
                e.is_closed()
                    || std::error::Error::source(&e)
                        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
            }
        };
        if transient {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Db(e.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError::Unavailable(format!("no database connection: {e}")),
        }
    }
}

/// The URL without its password, to name the database in errors.
fn describe(cfg: &tokio_postgres::Config) -> String {
    let user = cfg.get_user().unwrap_or("");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

struct IngestJob {
    event: NewEvent,
    tx: oneshot::Sender<Result<Ingested>>,
}

pub struct PgStore {
    pool: Pool,
    /// One queue per batcher.
    ingest: Vec<mpsc::Sender<IngestJob>>,
    /// The batcher of the next webhook without a subject.
    next_batcher: AtomicUsize,
    /// Destinations whose `destination_limits` row exists.
    limit_rows: Mutex<HashSet<String>>,
    pauses: Arc<Pauses>,
    subjects: Arc<SubjectCache>,
    /// This replica's id in subject announcements (random).
    replica: String,
    /// This replica's batches: in a burst its delivery loops send one alert at a
    /// time (see `worker`), as on SQLite. Judged by batch sizes
    /// ([`IngestGauge::by_batches`]): each commit answers its whole batch.
    gauge: Arc<IngestGauge>,
}

/// The pauses this replica heard of (see the module's notes).
#[derive(Default)]
struct Pauses {
    /// Whether `until` is complete: the LISTEN connection is up and the pauses
    /// recorded before it subscribed have been read. Else `paused_for` asks the
    /// database.
    live: AtomicBool,
    until: Mutex<HashMap<String, Instant>>,
}

impl Pauses {
    /// A pause only ever grows (`pause` keeps the later end), so the later of
    /// two ends is the one that holds.
    fn extend(&self, destination: &str, left_ms: i64) {
        let end = Instant::now() + millis(left_ms);
        if let Ok(mut m) = self.until.lock() {
            let e = m.entry(destination.to_string()).or_insert(end);
            *e = (*e).max(end);
        }
    }

    /// `None` while the LISTEN connection is not up (the caller asks the database).
    fn left(&self, destination: &str) -> Option<Duration> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let m = self.until.lock().ok()?;
        Some(
            m.get(destination)
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or_default(),
        )
    }

    /// A pause announcement: "MS DESTINATION".
    fn heard(&self, payload: &str) {
        if let Some((ms, dest)) = payload.split_once(' ') {
            if let Ok(ms) = ms.parse::<i64>() {
                self.extend(dest, ms);
            }
        }
    }
}

/// The subjects this replica knows as last committed (see the module's notes).
#[derive(Default)]
struct SubjectCache {
    /// Whether announcements are heard: the LISTEN connection is up and
    /// subscribed. Else nothing is served from memory or kept.
    live: AtomicBool,
    inner: Mutex<KnownSubjects>,
}

#[derive(Default)]
struct KnownSubjects {
    /// `None`: the subject does not exist (yet).
    map: HashMap<String, Option<Subject>>,
    /// Bumped by every change to `map` but a read's fill: a value read or written
    /// while it moved may be older than what is known now, so it is not kept.
    generation: u64,
}

impl SubjectCache {
    /// The subject as last committed, if known here.
    fn get(&self, key: &str) -> Option<Option<Subject>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.inner.lock().ok()?.map.get(key).cloned()
    }

    /// Taken before reading or writing a subject; `None` while nothing is kept.
    fn generation(&self) -> Option<u64> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.inner.lock().ok().map(|k| k.generation)
    }

    /// Keeps what a read found, unless anything changed since `generation`.
    fn fill(&self, key: &str, value: Option<Subject>, generation: Option<u64>) {
        let Ok(mut k) = self.inner.lock() else { return };
        if Some(k.generation) == generation && self.live.load(Ordering::Acquire) {
            if k.map.len() >= MAX_SUBJECTS {
                k.map.clear();
            }
            k.map.insert(key.to_string(), value);
        }
    }

    /// After this replica committed `value` under the subject's lock: kept if
    /// nothing changed since `generation` (taken before the lock), else forgotten.
    fn committed(&self, value: &Subject, generation: Option<u64>) {
        let Ok(mut k) = self.inner.lock() else { return };
        let keep = Some(k.generation) == generation && self.live.load(Ordering::Acquire);
        k.generation += 1;
        if keep {
            if k.map.len() >= MAX_SUBJECTS {
                k.map.clear();
            }
            k.map.insert(value.key.clone(), Some(value.clone()));
        } else {
            k.map.remove(&value.key);
        }
    }

    /// Written elsewhere (or here, outside the ingest batch): read it again.
    fn forget(&self, key: &str) {
        if let Ok(mut k) = self.inner.lock() {
            k.generation += 1;
            k.map.remove(key);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut k) = self.inner.lock() {
            k.generation += 1;
            k.map.clear();
        }
    }

    /// An announcement: "REPLICA KEY". This replica's own are already applied.
    fn heard(&self, payload: &str, me: &str) {
        match payload.split_once(' ') {
            Some((who, _)) if who == me => {}
            Some((_, "*")) | None => self.forget_all(),
            Some((_, key)) => self.forget(key),
        }
    }
}

/// Connects, migrates and starts the replica's LISTEN connection and ingest
/// batchers.
pub async fn open(url: &str, opts: Options) -> Result<Arc<dyn Store>> {
    // The parser's message never repeats the URL (nor its password).
    let cfg = tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::Config(format!("not a valid PostgreSQL URL: {e}")))?;
    let name = describe(&cfg);
    let mut pool_cfg = cfg.clone();
    if pool_cfg.get_connect_timeout().is_none() {
        pool_cfg.connect_timeout(Duration::from_secs(5));
    }
    let manager = Manager::from_config(
        pool_cfg.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| StoreError::Config(format!("{name}: {e}")))?;
    let unusable = |e: StoreError| StoreError::Config(format!("cannot use {name}: {e}"));
    {
        let mut client = pool.get().await.map_err(|e| unusable(e.into()))?;
        migrate(&mut client).await.map_err(unusable)?;
    }
    let pauses = Arc::new(Pauses::default());
    let subjects = Arc::new(SubjectCache::default());
    let replica = format!("{:016x}", fastrand::u64(..));
    tokio::spawn(listen(
        pool_cfg,
        opts.wake.clone(),
        pauses.clone(),
        subjects.clone(),
        replica.clone(),
    ));
    let gauge = Arc::new(IngestGauge::by_batches());
    let mut ingest = Vec::with_capacity(BATCHERS);
    for _ in 0..BATCHERS {
        let (tx, rx) = mpsc::channel::<IngestJob>(1024);
        let writer = SubjectWriter {
            cache: subjects.clone(),
            replica: replica.clone(),
        };
        tokio::spawn(batcher(pool.clone(), rx, writer, gauge.clone()));
        ingest.push(tx);
    }
    Ok(Arc::new(PgStore {
        pool,
        ingest,
        next_batcher: AtomicUsize::new(0),
        limit_rows: Mutex::default(),
        pauses,
        subjects,
        replica,
        gauge,
    }))
}

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await?;
    // Replicas starting together: one migrates, the others wait here and then
    // find the schema current. DDL is transactional, so a failure leaves nothing.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The replica's LISTEN connection: wakes the delivery loops on each NOTIFY, and
/// keeps [`Pauses`]. While it is down, the loops are woken every second instead
/// (polling), and once more when it is back (anything announced meanwhile); the
/// pauses are read from the database meanwhile, and so are subjects.
async fn listen(
    cfg: tokio_postgres::Config,
    wake: Arc<Notify>,
    pauses: Arc<Pauses>,
    subjects: Arc<SubjectCache>,
    me: String,
) {
    let mut logged = false;
    loop {
        match cfg.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                // Subscribed first, then the pauses read: one recorded in between is
                // both read and announced, never neither.
                let subscribe = async {
                    client
                        .batch_execute(&format!(
                            "LISTEN {CHANNEL}; LISTEN {PAUSE_CHANNEL}; LISTEN {SUBJECT_CHANNEL}"
                        ))
                        .await?;
                    client
                        .query(
                            "SELECT destination,
                                 (extract(epoch FROM paused_until - now()) * 1000)::int8
                             FROM destination_limits WHERE paused_until > now()",
                            &[],
                        )
                        .await
                };
                tokio::pin!(subscribe);
                let mut subscribed = false;
                loop {
                    tokio::select! {
                        r = &mut subscribe, if !subscribed => match r {
                            Ok(rows) => {
                                for r in rows {
                                    pauses.extend(r.get(0), r.get(1));
                                }
                                pauses.live.store(true, Ordering::Release);
                                // Written while nobody listened: known from here on.
                                subjects.forget_all();
                                subjects.live.store(true, Ordering::Release);
                                subscribed = true;
                                if logged {
                                    log::info!("storage: listening for new deliveries again");
                                    logged = false;
                                }
                                wake.notify_waiters();
                            }
                            Err(e) => {
                                log::warn!("storage: LISTEN failed: {e}");
                                break;
                            }
                        },
                        m = messages.next() => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if n.channel() == PAUSE_CHANNEL {
                                    pauses.heard(n.payload());
                                } else if n.channel() == SUBJECT_CHANNEL {
                                    subjects.heard(n.payload(), &me);
                                } else {
                                    wake.notify_waiters();
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                log::warn!("storage: LISTEN connection lost: {e}; polling until it is back");
                                logged = true;
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => {
                if !logged {
                    log::warn!("storage: cannot LISTEN ({e}); polling until it can");
                    logged = true;
                }
            }
        }
        // Announcements are missed from here on: pauses and subjects are read from
        // the database.
        pauses.live.store(false, Ordering::Release);
        subjects.live.store(false, Ordering::Release);
        subjects.forget_all();
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a transaction that writes subjects needs: the replica's id for the
/// announcement, and its memory of subjects.
struct SubjectWriter {
    cache: Arc<SubjectCache>,
    replica: String,
}

/// Takes queued webhooks, up to [`MAX_BATCH`], into one transaction; answers each
/// after the commit.
async fn batcher(
    pool: Pool,
    mut rx: mpsc::Receiver<IngestJob>,
    writer: SubjectWriter,
    gauge: Arc<IngestGauge>,
) {
    loop {
        let mut jobs = Vec::new();
        match rx.recv().await {
            Some(j) => jobs.push(j),
            None => return,
        }
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        gauge.batch(jobs.len());
        let events: Vec<&NewEvent> = jobs.iter().map(|j| &j.event).collect();
        let results = match ingest_batch(&pool, &events, &writer).await {
            Ok(r) => r,
            Err(e) if e.is_transient() || jobs.len() == 1 => {
                let msg = e.to_string();
                events
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(msg.clone())))
                    .collect()
            }
            // One bad webhook must not fail the others: each alone.
            Err(_) => {
                let mut out = Vec::with_capacity(events.len());
                for e in &events {
                    out.push(
                        ingest_batch(&pool, &[*e], &writer)
                            .await
                            .and_then(|mut r| r.pop().unwrap_or(Err(StoreError::Commit))),
                    );
                }
                out
            }
        };
        drop(events);
        for (job, r) in jobs.into_iter().zip(results) {
            let _ = job.tx.send(r);
        }
    }
}

/// Stores `events` in one transaction; one result per event, valid once it
/// commits (an error here means nothing was stored).
///
/// The rows are written first; then the batch takes the locks of its subjects
/// (every subject of the batch, in one statement), and the subjects follow the
/// batch's events in order, each written once: a subject's state still follows
/// its events in commit order on every replica, while a burst costs one
/// transaction instead of one each. A subject's lock is held from there to the
/// commit, and batches of one subject (a busy backup job) run that part one at a
/// time, so it is kept short: the rows are written before it, and statements that
/// need no answer in between are sent together (pipelined).
async fn ingest_batch(
    pool: &Pool,
    events: &[&NewEvent],
    writer: &SubjectWriter,
) -> Result<Vec<Result<Ingested>>> {
    let mut keys: Vec<&str> = events
        .iter()
        .filter_map(|e| e.watch.as_ref().map(|w| w.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    // Before the subjects' locks: see `SubjectCache::committed`.
    let generation = writer.cache.generation();
    match write_batch(pool, events, &keys, &writer.replica).await {
        Ok((r, written)) => {
            for s in &written {
                writer.cache.committed(s, generation);
            }
            Ok(r)
        }
        Err(e) => {
            // It may have committed all the same (an answer lost with the
            // connection), and this replica does not hear its own announcements.
            for k in keys {
                writer.cache.forget(k);
            }
            Err(e)
        }
    }
}

/// [`ingest_batch`]'s transaction; also returns the subjects it wrote.
async fn write_batch(
    pool: &Pool,
    events: &[&NewEvent],
    keys: &[&str],
    replica: &str,
) -> Result<(Vec<Result<Ingested>>, Vec<Subject>)> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (r, mut joins) = store_batch(&tx, events).await?;
    // The `backup.recovered` events decided under the subjects' locks, each with
    // the id of the success that brought it.
    let mut recovered: Vec<(NewEvent, &str)> = Vec::new();
    let mut written: Vec<Subject> = Vec::new();
    if !keys.is_empty() {
        // Only what is written under the subject locks may wait for a lock of its
        // own (a group's), so two batches never wait for each other in a cycle.
        let (mut subjects, now) = lock_subjects(&tx, keys).await?;
        let mut changed: Vec<&str> = Vec::new();
        // The events applied to their subjects, in the order they are applied.
        let mut applied_ids: Vec<&str> = Vec::new();
        for (e, stored) in events.iter().zip(&r) {
            let (Some(w), Ok(Ingested::Stored { event_id, .. })) = (&e.watch, stored) else {
                continue;
            };
            applied_ids.push(event_id);
            // Reckoned by the database's clock: replicas' clocks may differ.
            let applied = crate::watch::apply(
                subjects.get(w.key.as_str()),
                &w.key,
                w.fields.as_ref(),
                e.status,
                now,
                w.rule.as_deref(),
                false,
            );
            // Decided here, on the subject as the transaction found it.
            if let (Some(r), Ok(Ingested::Stored { event_id, .. })) = (&w.recovered, stored) {
                if let Some(e) = r.after(&applied)? {
                    recovered.push((e, event_id.as_str()));
                }
            }
            subjects.insert(w.key.clone(), applied.subject);
            if !changed.contains(&w.key.as_str()) {
                changed.push(&w.key);
            }
        }
        // Sent together, run in order.
        futures_util::future::try_join(
            futures_util::future::try_join_all(
                changed
                    .iter()
                    .map(|k| write_subject(&tx, &subjects[*k], replica)),
            ),
            rank_applied(&tx, &applied_ids),
        )
        .await?;
        written = changed.iter().filter_map(|k| subjects.remove(*k)).collect();
        if !recovered.is_empty() {
            let new: Vec<&NewEvent> = recovered.iter().map(|(e, _)| e).collect();
            let (stored, more) = store_batch(&tx, &new).await?;
            joins.extend(more);
            // Stored after the whole batch, so after the batch's later webhooks
            // of the subject: each takes its success's place among them (see
            // `Store::begin_ordered`), or a failure after the success in this
            // batch would reach PagerDuty before the recovery's resolve.
            let (ids, after): (Vec<&str>, Vec<&str>) = stored
                .iter()
                .zip(&recovered)
                .filter_map(|(res, (_, success))| match res {
                    Ok(Ingested::Stored { event_id, .. }) => Some((event_id.as_str(), *success)),
                    _ => None,
                })
                .unzip();
            tx.execute(
                "UPDATE events r SET order_seq = COALESCE(s.order_seq, s.seq)
                 FROM unnest($1::text[], $2::text[]) AS t (rid, sid)
                 JOIN events s ON s.id = t.sid
                 WHERE r.id = t.rid",
                &[&ids, &after],
            )
            .await?;
        }
    }
    for (e, stored) in events.iter().zip(&r) {
        if let (Some((key, at)), Ok(Ingested::Stored { .. })) = (&e.digest_run, stored) {
            record_digest_run(&tx, key, *at).await?;
        }
    }
    join_groups(&tx, joins).await?;
    tx.commit().await?;
    Ok((r, written))
}

/// Ranks `ids`, events just applied to their subjects in this order under the
/// subjects' locks, in that order among the events of their subjects (their
/// `order_seq`, which [`Store::begin_ordered`] sends by). Their `seq` was drawn
/// when their rows were written, before the locks: a failure written on one
/// replica (seq 10) and a success written on another (seq 11) could be applied
/// to the subject the other way round (the success's batch taking the lock
/// first), leaving the backup failing while PagerDuty got the failure's trigger
/// ranked before the success's resolve, and the incident ended resolved. Drawn
/// from the same sequence here, under the locks held to the commit, the rank
/// follows the order of the subject's writes, on every replica.
async fn rank_applied(tx: &deadpool_postgres::Transaction<'_>, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    // The values drawn, matched to the events in order, whatever order the
    // server draws them in.
    let stmt = tx
        .prepare_cached(
            "WITH drawn AS (
                 SELECT nextval('events_seq_seq') AS o
                 FROM generate_series(1, cardinality($1::text[]))),
             ranked AS (SELECT o, row_number() OVER (ORDER BY o) AS i FROM drawn)
             UPDATE events e SET order_seq = ranked.o
             FROM unnest($1::text[]) WITH ORDINALITY AS t (id, i) JOIN ranked USING (i)
             WHERE e.id = t.id",
        )
        .await?;
    tx.execute(&stmt, &[&ids]).await?;
    Ok(())
}

/// Records `at` as the last run of digest schedule `key` (a later one kept).
async fn record_digest_run(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
    at: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO digest_runs (key, scheduled_at) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE
         SET scheduled_at = GREATEST(digest_runs.scheduled_at, EXCLUDED.scheduled_at)",
        &[&key, &at],
    )
    .await?;
    Ok(())
}

/// Group joins [`store_batch`] leaves to its caller: (event id, join).
type Joins<'a> = Vec<(String, &'a GroupJoin)>;

/// Adds the events to their groups (locks taken in key order: see `group`).
async fn join_groups(tx: &deadpool_postgres::Transaction<'_>, joins: Joins<'_>) -> Result<()> {
    if joins.is_empty() {
        return Ok(());
    }
    let mut j: Vec<(&str, &GroupJoin)> = joins.iter().map(|(id, g)| (id.as_str(), *g)).collect();
    group::join_all(tx, &mut j).await
}

/// [`lock_subject`] for several: the locks are taken in the order of their
/// numbers, the same in every transaction, so two batches never wait for each
/// other in a cycle. Returns the subjects that exist and the database's clock.
async fn lock_subjects(
    tx: &deadpool_postgres::Transaction<'_>,
    keys: &[&str],
) -> Result<(HashMap<String, Subject>, i64)> {
    let stmt = tx
        .prepare_cached(&format!(
            // The aggregate takes every lock, in the sorted order it reads them.
            "SELECT {NOW_MS} FROM (
                 SELECT count(pg_advisory_xact_lock(h)::text) FROM (
                     SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k
                     ORDER BY h) o) l"
        ))
        .await?;
    // Nearly every batch has one subject (a backup job's webhooks go to one
    // batcher): read by `key = $1` then. `key = ANY($1)` is planned again on every
    // call (its generic plan, made for an array of unknown length, never looks
    // cheaper than a custom one for one key): ~8% of the ingest statements' time.
    let read = tx
        .prepare_cached(&if keys.len() == 1 {
            format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE key = ($1::text[])[1]")
        } else {
            format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE key = ANY($1::text[])")
        })
        .await?;
    // Sent together, run in order: the read is a statement of its own, so its
    // snapshot is taken once the locks are held.
    let (now, rows) =
        futures_util::future::try_join(tx.query_one(&stmt, &[&keys]), tx.query(&read, &[&keys]))
            .await?;
    let now: i64 = now.get(0);
    let subjects = rows
        .iter()
        .map(|r| {
            let s = subject_row(r);
            (s.key.clone(), s)
        })
        .collect();
    Ok((subjects, now))
}

/// Writes `events` (dedup, rows, deliveries, the NOTIFY) in the caller's
/// transaction; the results hold once it commits. The group joins are the
/// caller's to make ([`join_groups`]).
async fn store_batch<'a>(
    tx: &deadpool_postgres::Transaction<'_>,
    events: &[&'a NewEvent],
) -> Result<(Vec<Result<Ingested>>, Joins<'a>)> {
    let ids: Vec<String> = events
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    // Who stores what: `owner[i]` is the event id event i ends up as.
    let mut owner: Vec<Option<String>> = vec![None; events.len()];
    let mut duplicate = vec![false; events.len()];

    // Dedup: the first of each (source, key) in the batch claims the key; the
    // rest of the batch repeats it.
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
    let (mut d_src, mut d_key, mut d_id, mut d_win) = (vec![], vec![], vec![], vec![]);
    for (i, e) in events.iter().enumerate() {
        if e.dedup_window.is_zero() {
            owner[i] = Some(ids[i].clone());
            continue;
        }
        match first_of.get(&(e.source.as_str(), e.dedup_key.as_str())) {
            Some(_) => duplicate[i] = true,
            None => {
                first_of.insert((&e.source, &e.dedup_key), i);
                d_src.push(e.source.as_str());
                d_key.push(e.dedup_key.as_str());
                d_id.push(ids[i].as_str());
                d_win.push(secs(e.dedup_window));
            }
        }
    }
    if !d_src.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO dedup (source, dedup_key, event_id, expires_at)
                 SELECT s, k, i, now() + w * interval '1 second'
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS t (s, k, i, w)
                 ON CONFLICT (source, dedup_key) DO UPDATE
                     SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
                     WHERE dedup.expires_at <= now()
                 RETURNING source, dedup_key, event_id",
            )
            .await?;
        let read = tx
            .prepare_cached(
                "SELECT d.source, d.dedup_key, d.event_id
                 FROM dedup d JOIN unnest($1::text[], $2::text[]) AS t (s, k)
                   ON d.source = t.s AND d.dedup_key = t.k",
            )
            .await?;
        // Sent together, run in order (the read sees the insert).
        let (won, holders) = futures_util::future::try_join(
            tx.query(&stmt, &[&d_src, &d_key, &d_id, &d_win]),
            tx.query(&read, &[&d_src, &d_key]),
        )
        .await?;
        let won: HashSet<(String, String)> = won
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get(1)))
            .collect();
        let holders: HashMap<(String, String), String> = holders
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        for (i, e) in events.iter().enumerate() {
            if e.dedup_window.is_zero() {
                continue;
            }
            let key = (e.source.clone(), e.dedup_key.clone());
            let leader = first_of[&(e.source.as_str(), e.dedup_key.as_str())] == i;
            if leader && won.contains(&key) {
                owner[i] = Some(ids[i].clone());
            } else {
                duplicate[i] = true;
                owner[i] = holders.get(&key).cloned();
            }
        }
    }

    // The events stored, then their deliveries.
    let (mut e_id, mut e_src, mut e_key, mut e_status, mut e_routed, mut e_json) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut l_event, mut l_dest, mut l_tpl, mut l_chan) = (vec![], vec![], vec![], vec![]);
    for (i, e) in events.iter().enumerate() {
        if duplicate[i] {
            continue;
        }
        e_id.push(ids[i].as_str());
        e_src.push(e.source.as_str());
        e_key.push(e.dedup_key.as_str());
        e_status.push(e.status.as_str());
        e_routed.push(e.routed);
        e_json.push(e.event_json.as_str());
        for d in &e.deliveries {
            l_event.push(ids[i].as_str());
            l_dest.push(d.destination.as_str());
            l_tpl.push(d.template.as_str());
            l_chan.push(d.channel.as_deref());
        }
    }
    // The events, their deliveries and the announcement (delivered to listeners
    // on commit, once however many rows) in one statement: the server runs one
    // statement's start-up and end per batch instead of three. The deliveries'
    // foreign-key checks run at the statement's end, after the events' insert.
    if !e_id.is_empty() {
        let stmt = tx
            .prepare_cached(&format!(
                "WITH e AS (
                     INSERT INTO events (id, source, dedup_key, status, routed, event)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                          $5::bool[], $6::text[])),
                 d AS (
                     INSERT INTO deliveries (event_id, destination, template, channel)
                     SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::text[]))
                 SELECT pg_notify('{CHANNEL}', '')::text WHERE cardinality($7::text[]) > 0"
            ))
            .await?;
        tx.query(
            &stmt,
            &[
                &e_id, &e_src, &e_key, &e_status, &e_routed, &e_json, &l_event, &l_dest, &l_tpl,
                &l_chan,
            ],
        )
        .await?;
    }
    // Repeats counted on the event they repeat.
    let mut repeats: HashMap<&str, i32> = HashMap::new();
    for (i, o) in owner.iter().enumerate() {
        if let (true, Some(o)) = (duplicate[i], o) {
            *repeats.entry(o.as_str()).or_default() += 1;
        }
    }
    if !repeats.is_empty() {
        let (r_id, r_n): (Vec<&str>, Vec<i32>) = repeats.into_iter().unzip();
        let stmt = tx
            .prepare_cached(
                "UPDATE events e SET duplicates = e.duplicates + t.n
                 FROM unnest($1::text[], $2::int4[]) AS t (id, n) WHERE e.id = t.id",
            )
            .await?;
        tx.execute(&stmt, &[&r_id, &r_n]).await?;
    }
    let mut joins: Joins<'a> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if !duplicate[i] {
            joins.extend(e.groups.iter().map(|g| (ids[i].clone(), g)));
        }
    }
    let results = events
        .iter()
        .enumerate()
        .map(|(i, e)| match (&owner[i], duplicate[i]) {
            (Some(id), false) => Ok(Ingested::Stored {
                event_id: id.clone(),
                deliveries: e.planned(),
            }),
            (Some(id), true) => Ok(Ingested::Duplicate {
                event_id: id.clone(),
            }),
            (None, _) => Err(StoreError::Commit),
        })
        .collect();
    Ok((results, joins))
}

/// `state = 'pending'` for a statement that finds its row by id. Written so
/// because `state = 'pending'` would let the planner use the pending index
/// (destination, visible_at, id) for `id = $1` — the whole index read for one row
/// — and a cached generic plan made while that index was small keeps doing so
/// once it holds a backlog (a result record read ~370 pages of it at 20,000).
const UNFINISHED: &str = "state NOT IN ('delivered', 'dead')";

/// The database's clock, unix ms.
const NOW_MS: &str = "(extract(epoch FROM now()) * 1000)::int8";

/// A destination's `next_send`, unix µs: what tells a send taken from its rate
/// limit apart (see [`Store::take_send`]).
const NEXT_SEND_US: &str = "(extract(epoch FROM next_send) * 1000000)::int8";

/// The seconds between two sends under `limit` (every replica together).
fn spacing(limit: Option<RateLimit>) -> f64 {
    limit
        .map(|l| l.per.as_secs_f64() / f64::from(l.count.max(1)))
        .unwrap_or(0.0)
}

const SUBJECT_COLUMNS: &str =
    "key, state, failures, last_event_at, last_success_at, down_since, next_deadline, rule, fields";

fn subject_row(r: &tokio_postgres::Row) -> Subject {
    Subject {
        key: r.get(0),
        state: SubjectState::parse(r.get(1)).unwrap_or(SubjectState::New),
        failures: r.get::<_, i32>(2).max(0) as u32,
        last_event_at: r.get(3),
        last_success_at: r.get(4),
        down_since: r.get(5),
        next_deadline: r.get(6),
        rule: r.get(7),
        fields: Arc::new(serde_json::from_str(r.get(8)).unwrap_or_default()),
    }
}

/// Takes the subject's lock for the rest of the transaction (every writer of a
/// subject, on every replica, takes it first), then reads it. Also returns the
/// database's clock.
async fn lock_subject(
    tx: &deadpool_postgres::Transaction<'_>,
    key: &str,
) -> Result<(Option<Subject>, i64)> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {NOW_MS} FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) l"
        ))
        .await?;
    let now: i64 = tx.query_one(&stmt, &[&key]).await?.get(0);
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE key = $1"
        ))
        .await?;
    let row = tx.query_opt(&stmt, &[&key]).await?;
    Ok((row.as_ref().map(subject_row), now))
}

/// Writes the subject and announces it (on commit) to the other replicas, which
/// forget what they knew of it. The caller updates this replica's memory.
async fn write_subject(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &Subject,
    replica: &str,
) -> Result<()> {
    let fields = serde_json::to_string(&*s.fields).map_err(|e| StoreError::Db(e.to_string()))?;
    // A payload is at most 8,000 bytes: a longer key makes the others forget all.
    let stmt = tx
        .prepare_cached(&format!(
            "WITH w AS (
                 INSERT INTO subjects ({SUBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (key) DO UPDATE SET state = EXCLUDED.state, failures = EXCLUDED.failures,
                     last_event_at = EXCLUDED.last_event_at, last_success_at = EXCLUDED.last_success_at,
                     down_since = EXCLUDED.down_since, next_deadline = EXCLUDED.next_deadline,
                     rule = EXCLUDED.rule, fields = EXCLUDED.fields
                 RETURNING key)
             SELECT pg_notify('{SUBJECT_CHANNEL}', $10::text || ' ' ||
                 CASE WHEN octet_length(key) < 7000 THEN key ELSE '*' END)::text FROM w"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &s.key,
            &s.state.as_str(),
            &(s.failures.min(i32::MAX as u32) as i32),
            &s.last_event_at,
            &s.last_success_at,
            &s.down_since,
            &s.next_deadline,
            &s.rule,
            &fields,
            &replica,
        ],
    )
    .await?;
    Ok(())
}

/// An event that updates its subject: its own transaction, under the subject's
/// lock, so the state follows the events in commit order on every replica, and a
/// claimed deadline is fired by exactly one of them.
async fn ingest_watched(
    pool: &Pool,
    e: &NewEvent,
    w: &WatchUpdate,
    replica: &str,
) -> Result<Ingested> {
    let mut recovered: Option<NewEvent> = None;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (prev, now) = lock_subject(&tx, &w.key).await?;
    if w.claim.is_some() && prev.as_ref().and_then(|s| s.next_deadline) != w.claim {
        return Ok(Ingested::Skipped);
    }
    let (mut r, mut joins) = store_batch(&tx, &[e]).await?;
    let stored = r.pop().unwrap_or(Err(StoreError::Commit))?;
    if let Ingested::Stored { .. } = &stored {
        // Reckoned by the database's clock: replicas' clocks may differ.
        let applied = crate::watch::apply(
            prev.as_ref(),
            &w.key,
            w.fields.as_ref(),
            e.status,
            now,
            w.rule.as_deref(),
            w.claim.is_some(),
        );
        write_subject(&tx, &applied.subject, replica).await?;
        if let Some(r) = &w.recovered {
            recovered = r.after(&applied)?;
        }
        if let Some(r) = &recovered {
            joins.extend(store_batch(&tx, &[r]).await?.1);
        }
    }
    join_groups(&tx, joins).await?;
    tx.commit().await?;
    Ok(stored)
}

fn parse_event(json: &str) -> Result<Event> {
    serde_json::from_str(json).map_err(|e| StoreError::Db(format!("stored event unreadable: {e}")))
}

const DELIVERY_COLUMNS: &str = "id, event_id, destination, template, state, last_error,
    (extract(epoch FROM visible_at) * 1000)::int8, (extract(epoch FROM created_at) * 1000)::int8";

fn delivery_row(r: &tokio_postgres::Row) -> DeliveryView {
    let state = State::parse(r.get(4)).unwrap_or(State::Pending);
    DeliveryView {
        id: r.get(0),
        event_id: r.get(1),
        destination: r.get(2),
        template: r.get(3),
        state,
        attempts: Vec::new(),
        last_error: r.get(5),
        next_attempt_at: (state == State::Pending).then(|| ms_to_rfc3339(r.get(6))),
        created_at: ms_to_rfc3339(r.get(7)),
    }
}

impl PgStore {
    /// Fills in the attempts of `deliveries`.
    async fn with_attempts(
        client: &deadpool_postgres::Object,
        mut deliveries: Vec<DeliveryView>,
    ) -> Result<Vec<DeliveryView>> {
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let rows = client
            .query(
                "SELECT delivery_id, (extract(epoch FROM at) * 1000)::int8, status, error, duration_ms
                 FROM attempts WHERE delivery_id = ANY($1) ORDER BY seq",
                &[&ids],
            )
            .await?;
        let mut by: HashMap<i64, Vec<AttemptView>> = HashMap::new();
        for r in rows {
            by.entry(r.get(0)).or_default().push(AttemptView {
                at: ms_to_rfc3339(r.get(1)),
                status: r.get::<_, Option<i32>>(2).map(|s| s as u16),
                error: r.get(3),
                duration_ms: r.get(4),
            });
        }
        for d in &mut deliveries {
            d.attempts = by.remove(&d.id).unwrap_or_default();
        }
        Ok(deliveries)
    }

    async fn records(
        client: &deadpool_postgres::Object,
        rows: Vec<tokio_postgres::Row>,
    ) -> Result<Vec<EventRecord>> {
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let ds = client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = ANY($1) ORDER BY id"
                ),
                &[&ids],
            )
            .await?;
        let ds = Self::with_attempts(client, ds.iter().map(delivery_row).collect()).await?;
        let mut by: HashMap<String, Vec<DeliveryView>> = HashMap::new();
        for d in ds {
            by.entry(d.event_id.clone()).or_default().push(d);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                Ok(EventRecord {
                    deliveries: by.remove(&id).unwrap_or_default(),
                    event: parse_event(r.get(3))?,
                    routed: r.get(1),
                    duplicates: r.get::<_, i32>(2) as u32,
                    id,
                })
            })
            .collect()
    }

    async fn pg_watch_subject(
        &self,
        key: &str,
        fields: &serde_json::Map<String, Value>,
        rule: Arc<Rule>,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (prev, now) = lock_subject(&tx, key).await?;
        if prev.is_none() {
            let s = Subject::pinned(key, fields, &rule, now);
            write_subject(&tx, &s, &self.replica).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pg_set_rule(&self, key: &str, rule: Option<Arc<Rule>>) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (prev, now) = lock_subject(&tx, key).await?;
        let fingerprint = rule.as_ref().map(|r| r.fingerprint.clone());
        if let Some(mut s) = prev.filter(|s| s.rule != fingerprint) {
            s.rule = fingerprint;
            // A missing subject keeps its reminder (or none): it already fired.
            if s.state != SubjectState::Missing || rule.is_none() {
                let base = s.last_success_at.or(s.last_event_at).unwrap_or(now);
                s.next_deadline = rule.as_ref().map(|r| r.deadline_after(base));
            }
            write_subject(&tx, &s, &self.replica).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn limit_row(&self, client: &deadpool_postgres::Object, destination: &str) -> Result<()> {
        if self
            .limit_rows
            .lock()
            .is_ok_and(|s| s.contains(destination))
        {
            return Ok(());
        }
        client
            .execute(
                "INSERT INTO destination_limits (destination) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&destination],
            )
            .await?;
        if let Ok(mut s) = self.limit_rows.lock() {
            s.insert(destination.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ingest(&self, e: NewEvent) -> Result<Ingested> {
        let _storing = self.gauge.storing();
        // A claimed deadline is not batched: whether it is still due decides
        // whether anything is stored, in its own transaction.
        if let Some(w) = e.watch.as_ref().filter(|w| w.claim.is_some()) {
            let r = ingest_watched(&self.pool, &e, w, &self.replica).await;
            // Written or not (an answer lost with the connection): read it again.
            self.subjects.forget(&w.key);
            return r;
        }
        // Webhooks of one subject take its lock from their batch's subject write to
        // its commit, so two batches of one subject run that part one after the
        // other: they go to one batcher, whose batch then holds all that are
        // waiting, instead of several smaller batches waiting for each other's lock.
        let i = match &e.watch {
            Some(w) => {
                let mut h = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(w.key.as_str(), &mut h);
                std::hash::Hasher::finish(&h) as usize
            }
            None => self.next_batcher.fetch_add(1, Ordering::Relaxed),
        } % self.ingest.len();
        let (tx, rx) = oneshot::channel();
        self.ingest[i]
            .send(IngestJob { event: e, tx })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim(
        &self,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "WITH picked AS MATERIALIZED (
                     SELECT id FROM deliveries
                     WHERE destination = $1 AND state = 'pending' AND visible_at <= now()
                     ORDER BY visible_at, id
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 UPDATE deliveries d
                 SET visible_at = now() + $3 * interval '1 second', lease_token = d.lease_token + 1
                 -- By primary key: a join with the CTE is planned (generically, the
                 -- LIMIT unknown) as a hash join over a scan of the whole table.
                 WHERE d.id = ANY (ARRAY(SELECT id FROM picked))
                 RETURNING d.id, d.lease_token, d.event_id, d.template, d.channel, d.attempts,
                     (extract(epoch FROM now() - d.window_start) * 1000)::int8,
                     (SELECT e.event FROM events e WHERE e.id = d.event_id), d.group_id,
                     d.reached",
            )
            .await?;
        let mut rows = client
            .query(&stmt, &[&destination, &(limit as i64), &secs(lease)])
            .await?;
        drop(client);
        rows.sort_by_key(|r| r.get::<_, i64>(0));
        let claimed_at = std::time::Instant::now();
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let lease = Lease {
                id: r.get(0),
                token: r.get(1),
            };
            let event_id: String = r.get(2);
            let reached: Vec<String> = r.get::<_, Option<Vec<String>>>(9).unwrap_or_default();
            let event = match r.get::<_, Option<&str>>(7).map(parse_event) {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    // Nothing can send it, and it must not stop the deliveries
                    // behind it: it ends dead, with the reason.
                    let attempt = Attempt {
                        status: None,
                        error: Some(e.to_string()),
                        duration_ms: 0,
                        reached,
                    };
                    log::error!(
                        "delivery {} (event {event_id}) to {destination}: dead: {e}",
                        lease.id
                    );
                    self.complete(lease, attempt, Outcome::Dead).await?;
                    continue;
                }
                None => continue,
            };
            claimed.push(Claimed {
                id: lease.id,
                token: lease.token,
                event_id,
                destination: destination.to_string(),
                template: r.get(3),
                channel: r.get(4),
                attempts: r.get::<_, i32>(5) as u32,
                age: millis(r.get(6)),
                claimed_at,
                event,
                raw_text: None,
                group: r.get(8),
                reached,
            });
        }
        Ok(claimed)
    }

    async fn get_subject(&self, key: &str) -> Result<Option<Subject>> {
        if let Some(known) = self.subjects.get(key) {
            return Ok(known);
        }
        let generation = self.subjects.generation();
        let client = self.pool.get().await?;
        // Every webhook reads its subject: prepared once per connection.
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE key = $1"
            ))
            .await?;
        let row = client.query_opt(&stmt, &[&key]).await?;
        let subject = row.as_ref().map(subject_row);
        self.subjects.fill(key, subject.clone(), generation);
        Ok(subject)
    }

    async fn list_subjects(&self, state: Option<SubjectState>) -> Result<Vec<Subject>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE $1::text IS NULL OR state = $1"
                ),
                &[&state.map(SubjectState::as_str)],
            )
            .await?;
        let mut out: Vec<Subject> = rows.iter().map(subject_row).collect();
        crate::watch::sort_worst_first(&mut out);
        Ok(out)
    }

    async fn due_subjects(&self, limit: usize) -> Result<Vec<Subject>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SUBJECT_COLUMNS} FROM subjects
                     WHERE next_deadline IS NOT NULL AND next_deadline <= {NOW_MS}
                     ORDER BY next_deadline LIMIT $1"
                ),
                &[&(limit as i64)],
            )
            .await?;
        Ok(rows.iter().map(subject_row).collect())
    }

    async fn watch_subject(
        &self,
        key: &str,
        fields: &serde_json::Map<String, Value>,
        rule: Arc<Rule>,
    ) -> Result<()> {
        let r = self.pg_watch_subject(key, fields, rule).await;
        // Written or not (an answer lost with the connection): read it again.
        self.subjects.forget(key);
        r
    }

    async fn set_rule(&self, key: &str, rule: Option<Arc<Rule>>) -> Result<()> {
        let r = self.pg_set_rule(key, rule).await;
        self.subjects.forget(key);
        r
    }

    async fn renew(&self, lease: Lease, duration: Duration) -> Result<()> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE deliveries SET visible_at = now() + $3 * interval '1 second'
                     WHERE id = $1 AND lease_token = $2 AND {UNFINISHED}"
            ))
            .await?;
        let n = client
            .execute(&stmt, &[&lease.id, &lease.token, &secs(duration)])
            .await?;
        if n == 0 {
            return Err(StoreError::LeaseLost(lease.id));
        }
        Ok(())
    }

    async fn complete(&self, lease: Lease, attempt: Attempt, outcome: Outcome) -> Result<bool> {
        let (state, after) = match outcome {
            Outcome::Delivered => ("delivered", Duration::ZERO),
            Outcome::Retry { after } => ("pending", after),
            Outcome::Dead => ("dead", Duration::ZERO),
        };
        let client = self.pool.get().await?;
        // One statement: the row changes only if the token is still ours, and the
        // attempt is recorded only if it did.
        let stmt = client
            .prepare_cached(&format!(
                "WITH d AS (
                     UPDATE deliveries SET state = $3, attempts = attempts + 1,
                         visible_at = now() + $4 * interval '1 second',
                         last_error = COALESCE($5, last_error), reached = $8,
                         ended_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
                     WHERE id = $1 AND lease_token = $2 AND {UNFINISHED}
                     RETURNING id)
                 INSERT INTO attempts (delivery_id, at, status, error, duration_ms)
                 SELECT id, now() - make_interval(secs => $6::int8 / 1000.0), $7, $5, $6::int8 FROM d"
            ))
            .await?;
        let n = client
            .execute(
                &stmt,
                &[
                    &lease.id,
                    &lease.token,
                    &state,
                    &secs(after),
                    &attempt.error,
                    &attempt.duration_ms,
                    &attempt.status.map(i32::from),
                    &(!attempt.reached.is_empty()).then_some(&attempt.reached),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn next_due(&self, destination: &str) -> Result<Option<Duration>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT (extract(epoch FROM MIN(visible_at) - now()) * 1000)::int8
                 FROM deliveries WHERE destination = $1 AND state = 'pending'",
            )
            .await?;
        let row = client.query_one(&stmt, &[&destination]).await?;
        Ok(row.get::<_, Option<i64>>(0).map(millis))
    }

    async fn pending_destinations(&self) -> Result<Vec<String>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn begin_ordered(
        &self,
        lease: Lease,
        destination: &str,
        key: &str,
        action: &str,
    ) -> Result<Ordered> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Every replica decides a key's sends under its lock, one at a time.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('order:' || $1 || E'\\n' || $2, 0))",
            &[&destination, &key],
        )
        .await?;
        let seq: i64 = match tx
            .query_opt(
                &format!(
                    "SELECT COALESCE(
                         (SELECT MAX(COALESCE(e.order_seq, e.seq))
                          FROM group_events g JOIN events e ON e.id = g.event_id
                          WHERE g.group_id = d.group_id),
                         (SELECT COALESCE(e.order_seq, e.seq) FROM events e WHERE e.id = d.event_id))
                     FROM deliveries d
                     WHERE d.id = $1 AND d.lease_token = $2 AND d.{UNFINISHED}"
                ),
                &[&lease.id, &lease.token],
            )
            .await?
        {
            Some(r) => r.get(0),
            None => return Err(StoreError::LeaseLost(lease.id)),
        };
        let later = tx
            .query_opt(
                "SELECT event_id, order_action FROM deliveries
                 WHERE destination = $1 AND order_key = $2 AND state = 'delivered'
                   AND order_seq > $3
                 ORDER BY order_seq DESC LIMIT 1",
                &[&destination, &key, &seq],
            )
            .await?;
        if let Some(r) = later {
            return Ok(Ordered::Superseded {
                event_id: r.get(0),
                action: r.get::<_, Option<String>>(1).unwrap_or_default(),
            });
        }
        // In flight: begun under this claim and attempt, its lease running.
        let busy = tx
            .query_opt(
                "SELECT (extract(epoch FROM visible_at - now()) * 1000)::int8 FROM deliveries
                 WHERE destination = $1 AND order_key = $2 AND id <> $3 AND state = 'pending'
                   AND visible_at > now() AND lease_token = order_token
                   AND attempts = order_attempt
                 LIMIT 1",
                &[&destination, &key, &lease.id],
            )
            .await?;
        if let Some(r) = busy {
            let ms = r.get::<_, i64>(0).clamp(1, 1000);
            return Ok(Ordered::Wait(millis(ms)));
        }
        tx.execute(
            "UPDATE deliveries SET order_key = $2, order_seq = $3, order_action = $4,
                 order_token = lease_token, order_attempt = attempts
             WHERE id = $1",
            &[&lease.id, &key, &seq, &action],
        )
        .await?;
        tx.commit().await?;
        Ok(Ordered::Send)
    }

    async fn bury(&self, destination: &str, error: &str) -> Result<usize> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE deliveries SET state = 'dead', last_error = $2, ended_at = now()
                 WHERE destination = $1 AND state = 'pending'",
                &[&destination, &error],
            )
            .await?;
        Ok(n as usize)
    }

    async fn list_events(&self, q: EventQuery) -> Result<Vec<EventRecord>> {
        let client = self.pool.get().await?;
        let before = ui::before_seq(&client, q.before.as_deref()).await?;
        let rows = client
            .query(
                "SELECT id, routed, duplicates, event FROM events
                 WHERE ($1::int8 IS NULL OR seq < $1) AND ($2::text IS NULL OR status = $2)
                   AND ($3::text IS NULL OR source = $3)
                 ORDER BY seq DESC LIMIT $4",
                &[&before, &q.status, &q.source, &(q.limit as i64)],
            )
            .await?;
        Self::records(&client, rows).await
    }

    async fn get_event(&self, id: &str) -> Result<EventRecord> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, routed, duplicates, event FROM events WHERE id = $1",
                &[&id],
            )
            .await?;
        Self::records(&client, rows)
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    async fn list_deliveries_before(
        &self,
        state: Option<State>,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<DeliveryView>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries
                     WHERE ($1::text IS NULL OR state = $1) AND ($3::int8 IS NULL OR id < $3)
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&state.map(State::as_str), &(limit as i64), &before],
            )
            .await?;
        Self::with_attempts(&client, rows.iter().map(delivery_row).collect()).await
    }

    async fn retry_delivery(&self, id: i64) -> Result<()> {
        let client = self.pool.get().await?;
        // Only a dead one, in the statement that changes it: a retry cannot race
        // a claim. A new token: a send of it still in flight (one buried while
        // sending) can no longer record its result.
        let n = client
            .execute(
                "UPDATE deliveries SET state = 'pending', visible_at = now(), window_start = now(),
                     lease_token = lease_token + 1, ended_at = NULL
                 WHERE id = $1 AND state = 'dead'",
                &[&id],
            )
            .await?;
        if n == 0 {
            // Only which error to give: the row was not changed either way.
            let row = client
                .query_opt("SELECT state FROM deliveries WHERE id = $1", &[&id])
                .await?
                .ok_or(StoreError::NotFound)?;
            let state: String = row.get(0);
            return Err(StoreError::NotDead {
                id,
                state: State::parse(&state).unwrap_or(State::Pending),
            });
        }
        client.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
        Ok(())
    }

    async fn add_deliveries(&self, event_id: &str, d: Vec<NewDelivery>) -> Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if tx
            .query_opt("SELECT 1 FROM events WHERE id = $1", &[&event_id])
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        for x in &d {
            tx.execute(
                "INSERT INTO deliveries (event_id, destination, template, channel) VALUES ($1, $2, $3, $4)",
                &[&event_id, &x.destination, &x.template, &x.channel],
            )
            .await?;
        }
        if !d.is_empty() {
            tx.execute(
                "UPDATE events SET routed = true WHERE id = $1",
                &[&event_id],
            )
            .await?;
            tx.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
        }
        tx.commit().await?;
        Ok(d.len())
    }

    async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT destination, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY destination",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn bury_unsent(
        &self,
        destination: &str,
        window: Duration,
        idle: Duration,
        error: &str,
    ) -> Result<usize> {
        let client = self.pool.get().await?;
        // A leased row's `visible_at` is the end of its lease, still ahead: never
        // one being sent.
        let n = client
            .execute(
                "UPDATE deliveries SET state = 'dead', last_error = $2, ended_at = now()
                 WHERE destination = $1 AND state = 'pending'
                   AND window_start <= now() - ($3::float8 + $4::float8) * interval '1 second'
                   AND visible_at <= now() - $4::float8 * interval '1 second'",
                &[&destination, &error, &secs(window), &secs(idle)],
            )
            .await?;
        Ok(n as usize)
    }

    async fn list_events_with_delivery(
        &self,
        q: EventQuery,
        state: State,
    ) -> Result<Vec<EventRecord>> {
        self.ui_events_with_delivery(q, state).await
    }

    async fn outcomes_since(&self, since_ms: i64) -> Result<Vec<SubjectOutcome>> {
        self.ui_outcomes_since(since_ms).await
    }

    async fn flush_groups(&self, limit: usize) -> Result<usize> {
        self.pg_flush_groups(limit).await
    }

    async fn group_events(&self, id: i64) -> Result<Vec<Event>> {
        self.pg_group_events(id).await
    }

    async fn group_of(&self, event_id: &str) -> Result<Option<crate::group::GroupView>> {
        self.pg_group_of(event_id).await
    }

    async fn digest_counts(&self, since_ms: i64, until_ms: i64) -> Result<crate::digest::Counts> {
        self.pg_digest_counts(since_ms, until_ms).await
    }

    async fn clock_ms(&self) -> Result<i64> {
        self.pg_clock_ms().await
    }

    async fn last_digest(&self, key: &str) -> Result<Option<i64>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT scheduled_at FROM digest_runs WHERE key = $1",
                &[&key],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn prune_digest_runs(&self, retention: Duration, configured: &[String]) -> Result<usize> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                &format!(
                    "DELETE FROM digest_runs
                     WHERE scheduled_at < {NOW_MS} - $1 AND NOT (key = ANY ($2))"
                ),
                &[
                    &i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
                    &configured,
                ],
            )
            .await?;
        Ok(n as usize)
    }

    fn ingest_gauge(&self) -> Option<&IngestGauge> {
        Some(&self.gauge)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn ready(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO probe (id, at) VALUES (1, now())
                 ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at",
                &[],
            )
            .await?;
        Ok(())
    }

    async fn purge(&self, retention: Duration, batch: usize) -> Result<usize> {
        let client = self.pool.get().await?;
        // Deliveries and attempts go with their event (ON DELETE CASCADE). Rows
        // another replica is purging are skipped, not waited for.
        let n = client
            .execute(
                "WITH doomed AS (
                     SELECT e.id FROM events e
                     WHERE e.received_at < now() - $1 * interval '1 second'
                       AND NOT EXISTS (SELECT 1 FROM deliveries d
                                       WHERE d.event_id = e.id AND d.state = 'pending')
                       -- Nor an event of a group still held or still being sent.
                       AND NOT EXISTS (
                           SELECT 1 FROM group_events ge JOIN event_groups g ON g.id = ge.group_id
                           WHERE ge.event_id = e.id AND (g.state <> 'sent' OR EXISTS (
                               SELECT 1 FROM deliveries d WHERE d.event_id = g.first_event
                                 AND d.state = 'pending')))
                     ORDER BY e.received_at LIMIT $2
                     FOR UPDATE SKIP LOCKED),
                 keys AS (DELETE FROM dedup WHERE event_id IN (SELECT id FROM doomed)),
                 -- A group goes with its first event (its members' rows cascade).
                 held AS (DELETE FROM event_groups
                          WHERE state = 'sent' AND first_event IN (SELECT id FROM doomed))
                 DELETE FROM events WHERE id IN (SELECT id FROM doomed)",
                &[&secs(retention), &(batch as i64)],
            )
            .await?;
        // Windows that ran out.
        client
            .execute(
                "DELETE FROM dedup WHERE ctid IN (
                     SELECT ctid FROM dedup WHERE expires_at < now() LIMIT $1)",
                &[&(batch as i64)],
            )
            .await?;
        Ok(n as usize)
    }

    async fn take_send(&self, destination: &str, limit: Option<RateLimit>) -> Result<Take> {
        let client = self.pool.get().await?;
        self.limit_row(&client, destination).await?;
        // Sends spaced `per / count` apart for every replica together: never more
        // than `count` in any window of `per`. Atomic: one row, one UPDATE. The
        // send taken is told apart by the `next_send` it set (µs): a give-back
        // finds it there only while no other send was taken after it.
        let took = client
            .query_opt(
                &format!(
                    "UPDATE destination_limits SET next_send = now() + $2 * interval '1 second'
                     WHERE destination = $1 AND next_send <= now() AND paused_until <= now()
                     RETURNING {NEXT_SEND_US}"
                ),
                &[&destination, &spacing(limit)],
            )
            .await?;
        if let Some(r) = took {
            return Ok(Take::Now(SendSlot(r.get(0))));
        }
        let row = client
            .query_one(
                "SELECT (GREATEST(extract(epoch FROM next_send - now()),
                                  extract(epoch FROM paused_until - now()), 0) * 1000)::int8
                 FROM destination_limits WHERE destination = $1",
                &[&destination],
            )
            .await?;
        // Free again by now: a turn soon, not a spin.
        Ok(Take::Wait(millis(row.get(0)).max(Duration::from_millis(1))))
    }

    async fn give_back_send(
        &self,
        destination: &str,
        limit: Option<RateLimit>,
        slot: SendSlot,
    ) -> Result<()> {
        let client = self.pool.get().await?;
        // `next_send` back to when the send was taken (now or earlier: the next
        // take goes at once), only if it is still the one this take set.
        client
            .execute(
                &format!(
                    "UPDATE destination_limits SET next_send = next_send - $3 * interval '1 second'
                     WHERE destination = $1 AND {NEXT_SEND_US} = $2"
                ),
                &[&destination, &slot.0, &spacing(limit)],
            )
            .await?;
        Ok(())
    }

    async fn paused_for(&self, destination: &str) -> Result<Duration> {
        if let Some(left) = self.pauses.left(destination) {
            return Ok(left);
        }
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT (GREATEST(extract(epoch FROM paused_until - now()), 0) * 1000)::int8
                 FROM destination_limits WHERE destination = $1",
            )
            .await?;
        let row = client.query_opt(&stmt, &[&destination]).await?;
        Ok(row.map(|r| millis(r.get(0))).unwrap_or_default())
    }

    async fn pause(&self, destination: &str, duration: Duration) -> Result<()> {
        let client = self.pool.get().await?;
        // Announced to every replica (this one included) when it commits.
        let row = client
            .query_one(
                &format!(
                    "WITH p AS (
                         INSERT INTO destination_limits (destination, paused_until)
                         VALUES ($1, now() + $2 * interval '1 second')
                         ON CONFLICT (destination) DO UPDATE
                             SET paused_until = GREATEST(destination_limits.paused_until, EXCLUDED.paused_until)
                         RETURNING destination,
                             (extract(epoch FROM paused_until - now()) * 1000)::int8 AS ms)
                     SELECT ms, pg_notify('{PAUSE_CHANNEL}', ms || ' ' || destination)::text FROM p"
                ),
                &[&destination, &secs(duration)],
            )
            .await?;
        // Known here at once, before the announcement comes back.
        self.pauses.extend(destination, row.get(0));
        Ok(())
    }
}
