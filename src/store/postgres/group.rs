//! Groups (SPEC §10) on PostgreSQL (see the group part of [`Store`]).
//!
//! Joining takes the group key's advisory lock for the rest of the event's
//! transaction, so two replicas never open two groups for one key; the join
//! itself is an `UPDATE … WHERE state = 'open'`, so an event never joins a group
//! a flush has just marked sent (it opens the next one instead). A flush claims
//! due groups with `FOR UPDATE SKIP LOCKED` and marks them sent in the
//! transaction that queues their deliveries: each goes out once, whichever
//! replica flushes it.

use super::{PgStore, CHANNEL, NOW_MS};
use crate::digest::Counts;
use crate::event::Event;
use crate::group::{deliveries_json, parse_deliveries, GroupView};
use crate::store::{ms_to_rfc3339, GroupJoin, Result};

/// Adds each `(event id, join)` to its group, in the caller's transaction. Locks
/// are taken in key order, so concurrent batches cannot deadlock on them.
pub(super) async fn join_all(
    tx: &deadpool_postgres::Transaction<'_>,
    joins: &mut [(&str, &GroupJoin)],
) -> Result<()> {
    // Stable: a key's events keep their order.
    joins.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    let mut locked: Option<&str> = None;
    for (event_id, g) in joins.iter() {
        if locked != Some(g.key.as_str()) {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('group:' || $1, 0))",
                &[&g.key],
            )
            .await?;
            locked = Some(g.key.as_str());
        }
        let joined = tx
            .query_opt(
                "UPDATE event_groups
                 SET count = count + 1,
                     state = CASE WHEN count + 1 >= max THEN 'full' ELSE 'open' END,
                     due_at = CASE WHEN count + 1 >= max THEN LEAST(due_at, now()) ELSE due_at END
                 WHERE key = $1 AND state = 'open'
                 RETURNING id, count",
                &[&g.key],
            )
            .await?;
        let (id, seq): (i64, i32) = match joined {
            Some(r) => (r.get(0), r.get(1)),
            None => {
                let full = g.max <= 1;
                let max = i32::try_from(g.max).unwrap_or(i32::MAX);
                let wait = if full { 0.0 } else { g.wait.as_secs_f64() };
                let r = tx
                    .query_one(
                        "INSERT INTO event_groups (key, state, first_event, count, max, due_at, deliveries)
                         VALUES ($1, $2, $3, 1, $4, now() + $5 * interval '1 second', $6)
                         RETURNING id",
                        &[
                            &g.key,
                            &if full { "full" } else { "open" },
                            event_id,
                            &max,
                            &wait,
                            &deliveries_json(&g.deliveries),
                        ],
                    )
                    .await?;
                (r.get(0), 1)
            }
        };
        tx.execute(
            "INSERT INTO group_events (group_id, seq, event_id) VALUES ($1, $2, $3)",
            &[&id, &seq, event_id],
        )
        .await?;
    }
    Ok(())
}

impl PgStore {
    pub(super) async fn pg_flush_groups(&self, limit: usize) -> Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let due = tx
            .query(
                "WITH due AS (
                     SELECT id FROM event_groups
                     WHERE state <> 'sent' AND due_at <= now()
                     ORDER BY due_at, id LIMIT $1
                     FOR UPDATE SKIP LOCKED)
                 UPDATE event_groups g SET state = 'sent', due_at = now()
                 FROM due WHERE g.id = due.id
                 RETURNING g.id, g.first_event, g.count, g.deliveries",
                &[&(limit as i64)],
            )
            .await?;
        let (mut l_event, mut l_dest, mut l_tpl, mut l_chan, mut l_group) =
            (vec![], vec![], vec![], vec![], vec![]);
        for r in &due {
            let id: i64 = r.get(0);
            let first: String = r.get(1);
            let count: i32 = r.get(2);
            // A group of one is an ordinary delivery of its event.
            let group = (count > 1).then_some(id);
            for d in parse_deliveries(r.get(3)) {
                l_event.push(first.clone());
                l_dest.push(d.destination);
                l_tpl.push(d.template);
                l_chan.push(d.channel);
                l_group.push(group);
            }
        }
        if !l_event.is_empty() {
            tx.execute(
                "INSERT INTO deliveries (event_id, destination, template, channel, group_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])",
                &[&l_event, &l_dest, &l_tpl, &l_chan, &l_group],
            )
            .await?;
            tx.batch_execute(&format!("NOTIFY {CHANNEL}")).await?;
        }
        tx.commit().await?;
        Ok(due.len())
    }

    pub(super) async fn pg_digest_counts(&self, since: i64, until: i64) -> Result<Counts> {
        let client = self.pool.get().await?;
        let like = format!("{}%", crate::digest::DEDUP_PREFIX);
        // Webhooks only: not hookrelay's own digests, misses and recoveries.
        let missing = format!("{}%", crate::watch::MISSING_PREFIX);
        let recovered = format!("{}%", crate::watch::RECOVERED_PREFIX);
        let since = since as f64 / 1000.0;
        // Within what a timestamp holds (to the end of year 9999).
        let until = until.min(253_402_300_799_000) as f64 / 1000.0;
        // Alerts by when they ended, not when they were queued: one queued before
        // the previous digest and ended after it counts in this one. One pass
        // over the rows ended since (deliveries_ended).
        let r = client
            .query_one(
                "SELECT
                     (SELECT COUNT(*) FROM events WHERE received_at >= to_timestamp($1)
                      AND received_at < to_timestamp($5) AND dedup_key NOT LIKE $2
                      AND dedup_key NOT LIKE $3 AND dedup_key NOT LIKE $4 AND dedup_key <> ''),
                     COUNT(*) FILTER (WHERE d.state = 'delivered'),
                     COUNT(*) FILTER (WHERE d.state = 'dead')
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.ended_at >= to_timestamp($1) AND d.ended_at < to_timestamp($5)
                   AND e.dedup_key NOT LIKE $2",
                &[&since, &like, &missing, &recovered, &until],
            )
            .await?;
        let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
        Ok(Counts {
            received: n(0),
            delivered: n(1),
            dead: n(2),
        })
    }

    pub(super) async fn pg_clock_ms(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(&format!("SELECT {NOW_MS}"), &[])
            .await?
            .get(0))
    }

    pub(super) async fn pg_group_events(&self, id: i64) -> Result<Vec<Event>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT e.event FROM group_events g JOIN events e ON e.id = g.event_id
                 WHERE g.group_id = $1 ORDER BY g.seq",
                &[&id],
            )
            .await?;
        rows.iter().map(|r| super::parse_event(r.get(0))).collect()
    }

    pub(super) async fn pg_group_of(&self, event_id: &str) -> Result<Option<GroupView>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT g.id, g.state, g.count, g.first_event,
                     (extract(epoch FROM g.due_at) * 1000)::int8
                 FROM group_events ge JOIN event_groups g ON g.id = ge.group_id
                 WHERE ge.event_id = $1 ORDER BY g.id DESC LIMIT 1",
                &[&event_id],
            )
            .await?;
        Ok(row.map(|r| GroupView {
            id: r.get(0),
            state: r.get(1),
            count: r.get::<_, i32>(2).max(0) as u32,
            first_event: r.get(3),
            due_at: ms_to_rfc3339(r.get(4)),
        }))
    }
}
