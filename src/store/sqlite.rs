//! The embedded SQLite backend.
//!
//! Every write goes through one writer thread that drains its queue into a single
//! transaction: a burst of webhooks costs one commit (one fsync, `synchronous=FULL`)
//! for many requests, and SQLite never sees two writers. A job learns its result
//! only after the commit, and one failing job never undoes the others nor leaves
//! half its rows (see [`run_batch`]). Reads use a separate connection (WAL mode
//! lets them run beside the writer).
//!
//! Before each batch the writer checks that the file at the configured path is
//! still the one it has open (device and inode): a file deleted or replaced under
//! the running process would otherwise take writes that vanish at the next start.
//! After a failed commit, or a file made read-only, the connections are opened
//! again, so storage that becomes writable again is used without a restart.
//!
//! Claims are reads: a delivery being sent is leased in memory, not in a row, with
//! a token per claim. SQLite has one process, and a restarted process has no
//! sends in flight, so a lease in the database would only cost a write per send
//! (on the thread every ingest waits for) to say what the process already knows.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicI64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::limits::Limits;
use super::*;

mod group;
mod schema;
mod subjects;
#[cfg(test)]
mod tests;
mod ui;
mod writer;

use schema::*;
use writer::*;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            // What a disk, a mount or a permission does, not the statement: the
            // same write may succeed later.
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    C::ReadOnly
                        | C::DiskFull
                        | C::CannotOpen
                        | C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::SystemIoFailure
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// Deliveries being sent: id -> (lease expiry in ms, token). An entry stays until
/// its attempt is recorded or a newer claim replaces it; an expired one no longer
/// keeps the delivery from being claimed.
type Leases = Arc<Mutex<HashMap<i64, (i64, i64)>>>;

