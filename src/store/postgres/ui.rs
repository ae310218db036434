//! The web page's read queries on PostgreSQL (see the `ui` part of [`Store`]).

use super::PgStore;
use crate::store::{subject_key, EventQuery, EventRecord, Result, State, SubjectOutcome};

/// Where a page that starts after event `before` starts: below its `seq`. An
/// event retention deleted is placed by its id (a UUIDv7 grows with time): below
/// the oldest event stored after it, or, if none was, at the top. Never the
/// first page by mistake: a paging client would loop.
pub(super) async fn before_seq(
    client: &tokio_postgres::Client,
    before: Option<&str>,
) -> Result<Option<i64>> {
    let Some(id) = before else {
        return Ok(None);
    };
    if let Some(r) = client
        .query_opt("SELECT seq FROM events WHERE id = $1", &[&id])
        .await?
    {
        return Ok(Some(r.get(0)));
    }
    if !crate::store::id_has_time(id) {
        return Err(crate::store::StoreError::NotFound);
    }
    let r = client
        .query_one(
            "SELECT COALESCE((SELECT seq FROM events WHERE id > $1 ORDER BY id LIMIT 1),
                             (SELECT COALESCE(MAX(seq), 0) + 1 FROM events))",
            &[&id],
        )
        .await?;
    Ok(Some(r.get(0)))
}

impl PgStore {
    pub(super) async fn ui_events_with_delivery(
        &self,
        q: EventQuery,
        state: State,
    ) -> Result<Vec<EventRecord>> {
        let client = self.pool.get().await?;
        let before = before_seq(&client, q.before.as_deref()).await?;
        let rows = client
            .query(
                "SELECT e.id, e.routed, e.duplicates, e.event FROM events e
                 WHERE ($1::int8 IS NULL OR e.seq < $1) AND ($2::text IS NULL OR e.status = $2)
                   AND ($3::text IS NULL OR e.source = $3)
                   AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = $5)
                 ORDER BY e.seq DESC LIMIT $4",
                &[
                    &before,
                    &q.status,
                    &q.source,
                    &(q.limit as i64),
                    &state.as_str(),
                ],
            )
            .await?;
        Self::records(&client, rows).await
    }

    pub(super) async fn ui_outcomes_since(&self, since_ms: i64) -> Result<Vec<SubjectOutcome>> {
        let client = self.pool.get().await?;
        // events_received serves the window; only the fields the board shows
        // are taken out of each event.
        let rows = client
            .query(
                "SELECT (extract(epoch FROM received_at) * 1000)::int8, status, source, id,
                        j->>'subject', j->>'stack', j->>'server', j->>'backup'
                 FROM (SELECT seq, received_at, status, source, id, event::jsonb AS j
                       FROM events WHERE received_at >= to_timestamp($1::float8 / 1000)) w
                 ORDER BY seq",
                &[&(since_ms as f64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let source: String = r.get(2);
                let (stack, server, backup): (Option<String>, Option<String>, Option<String>) =
                    (r.get(5), r.get(6), r.get(7));
                SubjectOutcome {
                    subject: subject_key(
                        r.get(4),
                        &source,
                        stack.as_deref(),
                        server.as_deref(),
                        backup.as_deref(),
                    ),
                    event_id: r.get(3),
                    source,
                    stack,
                    server,
                    backup,
                    status: r.get(1),
                    received_ms: r.get(0),
                }
            })
            .collect())
    }
}
