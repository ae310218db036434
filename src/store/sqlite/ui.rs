//! The web page's read queries on SQLite (see the `ui` part of [`Store`]).

use rusqlite::{params, Connection, OptionalExtension};

use super::{event_record, SqliteStore};
use crate::store::{subject_key, EventQuery, EventRecord, Result, State, SubjectOutcome};

impl SqliteStore {
    pub(super) async fn ui_events_with_delivery(
        &self,
        q: EventQuery,
        state: State,
    ) -> Result<Vec<EventRecord>> {
        self.read(move |c| {
            let before_seq = before_seq(c, q.before.as_deref())?;
            let mut stmt = c.prepare_cached(
                "SELECT e.id, e.routed, e.duplicates, e.event FROM events e
                 WHERE (?1 IS NULL OR e.seq < ?1) AND (?2 IS NULL OR e.status = ?2)
                   AND (?3 IS NULL OR e.source = ?3)
                   AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = ?5)
                 ORDER BY e.seq DESC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        before_seq,
                        q.status,
                        q.source,
                        q.limit as i64,
                        state.as_str()
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| event_record(c, row)).collect()
        })
        .await
    }

    pub(super) async fn ui_outcomes_since(&self, since_ms: i64) -> Result<Vec<SubjectOutcome>> {
        self.read(move |c| {
            let first = first_seq_at_or_after(c, since_ms)?;
            let mut stmt = c.prepare_cached(
                "SELECT received_at, status, source, json_extract(event, '$.subject'),
                        json_extract(event, '$.stack'), json_extract(event, '$.server'),
                        json_extract(event, '$.backup'), id
                 FROM events WHERE seq >= ?1 AND received_at >= ?2 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![first, since_ms], |r| {
                    let source: String = r.get(2)?;
                    let stack = text(r.get_ref(4)?);
                    let server = text(r.get_ref(5)?);
                    let backup = text(r.get_ref(6)?);
                    Ok(SubjectOutcome {
                        subject: subject_key(
                            text(r.get_ref(3)?),
                            &source,
                            stack.as_deref(),
                            server.as_deref(),
                            backup.as_deref(),
                        ),
                        event_id: r.get(7)?,
                        source,
                        stack,
                        server,
                        backup,
                        status: r.get(1)?,
                        received_ms: r.get(0)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// Where a page that starts after event `before` starts: below its `seq`. An
/// event retention deleted is placed by its id (a UUIDv7 grows with time): below
/// the oldest event stored after it, or, if none was, at the top. Never the
/// first page by mistake: a paging client would loop.
pub(super) fn before_seq(c: &Connection, before: Option<&str>) -> Result<Option<i64>> {
    let Some(id) = before else {
        return Ok(None);
    };
    let seq: Option<i64> = c
        .query_row("SELECT seq FROM events WHERE id = ?1", params![id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(seq) = seq {
        return Ok(Some(seq));
    }
    if !crate::store::id_has_time(id) {
        return Err(crate::store::StoreError::NotFound);
    }
    let after: Option<i64> = c
        .query_row(
            "SELECT seq FROM events WHERE id > ?1 ORDER BY id LIMIT 1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    match after {
        Some(seq) => Ok(Some(seq)),
        None => Ok(Some(c.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events",
            [],
            |r| r.get(0),
        )?)),
    }
}

/// A JSON value read with `json_extract` as text (numbers too: a server may be
/// named by a number).
fn text(v: rusqlite::types::ValueRef) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The first `seq` whose event was received at or after `ms`. Events are stored
/// in the order they arrive, so `received_at` grows with `seq` (up to the moment
/// between a webhook's arrival and its commit): a binary search over the primary
/// key finds the start of a window without reading every older event, and with
/// no index on `received_at` for ingest to keep up.
fn first_seq_at_or_after(c: &Connection, ms: i64) -> Result<i64> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        c.query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(mut lo), Some(hi)) = (lo, hi) else {
        return Ok(0);
    };
    let mut hi = hi + 1;
    let mut stmt =
        c.prepare_cached("SELECT received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<i64> = stmt.query_row(params![mid], |r| r.get(0)).optional()?;
        match at {
            Some(at) if at < ms => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
