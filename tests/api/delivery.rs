//! Delivery: retries, Retry-After, dead letters, per-destination isolation and
//! pacing, routing by environment, Slack bot channels, escaping and shortening.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const C66: &str = "sources:\n  c66: { kind: cloud66 }\n";

async fn post_c66(app: &TestApp, body: &str) -> Value {
    let r = app.post("/hooks/c66", body.to_string(), &[]).await;
    assert_eq!(r.status(), 202);
    r.json().await.unwrap()
}

fn c66_with(f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value =
        serde_json::from_str(&fixture("cloud66/backup.verification.failed.json")).unwrap();
    f(&mut v);
    v.to_string()
}

async fn event(app: &TestApp, id: &Value) -> Value {
    app.api(&format!("/api/events/{}", id.as_str().unwrap()))
        .await
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_destination_takes_it() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(2)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    // Retries due at once, sent when the test drains the queue: no schedule to wait on.
    let app = spawn_app_drained(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndelivery: {{ retry_schedule: [0s, 0s, 0s], max_age: 1h }}\ndestinations:\n  s: {{ type: slack, webhook_url: \"{}/hook\", rate_limit: 100/s }}\nroutes:\n  - to: [s]\n",
        slack.uri()
    ))
    .await;
    let v = post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    assert!(slack.received_requests().await.unwrap().is_empty());
    assert_eq!(app.drain(10).await, 3);
    assert_eq!(app.drain(10).await, 0, "nothing left to send");
    let e = event(&app, &v["event_id"]).await;
    let d = &e["deliveries"][0];
    assert_eq!(d["state"], "delivered", "{e}");
    let statuses: Vec<Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(503), json!(503), json!(200)]);
    assert!(
        d["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("upstream down"),
        "{d}"
    );
    assert_eq!(slack.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  s: {{ type: slack, webhook_url: \"{}/hook\", rate_limit: 100/s }}\nroutes:\n  - to: [s]\n",
        slack.uri()
    ))
    .await;
    let v = post_c66(&app, &fixture("cloud66/managed_backup.fail.json")).await;
    app.wait_settled(Duration::from_secs(10)).await;
    let e = event(&app, &v["event_id"]).await;
    let attempts = e["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{e}");
    assert_eq!(attempts[0]["status"], 429);
    let t = |a: &Value| chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap()).unwrap();
    let gap = t(&attempts[1]) - t(&attempts[0]);
    // The schedule says 100 ms; the destination said one second.
    assert!(gap.num_milliseconds() >= 950, "retried after {gap}");
}

