//! The embedded SQLite backend.
//!
//! Every write goes through one writer thread that drains its queue into a single
//! transaction: a burst of webhooks costs one commit (one fsync, `synchronous=FULL`)
//! for many requests, and SQLite never sees two writers. A job learns its result
//! only after the commit, and one failing job never undoes the others nor leaves
//! half its rows (see [`run_batch`]). Reads use a separate connection (WAL mode
//! lets them run beside the writer).
//!
//! Claims are reads: a delivery being sent is leased in memory, not in a row.
//! SQLite has one process, and a restarted process has no sends in flight, so a
//! lease in the database would only cost a write per send (on the thread every
//! ingest waits for) to say what the process already knows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::*;

/// Jobs the writer takes into one transaction at most.
const MAX_BATCH: usize = 512;
/// How long a lazy write may wait for an urgent one to commit with (see `gather`).
const LAZY_FOR: Duration = Duration::from_millis(2);

/// One write. It may run twice: see [`run_batch`].
trait Job: Send {
    /// Runs the statements, keeps the result; false if it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Hands the result over once the transaction is committed (or not).
    fn finish(self: Box<Self>, committed: bool);
    /// Nobody is held up until it commits: it may wait for other writes.
    fn lazy(&self) -> bool;
}

struct WriteJob<T, F> {
    f: F,
    result: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
    lazy: bool,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let r = (self.f)(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, committed: bool) {
        let WriteJob { f, result, tx, .. } = *self;
        // Dropped before the answer goes out: what the job shares with its caller
        // (see `ingest`) is then freed by the caller, on the thread that made it.
        drop(f);
        let r = match result {
            Some(Err(e)) => Err(e),
            Some(Ok(v)) if committed => Ok(v),
            _ => Err(StoreError::Commit),
        };
        let _ = tx.send(r);
    }

    fn lazy(&self) -> bool {
        self.lazy
    }
}

const SCHEMA: &str = r#"
-- Rowids without AUTOINCREMENT: rows are never deleted, so they are never reused,
-- and each insert is spared an update of sqlite_sequence. (Databases created
-- before keep AUTOINCREMENT; it changes nothing but that cost.)
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    source      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    dedup_key   TEXT NOT NULL,
    status      TEXT NOT NULL,
    routed      INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    event       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_dedup ON events (source, dedup_key, received_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id),
    destination     TEXT NOT NULL,
    template        TEXT NOT NULL,
    channel         TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    window_start    INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- Unused: leases are held in memory. Kept so databases that have it stay valid.
    lease_until     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_at)
    WHERE state = 'pending';
-- Pending-only lookups use deliveries_due; an index on state cost every write and
-- served nothing the partial index does not.
DROP INDEX IF EXISTS deliveries_state;
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    at          INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
"#;

pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    reader: Arc<Mutex<Connection>>,
    /// Deliveries being sent: id -> lease expiry (ms). An entry is removed when
    /// the attempt is recorded; if recording fails, the lease runs out and the
    /// delivery is claimed again.
    leases: Arc<Mutex<HashMap<i64, i64>>>,
}

/// An I/O error as a reason a person can act on.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (the user running hookrelay may not write there)".into()
        }
        _ => e.to_string(),
    }
}

