//! The embedded SQLite backend.
//!
//! Every write goes through one writer thread that drains its queue into a single
//! transaction: a burst of webhooks costs one commit (one fsync, `synchronous=FULL`)
//! for many requests, and SQLite never sees two writers. Each job runs inside its
//! own savepoint, so one failing job does not undo the others, and learns its
//! result only after the commit. Reads use a separate connection (WAL mode lets
//! them run beside the writer).

use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::*;

/// Jobs the writer takes into one transaction at most.
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
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
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL REFERENCES events (id),
    destination     TEXT NOT NULL,
    template        TEXT NOT NULL,
    channel         TEXT,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    window_start    INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, id);
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
    writer: Mutex<mpsc::Sender<Job>>,
    reader: std::sync::Arc<Mutex<Connection>>,
}

fn connect(path: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
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
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let writer_conn = connect(path)?;
        writer_conn.execute_batch(SCHEMA)?;
        // Leases belong to the process that took them; SQLite has one process, so
        // whatever was in flight when it stopped is due again now.
        writer_conn.execute(
            "UPDATE deliveries SET lease_until = 0 WHERE state = 'pending' AND lease_until > 0",
            [],
        )?;
        let reader_conn = connect(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hookrelay-sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(SqliteStore {
            writer: Mutex::new(tx),
            reader: std::sync::Arc::new(Mutex::new(reader_conn)),
        })
    }

    /// Runs `f` on the writer thread inside the next transaction; resolves after
    /// the commit.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = in_savepoint(conn, f);
            Box::new(move |committed| {
                let _ = tx.send(if committed {
                    r
                } else {
                    Err(StoreError::Commit)
                });
            })
        });
        self.writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)?;
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

/// Runs `f` in its own savepoint. The statements are cached: this runs once per
/// write on the ingest path.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        let mut done = Vec::with_capacity(batch.len());
        if let Err(e) = began {
            log::error!("storage: cannot begin a transaction: {e}");
            // Dropping the jobs drops their senders: each caller sees Closed.
            drop(batch);
            continue;
        }
        for job in batch {
            done.push(job(&conn));
        }
        let committed = match conn.execute_batch("COMMIT") {
            Ok(()) => true,
            Err(e) => {
                log::error!("storage: commit failed: {e}");
                let _ = conn.execute_batch("ROLLBACK");
                false
            }
        };
        for d in done {
            d(committed);
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

fn ingest_tx(conn: &Connection, e: NewEvent) -> Result<Ingested> {
    let now = now_ms();
    if !e.dedup_window.is_zero() {
        let since = now - e.dedup_window.as_millis() as i64;
        let dup: Option<String> = conn
            .prepare_cached(
                "SELECT id FROM events WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?3
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![e.event.source, e.dedup_key, since], |r| r.get(0))
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
        e.event.source,
        now,
        e.dedup_key,
        e.event.status.as_str(),
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
        self.write(move |c| ingest_tx(c, e)).await
    }

    async fn claim(
        &self,
        destination: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let dest = destination.to_string();
        let rows = self
            .write(move |conn| {
                let now = now_ms();
                let mut stmt = conn.prepare_cached(
                    "SELECT d.id, d.event_id, d.template, d.channel, d.attempts, d.window_start, e.event
                     FROM deliveries d JOIN events e ON e.id = d.event_id
                     WHERE d.destination = ?1 AND d.state = 'pending'
                       AND d.next_attempt_at <= ?2 AND d.lease_until <= ?2
                     ORDER BY d.next_attempt_at, d.id LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![dest, now, limit as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, u32>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, String>(6)?,
                        ))
                    })?
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let until = now + lease.as_millis() as i64;
                let mut lease_stmt =
                    conn.prepare_cached("UPDATE deliveries SET lease_until = ?2 WHERE id = ?1")?;
                for row in &rows {
                    lease_stmt.execute(params![row.0, until])?;
                }
                Ok(rows)
            })
            .await?;
        // Parsed here, not on the writer thread, which every ingest waits for.
        rows.into_iter()
            .map(
                |(id, event_id, template, channel, attempts, window_start, json)| {
                    Ok(Claimed {
                        id,
                        event_id,
                        destination: destination.to_string(),
                        template,
                        channel,
                        attempts,
                        window_start_ms: window_start,
                        event: parse_event(&json)?,
                    })
                },
            )
            .collect()
    }

    async fn next_due(&self, destination: &str) -> Result<Option<i64>> {
        let destination = destination.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT MIN(MAX(next_attempt_at, lease_until)) FROM deliveries
                 WHERE destination = ?1 AND state = 'pending'",
            )?
            .query_row(params![destination], |r| r.get::<_, Option<i64>>(0))?)
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
        self.write(move |c| {
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
            let (state, next) = match outcome {
                Outcome::Delivered => ("delivered", attempt.at_ms),
                Outcome::RetryAt { at_ms } => ("pending", at_ms),
                Outcome::Dead => ("dead", attempt.at_ms),
            };
            c.prepare_cached(
                "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                     lease_until = 0, last_error = COALESCE(?4, last_error)
                 WHERE id = ?1",
            )?
            .execute(params![delivery_id, state, next, attempt.error])?;
            Ok(())
        })
        .await
    }

    async fn bury(&self, destination: &str, error: &str) -> Result<usize> {
        let (destination, error) = (destination.to_string(), error.to_string());
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?2, lease_until = 0
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
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, window_start = ?2, lease_until = 0
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
