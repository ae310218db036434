//! PagerDuty (Events API v2) against a local stand-in that answers as PagerDuty
//! does: 202 with its JSON, 429 when throttling, 400 with its error list.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const KEY: &str = "R0UTINGKEYR0UTINGKEYR0UTINGKEY12";

fn accepted(dedup_key: &str) -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(json!({
        "status": "success", "message": "Event processed", "dedup_key": dedup_key}))
}

async fn app_for(server: &MockServer) -> TestApp {
    spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"${{PD_KEY}}\", url: \"{}/v2/enqueue\" }}\n\
             routes:\n  - to: [pager]\n",
            server.uri()
        ),
        &[("PD_KEY", KEY)],
    )
    .await
}

#[tokio::test]
async fn a_failure_triggers_and_the_next_success_resolves_the_same_incident() {
    let pd = MockServer::start().await;
    // PagerDuty throttles the first try; the retry goes through.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "status": "throttle exceeded",
            "message": "Requests for this service are arriving too quickly. Please retry later."})))
        .up_to_n_times(1)
        .mount(&pd)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(accepted("sb/Acme Server/Acme Project"))
        .mount(&pd)
        .await;
    let app = app_for(&pd).await;

    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let got = wait_received(&pd, 2, Duration::from_secs(10)).await;
    assert_eq!(got[0], got[1], "the retry sends the same event");
    let trigger = &got[1];
    assert_eq!(trigger["routing_key"], KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "sb/Acme Server/Acme Project");
    let p = &trigger["payload"];
    assert_eq!(
        p["summary"],
        "❌ Backup failed: Acme Project on Acme Server: Backup Acme Project failed"
    );
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["source"], "Acme Server");
    assert_eq!(p["component"], "Acme Project");
    assert_eq!(p["timestamp"], "2021-10-10T10:10:10Z");
    assert_eq!(p["custom_details"]["message"], "Backup Acme Project failed");
    assert_eq!(trigger["client"], "hookrelay");

    let r = app
        .post("/hooks/sb", fixture("simplebackups/success.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let got = wait_received(&pd, 3, Duration::from_secs(10)).await;
    assert_eq!(
        got[2],
        json!({"routing_key": KEY, "event_action": "resolve",
               "dedup_key": "sb/Acme Server/Acme Project"})
    );

    // The backup.recovered that follows the success resolves the same incident
    // again (PagerDuty takes a repeated resolve as a no-op).
    let got = wait_received(&pd, 4, Duration::from_secs(10)).await;
    assert_eq!(got[3], got[2]);
    let all = app.wait_settled(Duration::from_secs(10)).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{all}");
    assert!(!all.to_string().contains(KEY), "routing key leaked: {all}");
}

/// An app sending to PagerDuty at `server`, retrying after 3 s.
/// A PagerDuty that answers the first event 503 and accepts every later one.
async fn pagerduty_down_once() -> MockServer {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&pd)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted("sb/Acme Server/Acme Project"))
        .mount(&pd)
        .await;
    pd
}

async fn app_retrying(server: &MockServer) -> TestApp {
    spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             delivery: {{ retry_schedule: [3s], max_age: 1h }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"${{PD_KEY}}\", url: \"{}/v2/enqueue\" }}\n\
             routes:\n  - to: [pager]\n",
            server.uri()
        ),
        &[("PD_KEY", KEY)],
    )
    .await
}

/// The `event_action` of every request PagerDuty received, in order.
async fn actions(pd: &MockServer) -> Vec<String> {
    received_json(pd)
        .await
        .iter()
        .map(|v| v["event_action"].as_str().unwrap().to_string())
        .collect()
}

/// The delivery of event `id`, as the admin API shows it.
async fn delivery_of(app: &TestApp, id: &str) -> Value {
    app.api(&format!("/api/events/{id}")).await["deliveries"][0].clone()
}