#[tokio::test]
async fn permanent_failures_and_spent_retries_end_dead_with_their_error() {
    let gone = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&gone)
        .await;
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&down)
        .await;
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndelivery: {{ retry_schedule: [50ms], max_age: 400ms }}\ndestinations:\n  gone: {{ type: slack, webhook_url: \"{}/h\", rate_limit: 100/s }}\n  down: {{ type: webhook, url: \"{}/h\" }}\nroutes:\n  - to: [gone, down]\n",
        gone.uri(),
        down.uri()
    ))
    .await;
    let v = post_c66(&app, &fixture("cloud66/managed_backup.fail.json")).await;
    assert_eq!(v["deliveries"], 2);
    app.wait_settled(Duration::from_secs(10)).await;
    let e = event(&app, &v["event_id"]).await;
    let by = |name: &str| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == name)
            .unwrap()
            .clone()
    };
    let g = by("gone");
    assert_eq!(g["state"], "dead");
    assert_eq!(
        g["attempts"].as_array().unwrap().len(),
        1,
        "a 404 is not retried"
    );
    assert!(g["last_error"].as_str().unwrap().contains("404"), "{g}");
    assert!(
        g["last_error"].as_str().unwrap().contains("no_service"),
        "{g}"
    );
    let d = by("down");
    assert_eq!(d["state"], "dead");
    assert!(d["attempts"].as_array().unwrap().len() >= 2, "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("gave up"), "{d}");
    let dead = app.api("/api/deliveries?state=dead").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 2);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"hookrelay_deliveries_total{destination="gone",outcome="dead"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stored_payload_that_cannot_be_read_ends_dead_with_the_reason_and_nothing_is_sent() {
    // The payload (`raw`) of a claimed event is read only when its message is
    // written: broken there, the delivery still ends dead with the reason, both
    // for the default webhook body and for a template.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let app = spawn_app_drained(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  hook: {{ type: webhook, url: \"{0}/hook\" }}\n  chat: {{ type: slack, webhook_url: \"{0}/chat\", rate_limit: 100/s }}\nroutes:\n  - to: [hook, chat]\n",
        server.uri()
    ))
    .await;
    let v = post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    assert_eq!(v["deliveries"], 2);
    let db = rusqlite::Connection::open(app._dir.path().join("hookrelay.db")).unwrap();
    // `..."raw":{...}}` becomes `..."raw":{...},}`: the fields still read, `raw` not.
    let n = db
        .execute(
            "UPDATE events SET event = substr(event, 1, length(event) - 1) || ',}'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(app.drain(3).await, 2);
    assert!(server.received_requests().await.unwrap().is_empty());
    let dead = app.api("/api/deliveries?state=dead").await;
    let dead = dead["items"].as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in dead {
        let err = d["last_error"].as_str().unwrap();
        assert!(err.contains("stored event unreadable"), "{d}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    }
}

#[tokio::test]
async fn a_burst_to_a_slack_webhook_is_paced_and_a_dead_destination_delays_no_other() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&slack)
        .await;
    let fast = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&fast)
        .await;
    // A destination that accepts connections and never answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole = black_hole.local_addr().unwrap();
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  slow: {{ type: webhook, url: \"http://{hole}/x\", timeout: 1h }}\n  s: {{ type: slack, webhook_url: \"{}/h\", rate_limit: 5/s }}\n  fast: {{ type: webhook, url: \"{}/h\" }}\nroutes:\n  - to: [slow, s, fast]\n",
        slack.uri(),
        fast.uri()
    ))
    .await;
    let started = Instant::now();
    for i in 0..10 {
        let body = c66_with(|v| v["timestamp"] = json!(1_700_000_000 + i));
        post_c66(&app, &body).await;
    }
    // The fast destination gets everything while the slow one still hangs on its
    // first sends (its timeout is an hour): nothing of the slow one has ended.
    wait_received(&fast, 10, Duration::from_secs(10)).await;
    let pending = app.api("/api/deliveries?state=pending").await;
    let slow_pending = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["destination"] == "slow")
        .count();
    assert_eq!(slow_pending, 10, "{pending}");
    // 10 sends at 5/s: the first 5 at once, the next 5 a second later — never more.
    wait_received(&slack, 10, Duration::from_secs(10)).await;
    let slack_done = started.elapsed();
    assert!(
        slack_done >= Duration::from_millis(950),
        "10 sends at 5/s took only {slack_done:?}"
    );
    assert_eq!(slack.received_requests().await.unwrap().len(), 10);
    let fast_got = fast.received_requests().await.unwrap().len();
    assert_eq!(fast_got, 10);
    drop(black_hole);
}

#[tokio::test]
async fn production_stacks_go_to_one_channel_and_staging_to_another() {
    let prod = MockServer::start().await;
    let staging = MockServer::start().await;
    for s in [&prod, &staging] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(s)
            .await;
    }
    let app = spawn_app(&format!(
        "{C66}destinations:\n  prod: {{ type: slack, webhook_url: \"{}/p\" }}\n  staging: {{ type: slack, webhook_url: \"{}/s\" }}\nroutes:\n  - match: {{ environment: production, status: [failure, missing] }}\n    to: [prod]\n  - match: {{ stack: {{ regex: \"^staging-\" }} }}\n    to: [staging]\n",
        prod.uri(),
        staging.uri()
    ))
    .await;
    post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    let body = c66_with(|v| {
        v["stack"]["name"] = json!("staging-app");
        v["stack"]["environment"] = json!("staging");
    });
    post_c66(&app, &body).await;
    let p = wait_received(&prod, 1, Duration::from_secs(5)).await;
    let s = wait_received(&staging, 1, Duration::from_secs(5)).await;
    assert!(all_text(&p[0]).contains("my-production-app"));
    assert!(all_text(&s[0]).contains("staging-app"));
    assert_eq!(prod.received_requests().await.unwrap().len(), 1);
    assert_eq!(staging.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn slack_bot_posts_to_a_per_stack_channel_and_ok_false_is_a_failure() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .up_to_n_times(2)
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        )
        .mount(&api)
        .await;
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  bot: {{ type: slack, token: xoxb-test, channel: \"#backups-{{{{stack}}}}\", api_url: \"{}/api\" }}\nroutes:\n  - match: {{ stack: override-me }}\n    to: [bot]\n    channel: \"#special\"\n  - to: [bot]\n",
        api.uri()
    ))
    .await;
    post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    let got = wait_received(&api, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0]["channel"], "#backups-my-production-app");
    post_c66(
        &app,
        &c66_with(|v| v["stack"]["name"] = json!("override-me")),
    )
    .await;
    let got = wait_received(&api, 2, Duration::from_secs(5)).await;
    assert_eq!(got[1]["channel"], "#special");
    let v = post_c66(&app, &c66_with(|v| v["stack"]["name"] = json!("nochannel"))).await;
    app.wait_settled(Duration::from_secs(5)).await;
    let e = event(&app, &v["event_id"]).await;
    assert_eq!(e["deliveries"][0]["state"], "dead");
    assert!(
        e["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{e}"
    );
}

