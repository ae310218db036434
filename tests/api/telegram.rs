//! Telegram (Bot API `sendMessage`) against a local stand-in that answers as the
//! Bot API does: `{"ok": true, …}`, 429 with `parameters.retry_after`, 400 with
//! its `description`. The bot token is in the URL path: the real binary's log,
//! `check` and `render` are read to make sure it never shows.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const SECRET_PART: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

fn sent(m: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {
        "message_id": 7, "date": 1_764_480_000, "chat": {"id": m, "type": "supergroup"}}}))
}

#[tokio::test]
async fn a_failure_arrives_as_escaped_html_and_retry_after_in_the_json_is_honoured() {
    let tg = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}})))
        .up_to_n_times(1)
        .mount(&tg)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendMessage")))
        .respond_with(sent(&json!(-1001234567890_i64)))
        .mount(&tg)
        .await;
    let app = spawn_app_env(
        &format!(
            "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\n\
             destinations:\n  tg: {{ type: telegram, token: \"${{TG_TOKEN}}\", chat_id: -1001234567890, api_url: \"{}\" }}\n\
             routes:\n  - to: [tg]\n",
            tg.uri()
        ),
        &[("TG_TOKEN", TOKEN)],
    )
    .await;
    let mut payload: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    payload["server"]["name"] = json!("Acme <b>Server</b> & \"Co\" 🚀");
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
    // The schedule says 100 ms; Telegram's JSON said one second.
    assert!(gap.num_milliseconds() >= 950, "retried after {gap}");

    let got = received_json(&tg).await;
    assert_eq!(got.len(), 2);
    let m = &got[1];
    assert_eq!(m["chat_id"], -1001234567890_i64);
    assert_eq!(m["parse_mode"], "HTML");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "❌ <b>Backup failed: Acme Project on Acme &lt;b&gt;Server&lt;/b&gt; &amp; \"Co\" 🚀</b>\n\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("<b>Server:</b> Acme &lt;b&gt;Server&lt;/b&gt; &amp; \"Co\" 🚀\n"),
        "{text}"
    );
    assert!(
        text.contains("<b>When:</b> 2021-10-10 10:10 UTC\n"),
        "{text}"
    );
    assert!(
        text.contains("<blockquote>Backup Acme Project failed</blockquote>"),
        "{text}"
    );
    assert!(!all.to_string().contains(SECRET_PART));
}

/// The real binary, its log at debug level, a chat Telegram refuses and a Bot API
/// that cannot be reached: the log says why, never with the token.
#[tokio::test]
async fn the_bot_token_never_reaches_the_log_check_or_render() {
    let tg = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "ok": false, "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1009876543210_i64}})))
        .mount(&tg)
        .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("relay.yaml"),
        format!(
            "storage: {{ url: \"sqlite://data/hookrelay.db\" }}\nadmin: {{ token: {ADMIN} }}\n\
             server: {{ listen: \"127.0.0.1:0\" }}\n\
             delivery: {{ retry_schedule: [50ms], max_age: 400ms }}\n\
             sources:\n  sb: {{ kind: simplebackups }}\n\
             destinations:\n\
             \x20 moved: {{ type: telegram, token: \"{TOKEN}\", chat_id: \"-4001234567\", api_url: \"{}\" }}\n\
             \x20 down: {{ type: telegram, token: \"{TOKEN}\", chat_id: \"@backups\", api_url: \"http://127.0.0.1:{closed_port}\" }}\n\
             routes:\n  - to: [moved, down]\n",
            tg.uri()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("error.json"),
        fixture("simplebackups/error.json"),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_hookrelay");

    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .current_dir(dir.path())
            .args(args)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let check = run(&["check", "-c", "relay.yaml"]);
    assert!(check.contains("sendMessage to chat @backups"), "{check}");
    let render = run(&["render", "-c", "relay.yaml", "--source", "sb", "error.json"]);
    assert!(render.contains("\"parse_mode\": \"HTML\""), "{render}");
    // `send` delivers once and prints each outcome, through the same code as serve.
    let send = run(&["send", "-c", "relay.yaml", "--source", "sb", "error.json"]);
    assert!(
        send.contains(
            "Telegram: chat -4001234567 was upgraded to a supergroup; set chat_id to -1009876543210"
        ),
        "{send}"
    );
    for (what, out) in [("check", &check), ("render", &render), ("send", &send)] {
        assert!(!out.contains(SECRET_PART), "token in {what} output: {out}");
    }

    // serve, logging at debug level to a file, until both deliveries are dead.
    let log_path = dir.path().join("hookrelay.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(bin)
        .current_dir(dir.path())
        .args(["serve", "-c", "relay.yaml"])
        .env("RUST_LOG", "debug")
        .env("HOOKRELAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_for(Duration::from_secs(20), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "{}", std::fs::read_to_string(&log_path).unwrap());
    let r = client
        .post(format!("{base}/hooks/sb"))
        .body(fixture("simplebackups/error.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let dead = wait_for(Duration::from_secs(20), || async {
        let v: Value = client
            .get(format!("{base}/api/deliveries?state=dead"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(dead, "{logged}");
    assert!(logged.contains("was upgraded to a supergroup"), "{logged}");
    assert!(logged.contains("could not connect"), "{logged}");
    assert!(!logged.contains(SECRET_PART), "token in the log: {logged}");
}
