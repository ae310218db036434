//! Ingest: every fixture end to end, authentication, error statuses, dedup,
//! unrouted events.

use std::time::Duration;

use hookrelay::auth::sign;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SOURCES: &str = r#"
sources:
  cloud66: { kind: cloud66, token: c66-token }
  centurylink: { kind: centurylink, token: [old-ctl, ctl-token] }
  simplebackups: { kind: simplebackups, secret: [sb-old, sb-secret] }
"#;

async fn ok_server(status: u16) -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_string("ok"))
        .mount(&s)
        .await;
    s
}

/// Posts a fixture with the right credentials for its provider.
pub async fn post_fixture(app: &TestApp, kind: &str, file: &str) -> reqwest::Response {
    let body = fixture(file);
    match kind {
        "cloud66" => app.post("/hooks/cloud66?token=c66-token", body, &[]).await,
        "centurylink" => {
            app.post(
                "/hooks/centurylink",
                body,
                &[("Authorization", "Bearer ctl-token")],
            )
            .await
        }
        _ => {
            let sig = sign("sb-secret", body.as_bytes());
            app.post("/hooks/simplebackups", body, &[("SB-Signature", &sig)])
                .await
        }
    }
}

/// What a person must read in the alert for each fixture.
fn expected_words(file: &str) -> Vec<&'static str> {
    match file {
        "cloud66/backup.verification.failed.json" => {
            vec![
                "my-production-app",
                "myapp_production",
                "server-abc123",
                "Backup verification failed",
                "Cloud66 gave no reason for the failure",
                "Verification result: \"Backup verified successfully\"",
                "❌",
            ]
        }
        "cloud66/managed_backup.fail.json" => {
            vec![
                "my-production-app",
                "myapp_production",
                "managed_backup.fail",
                "❌",
            ]
        }
        "centurylink/failed.json" => vec![
            "testServerId20190201013933",
            "TestAccountPolicyName20190201013935",
            "❌",
        ],
        "centurylink/failed-text-only.json" => {
            vec![
                "testServerId20190102013933",
                "TestAccountPolicyName20190102013933",
                "❌",
            ]
        }
        "centurylink/missing.json" => vec![
            "testServerId20181228013921",
            "TestAccountPolicyName20181228013921",
            "MISSING",
        ],
        "centurylink/missing-text-only.json" => {
            vec!["testServerId20181228013921", "2018-12-20", "MISSING"]
        }
        "centurylink/partial_success.json" => {
            vec!["IL1TESTWIND0803", "andy-test-windows-20181019", "⚠"]
        }
        "centurylink/partial_success-text-only.json" => vec!["IL1TESTWIND0803", "ZZZ USERS", "⚠"],
        "centurylink/success.json" => vec!["UC1BAADUBUN1605", "✅"],
        "centurylink/success-text-only.json" => vec!["TESTUBUNTUTEST", "ZZZ etc", "✅"],
        "simplebackups/error.json" => vec!["Acme Project", "Acme Server", "❌"],
        "simplebackups/success.json" => vec!["Acme Project", "Acme Server", "✅"],
        other => panic!("no expectations for fixture {other}"),
    }
}