fn connect(path: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    // Plans that do not depend on bound values: otherwise a claim whose LIMIT
    // differs from the last one is parsed and planned again on every run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating the folder and file if needed) and migrates the database.
    pub fn open(path: &str) -> Result<SqliteStore> {
        if path.is_empty() || path == ":memory:" {
            // Two connections (writer, reader) must see one database: a file.
            return Err(StoreError::Url("sqlite:// needs a file path".into()));
        }
        // Errors name the file by its absolute path and say plainly when the cause
        // is permissions: the usual mistake (a volume owned by another user).
        let shown = std::path::absolute(path).unwrap_or_else(|_| Path::new(path).to_path_buf());
        if let Some(dir) = shown.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Db(format!(
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
                    StoreError::Db(m) => m,
                    other => other.to_string(),
                },
            };
            StoreError::Db(format!(
                "cannot open the SQLite database {}: {why}",
                shown.display()
            ))
        };
        let writer_conn = connect(path).map_err(cannot_open)?;
        writer_conn
            .execute_batch(SCHEMA)
            .map_err(|e| cannot_open(e.into()))?;
        let reader_conn = connect(path).map_err(cannot_open)?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("hookrelay-sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader_conn)),
            leases: Arc::default(),
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

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Runs every job of the batch in one transaction.
///
/// Jobs almost never fail, so the first pass runs them back to back. If one does
/// fail, its partial rows must not be committed with the others: the transaction
/// is rolled back and the batch runs again with each job in its own savepoint,
/// where a failing job is undone alone. (A savepoint per job on the first pass
/// would cost SQLite a copy of every page the job touches.)
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    exec(conn, "BEGIN IMMEDIATE")?;
    if batch.iter_mut().all(|job| job.run(conn)) {
        return exec(conn, "COMMIT").map(drop);
    }
    if !conn.is_autocommit() {
        exec(conn, "ROLLBACK")?;
    }
    exec(conn, "BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT job")?;
        if !job.run(conn) {
            exec(conn, "ROLLBACK TO job")?;
        }
        exec(conn, "RELEASE job")?;
    }
    exec(conn, "COMMIT").map(drop)
}

