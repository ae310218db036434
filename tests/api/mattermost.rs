//! Mattermost (incoming webhook) against a local stand-in that answers as a
//! Mattermost server does: `ok` (200), 429 from its rate limiter with
//! `Retry-After` and `X-RateLimit-*`, and its JSON app errors.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const KEY: &str = "mxb3kq9iwtd7bxwq1r4h5ySECRET";

fn app_yaml(server: &MockServer, extra: &str) -> String {
    format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
         destinations:\n  mm: {{ type: mattermost, webhook_url: \"${{MM_URL}}\", channel: backups, username: hookrelay{extra} }}\n\
         routes:\n  - to: [mm]\n",
    )
    .replace("${MM_URL}", &format!("{}/hooks/{KEY}", server.uri()))
}

#[tokio::test]
async fn a_failure_arrives_as_escaped_markdown_after_the_rate_limiters_wait() {
    let mm = MockServer::start().await;
    // Mattermost's rate limiter refuses the first try for a second.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Limit", "10")
                .insert_header("X-RateLimit-Remaining", "0")
                .insert_header("X-RateLimit-Reset", "1")
                .set_body_string("limit exceeded\n"),
        )
        .up_to_n_times(1)
        .mount(&mm)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/hooks/{KEY}")))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&mm)
        .await;
    let app = spawn_app(&app_yaml(&mm, "")).await;
    let mut payload: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    payload["server"]["name"] = json!("@channel *Acme* <b>Server</b>");
    let r = app.post("/hooks/sb", payload.to_string(), &[]).await;
    assert_eq!(r.status(), 202);

    let all = app.wait_settled(Duration::from_secs(15)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "delivered", "{all}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[0]["status"], 429);
    let t = |a: &Value| chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap()).unwrap();
    let gap = t(&attempts[1]) - t(&attempts[0]);
    // The schedule says 100 ms; X-RateLimit-Reset said one second.
    assert!(gap.num_milliseconds() >= 950, "retried after {gap}");

    let got = received_json(&mm).await;
    assert_eq!(got.len(), 2);
    let m = &got[1];
    assert_eq!(m["channel"], "backups");
    assert_eq!(m["username"], "hookrelay");
    let text = m["text"].as_str().unwrap();
    let server = "@\u{200B}channel \\*Acme\\* \\<b>Server\\</b>";
    assert!(
        text.starts_with(&format!(
            "❌ **Backup failed: Acme Project on {server}**\n\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("**Server:** {server}\n")), "{text}");
    assert!(text.contains("**When:** 2021-10-10 10:10 UTC\n"), "{text}");
    assert!(text.contains("\n> Backup Acme Project failed\n"), "{text}");
    assert!(!all.to_string().contains(KEY));
}

#[tokio::test]
async fn an_unknown_channel_is_dead_at_once_with_mattermosts_words() {
    let mm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "id": "web.incoming_webhook.channel.app_error",
            "message": "Couldn't find the channel.",
            "detailed_error": "", "request_id": "8kq3nqsx1jf1f8xtbo6f3m5d3e", "status_code": 404})))
        .expect(1)
        .mount(&mm)
        .await;
    let app = spawn_app(&app_yaml(&mm, "")).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(15)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "dead", "{all}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    let err = d["last_error"].as_str().unwrap();
    assert!(
        err.starts_with(
            "HTTP 404 from Mattermost: Couldn't find the channel. (web.incoming_webhook.channel.app_error)"
        ),
        "{err}"
    );
    assert!(!all.to_string().contains(KEY));
}

#[tokio::test]
async fn a_routes_channel_overrides_the_configured_one() {
    let mm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&mm)
        .await;
    let yaml = app_yaml(&mm, "").replace(
        "routes:\n  - to: [mm]\n",
        "routes:\n  - to: [mm]\n    channel: \"ops-{{source}}\"\n",
    );
    let app = spawn_app(&yaml).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let got = wait_received(&mm, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0]["channel"], "ops-sb", "{:#}", got[0]);
}