/// Review 13 #2: a trigger PagerDuty answered 503 waits for its retry; the
/// success (and its backup.recovered) that came meanwhile resolve the incident.
/// The retried trigger is not sent after them (it would reopen the incident for
/// a good backup): its delivery ends delivered, saying which resolve superseded it.
#[tokio::test]
async fn a_trigger_retried_after_the_resolve_of_a_later_success_is_not_sent() {
    let pd = pagerduty_down_once().await;
    let app = app_retrying(&pd).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let failure: Value = r.json().await.unwrap();
    wait_received(&pd, 1, Duration::from_secs(10)).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/success.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    app.wait_settled(Duration::from_secs(20)).await;
    let actions = actions(&pd).await;
    assert_eq!(
        actions,
        ["trigger", "resolve", "resolve"],
        "the 503'd trigger, then the resolves of the success and of its \
         backup.recovered; no trigger after them"
    );

    let d = delivery_of(&app, failure["event_id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "delivered", "{d}");
    let note = d["last_error"].as_str().unwrap();
    assert!(
        note.starts_with("not sent: superseded by the resolve of event "),
        "{d}"
    );
    assert!(note.contains("\"sb/Acme Server/Acme Project\""), "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[1]["status"], Value::Null);
    assert_eq!(attempts[1]["error"].as_str(), Some(note));
    // The event it names is one received after the failure, resolved.
    let later = note
        .trim_start_matches("not sent: superseded by the resolve of event ")
        .split(',')
        .next()
        .unwrap();
    assert_ne!(later, failure["event_id"]);
    let ev = app.api(&format!("/api/events/{later}")).await;
    assert!(
        ["success", "recovered"].contains(&ev["event"]["status"].as_str().unwrap()),
        "{ev}"
    );
    assert_eq!(ev["deliveries"][0]["state"], "delivered");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"hookrelay_deliveries_total{destination="pager",outcome="superseded"} 1"#),
        "{metrics}"
    );
}

/// The reverse: a resolve retried after the trigger of a later failure would
/// close the new incident; it is not sent either.
#[tokio::test]
async fn a_resolve_retried_after_the_trigger_of_a_later_failure_is_not_sent() {
    let pd = pagerduty_down_once().await;
    let app = app_retrying(&pd).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/success.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let success: Value = r.json().await.unwrap();
    wait_received(&pd, 1, Duration::from_secs(10)).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let failure: Value = r.json().await.unwrap();
    app.wait_settled(Duration::from_secs(20)).await;
    assert_eq!(
        actions(&pd).await,
        ["resolve", "trigger"],
        "the incident the failure opened stays open"
    );
    let d = delivery_of(&app, success["event_id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(
        d["last_error"].as_str().unwrap(),
        format!(
            "not sent: superseded by the trigger of event {}, received after this one and \
             already delivered for dedup_key \"sb/Acme Server/Acme Project\"",
            failure["event_id"].as_str().unwrap()
        ),
        "{d}"
    );
}

/// An event PagerDuty got: its action, its dedup_key, and when it arrived.
type Got = std::sync::Arc<std::sync::Mutex<Vec<(String, std::time::Instant, String)>>>;

/// PagerDuty that takes every event, answering the first one `slow` late, and
/// notes when each arrived.
struct SlowFirst {
    slow: Duration,
    got: Got,
}

impl wiremock::Respond for SlowFirst {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut got = self.got.lock().unwrap();
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        got.push((
            text("event_action"),
            std::time::Instant::now(),
            text("dedup_key"),
        ));
        let answer = accepted("sb/Acme Server/Acme Project");
        if got.len() == 1 {
            answer.set_delay(self.slow)
        } else {
            answer
        }
    }
}

/// Two events of one backup are never sent to PagerDuty at the same moment: the
/// success's resolve waits until the failure's trigger, still being sent, has
/// its answer (sent side by side, the resolve could arrive first).
#[tokio::test]
async fn a_resolve_waits_while_the_trigger_of_its_backup_is_being_sent() {
    let pd = MockServer::start().await;
    let slow = Duration::from_millis(1500);
    let got = std::sync::Arc::default();
    Mock::given(method("POST"))
        .respond_with(SlowFirst {
            slow,
            got: std::sync::Arc::clone(&got),
        })
        .mount(&pd)
        .await;
    let app = app_for(&pd).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    wait_received(&pd, 1, Duration::from_secs(10)).await;
    // The trigger is being answered (slowly) now.
    let r = app
        .post("/hooks/sb", fixture("simplebackups/success.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(20)).await;
    // The success's resolve and its recovery's may go in either order; when the
    // recovery's (stored after the success) goes first, the success's is not sent
    // (superseded): one resolve or two, never a failure.
    assert!(
        all["items"].as_array().unwrap().iter().all(|d| {
            d["state"] == "delivered"
                && (d["last_error"].is_null()
                    || d["last_error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("not sent: superseded")))
        }),
        "{all}"
    );
    let got = got.lock().unwrap().clone();
    let actions: Vec<&str> = got.iter().map(|(a, _, _)| a.as_str()).collect();
    assert!(
        actions == ["trigger", "resolve", "resolve"] || actions == ["trigger", "resolve"],
        "{actions:?}"
    );
    let after = got[1].1 - got[0].1;
    assert!(
        after >= slow,
        "the resolve arrived {after:?} after the trigger, before its answer ({slow:?})"
    );
}

/// A resolve that must wait for the trigger of its backup still being sent holds
/// no worker meanwhile: with two workers, one sending the slow trigger, another
/// backup's trigger goes out at once instead of after the slow one's answer (a
/// waiting send used to keep its worker, and in a burst every worker).
#[tokio::test]
async fn a_resolve_waiting_for_its_trigger_holds_up_no_other_backups_alert() {
    let pd = MockServer::start().await;
    let slow = Duration::from_secs(3);
    let got = Got::default();
    Mock::given(method("POST"))
        .respond_with(SlowFirst {
            slow,
            got: std::sync::Arc::clone(&got),
        })
        .mount(&pd)
        .await;
    let app = spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             delivery: {{ workers: 2 }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"${{PD_KEY}}\", url: \"{}/v2/enqueue\" }}\n\
             routes:\n  - to: [pager]\n",
            pd.uri()
        ),
        &[("PD_KEY", KEY)],
    )
    .await;
    let post = |body: String| {
        let app = &app;
        async move {
            let r = app.post("/hooks/sb", body, &[]).await;
            assert_eq!(r.status(), 202);
        }
    };
    post(fixture("simplebackups/error.json")).await;
    wait_received(&pd, 1, Duration::from_secs(10)).await;
    // The trigger is being answered (slowly) now; its backup's success (and
    // recovery) wait for it, and then another backup fails.
    post(fixture("simplebackups/success.json")).await;
    let other = fixture("simplebackups/error.json")
        .replace("987655", "987999")
        .replace("Acme Project", "Other Project");
    post(other).await;
    let all = app.wait_settled(Duration::from_secs(20)).await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "delivered"),
        "{all}"
    );
    let got = got.lock().unwrap().clone();
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|(a, _, k)| (a.as_str(), k.as_str()))
        .collect();
    let (acme, other) = (
        "sb/Acme Server/Acme Project",
        "sb/Acme Server/Other Project",
    );
    // The success's resolve and its recovery's: the later one may supersede the
    // other if it goes first.
    assert_eq!(
        seen[..2],
        [("trigger", acme), ("trigger", other)],
        "{seen:?}"
    );
    assert!(
        seen.len() >= 3 && seen[2..].iter().all(|s| *s == ("resolve", acme)),
        "{seen:?}"
    );
    let after = got[1].1 - got[0].1;
    assert!(
        after < slow,
        "the other backup's trigger arrived {after:?} after the slow one, at or after its \
         answer ({slow:?})"
    );
    assert!(
        got[2].1 - got[0].1 >= slow,
        "a resolve went before the answer"
    );
}

/// A send put back to wait for another send of its key takes no place in the
/// destination's rate limit. Under a limit of 2 an hour, a backup's trigger is
/// being answered (slowly) while its success's resolve and its recovery's are
/// tried and put back, again and again, waiting for it; another backup's failure
/// comes meanwhile. Its trigger is the second send made, at once (before the slow
/// trigger's attempt is recorded), and the resolves wait, unsent, for a place in
/// the limit. Each try of a resolve used to take a place: the other backup's
/// trigger waited for the next window, an hour later.
#[tokio::test]
async fn a_send_waiting_for_its_key_takes_no_place_in_the_rate_limit() {
    let pd = MockServer::start().await;
    // Answered long after anything this test waits for, within the timeout.
    let slow = Duration::from_secs(30);
    let got = Got::default();
    Mock::given(method("POST"))
        .respond_with(SlowFirst {
            slow,
            got: std::sync::Arc::clone(&got),
        })
        .mount(&pd)
        .await;
    let app = spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"${{PD_KEY}}\", url: \"{}/v2/enqueue\", \
             rate_limit: 2/h, timeout: 60s }}\n\
             routes:\n  - to: [pager]\n",
            pd.uri()
        ),
        &[("PD_KEY", KEY)],
    )
    .await;
    let post = |body: String| {
        let app = &app;
        async move {
            let r = app.post("/hooks/sb", body, &[]).await;
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()
        }
    };
    let failure = post(fixture("simplebackups/error.json")).await;
    wait_received(&pd, 1, Duration::from_secs(10)).await;
    // The trigger is being answered now: the success's resolve and its
    // recovery's wait for it (tried again within a second each time).
    post(fixture("simplebackups/success.json")).await;
    let other = fixture("simplebackups/error.json")
        .replace("987655", "987999")
        .replace("Acme Project", "Other Project");
    post(other).await;
    let two = wait_for(Duration::from_secs(20), || async {
        got.lock().unwrap().len() >= 2
    })
    .await;
    let seen = |got: &Got| -> Vec<(String, String)> {
        got.lock()
            .unwrap()
            .iter()
            .map(|(a, _, k)| (a.clone(), k.clone()))
            .collect()
    };
    assert!(
        two,
        "the other backup's trigger was not sent: {:?}",
        seen(&got)
    );
    // Before the slow trigger's answer: its attempt is not recorded yet.
    let first = delivery_of(&app, failure["event_id"].as_str().unwrap()).await;
    assert_eq!(first["attempts"], json!([]), "{first}");
    let pair = |a: &str, k: &str| (a.to_string(), k.to_string());
    assert_eq!(
        seen(&got)[..2],
        [
            pair("trigger", "sb/Acme Server/Acme Project"),
            pair("trigger", "sb/Acme Server/Other Project"),
        ]
    );
    // Once the other's is recorded, the slow trigger and the two resolves are
    // left pending, and the two sends made are the limit's two.
    let three = wait_for(Duration::from_secs(10), || async {
        let pending = app.api("/api/deliveries?state=pending").await;
        pending["items"].as_array().unwrap().len() == 3
    })
    .await;
    assert!(three, "{}", app.api("/api/deliveries").await);
    assert_eq!(seen(&got).len(), 2, "{:?}", seen(&got));
}

