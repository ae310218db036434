//! The backups board's data: one row per subject, worst first, and the 14-day
//! strip of daily outcomes. Pure: the store's rows in, rows to render out.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate};

use crate::store::SubjectOutcome;

/// Days in the strip, today included.
pub const DAYS: usize = 14;

/// One subject as the board shows it. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub subject: String,
    /// `ok`, `failing`, `missing` or `new`.
    pub state: String,
    pub source: String,
    pub stack: Option<String>,
    pub server: Option<String>,
    pub backup: Option<String>,
    pub last_event_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub failures: u32,
    pub down_since: Option<i64>,
    pub next_deadline: Option<i64>,
    /// The subject's latest event, where the board links to.
    pub last_event_id: Option<String>,
}

/// One day of one subject's strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub succeeded: u32,
    /// Failures, partial backups and misses.
    pub failed: u32,
}

impl Day {
    /// `bad` (a failure or miss), `ok` (all succeeded) or `none` (no outcome).
    pub fn class(&self) -> &'static str {
        if self.failed > 0 {
            "bad"
        } else if self.succeeded > 0 {
            "ok"
        } else {
            "none"
        }
    }

    pub fn describe(&self) -> String {
        let date = self.date.format("%a %Y-%m-%d");
        match (self.succeeded, self.failed) {
            (0, 0) => format!("{date}: no backup reported"),
            (s, 0) => format!("{date}: {s} succeeded"),
            (0, f) => format!("{date}: {f} failed or missed"),
            (s, f) => format!("{date}: {f} failed or missed, {s} succeeded"),
        }
    }
}

fn is_success(status: &str) -> bool {
    matches!(status, "success" | "recovered")
}

fn is_failure(status: &str) -> bool {
    matches!(status, "failure" | "partial" | "missing")
}

/// The strip of every subject that has an outcome in the window ending `today`
/// (UTC days). `outcomes` may come in any order.
pub fn strips(outcomes: &[SubjectOutcome], today: NaiveDate) -> HashMap<String, [Day; DAYS]> {
    let first = today - Days::new(DAYS as u64 - 1);
    let blank = std::array::from_fn(|i| Day {
        date: first + Days::new(i as u64),
        succeeded: 0,
        failed: 0,
    });
    let mut out: HashMap<String, [Day; DAYS]> = HashMap::new();
    for o in outcomes {
        let Some(date) = chrono::DateTime::from_timestamp_millis(o.received_ms) else {
            continue;
        };
        let Ok(i) = usize::try_from((date.date_naive() - first).num_days()) else {
            continue;
        };
        if i >= DAYS {
            continue;
        }
        let day = &mut out.entry(o.subject.clone()).or_insert(blank)[i];
        if is_success(&o.status) {
            day.succeeded += 1;
        } else if is_failure(&o.status) {
            day.failed += 1;
        }
    }
    out
}

/// Subjects worked out from their events alone (no backup watch): the state
/// from the latest outcome that is not `unknown`, the run of failures, the last
/// success. Only as far back as `outcomes` reach.
pub fn subjects_from_outcomes(outcomes: &[SubjectOutcome]) -> Vec<Subject> {
    let mut sorted: Vec<&SubjectOutcome> = outcomes.iter().collect();
    sorted.sort_by_key(|o| o.received_ms);
    let mut subjects: BTreeMap<&str, Subject> = BTreeMap::new();
    for o in sorted {
        let s = subjects.entry(&o.subject).or_insert_with(|| Subject {
            subject: o.subject.clone(),
            state: "new".into(),
            source: o.source.clone(),
            stack: None,
            server: None,
            backup: None,
            last_event_at: None,
            last_success_at: None,
            failures: 0,
            down_since: None,
            next_deadline: None,
            last_event_id: None,
        });
        s.stack = o.stack.clone().or(s.stack.take());
        s.server = o.server.clone().or(s.server.take());
        s.backup = o.backup.clone().or(s.backup.take());
        s.last_event_at = Some(o.received_ms);
        s.last_event_id = Some(o.event_id.clone());
        if is_success(&o.status) {
            s.state = "ok".into();
            s.last_success_at = Some(o.received_ms);
            s.failures = 0;
            s.down_since = None;
        } else if is_failure(&o.status) {
            s.state = if o.status == "missing" {
                "missing".into()
            } else {
                "failing".into()
            };
            s.failures += 1;
            s.down_since.get_or_insert(o.received_ms);
        }
    }
    subjects.into_values().collect()
}

