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

/// An internal mail relay whose certificate only its own CA vouches for: with
/// `tls_ca_file` the email goes over STARTTLS or implicit TLS; without it the
/// certificate is refused and nothing is sent in clear text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_file_trusts_an_internal_relay_over_starttls_and_implicit_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = dir.path().join("starttls-ca.pem");
    let ca2 = dir.path().join("implicit-ca.pem");
    let starttls = SmtpSink::start_with(&["--tls", "starttls", "--ca-out", ca1.to_str().unwrap()]);
    let implicit = SmtpSink::start_with(&["--tls", "implicit", "--ca-out", ca2.to_str().unwrap()]);
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
delivery: {{ retry_schedule: [50ms], max_age: 1h }}
destinations:
  relay: {{ type: email, smtp: "smtp://127.0.0.1:{p1}?tls=required", tls_ca_file: "{ca1}", from: a@example.com, to: [b@example.com] }}
  relays: {{ type: email, smtp: "smtps://127.0.0.1:{p2}", tls_ca_file: "{ca2}", from: a@example.com, to: [c@example.com] }}
  untrusted: {{ type: email, smtp: "smtps://127.0.0.1:{p2}", from: a@example.com, to: [d@example.com] }}
  untrusted-starttls: {{ type: email, smtp: "smtp://127.0.0.1:{p1}", from: a@example.com, to: [e@example.com] }}
routes:
  - to: [relay, relays, untrusted, untrusted-starttls]
"#,
        p1 = starttls.port,
        p2 = implicit.port,
        ca1 = ca1.display(),
        ca2 = ca2.display(),
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);

    let m = starttls.next_message(Duration::from_secs(20));
    assert_eq!(m["tls"], true, "{m}");
    assert_eq!(m["rcpt_tos"], json!(["b@example.com"]));
    let m = implicit.next_message(Duration::from_secs(20));
    assert_eq!(m["tls"], true, "{m}");
    assert_eq!(m["rcpt_tos"], json!(["c@example.com"]));

    let all = app.wait_settled(Duration::from_secs(15)).await;
    let by = |n: &str| delivery_to(&all, n);
    assert_eq!(by("relay")["state"], "delivered", "{all}");
    assert_eq!(by("relays")["state"], "delivered", "{all}");
    let untrusted = by("untrusted");
    assert_eq!(untrusted["state"], "dead", "{untrusted}");
    // Dead at once, not after max_age: retrying cannot make it trusted.
    assert_eq!(
        untrusted["attempts"].as_array().unwrap().len(),
        1,
        "{untrusted}"
    );
    assert_eq!(
        untrusted["last_error"],
        "the mail server's TLS certificate was not trusted (UnknownIssuer); if an internal CA \
         signed it, set tls_ca_file to that CA's PEM file"
    );
    let untrusted = by("untrusted-starttls");
    assert_eq!(untrusted["state"], "dead", "{untrusted}");
    assert_eq!(
        untrusted["attempts"].as_array().unwrap().len(),
        1,
        "{untrusted}"
    );
    let err = untrusted["last_error"].as_str().unwrap();
    assert!(err.contains("not trusted (UnknownIssuer)"), "{err}");
    // It greeted: no advice to change the scheme.
    assert!(!err.contains("smtps://"), "{err}");
}

/// The same email through each provider's HTTP API, in that provider's own
/// request shape; Postmark's 422 is permanent with its ErrorCode and Message.
#[tokio::test]
async fn the_email_apis_get_their_own_request_shapes_and_postmark_422_is_permanent() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.sendgrid-KEY"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/mg.example.com/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "<20261130.1@mg.example.com>", "message": "Queued. Thank you."})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "pm-good-KEY"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "To": "dba@example.com", "SubmittedAt": "2026-11-30T06:00:00Z",
            "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK"})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "pm-inactive-KEY"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive."})))
        .mount(&api)
        .await;
    let url = api.uri();
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
destinations:
  sg: {{ type: email, api: {{ provider: sendgrid, key: SG.sendgrid-KEY, url: "{url}" }}, from: "hookrelay <relay@example.com>", to: [dba@example.com] }}
  mg: {{ type: email, api: {{ provider: mailgun, key: mailgun-KEY, domain: mg.example.com, url: "{url}" }}, from: "hookrelay <relay@example.com>", to: [dba@example.com] }}
  pm: {{ type: email, api: {{ provider: postmark, key: pm-good-KEY, url: "{url}" }}, from: "hookrelay <relay@example.com>", to: [dba@example.com] }}
  gone: {{ type: email, api: {{ provider: postmark, key: pm-inactive-KEY, url: "{url}" }}, from: relay@example.com, to: [left@example.com] }}