/// The send that holds each ordered key (destination, key): see
/// [`Store::begin_ordered`]. It holds it while its lease is in `Leases` with its
/// token (until its attempt is recorded, or its lease runs out). An entry goes
/// when its attempt is recorded, when its send turns out not to be made, or
/// (its lease run out) at the next `begin_ordered`.
type Holds = Arc<Mutex<HashMap<(String, String), Lease>>>;

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    reader: Arc<Mutex<Connection>>,
    /// For one-row lookups on the request's own thread (see `point_read`).
    point: Arc<Mutex<Connection>>,
    subjects: Arc<subjects::SubjectCache>,
    leases: Leases,
    holds: Holds,
    next_token: AtomicI64,
    limits: Limits,
    gauge: IngestGauge,
    wake: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating the folder and file if needed) and migrates the database.
    /// A file that exists but cannot be written now (read-only) still opens:
    /// readiness and webhooks then say 503 until it can be written.
    pub fn open(path: &str, opts: Options) -> Result<SqliteStore> {
        if path.is_empty() || path == ":memory:" {
            // Two connections (writer, reader) must see one database: a file.
            return Err(StoreError::Config("sqlite:// needs a file path".into()));
        }
        // Errors name the file by its absolute path and say plainly when the cause
        // is permissions: the usual mistake (a volume owned by another user).
        let shown = std::path::absolute(path).unwrap_or_else(|_| Path::new(path).to_path_buf());
        if let Some(dir) = shown.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create the folder {} for the SQLite database: {}",
                    dir.display(),
                    io_reason(&e)
                ))
            })?;
        }
        let cannot_open = |e: StoreError| {
            // SQLite says only "unable to open database file"; the file system
            // knows why.
            let why = match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&shown)
            {
                Err(io) => io_reason(&io),
                Ok(_) => match e {
                    StoreError::Db(m) | StoreError::Unavailable(m) => m,
                    other => other.to_string(),
                },
            };
            StoreError::Config(format!(
                "cannot open the SQLite database {}: {why}",
                shown.display()
            ))
        };
        // Creates the file if missing.
        let reader_conn = connect(path).map_err(cannot_open)?;
        let writer_conn = match Writer::open(path) {
            Ok(c) => Some(c),
            // A file that exists but cannot be written now (read-only, a full
            // disk): started, not ready, until it can.
            Err(e) if e.is_transient() => {
                log::error!("storage: {e}; webhooks are refused until it can be written");
                None
            }
            Err(e) => return Err(cannot_open(e)),
        };
        let reader = Arc::new(Mutex::new(reader_conn));
        let point = Arc::new(Mutex::new(connect(path).map_err(cannot_open)?));
        let subjects = Arc::new(subjects::SubjectCache::default());
        let mut writer = Writer {
            path: path.to_string(),
            conn: writer_conn,
            wal: wal_ids(path),
            readers: vec![reader.clone(), point.clone()],
            subjects: subjects.clone(),
        };
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("hookrelay-sqlite-writer".into())
            .spawn(move || writer_loop(&mut writer, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore {
            writer: tx,
            reader,
            point,
            subjects,
            leases: Arc::default(),
            holds: Arc::default(),
            next_token: AtomicI64::new(1),
            limits: Limits::default(),
            gauge: IngestGauge::default(),
            wake: opts.wake,
        })
    }

    /// Runs `f` on the writer thread inside the next transaction; resolves after
    /// the commit.
    /// `f` may run twice (after a rollback), so it takes what it writes by
    /// reference.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_job(f, false).await
    }

    /// [`write`](Self::write) for a write that need not commit on its own while
    /// webhooks are arriving: see `gather`.
    async fn write_lazy<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_job(f, true).await
    }

    async fn write_job<T, F>(&self, f: F, lazy: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(WriteJob {
            f,
            result: None,
            tx,
            lazy,
        });
        self.writer.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A lookup of one row by its key, on the caller's thread: every webhook
    /// reads its subject, and handing that to the blocking pool cost more (a
    /// task, two thread wake-ups) than the read itself, which finds its pages in
    /// memory. Its own connection, so a long read (a claim, the web page) never
    /// holds it up.
    fn point_read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.point.lock().map_err(|_| StoreError::Closed)?;
        f(&conn)
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn insert_delivery(conn: &Connection, event_id: &str, d: &NewDelivery, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, destination, template, channel, state, created_at, window_start, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?
    .execute(params![event_id, d.destination, d.template, d.channel, now])?;
    Ok(())
}

fn ingest_tx(conn: &Connection, e: &NewEvent) -> Result<Ingested> {
    ingest_tx_recovering(conn, e).map(|(r, _)| r)
}

/// [`ingest_tx`], also saying whether it stored a `backup.recovered` with
/// deliveries (the delivery loops are to be woken).
fn ingest_tx_recovering(conn: &Connection, e: &NewEvent) -> Result<(Ingested, bool)> {
    let now = now_ms();
    let subject = match &e.watch {
        Some(w) => {
            let prev = read_subject_tx(conn, &w.key)?;
            // One writer: what is read here is still so at the write below.
            if w.claim.is_some() && prev.as_ref().and_then(|s| s.next_deadline) != w.claim {
                return Ok((Ingested::Skipped, false));
            }
            Some(prev)
        }
        None => None,
    };
    if !e.dedup_window.is_zero() {
        let since = now - e.dedup_window.as_millis() as i64;
        let dup: Option<String> = conn
            .prepare_cached(
                "SELECT id FROM events
                 WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?3 AND deduplicated = 1
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![e.source, e.dedup_key, since], |r| r.get(0))
            .optional()?;
        if let Some(id) = dup {
            conn.prepare_cached("UPDATE events SET duplicates = duplicates + 1 WHERE id = ?1")?
                .execute(params![id])?;
            return Ok((Ingested::Duplicate { event_id: id }, false));
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    insert_event(conn, &id, e, now, &e.dedup_key)?;
    for d in &e.deliveries {
        insert_delivery(conn, &id, d, now)?;
    }
    for g in &e.groups {
        group::join(conn, &id, g, now)?;
    }
    if let Some((key, at)) = &e.digest_run {
        conn.prepare_cached(
            "INSERT INTO digest_runs (key, scheduled_at) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE
             SET scheduled_at = MAX(digest_runs.scheduled_at, excluded.scheduled_at)",
        )?
        .execute(params![key, at])?;
    }
    let mut woke = false;
    if let (Some(w), Some(prev)) = (&e.watch, subject) {
        let applied = crate::watch::apply(
            prev.as_ref(),
            &w.key,
            w.fields.as_ref(),
            e.status,
            // The process's clock either way: SQLite has one process.
            w.at.unwrap_or(now),
            w.rule.as_deref(),
            w.claim.is_some(),
        );
        write_subject_over(conn, &applied.subject, prev.as_ref())?;
        // Decided here, on the subject as the transaction found it.
        let recovered = match &w.recovered {
            Some(r) => r.after(&applied)?,
            None => None,
        };
        if let Some(r) = recovered {
            woke = !r.deliveries.is_empty();
            let rid = uuid::Uuid::now_v7().to_string();
            insert_event(
                conn,
                &rid,
                &r,
                now,
                &format!("{}{id}", crate::watch::RECOVERED_PREFIX),
            )?;
            for d in &r.deliveries {
                insert_delivery(conn, &rid, d, now)?;
            }
            for g in &r.groups {
                group::join(conn, &rid, g, now)?;
            }
        }
    }
    Ok((
        Ingested::Stored {
            event_id: id,
            deliveries: e.planned(),
        },
        woke,
    ))
}

fn insert_event(
    conn: &Connection,
    id: &str,
    e: &NewEvent,
    now: i64,
    dedup_key: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (id, source, received_at, dedup_key, status, routed, event, deduplicated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id,
        e.source,
        now,
        dedup_key,
        e.status.as_str(),
        e.routed,
        e.event_json,
        !e.dedup_window.is_zero()
    ])?;
    Ok(())
}

const SUBJECT_COLUMNS: &str =
    "key, state, failures, last_event_at, last_success_at, down_since, next_deadline, rule, fields";

fn subject_row(r: &rusqlite::Row) -> rusqlite::Result<Subject> {
    let state: String = r.get(1)?;
    let fields: String = r.get(8)?;
    Ok(Subject {
        key: r.get(0)?,
        state: SubjectState::parse(&state).unwrap_or(SubjectState::New),
        failures: r.get(2)?,
        last_event_at: r.get(3)?,
        last_success_at: r.get(4)?,
        down_since: r.get(5)?,
        next_deadline: r.get(6)?,
        rule: r.get(7)?,
        fields: Arc::new(serde_json::from_str(&fields).unwrap_or_default()),
    })
}

/// A subject read inside a write: every webhook's transaction reads its subject,
/// and the writer mostly knows it already (see `subjects::seen`).
fn read_subject_tx(conn: &Connection, key: &str) -> Result<Option<Subject>> {
    match subjects::seen(key) {
        Some(s) => Ok(Some(s)),
        None => read_subject(conn, key),
    }
}

fn read_subject(conn: &Connection, key: &str) -> Result<Option<Subject>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE key = ?1"
        ))?
        .query_row(params![key], subject_row)
        .optional()?)
}

