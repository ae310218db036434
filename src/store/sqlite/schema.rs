//! The SQLite schema and its versioned migrations.

use super::*;

/// The schema, one step per version (`schema_version` says which ran). Version 1
/// is the schema from before versioning, written so it also applies over it.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
-- Rowids without AUTOINCREMENT: each insert is spared an update of
-- sqlite_sequence. Retention never deletes the newest row of a table, so ids are
-- never reused. (Databases created before keep AUTOINCREMENT; it changes nothing
-- but that cost.)
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
"#,
    r#"
-- The readiness probe's row: /readyz commits a write here.
CREATE TABLE probe (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
);
"#,
    r#"
-- Backup watch (SPEC §9): one row per subject, updated in each event's
-- transaction. Times are unix ms; next_deadline is when a missed backup fires.
CREATE TABLE subjects (
    key             TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_event_at   INTEGER,
    last_success_at INTEGER,
    down_since      INTEGER,
    next_deadline   INTEGER,
    rule            TEXT,
    fields          TEXT NOT NULL
);
CREATE INDEX subjects_deadline ON subjects (next_deadline) WHERE next_deadline IS NOT NULL;
"#,
    r#"
-- Grouping (SPEC §10): held groups (one open group per key, taking events until
-- due_at or max), the events of each in order, and the group a delivery sends.
CREATE TABLE event_groups (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL,
    first_event TEXT NOT NULL,
    count       INTEGER NOT NULL,
    max         INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    deliveries  TEXT NOT NULL
);
CREATE UNIQUE INDEX event_groups_open ON event_groups (key) WHERE state = 'open';
CREATE INDEX event_groups_due ON event_groups (due_at) WHERE state <> 'sent';
CREATE INDEX event_groups_first ON event_groups (first_event);
CREATE TABLE group_events (
    group_id INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (group_id, seq)
);
CREATE INDEX group_events_event ON group_events (event_id);
ALTER TABLE deliveries ADD COLUMN group_id INTEGER;
"#,
    r#"
-- Only events of sources with a dedup window are looked up by their key, so only
-- they are indexed by it: the keys (provider ids) land on random pages of the
-- index, and every commit wrote one page of it per webhook.
ALTER TABLE events ADD COLUMN deduplicated INTEGER NOT NULL DEFAULT 1;
DROP INDEX IF EXISTS events_dedup;
CREATE INDEX events_dedup ON events (source, dedup_key, received_at) WHERE deduplicated = 1;
"#,
    r#"
-- Ordered sends (a PagerDuty dedup_key, see Store::begin_ordered): written just
-- before a delivery is sent, the key its message belongs to, its place (its
-- event's seq; a group's newest event's) and what it did (trigger, resolve). A
-- delivered one supersedes the deliveries of older events of its key.
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
ALTER TABLE deliveries ADD COLUMN order_seq INTEGER;
ALTER TABLE deliveries ADD COLUMN order_action TEXT;
CREATE INDEX deliveries_order ON deliveries (destination, order_key, order_seq)
    WHERE order_key IS NOT NULL;
"#,
    r#"
-- Each digest schedule's last run (its scheduled time, unix ms), written with the
-- digest: where the next one counts from, whatever retention has deleted.
CREATE TABLE digest_runs (
    key          TEXT PRIMARY KEY,
    scheduled_at INTEGER NOT NULL
);
"#,
    r#"
-- The recipients a delivery's earlier attempts reached (an email some addresses
-- took while others were refused for now), as a JSON array, written with each
-- attempt's record: the retry skips them, after a restart too. NULL: none.
ALTER TABLE deliveries ADD COLUMN reached TEXT;
"#,
    r#"
-- When a delivery ended (delivered or dead, unix ms; NULL while pending): the
-- digest counts the alerts delivered and given up since the previous digest by
-- it, wherever they were queued. Rows that ended before: a recorded attempt set
-- next_attempt_at to its end; a buried row kept its last due time, the nearest
-- there is (never later than now). Indexed for the digest, which reads only the
-- rows ended since.
ALTER TABLE deliveries ADD COLUMN ended_at INTEGER;
UPDATE deliveries
    SET ended_at = MIN(next_attempt_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
    WHERE state IN ('delivered', 'dead');
CREATE INDEX deliveries_ended ON deliveries (ended_at) WHERE ended_at IS NOT NULL;
"#,
];

pub(super) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Brings the schema to the last version, each step in its own transaction.
/// Nothing is written when it is current (a read-only file still opens).
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let latest = MIGRATIONS.len() as i64;
    if schema_version(conn)? >= latest {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let run = || -> Result<()> {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
        // Read again under the write lock: another process may have migrated.
        let current = schema_version(conn)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i as i64 + 1],
            )?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
