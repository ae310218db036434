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
