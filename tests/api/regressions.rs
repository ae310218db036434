//! Defects a product review found (2026-12-01), one test each, written to fail
//! on the code as it was and kept as regression tests: the doc comment of each
//! says what went wrong before its fix.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn sb(file: &str, id: u64) -> String {
    let mut v: Value = serde_json::from_str(&fixture(&format!("simplebackups/{file}"))).unwrap();
    v["id"] = json!(id);
    v.to_string()
}

/// Events of `/api/events` whose `event` is `event`.
async fn events_with(app: &TestApp, event: &str) -> Vec<Value> {
    app.api("/api/events?limit=500").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == event)
        .cloned()
        .collect()
}

/// An `expect` rule may match on any field a route may, `raw.<path>` included
/// (README: "keys and values as in routes"). At ingest the rule is chosen on the
/// whole event, but every config load (start, SIGHUP) re-chooses it on the
/// subject's stored fields only (`Subject::as_event`: no `raw`, no `event`), finds
/// none, and `set_rule(None)` clears the subject's deadline. A backup that stops
/// reporting after a restart or reload is then never reported missing.
#[tokio::test]
async fn an_expect_rule_on_a_raw_field_still_fires_after_a_reload() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  out: {{ type: console }}\n\
         routes:\n  - to: [out]\n\
         watch:\n  expect:\n    - match: {{ source: sb, raw.storage.name: Acme Storage }}\n      every: 3s\n"
    ))
    .await;
    assert_eq!(
        app.post("/hooks/sb", sb("success.json", 1), &[])
            .await
            .status(),
        202
    );
    let v = app.api("/api/backups").await;
    assert!(
        v["items"][0]["next_deadline"].is_string(),
        "the rule watches the subject at ingest: {v:#}"
    );
    // The same config again (what a SIGHUP with an unchanged file, or a restart, does).
    app.shared.reload().expect("reloads");
    let fired = wait_for(Duration::from_secs(20), || async {
        !events_with(&app, "backup.missing").await.is_empty()
    })
    .await;
    assert!(
        fired,
        "no backup.missing 20 s after a 3 s deadline; the subject now reads {:#}",
        app.api("/api/backups").await
    );
}

/// `hookrelay_backup_last_success_timestamp_seconds{subject}` carries the subject
/// key, made of payload values (a backup or server name). A `"` or `\` in it is
/// written into the label unescaped (prometheus-client 0.24 writes label values
/// as they are), so the whole exposition no longer parses and Prometheus drops
/// every hookrelay metric with the scrape.
#[tokio::test]
async fn a_quote_in_a_backup_name_is_escaped_in_the_metrics() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    let mut v: Value = serde_json::from_str(&sb("success.json", 1)).unwrap();
    v["backup"]["name"] = json!(r#"Acme "Prod" C:\db"#);
    assert_eq!(
        app.post("/hooks/sb", v.to_string(), &[]).await.status(),
        202
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("hookrelay_backup_last_success_timestamp_seconds{"))
        .unwrap_or_else(|| panic!("no last-success sample in:\n{metrics}"));
    // The text format escapes `\` as `\\` and `"` as `\"` inside a label value.
    assert!(
        line.starts_with(
            r#"hookrelay_backup_last_success_timestamp_seconds{subject="sb/Acme Server/Acme \"Prod\" C:\\db"} "#
        ),
        "label value not escaped, the exposition does not parse: {line}"
    );
}

/// Emails are sent without a `Message-ID` header (lettre 0.11 adds `Date` but
/// not `Message-ID`, and hookrelay sets none). Gmail refuses such mail
/// ("550-5.7.1 … Messages missing a valid Message-ID header are not accepted")
/// and spam filters score it (SpamAssassin MISSING_MID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_alert_carries_a_message_id() {
    let smtp = SmtpSink::start(None);
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
destinations:
  mail: {{ type: email, smtp: "smtp://127.0.0.1:{}", from: "hookrelay <relay@example.com>", to: [dba@example.com] }}
routes:
  - to: [mail]