/// Slack's `ok: false` for blocks it will not take says which block in
/// `response_metadata.messages`; the recorded error keeps it.
#[tokio::test]
async fn a_slack_bot_refusal_keeps_which_block_slack_refused() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": false, "error": "invalid_blocks",
            "response_metadata": {"messages": [
                "[ERROR] must be more than 0 characters [json-pointer:/blocks/1/text/text]"]}})))
        .mount(&api)
        .await;
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndestinations:\n  bot: {{ type: slack, token: xoxb-test, channel: \"#backups\", api_url: \"{}/api\" }}\nroutes:\n  - to: [bot]\n",
        api.uri()
    ))
    .await;
    let v = post_c66(&app, &fixture("cloud66/backup.verification.failed.json")).await;
    app.wait_settled(Duration::from_secs(5)).await;
    let e = event(&app, &v["event_id"]).await;
    let d = &e["deliveries"][0];
    assert_eq!(d["state"], "dead", "{e}");
    assert_eq!(
        d["last_error"],
        "Slack refused the message: invalid_blocks: \
         blocks.1.text.text: must be more than 0 characters",
        "{e}"
    );
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_names_yield_valid_escaped_json_and_long_messages_are_shortened() {
    let slack = MockServer::start().await;
    let teams = MockServer::start().await;
    let hook = MockServer::start().await;
    for s in [&slack, &teams, &hook] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(s)
            .await;
    }
    let app = spawn_app(&format!(
        "{C66}destinations:\n  s: {{ type: slack, webhook_url: \"{}/h\", rate_limit: 100/s }}\n  t: {{ type: teams, webhook_url: \"{}/h\" }}\n  w: {{ type: webhook, url: \"{}/h\" }}\nroutes:\n  - to: [s, t, w]\n",
        slack.uri(),
        teams.uri(),
        hook.uri()
    ))
    .await;
    let nasty = "He said \"hi\" <b>bold</b> & co\\\nline2 🚀 {{stack}}";
    post_c66(
        &app,
        &c66_with(|v| {
            v["stack"]["name"] = json!(nasty);
            v["backup"]["database_name"] = json!(nasty);
        }),
    )
    .await;
    let long = "x".repeat(50_000);
    post_c66(
        &app,
        &c66_with(|v| v["backup"]["verify_result"] = json!(long)),
    )
    .await;

    let s = wait_received(&slack, 2, Duration::from_secs(5)).await;
    let t = wait_received(&teams, 2, Duration::from_secs(5)).await;
    let w = wait_received(&hook, 2, Duration::from_secs(5)).await;
    // Webhook and Teams carry the value (JSON-escaped, decoded here).
    assert!(all_text(&w[0]).contains(nasty) || all_text(&w[1]).contains(nasty));
    // Names hold one line: the newline is folded to a space (the raw payload keeps it).
    let one_line = nasty.replace('\n', " ");
    assert!(t.iter().any(|b| all_text(b).contains(&one_line)));
    // Slack text is escaped for Slack: no raw markup that Slack would interpret.
    let st = s
        .iter()
        .map(all_text)
        .find(|x| x.contains("He said"))
        .expect("slack message");
    assert!(st.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"), "{st}");
    assert!(!st.contains("<b>"), "{st}");
    assert!(st.contains("🚀"));

    // The long one is shortened, visibly, within Slack's and Teams' limits.
    let sl = s
        .iter()
        .find(|b| all_text(b).contains("xxxxxxxx"))
        .expect("long slack message");
    for block in sl["blocks"].as_array().unwrap() {
        if let Some(text) = block["text"]["text"].as_str() {
            assert!(
                text.chars().count() <= 3000,
                "section of {} chars",
                text.chars().count()
            );
        }
    }
    assert!(sl["text"].as_str().unwrap().chars().count() <= 40_000);
    assert!(
        all_text(sl).contains("x…"),
        "shortened with a visible ellipsis"
    );
    let tl = t
        .iter()
        .find(|b| all_text(b).contains("xxxxxxxx"))
        .expect("long teams message");
    assert!(
        tl.to_string().len() <= 28_000,
        "teams payload {} bytes",
        tl.to_string().len()
    );
    assert!(all_text(tl).contains("x…"));
}