routes:
  - to: [sg, mg, pm, gone]
"#
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let all = app.wait_settled(Duration::from_secs(15)).await;
    let by = |n: &str| delivery_to(&all, n);
    for n in ["sg", "mg", "pm"] {
        assert_eq!(by(n)["state"], "delivered", "{n}: {all}");
    }
    let gone = by("gone");
    assert_eq!(gone["state"], "dead");
    assert_eq!(gone["attempts"].as_array().unwrap().len(), 1, "{gone}");
    assert_eq!(
        gone["last_error"],
        "HTTP 422 from Postmark: ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive."
    );
    assert!(!all.to_string().contains("-KEY"), "a key leaked: {all}");

    let reqs = api.received_requests().await.unwrap();
    let at = |p: &str| reqs.iter().find(|r| r.url.path() == p).unwrap();
    let subject = "[FAILURE] simplebackups error: Acme Project";
    let sg: Value = serde_json::from_slice(&at("/v3/mail/send").body).unwrap();
    assert_eq!(sg["subject"], subject);
    assert_eq!(
        sg["from"],
        json!({"email": "relay@example.com", "name": "hookrelay"})
    );
    assert_eq!(
        sg["personalizations"],
        json!([{"to": [{"email": "dba@example.com"}]}])
    );
    assert_eq!(sg["content"][0]["type"], "text/plain");
    assert_eq!(sg["content"][1]["type"], "text/html");
    let text = sg["content"][0]["value"].as_str().unwrap();
    assert!(text.contains("Backup Acme Project failed"), "{text}");
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&at("/v3/mg.example.com/messages").body)
            .into_owned()
            .collect();
    assert_eq!(form["subject"], subject);
    assert_eq!(form["from"], "hookrelay <relay@example.com>");
    assert_eq!(form["text"], text);
    assert!(form["html"].contains("<!DOCTYPE html>"));
    let pm = reqs
        .iter()
        .find(|r| {
            r.url.path() == "/email"
                && r.headers.get("x-postmark-server-token").unwrap() == "pm-good-KEY"
        })
        .unwrap();
    let pm: Value = serde_json::from_slice(&pm.body).unwrap();
    assert_eq!(pm["Subject"], subject);
    assert_eq!(pm["To"], "dba@example.com");
    assert_eq!(pm["TextBody"], text);
    assert_eq!(pm["HtmlBody"], sg["content"][1]["value"]);
}