/// SPEC §6 pages for failure, partial and missing only: a Cloud66
/// `managed_backup.started` (status unknown) reaches PagerDuty's route but
/// PagerDuty hears nothing of it; its delivery ends at once, without a request,
/// saying why. The failure after it still triggers.
#[tokio::test]
async fn an_unknown_status_sends_pagerduty_nothing_and_the_delivery_says_why() {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(accepted(
            "c66/my-production-app/server-abc123/myapp_production",
        ))
        .mount(&pd)
        .await;
    let app = spawn_app_env(
        &format!(
            "sources:\n  c66: {{ kind: cloud66 }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"${{PD_KEY}}\", url: \"{}/v2/enqueue\" }}\n\
             routes:\n  - to: [pager]\n",
            pd.uri()
        ),
        &[("PD_KEY", KEY)],
    )
    .await;
    let failed = fixture("cloud66/managed_backup.fail.json");
    let started = failed.replace("managed_backup.fail", "managed_backup.started");
    let r: Value = app
        .post("/hooks/c66", started, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["deliveries"], 1, "{r}");
    let id = r["event_id"].as_str().unwrap().to_string();
    app.wait_settled(Duration::from_secs(10)).await;
    let ev = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(ev["event"]["status"], "unknown", "{ev}");
    let d = &ev["deliveries"][0];
    assert_eq!(d["destination"], "pager");
    assert_eq!(d["state"], "delivered", "{ev}");
    let note = "not sent: status unknown (event managed_backup.started) neither opens nor \
                closes an incident: the default PagerDuty template triggers for failure, \
                partial and missing and resolves for success and recovered";
    assert_eq!(d["last_error"], note, "{ev}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{ev}");
    assert_eq!(
        attempts[0]["status"],
        Value::Null,
        "no request, no answer: {ev}"
    );
    assert_eq!(attempts[0]["error"], note);
    // The web page says so as a note of a delivered delivery, not as a failure.
    let cookie = crate::ui::sign_in(&app).await;
    let page = crate::ui::get(&app, &format!("/ui/events/{id}"), &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<p class="muted delivered-note">Note: not sent: status unknown"#),
        "{page}"
    );
    assert!(!page.contains("Last error"), "{page}");
    assert!(page.contains("ok — not sent: status unknown"), "{page}");

    let r = app.post("/hooks/c66", failed, &[]).await;
    assert_eq!(r.status(), 202);
    let got = wait_received(&pd, 1, Duration::from_secs(10)).await;
    app.wait_settled(Duration::from_secs(10)).await;
    let got_now = received_json(&pd).await;
    assert_eq!(
        got_now.len(),
        1,
        "only the failure reached PagerDuty: {got_now:?}"
    );
    assert_eq!(got[0]["event_action"], "trigger");
    assert_eq!(
        got[0]["dedup_key"],
        "c66/my-production-app/server-abc123/myapp_production"
    );
}

