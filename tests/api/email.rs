//! Email through a real SMTP server speaking SMTP over TCP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

// Multi-threaded: the SMTP sink is read with a blocking wait, which must not stall
// the app running on the same runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_arrives_as_an_email_with_text_and_html_parts() {
    let smtp = SmtpSink::start(Some(("relay", "s3cret")));
    let app = spawn_app_env(
        &format!(
            r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
destinations:
  mail:
    type: email
    smtp: "smtp://relay:${{SMTP_PASS}}@127.0.0.1:{}"
    from: "hookrelay <relay@example.com>"
    to: [dba@example.com, ops@example.com]
    subject: "[{{{{upper status}}}}] {{{{backup}}}} on {{{{server}}}}"
routes:
  - to: [mail]
"#,
            smtp.port
        ),
        &[("SMTP_PASS", "s3cret")],
    )
    .await;
    let mut payload: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    payload["server"]["name"] = json!("Acme <b>Server</b> & Co 🚀");
    let r = app.post("/hooks/sb", payload.to_string(), &[]).await;
    assert_eq!(r.status(), 202);

    let m = smtp.next_message(Duration::from_secs(20));
    assert_eq!(m["mail_from"], "relay@example.com");
    assert_eq!(m["rcpt_tos"], json!(["dba@example.com", "ops@example.com"]));
    assert_eq!(
        m["subject"],
        "[FAILURE] Acme Project on Acme <b>Server</b> & Co 🚀"
    );
    let parts = m["parts"].as_array().unwrap();
    let part = |ct: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == ct)
            .unwrap_or_else(|| panic!("no {ct} part in {m}"))["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let text = part("text/plain");
    assert!(text.contains("Acme Project"), "{text}");
    assert!(
        text.contains("Acme <b>Server</b> & Co 🚀"),
        "plain text is not escaped: {text}"
    );
    assert!(text.contains("Backup Acme Project failed"), "{text}");
    let html = part("text/html");
    assert!(
        html.contains("Acme &lt;b&gt;Server&lt;/b&gt; &amp; Co 🚀"),
        "{html}"
    );
    assert!(!html.contains("<b>Server"), "{html}");

    app.wait_settled(Duration::from_secs(10)).await;
    let d = app.api("/api/deliveries?state=delivered").await;
    assert_eq!(d["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_wrong_smtp_password_is_permanent_and_a_down_server_is_retried() {
    let smtp = SmtpSink::start(Some(("relay", "s3cret")));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
delivery: {{ retry_schedule: [50ms], max_age: 300ms }}
destinations:
  wrong: {{ type: email, smtp: "smtp://relay:nope@127.0.0.1:{}", from: a@example.com, to: [b@example.com] }}
  down: {{ type: email, smtp: "smtp://127.0.0.1:{closed_port}", from: a@example.com, to: [b@example.com] }}
routes:
  - to: [wrong, down]
"#,
        smtp.port
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(15)).await;
    let items = all["items"].as_array().unwrap();
    let by = |n: &str| {
        items
            .iter()
            .find(|d| d["destination"] == n)
            .unwrap()
            .clone()
    };
    let wrong = by("wrong");
    assert_eq!(wrong["state"], "dead");
    assert_eq!(wrong["attempts"].as_array().unwrap().len(), 1, "{wrong}");
    assert!(
        !wrong["last_error"].as_str().unwrap().contains("nope"),
        "password leaked: {wrong}"
    );
    let down = by("down");
    assert_eq!(down["state"], "dead");
    assert!(down["attempts"].as_array().unwrap().len() >= 2, "{down}");
    assert!(
        down["last_error"].as_str().unwrap().contains("gave up"),
        "{down}"
    );
}