"#,
        smtp.port
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let m = smtp.next_message(Duration::from_secs(20));
    let data = m["data"].as_str().unwrap();
    let head = data.split("\r\n\r\n").next().unwrap_or(data);
    assert!(
        head.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("date:")),
        "{head}"
    );
    assert!(
        head.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("message-id:")),
        "no Message-ID header in the email's headers:\n{head}"
    );
    // A unique id at the sender's domain.
    let mid = head
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap_or_default();
    assert!(
        mid.starts_with('<') && mid.ends_with("@example.com>") && mid.len() > 30,
        "{head}"
    );
}

/// The digest's `delivered` and `dead` are "since the previous digest: alerts
/// delivered, alerts that gave up" (README). They are counted by when the
/// delivery was *created* (`d.created_at >= since`), not by when it ended: an
/// alert queued before a digest that gives up after it is counted in neither
/// digest. With a daily digest and the default `max_age: 24h`, an alert that
/// retries until it gives up always dies after the next digest, so no digest
/// ever reports it dead.
#[tokio::test]
async fn an_alert_that_gives_up_after_a_digest_is_counted_dead_in_the_next_one() {
    let down = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(400))
        .mount(&down)
        .await;
    let app = spawn_app_drained(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  hook: {{ type: webhook, url: \"{}/in\" }}\n\
         routes:\n  - to: [hook]\n",
        down.uri()
    ))
    .await;
    let store = app.shared.store.clone();
    assert_eq!(
        app.post("/hooks/sb", sb("error.json", 1), &[])
            .await
            .status(),
        202
    );
    // The previous digest goes out now: after the alert was queued, before it is sent.
    let since = store.clock_ms().await.unwrap() + 1;
    assert!(
        wait_for(Duration::from_secs(5), || async {
            store.clock_ms().await.unwrap() > since
        })
        .await
    );
    // The alert is refused for good (400) and ends dead, after that digest.
    assert_eq!(app.drain(3).await, 1);
    let d = app.api("/api/deliveries?state=dead").await;
    assert_eq!(d["items"].as_array().unwrap().len(), 1, "{d:#}");
    let counts = store.digest_counts(since, i64::MAX).await.unwrap();
    assert_eq!(
        counts.dead, 1,
        "the alert gave up after the previous digest, but the next one counts {counts:?}"
    );
}

/// The default Telegram template labels a missed backup's time "When:", where
/// every other default template says "Expected at" (README: "A missed backup's
/// time is labelled as the time it was expected"): on a phone at 3 a.m. the
/// time reads as when the backup happened.
#[test]
fn the_telegram_default_labels_a_missed_backups_time_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "sources:\n  ctl: { kind: centurylink }\n\
         destinations:\n  tg: { type: telegram, token: \"123:abc\", chat_id: \"-1001234567890\" }\n\
         routes:\n  - to: [tg]\n",
    )
    .unwrap();
    let fixture = format!("{FIXTURES}/centurylink/missing.json");
    let out = run_hookrelay(dir.path(), &["render", "--source", "ctl", &fixture], &[]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("Backup missed"), "{s}");
    assert!(
        s.contains("Expected at:"),
        "the missed backup's time is not labelled as expected:\n{s}"
    );
}