#[tokio::test]
async fn a_refused_event_is_dead_with_pagerdutys_own_words_and_no_key() {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"]})))
        .mount(&pd)
        .await;
    let app = app_for(&pd).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(10)).await;
    let d: &Value = &all["items"][0];
    assert_eq!(d["state"], "dead", "{all}");
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "400 is not retried"
    );
    assert_eq!(
        d["last_error"],
        "HTTP 400 from PagerDuty: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)"
    );
    assert!(!all.to_string().contains(KEY));
}

/// A template PagerDuty cannot take (text, or JSON without a summary) renders
/// fine but could never be sent: `check` says so, naming the file, before any
/// alert is lost; templates a route does not give PagerDuty are not judged by it.
#[test]
fn check_refuses_a_template_pagerduty_cannot_send() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        format!(
            "storage: {{ url: \"sqlite://data/h.db\" }}\nsources:\n  sb: {{ kind: simplebackups }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"{KEY}\" }}\n\
             \x20 hook: {{ type: webhook, url: \"http://127.0.0.1:9/in\" }}\n\
             routes:\n  - to: [pager]\n    template: short\n    continue: true\n\
             \x20 - to: [pager, hook]\n    template: nosummary\n"
        ),
    )
    .unwrap();
    let t = dir.path().join("templates");
    std::fs::write(t.join("short.pagerduty.hbs"), "{{backup}} failed\n").unwrap();
    std::fs::write(
        t.join("nosummary.pagerduty.json.hbs"),
        "{ \"event_action\": \"trigger\", \"payload\": { \"source\": \"{{server}}\", \"severity\": \"critical\" } }\n",
    )
    .unwrap();
    // Never given to PagerDuty by a route: not its business.
    std::fs::write(t.join("other.pagerduty.hbs"), "{{backup}}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .current_dir(dir.path())
        .args(["check", "-c", "relay.yaml"])
        .env_remove("HOOKRELAY_CONFIG")
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let short = t.join("short.pagerduty.hbs").display().to_string();
    let nosummary = t.join("nosummary.pagerduty.json.hbs").display().to_string();
    assert!(
        shown.contains(&format!(
            "{short}: destination \"pager\" (pagerduty) cannot send it: the PagerDuty template must be a JSON body"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "{nosummary}: destination \"pager\" (pagerduty) cannot send it:"
        )) && shown.contains("summary"),
        "{shown}"
    );
    assert!(!shown.contains("other.pagerduty"), "{shown}");
    assert!(shown.contains("2 errors"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
}

/// `check` warns (exit 0) when the routes can page PagerDuty but never bring it
/// the success or recovery that resolves the incident, as the README's grouping
/// example once did; the example as the README shows it now is quiet.
#[test]
fn check_warns_when_no_route_can_resolve_what_pagerduty_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let check = |routes: &str| {
        std::fs::write(
            dir.path().join("relay.yaml"),
            format!(
                "storage: {{ url: \"sqlite://data/h.db\" }}\nsources:\n  sb: {{ kind: simplebackups }}\n\
                 destinations:\n  pager: {{ type: pagerduty, routing_key: \"{KEY}\" }}\n  \
                 ops-slack: {{ type: console }}\nroutes:\n{routes}"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .current_dir(dir.path())
            .args(["check", "-c", "relay.yaml"])
            .env_remove("HOOKRELAY_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains(KEY), "{stdout}");
        stdout
    };
    let before = check(
        "  - match: { status: [failure, missing] }\n    to: [ops-slack, pager]\n    \
         group: { wait: 30s, by: [status], max: 50 }\n",
    );
    assert!(
        before.starts_with(
            "relay.yaml: ok, 1 warning\nwarnings (1):\n  routes[0].to[1]: sends failures to the \
             PagerDuty destination \"pager\", but no route can send it a success or a recovery \
             (status success or recovered), so PagerDuty never resolves the incidents it opens; \
             add a route for them, e.g. - { match: { status: [success, recovered] }, to: [pager] }\n"
        ),
        "{before}"
    );
    let after = check(
        "  - match: { status: [failure, missing] }\n    to: [ops-slack, pager]\n    \
         group: { wait: 30s, by: [status], max: 50 }\n  \
         - match: { status: [success, recovered] }\n    to: [pager]\n",
    );
    assert!(after.starts_with("relay.yaml: ok\n"), "{after}");
    assert!(!after.contains("warning"), "{after}");
}

/// `render` (and `send`) say that PagerDuty is sent nothing for an event of
/// status unknown, and why, instead of a request body.
#[test]
fn render_says_pagerduty_is_sent_nothing_for_an_unknown_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        format!(
            "storage: {{ url: \"sqlite://data/h.db\" }}\nsources:\n  c66: {{ kind: cloud66 }}\n\
             destinations:\n  pager: {{ type: pagerduty, routing_key: \"{KEY}\" }}\n\
             routes:\n  - to: [pager]\n"
        ),
    )
    .unwrap();
    let started = fixture("cloud66/managed_backup.fail.json")
        .replace("managed_backup.fail", "managed_backup.started");
    std::fs::write(dir.path().join("started.json"), started).unwrap();
    for cmd in ["render", "send"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .current_dir(dir.path())
            .args([cmd, "-c", "relay.yaml", "--source", "c66", "started.json"])
            .env_remove("HOOKRELAY_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {stdout}");
        assert!(
            stdout.ends_with(
                "delivery to pager (pagerduty, template default):\n(nothing is sent: status \
                 unknown (event managed_backup.started) neither opens nor closes an incident: \
                 the default PagerDuty template triggers for failure, partial and missing and \
                 resolves for success and recovered)\n"
            ),
            "{cmd}: {stdout}"
        );
    }
}
