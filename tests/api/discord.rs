//! Discord: a local server answering as Discord does, by API version.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn discord_app_yaml(webhook_url: &str) -> String {
    format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  chat: {{ type: discord, webhook_url: \"{webhook_url}\" }}\n\
         routes:\n  - to: [chat]\n"
    )
}

/// The URL people paste (`/api/webhooks/<id>/<token>`, no version) is Discord's
/// default API v6, whose 429 says `Retry-After: 6457` and `"retry_after": 6457`
/// in milliseconds; read as seconds that held every Discord alert for an hour.
/// hookrelay posts to `/api/v10/webhooks/…` instead (thread_id kept), where the
/// same 6.5 s limit is `"retry_after": 6.457` and `Retry-After: 7`, seconds.
#[tokio::test]
async fn a_discord_rate_limit_holds_the_alert_for_seconds_not_an_hour() {
    let discord = MockServer::start().await;
    // As v6 answers the unversioned path: milliseconds.
    Mock::given(method("POST"))
        .and(path("/api/webhooks/1/tok"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "6457")
                .set_body_json(json!({"message": "You are being rate limited.",
                    "retry_after": 6457, "global": false})),
        )
        .mount(&discord)
        .await;
    // As v10 answers: seconds, once; then the stored message.
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/1/tok"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"message": "You are being rate limited.",
                    "retry_after": 6.457, "global": false})),
        )
        .up_to_n_times(1)
        .mount(&discord)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/1/tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .mount(&discord)
        .await;
    let app = spawn_app(&discord_app_yaml(&format!(
        "{}/api/webhooks/1/tok?thread_id=7",
        discord.uri()
    )))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    wait_received(&discord, 1, Duration::from_secs(10)).await;
    let ok = wait_for(Duration::from_secs(10), || async {
        let v = app.api("/api/deliveries").await;
        v["items"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(ok);
    let d = app.api("/api/deliveries").await["items"][0].clone();
    let next =
        chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = next.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(wait < 60, "a 6.5 s rate limit holds the alert for {wait} s");
    assert!(
        d["last_error"].as_str().unwrap().contains("rate limited"),
        "{d}"
    );

    let all = app.wait_settled(Duration::from_secs(30)).await;
    assert_eq!(all["items"][0]["state"], "delivered", "{all}");
    let got = discord.received_requests().await.unwrap();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.url.path(), "/api/v10/webhooks/1/tok");
        let query: Vec<_> = r.url.query_pairs().collect();
        assert!(
            query.contains(&("thread_id".into(), "7".into())),
            "{query:?}"
        );
        assert!(query.contains(&("wait".into(), "true".into())), "{query:?}");
    }
}

/// Discord's 400 for a body it will not take (code 50035) names the field in
/// `errors`; the recorded error says which one.
#[tokio::test]
async fn a_discord_400_keeps_which_field_was_refused() {
    let discord = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v10/webhooks/1/tok"))
        .and(query_param("wait", "true"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 50035,
            "errors": {"embeds": {"0": {"url": {"_errors": [
                {"code": "URL_TYPE_INVALID_URL", "message": "Not a well formed URL."}]}}}},
            "message": "Invalid Form Body"})))
        .mount(&discord)
        .await;
    let app = spawn_app(&discord_app_yaml(&format!(
        "{}/api/webhooks/1/tok",
        discord.uri()
    )))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(10)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "dead", "{d}");
    assert_eq!(
        d["last_error"],
        "HTTP 400 from Discord: Invalid Form Body (code 50035): \
         embeds.0.url: Not a well formed URL.",
        "{d}"
    );
    assert_eq!(discord.received_requests().await.unwrap().len(), 1);
}