/// "Templates are strict about names: a misspelled field is an error at `check`"
/// (SPEC §6). Inside `{{#each events}}` (a group's list, whose items are events
/// with exactly the fields of §4) names are not checked at all, and rendering is
/// not strict, so a misspelled field there passes `check` and renders empty in
/// every grouped alert.
#[test]
fn check_names_a_misspelled_field_inside_each_events() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/default.console.hbs"),
        "{{#if events}}{{count}} alerts:\n{{#each events}}- {{servr}} {{status}}\n{{/each}}{{else}}{{server}}{{/if}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "sources:\n  sb: { kind: simplebackups }\ndestinations:\n  out: { type: console }\nroutes:\n  - to: [out]\n",
    )
    .unwrap();
    let out = run_hookrelay(dir.path(), &["check"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check accepts {{{{servr}}}} inside {{{{#each events}}}}:\n{}{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("templates/default.console.hbs:2: unknown field \"servr\""),
        "{err}"
    );
}

/// A subject is never forgotten, and keeps its deadline even when nothing can
/// report to it any more. An operator who changes `watch.by` (here to
/// `[source, backup]`) gets every backup under a new key; the old subjects keep
/// their deadlines and each fires a "Backup missed" for a backup that reports
/// fine under its new key (and, with `remind`, one more every `remind`, for ever:
/// there is no way to delete a subject). The same happens to a renamed source.
#[tokio::test]
async fn changing_watch_by_raises_no_missed_alert_for_a_backup_that_reports() {
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  out: {{ type: console }}\n\
         routes:\n  - to: [out]\n\
         watch:\n  expect:\n    - match: {{ source: sb }}\n      every: 4s\n"
    ))
    .await;
    assert_eq!(
        app.post("/hooks/sb", sb("success.json", 1), &[])
            .await
            .status(),
        202
    );
    // The operator narrows what names a backup and reloads.
    let path = app._dir.path().join("relay.yaml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("watch:\n", "watch:\n  by: [source, backup]\n");
    std::fs::write(&path, cfg).unwrap();
    app.shared.reload().expect("reloads");
    // The backup goes on reporting success every second (now as "sb/Acme Project").
    let feeder = {
        let (client, address) = (app.client.clone(), app.address.clone());
        tokio::spawn(async move {
            for i in 2..=12u64 {
                let r = client
                    .post(format!("{address}/hooks/sb"))
                    .body(sb("success.json", i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let missed = wait_for(Duration::from_secs(10), || async {
        !events_with(&app, "backup.missing").await.is_empty()
    })
    .await;
    feeder.abort();
    assert!(
        !missed,
        "a backup.missing while the backup reported every second: {:#?}",
        events_with(&app, "backup.missing").await
    );
}

/// An unquoted numeric token or secret (`token: 12345`) is refused with serde's
/// internal type name: "data did not match any variant of untagged enum
/// OneOrMany". (`admin.token: 4242` gets the clearer "invalid type: integer
/// `4242`, expected a string".)
#[test]
fn a_numeric_token_is_refused_in_words_the_user_knows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        "sources:\n  c: { kind: cloud66, token: 12345 }\n  s: { kind: simplebackups, secret: 98765 }\n\
         destinations:\n  out: { type: console }\nroutes:\n  - to: [out]\n",
    )
    .unwrap();
    let out = run_hookrelay(dir.path(), &["check"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sources.c.token"), "{err}");
    assert!(
        !err.contains("untagged enum") && !err.contains("OneOrMany"),
        "the error names a Rust type instead of saying what to write: {err}"
    );
}

/// The last error of the one delivery of a SimpleBackups error sent to an SMTP
/// sink started with `tls` (its own CA) through the URL `scheme://` + the sink.
async fn smtp_error(tls: &str, scheme: &str, timeout: &str) -> (String, u16) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let smtp = SmtpSink::start_with(&["--tls", tls, "--ca-out", ca.to_str().unwrap()]);
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
destinations:
  mail: {{ type: email, smtp: "{scheme}://127.0.0.1:{}", tls_ca_file: "{}", timeout: {timeout}, from: r@example.com, to: [d@example.com] }}
routes:
  - to: [mail]
"#,
        smtp.port,
        ca.display()
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let tried = wait_for(Duration::from_secs(20), || async {
        let v = app.api("/api/deliveries").await;
        v["items"][0]["last_error"].is_string()
    })
    .await;
    assert!(tried, "no attempt recorded");
    let v = app.api("/api/deliveries").await;
    let error = v["items"][0]["last_error"].as_str().unwrap().to_string();
    (error, smtp.port)
}

/// `smtp://` pointed at an implicit-TLS port (465, the port most providers
/// document) waits for a greeting that never comes: the error was "did not
/// accept the email within 10s", transient, so every alert was retried for
/// `max_age` (24h) and then dead, with nothing that said to use `smtps://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_url_at_an_implicit_tls_port_says_to_use_smtps() {
    let (error, port) = smtp_error("implicit", "smtp", "1s").await;
    assert!(
        error.contains(&format!("use smtps://127.0.0.1:{port}")),
        "the error does not point at the fix (smtps:// for implicit TLS): {error}"
    );
}

/// `smtps://` pointed at a port that starts in plain text (STARTTLS, 587): the
/// TLS handshake reads the server's plain greeting as a corrupt record; the error
/// says to use `smtp://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtps_url_at_a_starttls_port_says_to_use_smtp() {
    let (error, port) = smtp_error("starttls", "smtps", "5s").await;
    assert!(
        error.contains(&format!("use smtp://127.0.0.1:{port}")),
        "the error does not point at the fix (smtp:// for STARTTLS): {error}"
    );
}
