//! Google Chat (a space's incoming webhook) against a local stand-in that answers
//! as Google does: the created message (200), 429 `RESOURCE_EXHAUSTED` and 400
//! `INVALID_ARGUMENT` in Google's JSON error shape. The URL's key and token never
//! show in the admin API.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const KEY: &str = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
const TOKEN: &str = "SECRETo2hYg3kJ1-tK0cC2R8y7k5zPq6u9w0e4r3t2y1";

fn google_error(code: u16, status: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({"error": {"code": code, "message": message, "status": status}}))
}

async fn app_for(server: &MockServer) -> TestApp {
    spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  gc: {{ type: google_chat, webhook_url: \"${{GCHAT_URL}}\" }}\n\
             routes:\n  - to: [gc]\n"
        ),
        &[(
            "GCHAT_URL",
            &format!(
                "{}/v1/spaces/AAAAx1/messages?key={KEY}&token={TOKEN}",
                server.uri()
            ),
        )],
    )
    .await
}

fn at(a: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_failure_arrives_as_a_card_after_a_quota_refusal_one_message_a_second() {
    let gc = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        ))
        .up_to_n_times(1)
        .mount(&gc)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/spaces/AAAAx1/messages"))
        .and(query_param("key", KEY))
        .and(query_param("token", TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "spaces/AAAAx1/messages/Qk2.Qk2", "sender": {"type": "BOT"}})))
        .mount(&gc)
        .await;
    let app = app_for(&gc).await;
    let mut payload: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    payload["server"]["name"] = json!("Acme <b>Server</b> & \"Co\" <users/all>");
    assert_eq!(
        app.post("/hooks/sb", payload.to_string(), &[])
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post("/hooks/sb", fixture("simplebackups/success.json"), &[])
            .await
            .status(),
        202
    );

    let all = app.wait_settled(Duration::from_secs(20)).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{all}");
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{all}");
    // Every attempt, the refused one too, at least a second apart (the default
    // rate limit, the space's quota).
    let mut times: Vec<_> = items
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap().iter().map(at))
        .collect();
    times.sort();
    assert_eq!(times.len(), 3, "{all}");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap.num_milliseconds() >= 950, "sent {gap} apart: {all}");
    }
    assert!(!all.to_string().contains(TOKEN) && !all.to_string().contains(KEY));

    let got = received_json(&gc).await;
    let failure = got
        .iter()
        .find(|m| m["fallbackText"].as_str().unwrap().starts_with("❌"))
        .unwrap();
    let card = &failure["cardsV2"][0]["card"];
    assert_eq!(card["header"]["title"], "❌ Backup failed");
    // The header is plain text; rows are card HTML, escaped.
    assert_eq!(
        card["header"]["subtitle"],
        "Acme Project on Acme <b>Server</b> & \"Co\" <users/all>"
    );
    let rows = &card["sections"][0]["widgets"];
    assert_eq!(rows[0]["decoratedText"]["topLabel"], "Server");
    assert_eq!(
        rows[0]["decoratedText"]["text"],
        "Acme &lt;b&gt;Server&lt;/b&gt; &amp; \"Co\" &lt;users/all&gt;"
    );
    assert_eq!(rows[2]["decoratedText"]["text"], "2021-10-10 10:10 UTC");
    assert_eq!(
        card["sections"][1]["widgets"][0]["textParagraph"]["text"],
        "Backup Acme Project failed"
    );
    let success = got
        .iter()
        .find(|m| m["fallbackText"].as_str().unwrap().starts_with("✅"))
        .unwrap();
    assert_eq!(
        success["cardsV2"][0]["card"]["header"]["title"],
        "✅ Backup succeeded"
    );
}

#[tokio::test]
async fn an_invalid_argument_is_dead_at_once_with_googles_words() {
    let gc = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unknown name \"cardsV3\": Cannot find field.",
        ))
        .expect(1)
        .mount(&gc)
        .await;
    let app = app_for(&gc).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(15)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "dead", "{all}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(
        d["last_error"],
        "HTTP 400 from Google Chat: Invalid JSON payload received. Unknown name \"cardsV3\": Cannot find field. (INVALID_ARGUMENT)"
    );
}
