//! The web page's read queries on PostgreSQL (see the `ui` part of [`Store`]).

use super::PgStore;
use crate::store::{subject_key, EventQuery, EventRecord, Result, State, SubjectOutcome};

impl PgStore {
    pub(super) async fn ui_events_with_delivery(
        &self,
        q: EventQuery,
        state: State,
    ) -> Result<Vec<EventRecord>> {
        let client = self.pool.get().await?;
        let before: Option<i64> = match &q.before {
            Some(id) => client
                .query_opt("SELECT seq FROM events WHERE id = $1", &[id])
                .await?
                .map(|r| r.get(0)),
            None => None,
        };
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