/// The board's rows: every subject the store keeps (the `/api/backups` data: its
/// state, run, last success and next deadline; subjects an `expect` rule names are
/// there before their first event), each linked to its latest event of the
/// window; then subjects seen only in `outcomes` (events stored before the backup
/// watch kept subjects), worked out from those. Digests (hookrelay's own summary
/// events) are no backup and are left out.
pub fn from_store(stored: &[crate::watch::Subject], outcomes: &[SubjectOutcome]) -> Vec<Subject> {
    let mut latest: HashMap<&str, (i64, &str)> = HashMap::new();
    for o in outcomes {
        let e = latest
            .entry(&o.subject)
            .or_insert((o.received_ms, &o.event_id));
        if o.received_ms >= e.0 {
            *e = (o.received_ms, &o.event_id);
        }
    }
    let field = |s: &crate::watch::Subject, k: &str| {
        s.fields
            .get(k)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut rows: Vec<Subject> = stored
        .iter()
        .map(|s| Subject {
            subject: s.key.clone(),
            state: s.state.as_str().to_string(),
            source: field(s, "source").unwrap_or_default(),
            stack: field(s, "stack"),
            server: field(s, "server"),
            backup: field(s, "backup"),
            last_event_at: s.last_event_at,
            last_success_at: s.last_success_at,
            failures: s.failures,
            down_since: s.down_since,
            next_deadline: s.next_deadline,
            last_event_id: latest.get(s.key.as_str()).map(|(_, id)| id.to_string()),
        })
        .collect();
    let known: std::collections::HashSet<&str> = stored.iter().map(|s| s.key.as_str()).collect();
    let digest = crate::digest::SOURCE;
    let older: Vec<SubjectOutcome> = outcomes
        .iter()
        .filter(|o| !known.contains(o.subject.as_str()))
        .filter(|o| !(o.source == digest && o.subject == digest))
        .cloned()
        .collect();
    rows.extend(subjects_from_outcomes(&older));
    rows
}

/// Worst first: missing and failing (longest down first), then new, then ok;
/// by name within each.
pub fn sort_worst_first(subjects: &mut [Subject]) {
    fn rank(state: &str) -> u8 {
        match state {
            "missing" => 0,
            "failing" => 1,
            "new" => 2,
            "ok" => 3,
            _ => 2,
        }
    }
    subjects.sort_by(|a, b| {
        rank(&a.state)
            .cmp(&rank(&b.state))
            .then(
                a.down_since
                    .unwrap_or(i64::MAX)
                    .cmp(&b.down_since.unwrap_or(i64::MAX)),
            )
            .then(a.subject.cmp(&b.subject))
    });
}

/// Subjects per state, for the headline.
pub fn counts(subjects: &[Subject]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in subjects {
        *m.entry(s.state.clone()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str, hour: i64) -> i64 {
        let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_millis() + hour * 3_600_000
    }

    fn outcome(subject: &str, status: &str, ms: i64) -> SubjectOutcome {
        SubjectOutcome {
            event_id: format!("e{ms}"),
            subject: subject.into(),
            source: "c66".into(),
            stack: None,
            server: None,
            backup: None,
            status: status.into(),
            received_ms: ms,
        }
    }

    #[test]
    fn a_day_is_red_with_any_failure_or_miss_green_when_all_succeeded_grey_without_outcome() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let outcomes = [
            outcome("a", "success", at("2026-11-30", 2)),
            outcome("a", "failure", at("2026-11-30", 3)),
            outcome("a", "success", at("2026-11-29", 2)),
            outcome("a", "missing", at("2026-11-28", 2)),
            outcome("a", "unknown", at("2026-11-27", 2)),
            outcome("a", "recovered", at("2026-11-26", 2)),
            // Outside the window on either side.
            outcome("a", "failure", at("2026-11-16", 23)),
            outcome("a", "failure", at("2026-12-01", 0)),
        ];
        let strip = strips(&outcomes, today)["a"];
        let classes: Vec<&str> = strip.iter().map(Day::class).collect();
        assert_eq!(
            strip[0].date,
            NaiveDate::from_ymd_opt(2026, 11, 17).unwrap()
        );
        assert_eq!(strip[13].date, today);
        assert_eq!(
            &classes[9..],
            ["ok", "none", "bad", "ok", "bad"],
            "26th to 30th"
        );
        assert!(classes[..9].iter().all(|c| *c == "none"));
        assert_eq!(
            strip[13].describe(),
            "Mon 2026-11-30: 1 failed or missed, 1 succeeded"
        );
    }

    #[test]
    fn the_store_s_subjects_lead_linked_to_their_latest_event_and_digests_are_no_backup() {
        use crate::watch::{Subject as Stored, SubjectState};
        let stored = |key: &str, state, next| Stored {
            key: key.into(),
            state,
            failures: 0,
            last_event_at: None,
            last_success_at: None,
            down_since: None,
            next_deadline: next,
            rule: None,
            fields: std::sync::Arc::new(
                serde_json::json!({"source": "ctl", "server": "db1", "backup": ""})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        };
        let subjects = [
            stored("ctl/db1/nightly", SubjectState::Ok, Some(99)),
            // Named by an `expect` rule, never reported.
            stored("ctl/db2/nightly", SubjectState::New, Some(50)),
        ];
        let outcomes = [
            outcome("ctl/db1/nightly", "success", 1),
            outcome("ctl/db1/nightly", "success", 3),
            outcome("ctl/db1/nightly", "failure", 2),
            // Before the watch kept subjects.
            outcome("old/one", "failure", 2),
            // A digest.
            SubjectOutcome {
                source: "hookrelay".into(),
                ..outcome("hookrelay", "failure", 4)
            },
        ];
        let rows = from_store(&subjects, &outcomes);
        let view: Vec<(&str, &str, Option<i64>, Option<&str>)> = rows
            .iter()
            .map(|r| {
                (
                    r.subject.as_str(),
                    r.state.as_str(),
                    r.next_deadline,
                    r.last_event_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("ctl/db1/nightly", "ok", Some(99), Some("e3")),
                ("ctl/db2/nightly", "new", Some(50), None),
                ("old/one", "failing", None, Some("e2")),
            ]
        );
        assert_eq!(rows[0].backup, None, "an empty field is no value");
        assert_eq!(rows[0].server.as_deref(), Some("db1"));
    }

    #[test]
    fn subjects_from_events_keep_the_run_of_failures_and_the_last_success() {
        let outcomes = [
            outcome("a", "success", 1),
            outcome("a", "failure", 2),
            outcome("a", "unknown", 3),
            outcome("a", "partial", 4),
            outcome("b", "unknown", 1),
            outcome("c", "failure", 1),
            outcome("c", "success", 5),
            outcome("d", "missing", 7),
        ];
        let mut subjects = subjects_from_outcomes(&outcomes);
        sort_worst_first(&mut subjects);
        type Row<'a> = (&'a str, &'a str, u32, Option<i64>, Option<i64>);
        let view: Vec<Row> = subjects
            .iter()
            .map(|s| {
                (
                    s.subject.as_str(),
                    s.state.as_str(),
                    s.failures,
                    s.last_success_at,
                    s.down_since,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("d", "missing", 1, None, Some(7)),
                ("a", "failing", 2, Some(1), Some(2)),
                ("b", "new", 0, None, None),
                ("c", "ok", 0, Some(5), None),
            ]
        );
    }
}