/// Takes what is queued, up to [`MAX_BATCH`].
///
/// Attempt records are lazy. While webhooks are arriving (a commit with an urgent
/// write ended within the last [`LAZY_FOR`]), a batch of lazy writes waits for the next webhook,
/// at most [`LAZY_FOR`], and commits with it: during a burst, records ride along
/// with webhooks' commits instead of paying an fsync of their own. With no webhook
/// arriving (a backlog draining), they commit at once, as any write.
fn gather(
    rx: &mpsc::Receiver<Box<dyn Job>>,
    first: Box<dyn Job>,
    last_urgent: Option<std::time::Instant>,
    lazy_for: Duration,
) -> Vec<Box<dyn Job>> {
    let now = std::time::Instant::now();
    let mut batch = vec![first];
    let recent = last_urgent.is_some_and(|t| now.duration_since(t) < lazy_for);
    let mut lazy = batch[0].lazy() && recent;
    let deadline = now + lazy_for;
    while batch.len() < MAX_BATCH {
        let next = if lazy {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            rx.recv_timeout(left).ok()
        } else {
            rx.try_recv().ok()
        };
        let Some(job) = next else { break };
        lazy &= job.lazy();
        batch.push(job);
    }
    batch
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut last_urgent = None;
    while let Ok(first) = rx.recv() {
        let mut batch = gather(&rx, first, last_urgent, LAZY_FOR);
        let urgent = batch.iter().any(|j| !j.lazy());
        let committed = match run_batch(&conn, &mut batch) {
            Ok(()) => true,
            Err(e) => {
                log::error!("storage: cannot commit {} writes: {e}", batch.len());
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                false
            }
        };
        if urgent {
            // After the commit: a slow fsync must not make the next records
            // think the webhooks have stopped.
            last_urgent = Some(std::time::Instant::now());
        }
        for job in batch {
            job.finish(committed);
        }
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
    let now = now_ms();
    if !e.dedup_window.is_zero() {
        let since = now - e.dedup_window.as_millis() as i64;
        let dup: Option<String> = conn
            .prepare_cached(
                "SELECT id FROM events WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?3
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![e.source, e.dedup_key, since], |r| r.get(0))
            .optional()?;
        if let Some(id) = dup {
            conn.prepare_cached("UPDATE events SET duplicates = duplicates + 1 WHERE id = ?1")?
                .execute(params![id])?;
            return Ok(Ingested::Duplicate { event_id: id });
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    conn.prepare_cached(
        "INSERT INTO events (id, source, received_at, dedup_key, status, routed, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        e.source,
        now,
        e.dedup_key,
        e.status.as_str(),
        e.routed,
        e.event_json
    ])?;
    for d in &e.deliveries {
        insert_delivery(conn, &id, d, now)?;
    }
    Ok(Ingested::Stored {
        event_id: id,
        deliveries: e.deliveries.len(),
    })
}

/// The leased delivery ids as a JSON array, for `json_each`.
fn leased_json(leases: &HashMap<i64, i64>) -> String {
    let ids: Vec<&i64> = leases.keys().collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
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

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, e: NewEvent) -> Result<Ingested> {
        // Shared, so the last owner, and the one that frees its strings, is this
        // task rather than the writer thread (freeing memory another thread
        // allocated costs glibc's allocator a lock; the writer is the one serial stage).
        let e = Arc::new(e);
        let job = e.clone();
        self.write(move |c| ingest_tx(c, &job)).await
    }

    async fn claim(
        &self,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let dest = destination.to_string();
        let leases = self.leases.clone();
        let rows = self
            .read(move |conn| {
                // Held through the query: what is read here is leased before any
                // other claim can read it.
                let mut leases = leases.lock().map_err(|_| StoreError::Closed)?;
                let now = now_ms();
                leases.retain(|_, until| *until > now);
                let mut stmt = conn.prepare_cached(
                    "SELECT d.id, d.event_id, d.template, d.channel, d.attempts, d.window_start, e.event
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.destination = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2
                       AND d.id NOT IN (SELECT value FROM json_each(?4))
                     ORDER BY d.next_attempt_at, d.id LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(
                        params![dest, now, limit as i64, leased_json(&leases)],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, Option<String>>(3)?,
                                r.get::<_, u32>(4)?,
                                r.get::<_, i64>(5)?,
                                r.get::<_, String>(6)?,
                            ))
                        },
                    )?
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let until = now + lease.as_millis() as i64;
                leases.extend(rows.iter().map(|row| (row.0, until)));
                Ok(rows)
            })
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (id, event_id, template, channel, attempts, window_start, json) in rows {
            let event = match parse_event(&json) {
                Ok(event) => event,
                Err(e) => {
                    // Nothing can send it, and it must not stop the deliveries
                    // behind it: it ends dead, with the reason.
                    let attempt = Attempt {
                        at_ms: now_ms(),
                        status: None,
                        error: Some(e.to_string()),
                        duration_ms: 0,
                    };
                    log::error!("delivery {id} (event {event_id}) to {destination}: dead: {e}");
                    self.complete(id, attempt, Outcome::Dead).await?;
                    continue;
                }
            };
            claimed.push(Claimed {
                id,
                event_id,
                destination: destination.to_string(),
                template,
                channel,
                attempts,
                window_start_ms: window_start,
                event,
            });
        }
        Ok(claimed)
    }

    fn renew_lease(&self, delivery_id: i64, lease: Duration) {
        if let Ok(mut leases) = self.leases.lock() {
            leases.insert(delivery_id, now_ms() + lease.as_millis() as i64);
        }
    }

    async fn next_due(&self, destination: &str) -> Result<Option<i64>> {
        let destination = destination.to_string();
        let leases = self.leases.clone();
        self.read(move |c| {
            let (leased, lease_ends) = {
                let leases = leases.lock().map_err(|_| StoreError::Closed)?;
                (leased_json(&leases), leases.values().min().copied())
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
            Ok(match (due, lease_ends) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
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

    async fn complete(&self, delivery_id: i64, attempt: Attempt, outcome: Outcome) -> Result<()> {
        let (state, next) = match outcome {
            Outcome::Delivered => ("delivered", attempt.at_ms),
            Outcome::RetryAt { at_ms } => ("pending", at_ms),
            Outcome::Dead => ("dead", attempt.at_ms),
        };
        // The send is over; the delivery stays leased until this commits.
        self.write_lazy(move |c| {
            c.prepare_cached(
                "INSERT INTO attempts (delivery_id, at, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                delivery_id,
                attempt.at_ms,
                attempt.status,
                attempt.error,
                attempt.duration_ms
            ])?;
            c.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                     last_error = COALESCE(?4, last_error)
                 WHERE id = ?1",
            )?
            .execute(params![delivery_id, state, next, attempt.error])?;
            Ok(())
        })
        .await?;
        // Recorded: the next claim reads the new state. (Not on failure: the
        // lease runs out and the delivery is sent again.)
        if let Ok(mut leases) = self.leases.lock() {
            leases.remove(&delivery_id);
        }
        Ok(())
    }

    async fn bury(&self, destination: &str, error: &str) -> Result<usize> {
        let (destination, error) = (destination.to_string(), error.to_string());
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?2
                 WHERE destination = ?1 AND state = 'pending'",
                params![destination, error],
            )?)
        })
        .await
    }

    async fn list_events(&self, q: EventQuery) -> Result<Vec<EventRecord>> {
        self.read(move |c| {
            let before_seq: Option<i64> = match &q.before {
                Some(id) => c
                    .query_row("SELECT seq FROM events WHERE id = ?1", params![id], |r| r.get(0))
                    .optional()?,
                None => None,
            };
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

    async fn list_deliveries(
        &self,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<DeliveryView>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, event_id, destination, template, state, last_error, next_attempt_at, created_at
                 FROM deliveries WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![state.map(State::as_str), limit as i64], delivery_row)?
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
        self.write(move |c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, window_start = ?2
                 WHERE id = ?1",
                params![id, now],
            )?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
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

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM events WHERE seq < 0", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn open_errors_name_the_absolute_path_and_permission_problems() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-file"), "x").unwrap();
        let path = dir.path().join("a-file/sub/hookrelay.db");
        let err = SqliteStore::open(path.to_str().unwrap())
            .err()
            .expect("a file where a folder should be")
            .to_string();
        assert!(
            err.contains(&dir.path().join("a-file/sub").display().to_string()),
            "{err}"
        );
        // A folder where the database file should be.
        std::fs::create_dir(dir.path().join("db-dir")).unwrap();
        let err = SqliteStore::open(dir.path().join("db-dir").to_str().unwrap())
            .err()
            .expect("a folder is not a database")
            .to_string();
        assert!(
            err.starts_with("storage error: cannot open the SQLite database /"),
            "{err}"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(io_reason(&denied).starts_with("permission denied"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn new_event(key: &str) -> NewEvent {
        let mut event = Event {
            source: "s".into(),
            provider: "generic".into(),
            received_at: "2026-11-23T00:00:00Z".into(),
            ..Event::default()
        };
        let d = NewDelivery {
            destination: "d".into(),
            template: "default".into(),
            channel: None,
        };
        NewEvent::new(&mut event, None, key.into(), Duration::ZERO, true, vec![d]).unwrap()
    }

    fn job<T: Send + 'static>(
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        let job = WriteJob {
            f,
            result: None,
            tx,
            lazy: false,
        };
        (Box::new(job), rx)
    }

    fn noop(lazy: bool) -> Box<dyn Job> {
        let (tx, _) = oneshot::channel::<Result<()>>();
        Box::new(WriteJob {
            f: |_: &Connection| Ok(()),
            result: None,
            tx,
            lazy,
        })
    }

    #[test]
    fn records_wait_for_a_webhook_to_commit_with_only_while_webhooks_arrive() {
        let long = Duration::from_secs(30);
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();

        // Webhooks arriving: a lazy write waits for the next urgent one.
        let last_urgent = Some(std::time::Instant::now());
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(noop(false)).unwrap())
        };
        let batch = gather(&rx, noop(true), last_urgent, long);
        sender.join().unwrap();
        assert_eq!(
            batch.iter().map(|j| j.lazy()).collect::<Vec<_>>(),
            [true, false]
        );

        // No webhook lately (a backlog draining): it goes at once, alone.
        let started = std::time::Instant::now();
        let batch = gather(&rx, noop(true), None, long);
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() < long / 2, "did not wait for company");
        let stale = Some(std::time::Instant::now());
        let batch = gather(&rx, noop(true), stale, Duration::ZERO);
        assert_eq!(batch.len(), 1);

        // Urgent writes never wait, and what is queued goes with them.
        tx.send(noop(true)).unwrap();
        let started = std::time::Instant::now();
        let batch = gather(&rx, noop(false), None, long);
        assert_eq!(batch.len(), 2);
        assert!(started.elapsed() < long / 2, "did not wait for company");
    }

    /// A store in a fresh folder (kept alive by the returned guard).
    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap()).unwrap();
        (dir, store)
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_failing_job_in_a_batch_leaves_no_rows_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let (a, mut ra) = job(|c| ingest_tx(c, &new_event("a")));
        // Writes an event row, then fails: the row must not survive.
        let (b, mut rb) = job(|c| {
            ingest_tx(c, &new_event("b"))?;
            Err::<(), _>(StoreError::NotFound)
        });
        let (c, mut rc) = job(|c| ingest_tx(c, &new_event("c")));
        let mut batch = vec![a, b, c];
        run_batch(&conn, &mut batch).unwrap();
        for j in batch {
            j.finish(true);
        }
        assert!(matches!(
            ra.try_recv().unwrap(),
            Ok(Ingested::Stored { .. })
        ));
        assert!(matches!(rb.try_recv().unwrap(), Err(StoreError::NotFound)));
        assert!(matches!(
            rc.try_recv().unwrap(),
            Ok(Ingested::Stored { .. })
        ));
        let keys: Vec<String> = conn
            .prepare("SELECT dedup_key FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM deliveries"), 2);
    }

    #[test]
    fn an_uncommitted_batch_reports_a_commit_error() {
        let (mut a, mut ra) = job(|_| Ok(1));
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        assert!(a.run(&conn));
        a.finish(false);
        assert!(matches!(ra.try_recv().unwrap(), Err(StoreError::Commit)));
    }

    #[tokio::test]
    async fn a_claimed_delivery_is_leased_until_its_attempt_is_recorded() {
        let (_dir, store) = temp_store();
        store.ingest(new_event("a")).await.unwrap();
        let lease = Duration::from_secs(60);

        let first = store.claim("d", 10, lease).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(store.claim("d", 10, lease).await.unwrap().is_empty());
        // Due again only when the lease ends.
        let due = store.next_due("d").await.unwrap().unwrap();
        assert!(due >= now_ms() + 50_000, "{due}");

        let attempt = Attempt {
            at_ms: now_ms(),
            status: Some(503),
            error: Some("busy".into()),
            duration_ms: 1,
        };
        let at_ms = now_ms() - 1;
        store
            .complete(first[0].id, attempt, Outcome::RetryAt { at_ms })
            .await
            .unwrap();
        assert_eq!(store.next_due("d").await.unwrap(), Some(at_ms));
        let again = store.claim("d", 10, lease).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempts), (first[0].id, 1));
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_makes_the_delivery_claimable_again() {
        let (_dir, store) = temp_store();
        store.ingest(new_event("a")).await.unwrap();
        let first = store
            .claim("d", 10, Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        // No attempt is recorded (as when recording fails): poll until the lease ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let again = loop {
            let c = store.claim("d", 10, Duration::from_secs(60)).await.unwrap();
            if !c.is_empty() || std::time::Instant::now() > deadline {
                break c;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, first[0].id);
    }

    #[tokio::test]
    async fn an_unreadable_stored_event_ends_dead_without_stopping_the_others() {
        let (_dir, store) = temp_store();
        store.ingest(new_event("a")).await.unwrap();
        store.ingest(new_event("b")).await.unwrap();
        store
            .write(|c| Ok(c.execute("UPDATE events SET event = '{' WHERE seq = 1", [])?))
            .await
            .unwrap();
        let claimed = store.claim("d", 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(claimed.len(), 1, "the readable one is claimed");
        let dead = store.list_deliveries(Some(State::Dead), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("stored event unreadable"),
            "{:?}",
            dead[0].last_error
        );
        assert_ne!(dead[0].id, claimed[0].id);
    }

    #[tokio::test]
    async fn a_renewed_lease_runs_from_the_renewal() {
        let (_dir, store) = temp_store();
        store.ingest(new_event("a")).await.unwrap();
        // Claimed with a lease already over, as when a claimed row waited too long.
        let first = store.claim("d", 10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        store.renew_lease(first[0].id, Duration::from_secs(60));
        assert!(store
            .claim("d", 10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty());
    }
}
