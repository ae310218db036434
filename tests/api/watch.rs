//! Backup watch (SPEC §9) from outside: subjects and their fields, escalation on
//! `failures`, `backup.recovered`, `/api/backups`, the metrics, and missed-backup
//! deadlines (once each, none early, pinned subjects).

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SUBJECT: &str = "sb/Acme Server/Acme Project";

fn sb(file: &str, id: u64) -> String {
    let mut v: Value = serde_json::from_str(&fixture(&format!("simplebackups/{file}"))).unwrap();
    v["id"] = json!(id);
    v.to_string()
}

async fn sink() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&s)
        .await;
    s
}

/// Events of `/api/events`, oldest first.
async fn events(app: &TestApp) -> Vec<Value> {
    let mut v = app.api("/api/events?limit=500").await["items"]
        .as_array()
        .unwrap()
        .clone();
    v.reverse();
    v
}

async fn events_with(app: &TestApp, event: &str) -> Vec<Value> {
    events(app)
        .await
        .into_iter()
        .filter(|e| e["event"] == event)
        .collect()
}

#[tokio::test]
async fn failures_count_escalate_on_gte_reset_and_recover_once() {
    let page = sink().await;
    let chat = sink().await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  page: {{ type: webhook, url: \"{}/p\" }}\n  chat: {{ type: webhook, url: \"{}/c\" }}\n\
         routes:\n  - match: {{ failures: {{ gte: 3 }} }}\n    to: [page]\n    continue: true\n  - to: [chat]\n",
        page.uri(),
        chat.uri()
    ))
    .await;
    for (i, file) in [
        "error.json",
        "error.json",
        "error.json",
        "success.json",
        "success.json",
    ]
    .iter()
    .enumerate()
    {
        let r = app.post("/hooks/sb", sb(file, i as u64 + 1), &[]).await;
        assert_eq!(r.status(), 202);
    }
    // 5 events and one backup.recovered reach chat; the third failure pages,
    // and so does the recovery (it carries the run's 3 failures: it goes where
    // the failure went).
    wait_received(&chat, 6, Duration::from_secs(20)).await;
    let paged = wait_received(&page, 2, Duration::from_secs(20)).await;
    let paged: Vec<(&str, u64)> = paged
        .iter()
        .map(|b| {
            (
                b["status"].as_str().unwrap(),
                b["failures"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(paged, [("failure", 3), ("recovered", 3)]);

    let all = events(&app).await;
    let mine: Vec<(String, u64, Value, Value)> = all
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_string(),
                e["failures"].as_u64().unwrap(),
                e["last_success_at"].clone(),
                e["down_since"].clone(),
            )
        })
        .collect();
    let statuses: Vec<(&str, u64)> = mine.iter().map(|m| (m.0.as_str(), m.1)).collect();
    assert_eq!(
        statuses,
        [
            ("failure", 1),
            ("failure", 2),
            ("failure", 3),
            ("success", 0),
            ("recovered", 3),
            ("success", 0)
        ]
    );
    assert!(all.iter().all(|e| e["subject"] == SUBJECT));
    // down_since: the first failure's time, on every failure and on the recovery.
    let first_failure = ms(&all[0]["received_at"]);
    assert_eq!(ms(&all[1]["down_since"]), first_failure);
    assert_eq!(ms(&all[2]["down_since"]), first_failure);
    assert_eq!(ms(&all[4]["down_since"]), first_failure);
    assert_eq!(all[4]["provider"], "hookrelay");
    assert_eq!(all[4]["severity"], "info");
    assert_eq!(all[3]["down_since"], Value::Null);
    // last_success_at: the previous success, before this event.
    assert_eq!(all[2]["last_success_at"], Value::Null);
    assert_eq!(ms(&all[5]["last_success_at"]), ms(&all[3]["received_at"]));
    let recovered: Vec<Value> = received_json(&chat)
        .await
        .into_iter()
        .filter(|b| b["status"] == "recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "one recovery, only after the bad run");
}

#[tokio::test]
async fn api_backups_lists_subjects_worst_first_filters_by_state_and_feeds_the_metrics() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\n  ctl: {{ kind: centurylink }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    assert_eq!(
        app.post("/hooks/sb", sb("success.json", 1), &[])
            .await
            .status(),
        202
    );
    let ctl = fixture("centurylink/failed.json");
    assert_eq!(app.post("/hooks/ctl", ctl, &[]).await.status(), 202);

    let v = app.api("/api/backups").await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v:#}");
    assert_eq!(items[0]["state"], "failing", "worst first: {v:#}");
    assert_eq!(items[0]["failures"], 1);
    assert!(items[0]["down_since"].is_string());
    assert_eq!(items[1]["subject"], SUBJECT);
    assert_eq!(items[1]["state"], "ok");
    assert_eq!(items[1]["server"], "Acme Server");
    assert_eq!(items[1]["backup"], "Acme Project");
    assert!(items[1]["last_success_at"].is_string());
    assert_eq!(items[1]["next_deadline"], Value::Null, "no expect rule");
    for key in [
        "subject",
        "state",
        "source",
        "stack",
        "server",
        "backup",
        "last_event_at",
        "last_success_at",
        "failures",
        "down_since",
        "next_deadline",
    ] {
        assert!(items[0].get(key).is_some(), "{key} missing: {v:#}");
    }

    let ok = app.api("/api/backups?state=ok").await;
    assert_eq!(ok["items"].as_array().unwrap().len(), 1);
    assert_eq!(ok["items"][0]["subject"], SUBJECT);
    let bad = app.get("/api/backups?state=fine", Some(ADMIN)).await;
    assert_eq!(bad.status(), 400);

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    for line in [
        "hookrelay_backups{state=\"ok\"} 1",
        "hookrelay_backups{state=\"failing\"} 1",
        "hookrelay_backups{state=\"missing\"} 0",
        "hookrelay_backups{state=\"new\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    assert!(
        metrics.contains(&format!(
            "hookrelay_backup_last_success_timestamp_seconds{{subject=\"{SUBJECT}\"}}"
        )),
        "{metrics}"
    );
}

/// Milliseconds of an RFC 3339 time.
fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn a_missed_deadline_fires_once_not_before_every_and_is_routed() {
    let chat = sink().await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  chat: {{ type: webhook, url: \"{}/c\" }}\n\
         routes:\n  - match: {{ status: missing }}\n    to: [chat]\n\
         watch:\n  expect:\n    - match: {{ source: sb }}\n      every: 2s\n",
        chat.uri()
    ))
    .await;
    assert_eq!(
        app.post("/hooks/sb", sb("success.json", 1), &[])
            .await
            .status(),
        202
    );
    let fired = wait_for(Duration::from_secs(30), || async {
        !events_with(&app, "backup.missing").await.is_empty()
    })
    .await;
    assert!(fired, "no backup.missing: {:#?}", events(&app).await);
    let all = events(&app).await;
    let success_at = ms(&all[0]["received_at"]);
    let missing = events_with(&app, "backup.missing").await;
    assert_eq!(missing.len(), 1);
    let m = &missing[0];
    assert!(
        ms(&m["received_at"]) - success_at >= 2000,
        "not before `every`: {m:#}"
    );
    assert!(
        ms(&m["occurred_at"]) - success_at >= 2000,
        "occurred_at = the deadline"
    );
    assert_eq!(
        (m["status"].as_str(), m["severity"].as_str()),
        (Some("missing"), Some("critical"))
    );
    assert_eq!(m["subject"], SUBJECT);
    assert_eq!(m["server"], "Acme Server");
    assert_eq!(m["failures"], 1);
    let text = m["message"].as_str().unwrap();
    assert!(text.starts_with("No successful backup since "), "{text}");
    assert!(text.ends_with("expected every 2s"), "{text}");
    let got = wait_received(&chat, 1, Duration::from_secs(20)).await;
    assert_eq!(got[0]["event"], "backup.missing");

    // Nothing else is scheduled (no remind): the subject is missing with no
    // deadline, and a later success recovers it with a new one.
    let b = app.api("/api/backups").await;
    assert_eq!(b["items"][0]["state"], "missing");
    assert_eq!(b["items"][0]["next_deadline"], Value::Null);
    assert_eq!(
        app.post("/hooks/sb", sb("success.json", 2), &[])
            .await
            .status(),
        202
    );
    let b = app.api("/api/backups").await;
    assert_eq!(b["items"][0]["state"], "ok");
    assert!(b["items"][0]["next_deadline"].is_string());
    assert_eq!(events_with(&app, "backup.recovered").await.len(), 1);
    assert_eq!(events_with(&app, "backup.missing").await.len(), 1);
}

#[tokio::test]
async fn a_pinned_subject_that_never_reported_is_missed_and_reminded() {
    let app = spawn_app(&format!(
        "sources:\n  ctl: {{ kind: centurylink }}\nadmin: {{ token: {ADMIN} }}\n\
         watch:\n  by: [source, server, backup]\n  expect:\n    - match: {{ source: ctl, server: VA1TEST-DB01, backup: nightly-db }}\n      every: 1s\n      remind: 1s\n"
    ))
    .await;
    // Watched from the config's load: listed before any event came.
    let listed = wait_for(Duration::from_secs(10), || async {
        app.api("/api/backups").await["items"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    assert!(listed);
    let b = app.api("/api/backups").await;
    assert_eq!(b["items"][0]["subject"], "ctl/VA1TEST-DB01/nightly-db");
    let two = wait_for(Duration::from_secs(30), || async {
        events_with(&app, "backup.missing").await.len() >= 2
    })
    .await;
    assert!(two, "a miss and a reminder: {:#?}", events(&app).await);
    let missing = events_with(&app, "backup.missing").await;
    assert_eq!(missing[0]["subject"], "ctl/VA1TEST-DB01/nightly-db");
    assert_eq!(missing[0]["server"], "VA1TEST-DB01");
    assert_eq!(
        missing[1]["failures"], 2,
        "the reminder counts as one more miss"
    );
    assert!(missing[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("No successful backup since hookrelay began watching"));
    // Each reminder comes `remind` after the previous one, not sooner.
    assert!(ms(&missing[1]["received_at"]) - ms(&missing[0]["received_at"]) >= 1000);
}

#[tokio::test]
async fn slack_messages_say_where_a_failure_stands_in_its_run_and_how_long_it_was_down() {
    let slack = sink().await;
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  s: {{ type: slack, webhook_url: \"{}/hook\", rate_limit: 100/s }}\n\
         routes:\n  - to: [s]\n",
        slack.uri()
    ))
    .await;
    // Posted one at a time, so the messages arrive in this order.
    let files = [
        "success.json",
        "error.json",
        "error.json",
        "error.json",
        "success.json",
    ];
    for (i, file) in files.iter().enumerate() {
        let r = app.post("/hooks/sb", sb(file, i as u64 + 1), &[]).await;
        assert_eq!(r.status(), 202);
        wait_received(&slack, i + 1, Duration::from_secs(20)).await;
    }
    // The last success is followed by its backup.recovered.
    let got = wait_received(&slack, files.len() + 1, Duration::from_secs(20)).await;
    let heads: Vec<String> = got
        .iter()
        .map(|m| m["blocks"][0]["text"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        heads[0],
        "✅ *Backup succeeded: Acme Project on Acme Server*"
    );
    let (first, rest) = heads[1]
        .split_once('\n')
        .expect("a failure has a second line");
    assert_eq!(first, "❌ *Backup failed: Acme Project on Acme Server*");
    assert!(
        rest.starts_with("Last good backup ") && rest.ends_with(" ago"),
        "{rest}"
    );
    assert!(
        heads[2].contains("\n2nd failure in a row; last good backup "),
        "{}",
        heads[2]
    );
    assert!(
        heads[3].contains("\n3rd failure in a row; last good backup "),
        "{}",
        heads[3]
    );
    // The success and its recovery are stored together and may arrive either way round.
    let mut last: Vec<&str> = heads[4..].iter().map(String::as_str).collect();
    last.sort();
    assert_eq!(
        last,
        [
            "✅ *Backup recovered: Acme Project on Acme Server*",
            "✅ *Backup succeeded: Acme Project on Acme Server*"
        ]
    );
    let recovered = got[4..]
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("recovered"))
        .unwrap()["blocks"]
        .to_string();
    assert!(
        recovered.contains("Back after 3 failures, down "),
        "{recovered}"
    );
    assert!(
        recovered.contains("backup watch on source `sb`"),
        "{recovered}"
    );
}
