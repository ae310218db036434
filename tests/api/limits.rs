//! Hostile clients at ingest: slow bodies and headers are cut off, bodies not yet
//! authenticated share a bounded budget, tokens are checked before the body is
//! read, every credential presented must be right, long names are not echoed
//! whole, and a UTF-8 byte order mark is not an error.

use std::time::Duration;

use hookrelay::auth::sign;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const SOURCES: &str = r#"
sources:
  c66: { kind: cloud66, token: [c66-old, c66-token] }
  sb: { kind: simplebackups, secret: sb-secret }
"#;

/// Opens a raw connection and writes `head` (and nothing more).
async fn open(app: &TestApp, head: &[u8]) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(head).await.expect("write");
    c
}

/// Reads what the server sends until it closes the connection (or 60 s pass, so
/// a server that never answers fails the test instead of hanging it).
async fn answer(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn json_of(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", None).await.text().await.unwrap()
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_gets_408_and_the_connection_closes() {
    let app = spawn_app(&format!(
        "{SOURCES}\nserver: {{ listen: \"127.0.0.1:0\", read_timeout: 300ms }}\n"
    ))
    .await;
    let mut c = open(
        &app,
        format!(
            "POST /hooks/sb HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nSB-Signature: {}\r\n\r\n{{",
            "0".repeat(64)
        )
        .as_bytes(),
    )
    .await;
    // read_to_end returns only once the server closes the connection.
    let got = answer(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert_eq!(
        json_of(&got)["error"],
        "the body did not arrive within 300ms",
        "{got}"
    );
    // The same for a token source, whose token was right.
    let mut c = open(
        &app,
        b"POST /hooks/c66?token=c66-token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":",
    )
    .await;
    let got = answer(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(
        metrics(&app)
            .await
            .contains(r#"hookrelay_events_rejected_total{source="sb",reason="timeout"} 1"#),
        "{}",
        metrics(&app).await
    );
    // Still serving.
    let body = r#"{"id": 1, "status": "error"}"#;
    let r = app
        .post(
            "/hooks/sb",
            body,
            &[("SB-Signature", &sign("sb-secret", body.as_bytes()))],
        )
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn headers_that_arrive_too_slowly_are_cut_off() {
    let app = spawn_app(&format!(
        "{SOURCES}\nserver: {{ listen: \"127.0.0.1:0\", read_timeout: 300ms }}\n"
    ))
    .await;
    let mut c = open(&app, b"POST /hooks/sb HTTP/1.1\r\nHost: x\r\n").await;
    let got = answer(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    // A connection that sends nothing at all is answered and closed too.
    let mut c = open(&app, b"").await;
    let got = answer(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
}

#[tokio::test]
async fn unauthenticated_bodies_share_a_bounded_budget_and_503_past_it() {
    let app = spawn_app(&format!(
        "{SOURCES}\nadmin: {{ token: {ADMIN} }}\nserver: {{ listen: \"127.0.0.1:0\", read_timeout: 120s, max_unauthenticated_bytes: 65536 }}\n"
    ))
    .await;
    // Two signed bodies, 30,000 bytes of 100,000 sent each, held open: 60,000 of
    // the 65,536 bytes are taken until their signatures can be checked.
    let head = format!(
        "POST /hooks/sb HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nSB-Signature: {}\r\n\r\n{}",
        "0".repeat(64),
        " ".repeat(30_000)
    );
    let mut held = vec![
        open(&app, head.as_bytes()).await,
        open(&app, head.as_bytes()).await,
    ];

    // Another unauthenticated 10 KB body does not fit: 503 with Retry-After, once
    // the server has read what the held connections sent.
    let big = format!(r#"{{"id": 2, "pad": "{}"}}"#, "x".repeat(10_000));
    let big_sig = sign("sb-secret", big.as_bytes());
    let mut last = None;
    for _ in 0..1500 {
        let r = app
            .post("/hooks/sb", big.clone(), &[("SB-Signature", &big_sig)])
            .await;
        let busy = r.status() == 503;
        last = Some((
            r.status(),
            r.headers().get("retry-after").cloned(),
            r.text().await.unwrap_or_default(),
        ));
        if busy {
            break;
        }
        // A held body whose bytes arrived while that post was being read did not
        // fit beside it and was refused (answered and closed): hold it again.
        for c in held.iter_mut() {
            let mut buf = [0u8; 1];
            if !matches!(c.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                *c = open(&app, head.as_bytes()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, retry_after, text) = last.unwrap();
    assert_eq!(status, 503, "never refused: last answer {text}");
    assert_eq!(retry_after.expect("Retry-After").to_str().unwrap(), "120");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["error"],
        "too many webhooks are arriving at once; try again"
    );

    // A webhook proven by its token takes nothing from the budget: accepted.
    let r = app
        .post(
            "/hooks/c66",
            r#"{"event_type": "backup.failed"}"#,
            &[("Authorization", "Bearer c66-token")],
        )
        .await;
    assert_eq!(r.status(), 202);
    // A small signed one still fits in what is left.
    let small = r#"{"id": 3, "status": "error"}"#;
    let r = app
        .post(
            "/hooks/sb",
            small,
            &[("SB-Signature", &sign("sb-secret", small.as_bytes()))],
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(metrics(&app)
        .await
        .contains(r#"hookrelay_events_rejected_total{source="sb",reason="busy"}"#));

    // The held bodies go away: the budget is whole again and the big one is stored
    // (202, or 200 if an early try got in before the held bytes were read).
    drop(held);
    let accepted = wait_for(Duration::from_secs(30), || async {
        app.post("/hooks/sb", big.clone(), &[("SB-Signature", &big_sig)])
            .await
            .status()
            .is_success()
    })
    .await;
    assert!(accepted);
    let events = app.api("/api/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 3, "{events}");
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_the_body_is_read() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    // Declared bodies of 1 MB (within the limit) and 100 MB, one byte sent: the
    // answer comes without the body (a server waiting for it would never answer
    // here, the test's connection sends nothing more).
    for length in [1_000_000u64, 100_000_000] {
        for auth in ["?token=wrong", ""] {
            let mut c = open(
                &app,
                format!(
                    "POST /hooks/c66{auth} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await;
            let got = answer(&mut c).await;
            assert!(
                got.starts_with("HTTP/1.1 401"),
                "{length} {auth:?}: {got:?}"
            );
        }
    }
    assert_eq!(app.api("/api/events").await["items"], serde_json::json!([]));
}

#[tokio::test]
async fn a_wrong_credential_is_refused_even_next_to_a_right_one() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    let body = r#"{"event_type": "backup.failed"}"#;
    let cases: [(&str, Option<&str>); 5] = [
        ("/hooks/c66?token=wrong", Some("Bearer c66-token")),
        ("/hooks/c66?token=c66-token", Some("Bearer wrong")),
        ("/hooks/c66?token=c66-token&token=wrong", None),
        ("/hooks/c66?token=wrong&token=c66-token", None),
        ("/hooks/c66?token=c66-token&token=", None),
    ];
    for (path, bearer) in cases {
        let headers: Vec<(&str, &str)> = bearer.map(|b| ("Authorization", b)).into_iter().collect();
        let r = app.post(path, body, &headers).await;
        assert_eq!(r.status(), 401, "{path} {bearer:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid token", "{path}");
    }
    assert_eq!(app.api("/api/events").await["items"], serde_json::json!([]));
    // Both right (old and new during a rotation): accepted.
    let r = app
        .post(
            "/hooks/c66?token=c66-old",
            body,
            &[("Authorization", "Bearer c66-token")],
        )
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn a_long_unknown_source_name_is_shortened_in_the_error() {
    let app = spawn_app(SOURCES).await;
    let name = "n".repeat(40_000);
    let r = app.post(&format!("/hooks/{name}"), "{}", &[]).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.len() < 200, "{} bytes: {msg}", msg.len());
    assert_eq!(
        msg,
        format!("unknown source \"{}… (40000 bytes)\"", "n".repeat(64))
    );
}

#[tokio::test]
async fn a_utf8_byte_order_mark_before_the_json_is_accepted() {
    let app = spawn_app(&format!("{SOURCES}\nadmin: {{ token: {ADMIN} }}\n")).await;
    let json = r#"{"id": 77, "status": "error", "project": {"name": "Acme"}}"#;
    let body = format!("\u{feff}{json}");
    // Signed over the bytes as sent, BOM included.
    let r = app
        .post(
            "/hooks/sb",
            body.clone(),
            &[("SB-Signature", &sign("sb-secret", body.as_bytes()))],
        )
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = app
        .post(
            "/hooks/c66",
            "\u{feff}{\"event_type\": \"backup.failed\"}",
            &[("Authorization", "Bearer c66-token")],
        )
        .await;
    assert_eq!(r.status(), 202);
    let events = app.api("/api/events").await;
    let id = events["items"][1]["id"].as_str().unwrap().to_string();
    let e = app.api(&format!("/api/events/{id}")).await;
    assert_eq!(
        e["event"]["raw"],
        serde_json::from_str::<Value>(json).unwrap()
    );
    // A BOM alone, or twice, is still not JSON.
    let r = app
        .post(
            "/hooks/c66",
            "\u{feff}\u{feff}{}",
            &[("Authorization", "Bearer c66-token")],
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn requests_nobody_reads_are_answered_and_their_connection_closed() {
    let app = spawn_app(SOURCES).await;
    // A chunked body that never ends, to a path that does not exist and to a hook
    // with the wrong method: the answer comes at once, and the connection closes
    // instead of draining the body for as long as the client trickles it.
    for line in ["POST /nowhere", "PUT /hooks/sb", "POST /hooks/nosuch"] {
        let mut c = open(
            &app,
            format!("{line} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n")
                .as_bytes(),
        )
        .await;
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut out))
            .await
            .is_ok();
        let got = String::from_utf8_lossy(&out);
        assert!(got.starts_with("HTTP/1.1 40"), "{line}: {got:?}");
        assert!(closed, "{line}: connection kept open after {got:?}");
    }
}