#[tokio::test]
async fn every_fixture_reaches_slack_teams_and_a_webhook_with_the_right_words() {
    let slack = ok_server(200).await;
    let teams = ok_server(202).await;
    let hook = ok_server(204).await;
    let app = spawn_app(&format!(
        r#"{SOURCES}
admin: {{ token: {ADMIN} }}
# One message per fixture: no backup.recovered between them (tested in watch.rs).
watch: {{ recovered: false }}
destinations:
  slack: {{ type: slack, webhook_url: "{}/services/T/B/X", rate_limit: 1000/s }}
  teams: {{ type: teams, webhook_url: "{}/workflows/1" }}
  hook:  {{ type: webhook, url: "{}/in", headers: {{ X-Key: k1 }} }}
routes:
  - to: [slack, teams, hook]
"#,
        slack.uri(),
        teams.uri(),
        hook.uri()
    ))
    .await;

    let fixtures = all_fixtures();
    assert_eq!(fixtures.len(), 12);
    for (kind, file) in &fixtures {
        let r = post_fixture(&app, kind, file).await;
        assert_eq!(r.status(), 202, "{file}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["deliveries"], 3, "{file}: {v}");
        assert_eq!(v["duplicate"], false);
    }
    let n = fixtures.len();
    let slack_bodies = wait_received(&slack, n, Duration::from_secs(20)).await;
    let teams_bodies = wait_received(&teams, n, Duration::from_secs(20)).await;
    let hook_bodies = wait_received(&hook, n, Duration::from_secs(20)).await;

    for (_, file) in &fixtures {
        let words = expected_words(file);
        for (name, bodies) in [
            ("slack", &slack_bodies),
            ("teams", &teams_bodies),
            ("webhook", &hook_bodies),
        ] {
            assert!(
                bodies.iter().any(|b| {
                    let t = all_text(b);
                    words.iter().all(|w| t.contains(w))
                }),
                "no {name} message for {file} contains all of {words:?}:\n{}",
                bodies
                    .iter()
                    .map(all_text)
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            );
        }
    }
    for b in &teams_bodies {
        assert_eq!(b["type"], "message");
        let a = &b["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert!(a.as_object().unwrap().contains_key("contentUrl") && a["contentUrl"].is_null());
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
    }
    for r in hook.received_requests().await.unwrap() {
        assert_eq!(r.headers.get("x-key").unwrap(), "k1");
    }
    let all = app.wait_settled(Duration::from_secs(10)).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3 * n);
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{all}");
}

#[tokio::test]
async fn an_unrecognised_payload_reaches_slack_with_its_source_and_an_escaped_excerpt() {
    let slack = ok_server(200).await;
    let app = spawn_app_drained(&format!(
        "{SOURCES}destinations:\n  slack: {{ type: slack, webhook_url: \"{}/s\" }}\nroutes:\n  - match: {{ status: unknown }}\n    to: [slack]\n",
        slack.uri()
    ))
    .await;
    let body = json!({"event": "backup.started", "host": "<db-1> & co", "note": "<!channel>"});
    let r = app
        .post("/hooks/cloud66?token=c66-token", body.to_string(), &[])
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(app.drain(3).await, 1);
    let got = received_json(&slack).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["text"], "❓ Unrecognised payload on source cloud66");
    let text = all_text(&got[0]);
    // What came, escaped for Slack: no @channel ping, no forged link.
    assert!(
        text.contains(r#"Payload: {"event":"backup.started","host":"&lt;db-1&gt; &amp; co","note":"&lt;!channel&gt;"}"#),
        "{text}"
    );
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(text.contains("source `cloud66`"), "{text}");
}

/// A base64 token (`openssl rand -base64 24` has `+`, `/` and `=`) pasted into
/// the URL as it is: Cloud66 and CenturyLink can only use the URL, and do not
/// retry a 401.
#[tokio::test]
async fn a_base64_token_pasted_into_the_url_as_it_is_is_accepted() {
    let app = spawn_app(
        "sources:\n  cloud66: { kind: cloud66, token: \"Zk+9/q2w==\", dedup_window: 0s }\nadmin: { token: ADMIN }\n"
            .replace("ADMIN", ADMIN)
            .as_str(),
    )
    .await;
    let body = fixture("cloud66/managed_backup.fail.json");
    for (url, want) in [
        ("/hooks/cloud66?token=Zk+9/q2w==", 202),
        ("/hooks/cloud66?token=Zk%2B9%2Fq2w%3D%3D", 202),
        ("/hooks/cloud66?x=1&token=Zk+9/q2w==&y=2", 202),
        ("/hooks/cloud66?token=Zk 9/q2w==", 401),
        ("/hooks/cloud66?token=Zk+9/q2w==&token=nope", 401),
    ] {
        let r = app.post(url, body.clone(), &[]).await;
        assert_eq!(r.status(), want, "{url}");
    }
    let v: Value = app
        .get("/api/events", Some(ADMIN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3, "{v}");
}

#[tokio::test]
async fn tokens_in_header_or_url_and_signatures_are_checked() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    let body = fixture("cloud66/managed_backup.fail.json");

    let r = app.post("/hooks/cloud66", body.clone(), &[]).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    let r = app
        .post("/hooks/cloud66?token=nope", body.clone(), &[])
        .await;
    assert_eq!(r.status(), 401);
    let r = app
        .post(
            "/hooks/cloud66",
            body.clone(),
            &[("Authorization", "Bearer c66-token")],
        )
        .await;
    assert_eq!(r.status(), 202);
    // Rotation: the old CenturyLink token still works, in the URL.
    let r = app
        .post(
            "/hooks/centurylink?token=old-ctl",
            fixture("centurylink/failed.json"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 202);

    let sb = fixture("simplebackups/error.json");
    let r = app.post("/hooks/simplebackups", sb.clone(), &[]).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "missing signature header SB-Signature");
    let wrong = sign("not-the-secret", sb.as_bytes());
    let r = app
        .post(
            "/hooks/simplebackups",
            sb.clone(),
            &[("SB-Signature", &wrong)],
        )
        .await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid signature in header SB-Signature");
    // A signature over other bytes (the body re-serialized) does not pass.
    let reserialized = serde_json::to_string(&serde_json::from_str::<Value>(&sb).unwrap()).unwrap();
    let other = sign("sb-secret", reserialized.as_bytes());
    let r = app
        .post(
            "/hooks/simplebackups",
            sb.clone(),
            &[("SB-Signature", &other)],
        )
        .await;
    assert_eq!(r.status(), 401);
    // Refused requests stored nothing.
    let events = app.api("/api/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 2, "{events}");
    let old = sign("sb-old", sb.as_bytes());
    let r = app
        .post("/hooks/simplebackups", sb, &[("SB-Signature", &old)])
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn bad_requests_get_a_clear_json_error_and_store_nothing() {
    let app = spawn_app(&format!(
        "{SOURCES}\n  open: {{ kind: cloud66 }}\nserver: {{ listen: \"127.0.0.1:0\", max_body_bytes: 4096 }}\nadmin: {{ token: {ADMIN} }}\n"
    ))
    .await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/hooks/nosuch",
            b"{}".to_vec(),
            404,
            "unknown source \"nosuch\"",
        ),
        (
            "/hooks/open",
            b"{\"a\":".to_vec(),
            400,
            "body is not valid JSON",
        ),
        (
            "/hooks/open",
            b"[1,2]".to_vec(),
            400,
            "body must be a JSON object",
        ),
        ("/hooks/open", b"".to_vec(), 400, "body is not valid JSON"),
        (
            "/hooks/open",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
            400,
            "body is not valid UTF-8",
        ),
        (
            "/hooks/open",
            format!("{{\"a\":\"{}\"}}", "x".repeat(5000)).into_bytes(),
            413,
            "body is larger than 4096 bytes",
        ),
        (
            "/hooks/open",
            format!("{}{}", "[".repeat(1500), "]".repeat(1500)).into_bytes(),
            400,
            "body is not valid JSON",
        ),
        (
            // Valid JSON, but too deep to be read back once stored inside its event.
            "/hooks/open",
            format!("{}1{}", "{\"a\":".repeat(127), "}".repeat(127)).into_bytes(),
            400,
            "body is nested more than 100 levels deep",
        ),
    ];
    for (path, body, status, msg) in cases {
        let r = app.post(path, body, &[]).await;
        assert_eq!(r.status(), status, "{path} {msg}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().starts_with(msg),
            "{v} vs {msg}"
        );
    }
    let r = app.get("/hooks/open", None).await;
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "method not allowed");
    for path in ["/hooks", "/hooks/", "/hooks/open/extra", "/hooksopen"] {
        let r = app.post(path, r#"{"hello": "world"}"#, &[]).await;
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "no such endpoint", "{path}");
    }
    assert_eq!(app.api("/api/events").await["items"], json!([]));

    // The server is still serving, and unfamiliar JSON is accepted, not dropped.
    let r = app.post("/hooks/open", r#"{"hello": "world"}"#, &[]).await;
    assert_eq!(r.status(), 202);
    let events = app.api("/api/events").await;
    assert_eq!(events["items"][0]["status"], "unknown");
    assert_eq!(events["items"][0]["provider"], "cloud66");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"hookrelay_events_rejected_total{source="open",reason="bad_json"} 6"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hookrelay_events_received_total{source="open",status="unknown"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_duplicate_within_the_window_creates_no_deliveries() {
    let hook = ok_server(200).await;
    let app = spawn_app(&format!(
        "{SOURCES}\n  nodedup: {{ kind: simplebackups, dedup_window: 0s }}\nadmin: {{ token: {ADMIN} }}\nwatch: {{ recovered: false }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - to: [hook]\n",
        hook.uri()
    ))
    .await;
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    // SimpleBackups retrying the same event (same id).
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["deliveries"], 0);
    assert_eq!(second["event_id"], first["event_id"]);
    // A different event is not a duplicate.
    let r = post_fixture(&app, "simplebackups", "simplebackups/success.json").await;
    assert_eq!(r.status(), 202);
    // Without an id, the body's hash is the key.
    let body = fixture("cloud66/managed_backup.fail.json");
    assert_eq!(
        app.post("/hooks/cloud66?token=c66-token", body.clone(), &[])
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post("/hooks/cloud66?token=c66-token", body, &[])
            .await
            .status(),
        200
    );
    // dedup_window: 0s turns it off.
    let sb = fixture("simplebackups/error.json");
    assert_eq!(
        app.post("/hooks/nodedup", sb.clone(), &[]).await.status(),
        202
    );
    assert_eq!(app.post("/hooks/nodedup", sb, &[]).await.status(), 202);

    app.wait_settled(Duration::from_secs(10)).await;
    assert_eq!(hook.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn an_event_no_route_matches_is_kept_as_unrouted() {
    let hook = ok_server(200).await;
    let app = spawn_app(&format!(
        "{SOURCES}\nadmin: {{ token: {ADMIN} }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - match: {{ environment: production }}\n    to: [hook]\n",
        hook.uri()
    ))
    .await;
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 0);
    let e = app
        .api(&format!("/api/events/{}", v["event_id"].as_str().unwrap()))
        .await;
    assert_eq!(e["routed"], false);
    assert_eq!(e["event"]["server"], "Acme Server");
    // Stored as sent.
    let sent: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    assert_eq!(e["event"]["raw"], sent);
    assert_eq!(e["event"]["raw"]["storage"]["name"], "Acme Storage");
    let list = app.api("/api/events").await;
    assert_eq!(list["items"][0]["routed"], false);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"hookrelay_events_unrouted_total{source="simplebackups"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn simplebackups_events_route_on_payload_fields() {
    let hook = ok_server(200).await;
    let app = spawn_app(&format!(
        "{SOURCES}\nadmin: {{ token: {ADMIN} }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - match: {{ raw.storage.name: Acme Storage }}\n    to: [hook]\n",
        hook.uri()
    ))
    .await;
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 1, "{v}");

    let other = fixture("simplebackups/error.json")
        .replace("987655", "987656")
        .replace("Acme Storage", "Other Storage");
    let sig = sign("sb-secret", other.as_bytes());
    let r = app
        .post("/hooks/simplebackups", other, &[("SB-Signature", &sig)])
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deliveries"], 0, "{v}");
    assert_eq!(v["duplicate"], false, "{v}");
    let bodies = wait_received(&hook, 1, Duration::from_secs(10)).await;
    assert_eq!(bodies[0]["raw"]["storage"]["name"], "Acme Storage");
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_and_the_server_keeps_serving() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    let signed = |body: &str| sign("sb-secret", body.as_bytes());

    // 10 MB body against the default 1 MiB limit: refused before it is read whole.
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let r = app
        .post(
            "/hooks/simplebackups",
            big.clone(),
            &[("SB-Signature", &signed(&big))],
        )
        .await;
    assert_eq!(r.status(), 413);
    // The same without a Content-Length (chunked): refused while streaming.
    let addr = app.address.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(
            b"POST /hooks/centurylink?token=ctl-token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let chunk = format!("100000\r\n{}\r\n", " ".repeat(0x100000));
        for _ in 0..4 {
            if c.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // A huge header: an answer (a 4xx), not a dropped connection.
    let r = app
        .client
        .post(format!("{}/hooks/simplebackups", app.address))
        .header("X-Huge", "h".repeat(100_000))
        .body("{}")
        .send()
        .await
        .expect("an answer to a huge header, not a dropped connection");
    assert!(r.status().is_client_error(), "{}", r.status());
    // Providers do not always send application/json: JSON is JSON whatever the
    // label, and a form body is not JSON.
    let sb = fixture("simplebackups/success.json");
    let r = app
        .client
        .post(format!("{}/hooks/simplebackups", app.address))
        .header("Content-Type", "text/plain")
        .header("SB-Signature", signed(&sb))
        .body(sb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let form = "status=error&id=1";
    let r = app
        .client
        .post(format!("{}/hooks/simplebackups", app.address))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("SB-Signature", signed(form))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A replayed, validly signed request is a duplicate, not a second alert.
    let r = app
        .post(
            "/hooks/simplebackups",
            sb.clone(),
            &[("SB-Signature", &signed(&sb))],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["duplicate"], true);
    // Still serving, and only the one good event was stored.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    let events = app.api("/api/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn when_storage_fails_readiness_and_webhooks_say_so_and_recover() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    // Break the database under the running server, from another connection.
    let db = rusqlite::Connection::open(app._dir.path().join("hookrelay.db")).unwrap();
    db.execute_batch("PRAGMA foreign_keys = OFF; ALTER TABLE events RENAME TO events_away;")
        .unwrap();

    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "storage is not usable");
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    assert_eq!(r.status(), 503, "never a 202 for what was not stored");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "the event could not be stored; try again");
    assert_eq!(app.get("/healthz", None).await.status(), 200);

    // Repaired: ready again, and the retried webhook is stored.
    db.execute_batch("ALTER TABLE events_away RENAME TO events;")
        .unwrap();
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    let r = post_fixture(&app, "simplebackups", "simplebackups/error.json").await;
    assert_eq!(r.status(), 202);
    let events = app.api("/api/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn metrics_are_prometheus_text_unless_openmetrics_is_asked_for_and_list_every_queue() {
    let slack = ok_server(200).await;
    let app = spawn_app_drained(&format!(
        "{SOURCES}destinations:\n  idle: {{ type: webhook, url: \"{0}/i\" }}\n  busy: {{ type: webhook, url: \"{0}/b\" }}\nroutes:\n  - match: {{ provider: cloud66 }}\n    to: [busy]\n",
        slack.uri()
    ))
    .await;
    let r = post_fixture(&app, "cloud66", "cloud66/managed_backup.fail.json").await;
    assert_eq!(r.status(), 202);

    let r = app.get("/metrics", None).await;
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"hookrelay_queue_depth{destination="idle"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"hookrelay_queue_depth{destination="busy"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE hookrelay_events_received_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");

    // Prometheus' own Accept header prefers OpenMetrics.
    let r = app
        .client
        .get(format!("{}/metrics", app.address))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains(r#"hookrelay_queue_depth{destination="idle"} 0"#),
        "{om}"
    );

    // Drained: both at 0, both still listed.
    assert_eq!(app.drain(3).await, 1);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"hookrelay_queue_depth{destination="busy"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"hookrelay_queue_depth{destination="idle"} 0"#),
        "{text}"
    );
}
