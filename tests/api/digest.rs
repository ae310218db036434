//! The digest (SPEC §10) from outside: at a scheduled time one digest with the
//! right counts reaches its destination, once — also across a restart, where a
//! time passed while stopped is sent once; `check` names bad digest and group
//! settings by place; `render --digest` shows a sample digest.
//!
//! Time is the test's: the app runs without its loops and the test calls
//! `digest::tick` with the store's clock moved on by as much as it wants.

use std::process::Command;

use hookrelay::digest::{self, Clock};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const MINUTE: i64 = 60_000;

fn sb(file: &str, id: u64, server: &str, name: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture(&format!("simplebackups/{file}"))).unwrap();
    v["id"] = json!(id);
    v["server"]["name"] = json!(server);
    v["backup"]["name"] = json!(name);
    v.to_string()
}

fn config(db: &std::path::Path, hook: &str) -> String {
    format!(
        "storage: {{ url: \"sqlite://{}/hookrelay.db\" }}\n\
         sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  hook: {{ type: webhook, url: \"{hook}/in\" }}\n\
         routes:\n  - to: [hook]\n\
         digest:\n  - {{ cron: \"* * * * *\", to: [hook] }}\n",
        db.display()
    )
}

/// The digests `server` received, oldest first.
async fn digests(server: &MockServer) -> Vec<Value> {
    received_json(server)
        .await
        .into_iter()
        .filter(|b| b["event"] == "digest")
        .collect()
}

#[tokio::test]
async fn a_digest_goes_out_once_per_scheduled_time_with_the_counts_and_once_after_a_restart() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let db = tempfile::tempdir().unwrap();
    let app = spawn_app_drained(&config(db.path(), &hook.uri())).await;
    let shared = app.shared.clone();
    let mut clock = Clock::default();
    let t0 = shared.store.clock_ms().await.unwrap();
    assert_eq!(digest::tick(&shared, &mut clock, t0).await.unwrap(), 0);

    for (i, (file, server, name)) in [
        ("success.json", "a", "job-a"),
        ("success.json", "b", "job-b"),
        ("error.json", "c", "job-c"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .post("/hooks/sb", sb(file, i as u64 + 1, server, name), &[])
            .await;
        assert_eq!(r.status(), 202);
    }
    assert_eq!(app.drain(3).await, 3);

    // Not before a scheduled time has come.
    assert_eq!(digest::tick(&shared, &mut clock, t0 + 1).await.unwrap(), 0);
    // Two minutes on, a run of `* * * * *` has passed: one digest, and only one
    // however often the time is looked at.
    let later = t0 + 2 * MINUTE;
    assert_eq!(digest::tick(&shared, &mut clock, later).await.unwrap(), 1);
    assert_eq!(digest::tick(&shared, &mut clock, later).await.unwrap(), 0);
    assert_eq!(app.drain(3).await, 1);
    let got = digests(&hook).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let d = &got[0];
    assert_eq!(d["summary"], "2 of 3 backups OK · 1 failing", "{d:#}");
    assert_eq!(
        (
            &d["total"],
            &d["ok"],
            &d["failing"],
            &d["missing"],
            &d["new"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(0), &json!(0))
    );
    assert_eq!(d["status"], "failure");
    assert_eq!(d["attention"].as_array().unwrap().len(), 1);
    assert_eq!(d["attention"][0]["subject"], "sb/c/job-c");
    assert_eq!(d["subjects"][0]["subject"], "sb/c/job-c", "worst first");
    assert_eq!(
        (&d["received"], &d["delivered"], &d["dead"]),
        (&json!(3), &json!(3), &json!(0)),
        "{d:#}"
    );
    // Stored as an event of its own, with its delivery.
    let events = app.api("/api/events?source=hookrelay").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
    assert_eq!(events["items"][0]["event"], "digest");
    assert_eq!(events["items"][0]["deliveries"]["delivered"], 1);

    // A restart: the new process finds the digest already sent for that time…
    drop(app);
    let app = spawn_app_drained(&config(db.path(), &hook.uri())).await;
    let shared = app.shared.clone();
    let mut clock = Clock::default();
    assert_eq!(digest::tick(&shared, &mut clock, later).await.unwrap(), 0);
    // …and of the runs that passed while it was stopped, sends one.
    let much_later = t0 + 10 * MINUTE;
    assert_eq!(
        digest::tick(&shared, &mut clock, much_later).await.unwrap(),
        1
    );
    assert_eq!(
        digest::tick(&shared, &mut clock, much_later).await.unwrap(),
        0
    );
    app.drain(3).await;
    let got = digests(&hook).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[1]["since"], got[0]["scheduled_at"]);
    assert_eq!(
        got[1]["received"], 0,
        "nothing came in since the last digest"
    );
}