/// Every write of a subject goes through here: the in-memory copy of committed
/// subjects (see `subjects`) is told of it at the commit.
/// A subject's row as `?1`..`?9` (key, state, failures, last_event_at,
/// last_success_at, down_since, next_deadline, rule, fields).
macro_rules! subject_params {
    ($s:expr, $fields:expr) => {
        params![
            $s.key,
            $s.state.as_str(),
            $s.failures,
            $s.last_event_at,
            $s.last_success_at,
            $s.down_since,
            $s.next_deadline,
            $s.rule,
            $fields
        ]
    };
}

fn write_subject(conn: &Connection, s: &Subject) -> Result<()> {
    write_subject_over(conn, s, None)
}

/// Writes `s` over `prev`, the row as this transaction found it (see
/// `read_subject_tx`): every webhook of a watched backup writes its subject, and
/// mostly only its times and counts change. Then the row is updated in place, and
/// its fields are written only if the event brought new ones. With no row to update, it is inserted.
fn write_subject_over(conn: &Connection, s: &Subject, prev: Option<&Subject>) -> Result<()> {
    if let Some(p) = prev {
        // NULL leaves the stored fields as they are.
        let fields = if Arc::ptr_eq(&p.fields, &s.fields) || p.fields == s.fields {
            None
        } else {
            Some(serde_json::to_string(&*s.fields).map_err(|e| StoreError::Db(e.to_string()))?)
        };
        let updated = conn
            .prepare_cached(
                "UPDATE subjects SET state = ?2, failures = ?3, last_event_at = ?4,
                 last_success_at = ?5, down_since = ?6, next_deadline = ?7, rule = ?8,
                 fields = coalesce(?9, fields)
                 WHERE key = ?1",
            )?
            .execute(subject_params!(s, fields))?;
        if updated == 1 {
            subjects::stage(s);
            return Ok(());
        }
    }
    let fields = serde_json::to_string(&*s.fields).map_err(|e| StoreError::Db(e.to_string()))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO subjects (key, state, failures, last_event_at, last_success_at,
         down_since, next_deadline, rule, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(subject_params!(s, Some(fields)))?;
    subjects::stage(s);
    Ok(())
}

/// The ids of leases still running at `now`, as a JSON array for `json_each`.
fn leased_json(leases: &HashMap<i64, (i64, i64)>, now: i64) -> String {
    let ids: Vec<&i64> = leases
        .iter()
        .filter(|(_, (until, _))| *until > now)
        .map(|(id, _)| id)
        .collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// When `lease` ends, if it is still the delivery's claim and runs at `now`.
fn lease_until(leases: &HashMap<i64, (i64, i64)>, lease: &Lease, now: i64) -> Option<i64> {
    leases
        .get(&lease.id)
        .filter(|(until, token)| *token == lease.token && *until > now)
        .map(|(until, _)| *until)
}

/// `deliveries.reached` as stored: a JSON array, NULL when empty.
fn write_reached(reached: &[String]) -> Option<String> {
    (!reached.is_empty()).then(|| serde_json::to_string(reached).unwrap_or_default())
}

/// `deliveries.reached` as read. Unreadable (never written so) counts as none
/// reached: a second copy for some rather than none for any.
fn read_reached(stored: Option<&str>) -> Vec<String> {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_event(json: &str) -> Result<Event> {
    serde_json::from_str(json).map_err(|e| StoreError::Db(format!("stored event unreadable: {e}")))
}

fn deliveries_of(conn: &Connection, event_id: &str) -> Result<Vec<DeliveryView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_id, destination, template, state, last_error, next_attempt_at, created_at
         FROM deliveries WHERE event_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map(params![event_id], delivery_row)?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|mut d| {
            d.attempts = attempts_of(conn, d.id)?;
            Ok(d)
        })
        .collect()
}

fn delivery_row(r: &rusqlite::Row) -> rusqlite::Result<DeliveryView> {
    let state: String = r.get(4)?;
    let state = State::parse(&state).unwrap_or(State::Pending);
    let next: i64 = r.get(6)?;
    Ok(DeliveryView {
        id: r.get(0)?,
        event_id: r.get(1)?,
        destination: r.get(2)?,
        template: r.get(3)?,
        state,
        attempts: Vec::new(),
        last_error: r.get(5)?,
        next_attempt_at: (state == State::Pending).then(|| ms_to_rfc3339(next)),
        created_at: ms_to_rfc3339(r.get(7)?),
    })
}

fn attempts_of(conn: &Connection, delivery_id: i64) -> Result<Vec<AttemptView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, status, error, duration_ms FROM attempts WHERE delivery_id = ?1 ORDER BY rowid",
    )?;
    let rows = stmt
        .query_map(params![delivery_id], |r| {
            Ok(AttemptView {
                at: ms_to_rfc3339(r.get(0)?),
                status: r.get(1)?,
                error: r.get(2)?,
                duration_ms: r.get(3)?,
            })
        })?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn event_record(conn: &Connection, row: (String, bool, u32, String)) -> Result<EventRecord> {
    let (id, routed, duplicates, json) = row;
    Ok(EventRecord {
        deliveries: deliveries_of(conn, &id)?,
        event: parse_event(&json)?,
        id,
        routed,
        duplicates,
    })
}

