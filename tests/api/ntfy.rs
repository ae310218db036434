//! ntfy against a local stand-in that answers as an ntfy server does: the
//! published message (200), and `{"code": 42901, "http": 429, "error": …}` style
//! errors. hookrelay publishes JSON to the server's root with the topic inside.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const TOKEN: &str = "tk_AgQdq7mVBoFD37zQVN29RhuSECRET";

fn ntfy_error(code: u32, http: u16, error: &str) -> ResponseTemplate {
    ResponseTemplate::new(http).set_body_json(json!({
        "code": code, "http": http, "error": error,
        "link": "https://ntfy.sh/docs/publish/#limitations"}))
}

async fn app_for(server: &MockServer) -> TestApp {
    spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  phone: {{ type: ntfy, url: \"{}/ntfy/our-backups\", token: \"${{NTFY_TOKEN}}\" }}\n\
             routes:\n  - to: [phone]\n",
            server.uri()
        ),
        &[("NTFY_TOKEN", TOKEN)],
    )
    .await
}

#[tokio::test]
async fn a_failure_is_published_at_max_priority_after_ntfys_rate_limit() {
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ntfy_error(42901, 429, "limit reached: too many requests"))
        .up_to_n_times(1)
        .mount(&ntfy)
        .await;
    Mock::given(method("POST"))
        .and(path("/ntfy/"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sPs71M8A2T", "time": 1_764_480_000, "expires": 1_764_523_200,
            "event": "message", "topic": "our-backups", "message": "…"})))
        .mount(&ntfy)
        .await;
    let app = app_for(&ntfy).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .post("/hooks/sb", fixture("simplebackups/success.json"), &[])
        .await;
    assert_eq!(r.status(), 202);

    let all = app.wait_settled(Duration::from_secs(15)).await;
    let items = all["items"].as_array().unwrap();
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{all}");
    let attempts: usize = items
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .sum();
    // The failure, the success and the backup.recovered it brings: one 429, then
    // all three delivered.
    assert_eq!(items.len(), 3, "{all}");
    assert_eq!(attempts, 4, "{all}");
    let refused = items
        .iter()
        .flat_map(|d| d["attempts"].as_array().unwrap())
        .find(|a| a["status"] == 429)
        .unwrap();
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 429 from ntfy: limit reached: too many requests (code 42901)"),
        "{refused}"
    );
    assert!(!all.to_string().contains(TOKEN));

    let got = received_json(&ntfy).await;
    let failure = got
        .iter()
        .rev()
        .find(|m| m["priority"] == 5)
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(failure["topic"], "our-backups");
    assert_eq!(
        failure["title"],
        "Backup failed: Acme Project on Acme Server"
    );
    assert_eq!(failure["tags"], json!(["rotating_light"]));
    let message = failure["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("Server: Acme Server\nBackup: Acme Project\nWhen: 2021-10-10 10:10 UTC\n"),
        "{message}"
    );
    assert!(
        message.contains("\n\nBackup Acme Project failed\n\n"),
        "{message}"
    );
    let good: Vec<&Value> = got.iter().filter(|m| m["priority"] == 2).collect();
    let titles: Vec<&str> = good.iter().map(|m| m["title"].as_str().unwrap()).collect();
    assert!(
        titles.contains(&"Backup succeeded: Acme Project on Acme Server")
            && titles.contains(&"Backup recovered: Acme Project on Acme Server"),
        "{titles:?}"
    );
    assert!(good
        .iter()
        .all(|m| m["tags"] == json!(["white_check_mark"])));
}

#[tokio::test]
async fn a_forbidden_topic_is_dead_at_once() {
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ntfy_error(40301, 403, "forbidden"))
        .expect(1)
        .mount(&ntfy)
        .await;
    let app = app_for(&ntfy).await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(15)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "dead", "{all}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    let err = d["last_error"].as_str().unwrap();
    assert!(
        err.starts_with(
            "HTTP 403 from ntfy: forbidden (code 40301); this user or token may not publish"
        ),
        "{err}"
    );
}
