//! Groups (SPEC §10) on SQLite: joining a group in the event's transaction,
//! flushing due groups, reading a group back (see the group part of [`Store`]).
//! One writer thread: what a transaction reads is still so when it writes.

use rusqlite::{params, Connection, OptionalExtension};

use super::{ms, parse_event, SqliteStore};
use crate::digest::Counts;
use crate::event::Event;
use crate::group::{deliveries_json, parse_deliveries, GroupView};
use crate::store::{ms_to_rfc3339, now_ms, GroupJoin, Result, StoreError};

/// Adds event `event_id` to the open group of `g.key`, or opens one due `wait`
/// from `now`; a group reaching its `max` is due at once.
pub(super) fn join(conn: &Connection, event_id: &str, g: &GroupJoin, now: i64) -> Result<()> {
    let joined: Option<(i64, i64)> = conn
        .prepare_cached(
            "UPDATE event_groups
             SET count = count + 1,
                 state = CASE WHEN count + 1 >= max THEN 'full' ELSE 'open' END,
                 due_at = CASE WHEN count + 1 >= max THEN MIN(due_at, ?2) ELSE due_at END
             WHERE key = ?1 AND state = 'open'
             RETURNING id, count",
        )?
        .query_row(params![g.key, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, seq) = match joined {
        Some(j) => j,
        None => {
            let full = g.max <= 1;
            conn.prepare_cached(
                "INSERT INTO event_groups (key, state, first_event, count, max, due_at, deliveries)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)",
            )?
            .execute(params![
                g.key,
                if full { "full" } else { "open" },
                event_id,
                g.max,
                if full {
                    now
                } else {
                    now.saturating_add(ms(g.wait))
                },
                deliveries_json(&g.deliveries),
            ])?;
            (conn.last_insert_rowid(), 1)
        }
    };
    conn.prepare_cached("INSERT INTO group_events (group_id, seq, event_id) VALUES (?1, ?2, ?3)")?
        .execute(params![id, seq, event_id])?;
    Ok(())
}

/// The digest's counts since `?1`: webhooks received (`?2`..`?4`: the key
/// prefixes of hookrelay's own events), alerts delivered and alerts dead. Alerts
/// by when they ended, not when they were queued: one queued before the previous
/// digest and ended after it counts in this one. One pass over the rows ended
/// since (deliveries_ended).
pub(super) const DIGEST_COUNTS: &str = "SELECT
         (SELECT COUNT(*) FROM events WHERE received_at >= ?1 AND received_at < ?5
          AND dedup_key NOT LIKE ?2 AND dedup_key NOT LIKE ?3 AND dedup_key NOT LIKE ?4
          AND dedup_key <> ''),
         COALESCE(SUM(d.state = 'delivered'), 0),
         COALESCE(SUM(d.state = 'dead'), 0)
     FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE d.ended_at >= ?1 AND d.ended_at < ?5 AND e.dedup_key NOT LIKE ?2";

impl SqliteStore {
    pub(super) async fn sqlite_flush_groups(&self, limit: usize) -> Result<usize> {
        // Looked for on the reader first: the writer (and its commit) only when a
        // group is due, not at every poll.
        let due: bool = self
            .read(|c| {
                Ok(c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM event_groups WHERE state <> 'sent' AND due_at <= ?1)",
                )?
                .query_row(params![now_ms()], |r| r.get(0))?)
            })
            .await?;
        if !due {
            return Ok(0);
        }
        let n = self
            .write(move |c| {
                let now = now_ms();
                let due = c
                    .prepare_cached(
                        "SELECT id, first_event, count, deliveries FROM event_groups
                         WHERE state <> 'sent' AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2",
                    )?
                    .query_map(params![now, limit as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })?
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                for (id, first, count, deliveries) in &due {
                    c.prepare_cached(
                        "UPDATE event_groups SET state = 'sent', due_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                    // A group of one is an ordinary delivery of its event.
                    let group = (*count > 1).then_some(*id);
                    for d in parse_deliveries(deliveries) {
                        c.prepare_cached(
                            "INSERT INTO deliveries (event_id, destination, template, channel, state,
                                 created_at, window_start, next_attempt_at, group_id)
                             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5, ?6)",
                        )?
                        .execute(params![first, d.destination, d.template, d.channel, now, group])?;
                    }
                }
                Ok(due.len())
            })
            .await?;
        if n > 0 {
            self.wake.notify_waiters();
        }
        Ok(n)
    }

    pub(super) async fn sqlite_digest_counts(&self, since: i64, until: i64) -> Result<Counts> {
        self.read(move |c| {
            let like = format!("{}%", crate::digest::DEDUP_PREFIX);
            // Webhooks only: not hookrelay's own digests, misses and recoveries.
            let missing = format!("{}%", crate::watch::MISSING_PREFIX);
            let recovered = format!("{}%", crate::watch::RECOVERED_PREFIX);
            Ok(c.prepare_cached(DIGEST_COUNTS)?.query_row(
                params![since, like, missing, recovered, until],
                |r| {
                    Ok(Counts {
                        received: r.get::<_, i64>(0)?.max(0) as u64,
                        delivered: r.get::<_, i64>(1)?.max(0) as u64,
                        dead: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                },
            )?)
        })
        .await
    }

    pub(super) async fn sqlite_group_events(&self, id: i64) -> Result<Vec<Event>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT e.event FROM group_events g JOIN events e ON e.id = g.event_id
                     WHERE g.group_id = ?1 ORDER BY g.seq",
                )?
                .query_map(params![id], |r| r.get::<_, String>(0))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.iter().map(|j| parse_event(j)).collect()
        })
        .await
    }

    pub(super) async fn sqlite_group_of(&self, event_id: &str) -> Result<Option<GroupView>> {
        let event_id = event_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT g.id, g.state, g.count, g.first_event, g.due_at
                 FROM group_events ge JOIN event_groups g ON g.id = ge.group_id
                 WHERE ge.event_id = ?1 ORDER BY g.id DESC LIMIT 1",
            )?
            .query_row(params![event_id], |r| {
                Ok(GroupView {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    count: r.get(2)?,
                    first_event: r.get(3)?,
                    due_at: ms_to_rfc3339(r.get(4)?),
                })
            })
            .optional()?)
        })
        .await
        .map_err(|e: StoreError| e)
    }
}