/// Oldest first, the events that may be read for retention (never the newest:
/// rowids are then never reused).
const PURGE_OLDEST: &str =
    "SELECT id, received_at FROM events WHERE seq < (SELECT MAX(seq) FROM events) ORDER BY seq";

/// Whether retention may delete event `?1`: none of its deliveries pending (nor
/// the newest delivery), and not in a group still held or still being sent.
const PURGE_DELETABLE: &str = "
    SELECT NOT EXISTS (
        SELECT 1 FROM deliveries d WHERE d.event_id = ?1
          AND (d.state = 'pending' OR d.id = (SELECT MAX(id) FROM deliveries)))
    AND NOT EXISTS (
        SELECT 1 FROM group_events ge JOIN event_groups g ON g.id = ge.group_id
        WHERE ge.event_id = ?1 AND (g.state <> 'sent' OR EXISTS (
            SELECT 1 FROM deliveries d WHERE d.event_id = g.first_event
              AND d.state = 'pending')))";

/// Up to `batch` events retention may delete now, oldest first. Events are
/// stored in `seq` order as they arrive, so the reading stops at the first one
/// still within retention: with nothing due that is one row, where a query over
/// every row's `received_at` (which has no index) took ~150 ms of the writer's
/// time with 300,000 events, once a minute. (A clock set back may keep an event
/// past its time until the ones before it are due; never shorter.)
fn purge_candidates(c: &Connection, before: i64, batch: usize) -> Result<Vec<String>> {
    let mut deletable = c.prepare_cached(PURGE_DELETABLE)?;
    let mut oldest = c.prepare_cached(PURGE_OLDEST)?;
    let mut rows = oldest.query([])?;
    let mut ids = Vec::new();
    while let Some(r) = rows.next()? {
        if r.get::<_, i64>(1)? >= before {
            break;
        }
        let id: String = r.get(0)?;
        if deletable.query_row(params![id], |r| r.get::<_, bool>(0))? {
            ids.push(id);
            if ids.len() == batch {
                break;
            }
        }
    }
    Ok(ids)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, e: NewEvent) -> Result<Ingested> {
        let _storing = self.gauge.storing();
        let wake = !e.deliveries.is_empty();
        // Shared, so the last owner, and the one that frees its strings, is this
        // task rather than the writer thread (freeing memory another thread
        // allocated costs glibc's allocator a lock; the writer is the one serial stage).
        let e = Arc::new(e);
        let job = e.clone();
        let (stored, recovered) = self.write(move |c| ingest_tx_recovering(c, &job)).await?;
        if (wake || recovered) && matches!(stored, Ingested::Stored { .. }) {
            self.wake.notify_waiters();
        }
        Ok(stored)
    }

    async fn claim(
        &self,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let dest = destination.to_string();
        let leases = self.leases.clone();
        let first_token = self.next_token.fetch_add(limit as i64, Ordering::Relaxed);
        let rows = self
            .read(move |conn| {
                // Held through the query: what is read here is leased before any
                // other claim can read it.
                let mut leases = leases.lock().map_err(|_| StoreError::Closed)?;
                let now = now_ms();
                let mut stmt = conn.prepare_cached(
                    "SELECT d.id, d.event_id, d.template, d.channel, d.attempts, d.window_start, e.event,
                            d.group_id, d.reached
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.destination = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
                       AND d.id NOT IN (SELECT value FROM json_each(?4))
                     ORDER BY d.next_attempt_at, d.id LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(
                        params![dest, now, limit as i64, leased_json(&leases, now)],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, Option<String>>(3)?,
                                r.get::<_, u32>(4)?,
                                now - r.get::<_, i64>(5)?,
                                r.get::<_, String>(6)?,
                                r.get::<_, Option<i64>>(7)?,
                                r.get::<_, Option<String>>(8)?,
                            ))
                        },
                    )?
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let until = now + ms(lease);
                leases.retain(|_, (until, _)| *until > now);
                for (i, row) in rows.iter().enumerate() {
                    leases.insert(row.0, (until, first_token + i as i64));
                }
                Ok(rows)
            })
            .await?;
        let claimed_at = std::time::Instant::now();
        let mut claimed = Vec::with_capacity(rows.len());
        for (i, (id, event_id, template, channel, attempts, age_ms, json, group, reached)) in
            rows.into_iter().enumerate()
        {
            let token = first_token + i as i64;
            let (event, raw_text) = match parse_stored_event(json) {
                Ok(parsed) => parsed,
                Err(e) => {
                    // Nothing can send it, and it must not stop the deliveries
                    // behind it: it ends dead, with the reason.
                    let attempt = Attempt {
                        status: None,
                        error: Some(e.to_string()),
                        duration_ms: 0,
                        reached: read_reached(reached.as_deref()),
                    };
                    log::error!("delivery {id} (event {event_id}) to {destination}: dead: {e}");
                    self.complete(Lease { id, token }, attempt, Outcome::Dead)
                        .await?;
                    continue;
                }
            };
            claimed.push(Claimed {
                id,
                token,
                event_id,
                destination: destination.to_string(),
                template,
                channel,
                attempts,
                age: Duration::from_millis(age_ms.max(0) as u64),
                claimed_at,
                event,
                raw_text,
                group,
                reached: read_reached(reached.as_deref()),
            });
        }
        Ok(claimed)
    }

    async fn renew(&self, lease: Lease, duration: Duration) -> Result<()> {
        let mut leases = self.leases.lock().map_err(|_| StoreError::Closed)?;
        match leases.get_mut(&lease.id) {
            Some((until, token)) if *token == lease.token => {
                *until = now_ms() + ms(duration);
                Ok(())
            }
            _ => Err(StoreError::LeaseLost(lease.id)),
        }
    }

    async fn next_due(&self, destination: &str) -> Result<Option<Duration>> {
        let destination = destination.to_string();
        let leases = self.leases.clone();
        self.read(move |c| {
            let now = now_ms();
            let (leased, lease_ends) = {
                let leases = leases.lock().map_err(|_| StoreError::Closed)?;
                let ends = leases
                    .values()
                    .map(|(until, _)| *until)
                    .filter(|until| *until > now)
                    .min();
                (leased_json(&leases, now), ends)
            };
            let due = c
                .prepare_cached(
                    "SELECT MIN(next_attempt_at) FROM deliveries
                     WHERE destination = ?1 AND state = 'pending'
                       AND id NOT IN (SELECT value FROM json_each(?2))",
                )?
                .query_row(params![destination, leased], |r| r.get::<_, Option<i64>>(0))?;
            // A lease that runs out (its attempt could not be recorded) makes its
            // delivery due again.
            let at = match (due, lease_ends) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Ok(at.map(|at| Duration::from_millis((at - now).max(0) as u64)))
        })
        .await
    }

    async fn pending_destinations(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")?;
            let v = stmt
                .query_map([], |r| r.get(0))?
                .collect::<std::result::Result<Vec<String>, _>>()?;
            Ok(v)
        })
        .await
    }

    async fn complete(&self, lease: Lease, attempt: Attempt, outcome: Outcome) -> Result<bool> {
        let leases = self.leases.clone();
        let reached = write_reached(&attempt.reached);
        // The send is over; the delivery stays leased until this commits.
        let recorded = self
            .write_lazy(move |c| {
                {
                    let mut leases = leases.lock().map_err(|_| StoreError::Closed)?;
                    match leases.get_mut(&lease.id) {
                        // Held until the commit, however long it takes: no claim
                        // can take it in between (see below).
                        Some((until, token)) if *token == lease.token => *until = i64::MAX,
                        // A newer claim (or a manual retry) has it: stale.
                        _ => return Ok(false),
                    }
                }
                let now = now_ms();
                let (state, next) = match &outcome {
                    Outcome::Delivered => ("delivered", now),
                    Outcome::Retry { after } => ("pending", now + ms(*after)),
                    Outcome::Dead => ("dead", now),
                };
                c.prepare_cached(
                    "INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    lease.id,
                    now - attempt.duration_ms,
                    attempt.status,
                    attempt.error,
                    attempt.duration_ms
                ])?;
                // A retry has not ended; delivered or dead, it ends now.
                let ended = (state != "pending").then_some(now);
                c.prepare_cached(
                    "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                         last_error = COALESCE(?4, last_error), reached = ?5, ended_at = ?6
                     WHERE id = ?1",
                )?
                .execute(params![lease.id, state, next, attempt.error, reached, ended])?;
                Ok(true)
            })
            .await;
        if let Ok(mut leases) = self.leases.lock() {
            if leases
                .get(&lease.id)
                .is_some_and(|(_, t)| *t == lease.token)
            {
                if matches!(recorded, Ok(true)) {
                    // Recorded: the next claim reads the new state.
                    leases.remove(&lease.id);
                } else {
                    // Not recorded: claimable again now, to be sent again.
                    leases.insert(lease.id, (now_ms(), lease.token));
                }
            }
        }
        // The send is over: whatever ordered key it held is free.
        if let Ok(mut holds) = self.holds.lock() {
            if !holds.is_empty() {
                holds.retain(|_, h| *h != lease);
            }
        }
        recorded
    }

    async fn get_subject(&self, key: &str) -> Result<Option<Subject>> {
        if let Some(s) = self.subjects.get(key) {
            return Ok(Some(s));
        }
        let generation = self.subjects.generation();
        let s = self.point_read(|c| read_subject(c, key))?;
        if let Some(s) = &s {
            self.subjects.offer(generation, s);
        }
        Ok(s)
    }

    async fn list_subjects(&self, state: Option<SubjectState>) -> Result<Vec<Subject>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE ?1 IS NULL OR state = ?1"
            ))?;
            let mut rows = stmt
                .query_map(params![state.map(SubjectState::as_str)], subject_row)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            crate::watch::sort_worst_first(&mut rows);
            Ok(rows)
        })
        .await
    }

    async fn due_subjects(&self, limit: usize) -> Result<Vec<Subject>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUBJECT_COLUMNS} FROM subjects
                 WHERE next_deadline IS NOT NULL AND next_deadline <= ?1
                 ORDER BY next_deadline LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![now_ms(), limit as i64], subject_row)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn watch_subject(
        &self,
        key: &str,
        fields: &serde_json::Map<String, Value>,
        rule: Arc<Rule>,
    ) -> Result<()> {
        let (key, fields) = (key.to_string(), fields.clone());
        self.write(move |c| {
            if read_subject_tx(c, &key)?.is_some() {
                return Ok(());
            }
            let now = now_ms();
            write_subject(c, &Subject::pinned(&key, &fields, &rule, now))
        })
        .await
    }

    async fn set_rule(&self, key: &str, rule: Option<Arc<Rule>>) -> Result<()> {
        let key = key.to_string();
        self.write(move |c| {
            let Some(mut s) = read_subject_tx(c, &key)? else {
                return Ok(());
            };
            if s.rule == rule.as_ref().map(|r| r.fingerprint.clone()) {
                return Ok(());
            }
            s.rule = rule.as_ref().map(|r| r.fingerprint.clone());
            // A missing subject keeps its reminder (or none): it already fired.
            if s.state != SubjectState::Missing || rule.is_none() {
                let base = s.last_success_at.or(s.last_event_at).unwrap_or_else(now_ms);
                s.next_deadline = rule.as_ref().map(|r| r.deadline_after(base));
            }
            write_subject(c, &s)
        })
        .await
    }

    async fn begin_ordered(
        &self,
        lease: Lease,
        destination: &str,
        key: &str,
        action: &str,
    ) -> Result<Ordered> {
        let hold = (destination.to_string(), key.to_string());
        // Whether the key is free is decided here, in memory (leases and holds
        // live there): a send that has to wait costs no write, and a lost lease
        // never reaches the writer. A free key is taken before the writer checks
        // the rest, so two sends of it cannot both get past this point.
        {
            let now = now_ms();
            let leases = self.leases.lock().map_err(|_| StoreError::Closed)?;
            let mut holds = self.holds.lock().map_err(|_| StoreError::Closed)?;
            if lease_until(&leases, &lease, now).is_none() {
                return Err(StoreError::LeaseLost(lease.id));
            }
            // A send recorded, or one whose lease ran out, holds nothing.
            holds.retain(|_, h| lease_until(&leases, h, now).is_some());
            let other = holds
                .get(&hold)
                .filter(|h| h.id != lease.id)
                .and_then(|h| lease_until(&leases, h, now));
            if let Some(until) = other {
                let ms = until.saturating_sub(now).clamp(1, 1000);
                return Ok(Ordered::Wait(Duration::from_millis(ms as u64)));
            }
            holds.insert(hold.clone(), lease);
        }
        let leases = self.leases.clone();
        let (key, action) = (key.to_string(), action.to_string());
        let destination = destination.to_string();
        // On the writer thread: it sees every attempt recorded before it
        // (committed or in the same batch). Lazy, as an attempt's record: during
        // a burst of webhooks it commits with them instead of on its own.
        let decided = self
            .write_lazy(move |c| {
                // The lease may have run out since: that is an answer, not a
                // failed write (which would roll back the batch it is in and run
                // the batch again job by job).
                let mine = {
                    let leases = leases.lock().map_err(|_| StoreError::Closed)?;
                    lease_until(&leases, &lease, now_ms()).is_some()
                };
                if !mine {
                    return Ok(None);
                }
                let seq: i64 = c
                    .prepare_cached(
                        "SELECT COALESCE(
                             (SELECT MAX(e.seq) FROM group_events g JOIN events e ON e.id = g.event_id
                              WHERE g.group_id = d.group_id),
                             (SELECT e.seq FROM events e WHERE e.id = d.event_id))
                         FROM deliveries d WHERE d.id = ?1",
                    )?
                    .query_row(params![lease.id], |r| r.get(0))?;
                let later = c
                    .prepare_cached(
                        "SELECT event_id, order_action FROM deliveries
                         WHERE destination = ?1 AND order_key = ?2 AND state = 'delivered'
                           AND order_seq > ?3
                         ORDER BY order_seq DESC LIMIT 1",
                    )?
                    .query_row(params![destination, key, seq], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                    })
                    .optional()?;
                if let Some((event_id, action)) = later {
                    return Ok(Some(Ordered::Superseded {
                        event_id,
                        action: action.unwrap_or_default(),
                    }));
                }
                c.prepare_cached(
                    "UPDATE deliveries SET order_key = ?2, order_seq = ?3, order_action = ?4
                     WHERE id = ?1",
                )?
                .execute(params![lease.id, key, seq, action])?;
                Ok(Some(Ordered::Send))
            })
            .await;
        let decided = match decided {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(StoreError::LeaseLost(lease.id)),
            Err(e) => Err(e),
        };
        if !matches!(decided, Ok(Ordered::Send)) {
            // Nothing is sent: the key is free at once.
            if let Ok(mut holds) = self.holds.lock() {
                if holds.get(&hold) == Some(&lease) {
                    holds.remove(&hold);
                }
            }
        }
        decided
    }

    async fn bury(&self, destination: &str, error: &str) -> Result<usize> {
        let (destination, error) = (destination.to_string(), error.to_string());
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?2, ended_at = ?3
                 WHERE destination = ?1 AND state = 'pending'",
                params![destination, error, now_ms()],
            )?)
        })
        .await
    }

    async fn list_events(&self, q: EventQuery) -> Result<Vec<EventRecord>> {
        self.read(move |c| {
            let before_seq = ui::before_seq(c, q.before.as_deref())?;
            let mut stmt = c.prepare_cached(
                "SELECT id, routed, duplicates, event FROM events
                 WHERE (?1 IS NULL OR seq < ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR source = ?3)
                 ORDER BY seq DESC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![before_seq, q.status, q.source, q.limit as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| event_record(c, row)).collect()
        })
        .await
    }

    async fn get_event(&self, id: &str) -> Result<EventRecord> {
        let id = id.to_string();
        self.read(move |c| {
            let row = c.query_row(
                "SELECT id, routed, duplicates, event FROM events WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            event_record(c, row)
        })
        .await
    }

    async fn list_deliveries_before(
        &self,
        state: Option<State>,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Vec<DeliveryView>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, event_id, destination, template, state, last_error, next_attempt_at, created_at
                 FROM deliveries WHERE (?1 IS NULL OR state = ?1) AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(
                    params![state.map(State::as_str), limit as i64, before],
                    delivery_row,
                )?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|mut d| {
                    d.attempts = attempts_of(c, d.id)?;
                    Ok(d)
                })
                .collect()
        })
        .await
    }

    async fn retry_delivery(&self, id: i64) -> Result<()> {
        let leases = self.leases.clone();
        self.write(move |c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, window_start = ?2,
                     ended_at = NULL
                 WHERE id = ?1 AND state = 'dead'",
                params![id, now],
            )?;
            if n == 0 {
                // On the writer: nothing changed the row between the two.
                let state: String = c.query_row(
                    "SELECT state FROM deliveries WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )?;
                return Err(StoreError::NotDead {
                    id,
                    state: State::parse(&state).unwrap_or(State::Pending),
                });
            }
            // A send of it still in flight (one buried while sending) holds the
            // old token: its result is now stale.
            leases.lock().map_err(|_| StoreError::Closed)?.remove(&id);
            Ok(())
        })
        .await
    }

    async fn add_deliveries(&self, event_id: &str, d: Vec<NewDelivery>) -> Result<usize> {
        let event_id = event_id.to_string();
        self.write(move |c| {
            let now = now_ms();
            let found: Option<i64> = c
                .query_row(
                    "SELECT seq FROM events WHERE id = ?1",
                    params![event_id],
                    |r| r.get(0),
                )
                .optional()?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            for x in &d {
                insert_delivery(c, &event_id, x, now)?;
            }
            if !d.is_empty() {
                c.execute(
                    "UPDATE events SET routed = 1 WHERE id = ?1",
                    params![event_id],
                )?;
            }
            Ok(d.len())
        })
        .await
    }

    async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT destination, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY destination",
            )?;
            let v = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
    }

    async fn bury_unsent(
        &self,
        destination: &str,
        window: Duration,
        idle: Duration,
        error: &str,
    ) -> Result<usize> {
        let (destination, error) = (destination.to_string(), error.to_string());
        let leases = self.leases.clone();
        self.write(move |c| {
            let now = now_ms();
            let leased = {
                let leases = leases.lock().map_err(|_| StoreError::Closed)?;
                leased_json(&leases, now)
            };
            let due_before = now.saturating_sub(ms(idle));
            Ok(c.prepare_cached(
                "UPDATE deliveries SET state = 'dead', last_error = ?2, ended_at = ?6
                 WHERE destination = ?1 AND state = 'pending'
                   AND window_start <= ?3 AND next_attempt_at <= ?4
                   AND id NOT IN (SELECT value FROM json_each(?5))",
            )?
            .execute(params![
                destination,
                error,
                due_before.saturating_sub(ms(window)),
                due_before,
                leased,
                now
            ])?)
        })
        .await
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

    async fn ready(&self) -> Result<()> {
        // Through the writer like a webhook: the same file check, the same
        // statements (undone), the same commit.
        self.write(|c| {
            exec(c, "SAVEPOINT probe")?;
            let probe = NewEvent {
                source: "readyz".into(),
                status: crate::event::Status::Unknown,
                event_json: "{}".into(),
                dedup_key: String::new(),
                dedup_window: Duration::ZERO,
                routed: true,
                deliveries: vec![NewDelivery {
                    destination: "readyz".into(),
                    template: String::new(),
                    channel: None,
                }],
                watch: None,
                groups: Vec::new(),
                digest_run: None,
            };
            let stored = ingest_tx(c, &probe);
            exec(c, "ROLLBACK TO probe")?;
            exec(c, "RELEASE probe")?;
            stored?;
            c.prepare_cached(
                "INSERT INTO probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )?
            .execute(params![now_ms()])?;
            Ok(())
        })
        .await
    }

    async fn purge(&self, retention: Duration, batch: usize) -> Result<usize> {
        // Lazy: a batch of deletes rides along with webhooks' commits.
        self.write_lazy(move |c| {
            let before = now_ms() - ms(retention);
            let ids = purge_candidates(c, before, batch)?;
            for id in &ids {
                c.prepare_cached(
                    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?1)",
                )?
                .execute(params![id])?;
                c.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")?
                    .execute(params![id])?;
                c.prepare_cached("DELETE FROM events WHERE id = ?1")?
                    .execute(params![id])?;
                // A group goes with its first event (which held its deliveries).
                c.prepare_cached("DELETE FROM group_events WHERE event_id = ?1")?
                    .execute(params![id])?;
                c.prepare_cached(
                    "DELETE FROM group_events WHERE group_id IN (
                         SELECT id FROM event_groups WHERE first_event = ?1 AND state = 'sent')",
                )?
                .execute(params![id])?;
                c.prepare_cached("DELETE FROM event_groups WHERE first_event = ?1 AND state = 'sent'")?
                    .execute(params![id])?;
            }
            Ok(ids.len())
        })
        .await
    }

    async fn take_send(&self, destination: &str, limit: Option<RateLimit>) -> Result<Take> {
        Ok(match self.limits.take_send(destination, limit) {
            Ok(n) => Take::Now(SendSlot(n)),
            Err(wait) => Take::Wait(wait),
        })
    }

    async fn give_back_send(
        &self,
        destination: &str,
        _limit: Option<RateLimit>,
        slot: SendSlot,
    ) -> Result<()> {
        self.limits.give_back(destination, slot.0);
        Ok(())
    }

    async fn paused_for(&self, destination: &str) -> Result<Duration> {
        Ok(self.limits.paused_for(destination))
    }

    async fn pause(&self, destination: &str, duration: Duration) -> Result<()> {
        self.limits.pause(destination, duration);
        Ok(())
    }

    async fn flush_groups(&self, limit: usize) -> Result<usize> {
        self.sqlite_flush_groups(limit).await
    }

    async fn group_events(&self, id: i64) -> Result<Vec<Event>> {
        self.sqlite_group_events(id).await
    }

    async fn group_of(&self, event_id: &str) -> Result<Option<crate::group::GroupView>> {
        self.sqlite_group_of(event_id).await
    }

    async fn digest_counts(&self, since_ms: i64, until_ms: i64) -> Result<crate::digest::Counts> {
        self.sqlite_digest_counts(since_ms, until_ms).await
    }

    async fn last_digest(&self, key: &str) -> Result<Option<i64>> {
        let key = key.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT scheduled_at FROM digest_runs WHERE key = ?1")?
                    .query_row(params![key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn prune_digest_runs(&self, retention: Duration, configured: &[String]) -> Result<usize> {
        let configured =
            serde_json::to_string(configured).map_err(|e| StoreError::Db(e.to_string()))?;
        // Lazy, as retention's other deletes.
        self.write_lazy(move |c| {
            let before = now_ms() - ms(retention);
            Ok(c.prepare_cached(
                "DELETE FROM digest_runs WHERE scheduled_at < ?1
                   AND key NOT IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![before, configured])?)
        })
        .await
    }

    fn ingest_gauge(&self) -> Option<&IngestGauge> {
        Some(&self.gauge)
    }
}