#[tokio::test]
async fn check_names_bad_digest_and_group_settings_and_render_shows_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    std::fs::write(
        &path,
        "storage: { url: \"sqlite://data/x.db\" }\nsources: { sb: { kind: simplebackups } }\n\
         destinations:\n  out: { type: console }\n\
         routes:\n  - to: [out]\n    group: { wait: 0s, by: [status, stak], max: 0 }\n\
         digest:\n  - { cron: \"61 * * * *\", tz: Mars/Olympus, to: [out, nope] }\n  - { cron: \"0 8 * * *\", to: [out], template: daily }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for place in [
        "routes[0].group.wait:",
        "routes[0].group.by[1]:",
        "routes[0].group.max:",
        "digest[0].cron:",
        "digest[0].tz:",
        "digest[0].to[1]: unknown destination \"nope\"",
        "digest[1].template:",
    ] {
        assert!(err.contains(place), "{place} missing in:\n{err}");
    }

    // A digest template the destination cannot send is named too.
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/digest.telegram.json.hbs"),
        "[1, 2]",
    )
    .unwrap();
    std::fs::write(
        &path,
        "storage: { url: \"sqlite://data/x.db\" }\nsources: { sb: { kind: simplebackups } }\n\
         destinations:\n  tg: { type: telegram, token: \"1:a\", chat_id: \"1\" }\n\
         digest:\n  - { cron: \"0 8 * * *\", to: [tg] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("digest[0].to[0]: destination \"tg\" (telegram) cannot send the digest"),
        "{err}"
    );
    std::fs::remove_dir_all(dir.path().join("templates")).unwrap();

    std::fs::write(
        &path,
        "storage: { url: \"sqlite://data/x.db\" }\nsources: { sb: { kind: simplebackups } }\n\
         destinations:\n  out: { type: console }\n\
         routes:\n  - to: [out]\n    group: { wait: 30s, by: [status] }\n\
         digest:\n  - { cron: \"0 8 * * *\", tz: Europe/Berlin, to: [out] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("grouped: wait 30s by status, at most 50"),
        "{text}"
    );
    assert!(text.contains("0 8 * * * (Europe/Berlin) -> out"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["render", "--digest", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("❌ Backup digest: 40 of 42 backups OK · 1 failing · 1 missing"),
        "{text}"
    );
    // Failing and missing first, then what recovered, then the traffic.
    let missing = text.find("— missing since").unwrap();
    let recovered = text.find("Recovered:").unwrap();
    let traffic = text.find("webhooks received").unwrap();
    assert!(missing < recovered && recovered < traffic, "{text}");
}

/// The PagerDuty digest is open while a backup is failing or missing, and only
/// then: a backup that has not reported yet (state new), or no backup at all,
/// resolves it; a failing one triggers it (error), a missing one too (critical).
#[test]
fn the_pagerduty_digest_triggers_only_while_a_backup_is_failing_or_missing() {
    use hookrelay::watch::{Subject, SubjectState};
    use std::str::FromStr;
    let d = digest::Digest {
        index: 0,
        cron: Box::new(croner::Cron::from_str("0 8 * * *").unwrap()),
        cron_text: "0 8 * * *".into(),
        tz: chrono_tz::UTC,
        to: vec!["pager".into()],
        template: "digest".into(),
        key: "k".into(),
    };
    let subject = |key: &str, state| Subject {
        key: key.into(),
        state,
        failures: 0,
        last_event_at: None,
        last_success_at: None,
        down_since: None,
        next_deadline: None,
        rule: None,
        fields: Default::default(),
    };
    let t = hookrelay::templates::Templates::load(std::path::Path::new("/nonexistent")).unwrap();
    let render = |subjects: &[Subject]| {
        let ctx = digest::build_context(
            &d,
            subjects,
            &Default::default(),
            Default::default(),
            0,
            1_764_576_000_000,
        );
        let hookrelay::templates::Body::Json(v) =
            t.render_body("digest", "pagerduty", &ctx).unwrap()
        else {
            panic!("a JSON body")
        };
        v
    };
    let ok = subject("sb/a/ok", SubjectState::Ok);
    let new = subject("sb/b/pinned-not-yet-reported", SubjectState::New);
    for (what, subjects) in [
        (
            "a new backup beside an ok one",
            vec![ok.clone(), new.clone()],
        ),
        ("a new backup alone", vec![new.clone()]),
        ("no backup at all", vec![]),
        ("every backup ok", vec![ok.clone()]),
    ] {
        let v = render(&subjects);
        assert_eq!(v["event_action"], "resolve", "{what}: {v}");
        assert_eq!(v["dedup_key"], "hookrelay digest", "{what}");
    }
    let v = render(&[
        ok.clone(),
        new.clone(),
        subject("sb/c/bad", SubjectState::Failing),
    ]);
    assert_eq!(v["event_action"], "trigger", "{v}");
    assert_eq!(v["payload"]["severity"], "error", "{v}");
    assert_eq!(
        v["payload"]["custom_details"]["needs_attention"][0]["subject"],
        "sb/c/bad"
    );
    let v = render(&[ok, subject("sb/d/late", SubjectState::Missing)]);
    assert_eq!(v["event_action"], "trigger", "{v}");
    assert_eq!(v["payload"]["severity"], "critical", "{v}");
}

const DAY: i64 = 86_400_000;

/// A daily digest (midnight UTC) beside a `* * * * *` one.
fn daily_and_minutely(db: &std::path::Path, hook: &str) -> String {
    format!(
        "storage: {{ url: \"sqlite://{}/hookrelay.db\" }}\n\
         sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  hook: {{ type: webhook, url: \"{hook}/in\" }}\n\
         routes:\n  - to: [hook]\n\
         digest:\n  - {{ cron: \"0 0 * * *\", to: [hook] }}\n  - {{ cron: \"* * * * *\", to: [hook] }}\n",
        db.display()
    )
}

/// The `since` of each stored daily digest (its previous one's time), newest first.
async fn daily_since(app: &TestApp) -> Vec<Value> {
    let events = app.api("/api/events?source=hookrelay&limit=2").await;
    let mut out = Vec::new();
    for e in events["items"].as_array().unwrap() {
        let one = app
            .api(&format!("/api/events/{}", e["id"].as_str().unwrap()))
            .await;
        if one["event"]["raw"]["schedule"]
            .as_str()
            .is_some_and(|s| s.contains("0 0 * * *"))
        {
            out.push(one["event"]["raw"]["since"].clone());
        }
    }
    out
}

/// A long-period digest whose run passed while hookrelay was stopped is sent once
/// after it starts, however many other digests were stored since its last one
/// (here 201 of a `* * * * *` schedule) and whether or not retention has deleted
/// that last one; and it counts from that last one.
#[tokio::test]
async fn a_daily_digest_missed_while_stopped_is_sent_once_after_many_newer_digests_or_retention() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    for purge in [true, false] {
        let db = tempfile::tempdir().unwrap();
        let app = spawn_app_drained(&daily_and_minutely(db.path(), &hook.uri())).await;
        let shared = app.shared.clone();
        let mut clock = Clock::default();
        let t0 = shared.store.clock_ms().await.unwrap();
        assert_eq!(digest::tick(&shared, &mut clock, t0).await.unwrap(), 0);
        let midnight = (t0 / DAY + 1) * DAY;
        let at = |t: i64| t + 30_000;
        assert_eq!(
            digest::tick(&shared, &mut clock, at(midnight))
                .await
                .unwrap(),
            2
        );
        for i in 1..=201 {
            let t = at(midnight + i * MINUTE);
            assert_eq!(digest::tick(&shared, &mut clock, t).await.unwrap(), 1);
        }
        if purge {
            // Every digest sent, then deleted by retention.
            while app.drain(3).await > 0 {}
            shared
                .store
                .purge(std::time::Duration::ZERO, 10_000)
                .await
                .unwrap();
            // (SQLite keeps the newest row, a minutely digest.)
            let left = app.api("/api/events?source=hookrelay").await;
            assert!(left["items"].as_array().unwrap().len() <= 1, "{left:#}");
        }
        // Stopped over the next midnight; started after it: the daily digest and
        // the minutely one, once each, however often it starts again.
        drop(app);
        let next = at(midnight + DAY);
        for sent in [2, 0] {
            let app = spawn_app_drained(&daily_and_minutely(db.path(), &hook.uri())).await;
            let mut clock = Clock::default();
            assert_eq!(
                digest::tick(&app.shared, &mut clock, next).await.unwrap(),
                sent,
                "purged: {purge}"
            );
            if sent == 2 {
                let since = daily_since(&app).await;
                assert_eq!(
                    since[0],
                    json!(hookrelay::store::ms_to_rfc3339(midnight)),
                    "purged: {purge}"
                );
            }
        }
    }
}