/// A mail server that refuses some recipients: `mixed` reaches the address it
/// accepts and is delivered, naming the refused one; `gone` (every address
/// refused for good) is dead at once, naming each; `later` (one address refused
/// for now, 451) reaches the other at once and is retried for the refused one
/// only, which then gets the one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipients_are_named_and_the_others_still_get_the_email() {
    let smtp = SmtpSink::start_with(&[
        "--refuse",
        "perm@example.com=550 5.1.1 no such user",
        "--refuse",
        "x@example.com=550 5.1.1 no such user",
        "--refuse",
        "y@example.com=553 5.7.1 relaying denied",
        "--refuse-once",
        "later@example.com=451 4.3.0 try again later",
    ]);
    let app = spawn_app(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
delivery: {{ retry_schedule: [50ms], max_age: 1h }}
destinations:
  mixed: {{ type: email, smtp: "smtp://127.0.0.1:{p}", from: hr@example.com, to: [a@example.com, perm@example.com] }}
  gone: {{ type: email, smtp: "smtp://127.0.0.1:{p}", from: hr@example.com, to: [x@example.com, y@example.com] }}
  later: {{ type: email, smtp: "smtp://127.0.0.1:{p}", from: hr@example.com, to: [b@example.com, later@example.com] }}
routes:
  - to: [mixed, gone, later]
"#,
        p = smtp.port
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);

    // Three messages, in the order the server took them.
    let got: Vec<Value> = (0..3)
        .map(|_| smtp.next_message(Duration::from_secs(20))["rcpt_tos"].clone())
        .collect();
    let at = |rcpts: Value| {
        got.iter()
            .position(|g| *g == rcpts)
            .unwrap_or_else(|| panic!("no message to {rcpts} in {got:?}"))
    };
    at(json!(["a@example.com"]));
    // b@ first, and the retry to later@ only: b@ gets no second copy.
    assert!(at(json!(["b@example.com"])) < at(json!(["later@example.com"])));

    let all = app.wait_settled(Duration::from_secs(15)).await;
    let by = |n: &str| delivery_to(&all, n);
    let mixed = by("mixed");
    assert_eq!(mixed["state"], "delivered", "{mixed}");
    let note = "delivered to a@example.com; refused perm@example.com: SMTP 550 from the mail \
                server: 5.1.1 no such user (not retried)";
    assert_eq!(mixed["last_error"], note, "{mixed}");
    let attempts = mixed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{mixed}");
    assert_eq!(attempts[0]["status"], 250);
    assert_eq!(attempts[0]["error"], note);

    let gone = by("gone");
    assert_eq!(gone["state"], "dead", "{gone}");
    assert_eq!(gone["attempts"].as_array().unwrap().len(), 1, "{gone}");
    assert_eq!(
        gone["last_error"],
        "every recipient was refused: refused x@example.com: SMTP 550 from the mail server: \
         5.1.1 no such user; refused y@example.com: SMTP 553 from the mail server: 5.7.1 \
         relaying denied"
    );

    let later = by("later");
    assert_eq!(later["state"], "delivered", "{later}");
    let attempts = later["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{later}");
    assert_eq!(attempts[0]["status"], 451);
    assert_eq!(
        attempts[0]["error"],
        "delivered to b@example.com; not yet to later@example.com: SMTP 451 from the mail \
         server: 4.3.0 try again later"
    );
    assert_eq!(attempts[1]["status"], 250);
    assert_eq!(attempts[1]["error"], Value::Null);
}

/// An email that some addresses took while one was refused for now (452) is
/// retried by a new process on the same database (hookrelay restarted, or another
/// replica): the addresses reached are stored with the delivery, so the retry goes
/// to the refused one only and nobody gets a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_goes_only_to_the_address_refused_for_now() {
    let smtp = SmtpSink::start_with(&["--refuse-once", "full@example.com=452 4.2.2 mailbox full"]);
    // Retries due at once, sent when the test drains the queue.
    let app = spawn_app_drained(&format!(
        r#"sources:
  sb: {{ kind: simplebackups }}
admin: {{ token: {ADMIN} }}
delivery: {{ retry_schedule: [0s], max_age: 1h }}
destinations:
  mail: {{ type: email, smtp: "smtp://127.0.0.1:{}", from: hr@example.com, to: [a@example.com, full@example.com, c@example.com] }}
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
    assert_eq!(app.drain(1).await, 1);
    let first = smtp.next_message(Duration::from_secs(20));
    assert_eq!(first["rcpt_tos"], json!(["a@example.com", "c@example.com"]));

    // The first process sends nothing more; a new one on its database retries.
    let again = app.another_drained().await;
    assert_eq!(hookrelay::worker::drain(&again, 5).await, 1);
    let retry = smtp.next_message(Duration::from_secs(20));
    assert_eq!(retry["rcpt_tos"], json!(["full@example.com"]));
    // The header still shows everyone it was addressed to.
    let data = retry["data"].as_str().unwrap();
    assert!(data.contains("a@example.com"), "{data}");

    let all = app.wait_settled(Duration::from_secs(10)).await;
    let mail = delivery_to(&all, "mail");
    assert_eq!(mail["state"], "delivered", "{mail}");
    let attempts = mail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{mail}");
    assert_eq!(
        attempts[0]["error"],
        "delivered to a@example.com, c@example.com; not yet to full@example.com: SMTP 452 \
         from the mail server: 4.2.2 mailbox full"
    );
    assert_eq!(attempts[1]["status"], 250);
    assert_eq!(attempts[1]["error"], Value::Null);
}

/// The delivery to destination `name` in a `/api/deliveries` answer.
fn delivery_to(all: &Value, name: &str) -> Value {
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == name)
        .unwrap()
        .clone()
}