/// A destination that answers 200 after `delay` and records the most requests it
/// was handling at once.
struct SlowSink {
    url: String,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_at_once: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowSink {
    async fn start(delay: Duration) -> SlowSink {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        let received = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (r, m) = (received.clone(), most_at_once.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (r, m, now) = (r.clone(), m.clone(), now.clone());
                tokio::spawn(async move {
                    let mut conn = BufReader::new(conn);
                    // One request after another on a kept-alive connection.
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        if conn.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let at_once = now.fetch_add(1, SeqCst) + 1;
                        m.fetch_max(at_once, SeqCst);
                        tokio::time::sleep(delay).await;
                        now.fetch_sub(1, SeqCst);
                        r.fetch_add(1, SeqCst);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.get_mut().write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowSink {
            url,
            received,
            most_at_once,
        }
    }

    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn most_at_once(&self) -> usize {
        self.most_at_once.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_burst_is_webhooks_waiting_for_a_sustained_spell_not_a_moment() {
    let app = spawn_app(&format!("{C66}admin: {{ token: {ADMIN} }}\n")).await;
    let gauge = app
        .shared
        .store
        .ingest_gauge()
        .expect("SQLite gathers commits");
    // At BURST, but the count has just dipped below it (as each commit answers
    // its webhooks): not a burst.
    let mut held: Vec<_> = (0..hookrelay::store::BURST)
        .map(|_| gauge.storing())
        .collect();
    for _ in 0..20 {
        held.pop();
        held.push(gauge.storing());
        assert!(!gauge.in_burst());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // At BURST for a sustained spell: a burst, until the count falls.
    assert!(wait_for(Duration::from_secs(5), || async { gauge.in_burst() }).await);
    held.pop();
    assert!(!gauge.in_burst());
}

#[tokio::test]
async fn in_a_burst_of_webhooks_each_destination_sends_one_alert_at_a_time() {
    let sink = SlowSink::start(Duration::from_millis(50)).await;
    let app = spawn_app(&format!(
        "{C66}admin: {{ token: {ADMIN} }}\ndelivery: {{ workers: 4 }}\ndestinations:\n  hook: {{ type: webhook, url: \"{}\" }}\nroutes:\n  - to: [hook]\n",
        sink.url
    ))
    .await;
    let post_many = |from: usize| {
        let app = &app;
        async move {
            for i in from..from + 12 {
                post_c66(app, &c66_with(|v| v["id"] = json!(format!("burst-{i}")))).await;
            }
        }
    };

    // Webhooks waiting for their commit, as in a burst: one send at a time once
    // they have waited that many for a sustained spell.
    let gauge = app
        .shared
        .store
        .ingest_gauge()
        .expect("SQLite gathers commits");
    let burst: Vec<_> = (0..hookrelay::store::BURST)
        .map(|_| gauge.storing())
        .collect();
    assert!(wait_for(Duration::from_secs(5), || async { gauge.in_burst() }).await);
    post_many(0).await;
    assert!(wait_for(Duration::from_secs(20), || async { sink.received() == 12 }).await);
    assert_eq!(sink.most_at_once(), 1);

    // The burst is over: `delivery.workers` sends at once again.
    drop(burst);
    assert!(!gauge.in_burst());
    post_many(12).await;
    assert!(wait_for(Duration::from_secs(20), || async { sink.received() == 24 }).await);
    assert!(sink.most_at_once() > 1, "{}", sink.most_at_once());
    assert!(sink.most_at_once() <= 4, "{}", sink.most_at_once());
    let all = app.wait_settled(Duration::from_secs(10)).await;
    assert!(all["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["state"] == "delivered"));
}
