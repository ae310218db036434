//! The real binary as a process: kill -9 and restart lose nothing, SIGTERM lets
//! in-flight sends finish, SIGHUP reloads (and keeps the old config when the new
//! one is broken).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Serve {
    child: Child,
    port: u16,
}

impl Serve {
    pub(crate) async fn start(dir: &Path, port: u16) -> Serve {
        Self::start_env(dir, port, &[]).await
    }

    /// [`start`](Self::start) with more environment variables.
    pub(crate) async fn start_env(dir: &Path, port: u16, env: &[(&str, &str)]) -> Serve {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("hookrelay.log"))
            .unwrap();
        let child = Command::new(BIN)
            .current_dir(dir)
            .args(["serve", "-c", "relay.yaml"])
            .env("RUST_LOG", "info")
            .env("HOOKRELAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hookrelay starts");
        let s = Serve { child, port };
        let client = reqwest::Client::new();
        let ready = wait_for(Duration::from_secs(20), || async {
            client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(
            ready,
            "not ready: {}",
            std::fs::read_to_string(dir.join("hookrelay.log")).unwrap_or_default()
        );
        s
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, destinations: &str, routes: &str) {
    std::fs::write(
        dir.join("relay.yaml"),
        format!(
            "storage: {{ url: \"sqlite://data/hookrelay.db\" }}\nadmin: {{ token: {ADMIN} }}\n\
             delivery: {{ retry_schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms], max_age: 1h }}\n\
             sources:\n  sb: {{ kind: simplebackups }}\ndestinations:\n{destinations}\nroutes:\n{routes}\n"
        ),
    )
    .unwrap();
}

fn sb_event(id: u64) -> String {
    let mut v: Value = serde_json::from_str(&fixture("simplebackups/error.json")).unwrap();
    v["id"] = json!(id);
    v.to_string()
}

async fn api(client: &reqwest::Client, s: &Serve, path: &str) -> Value {
    client
        .get(s.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `id`s the sink received, with repeats.
async fn ids_received(sink: &MockServer) -> Vec<String> {
    received_json(sink)
        .await
        .iter()
        .map(|b| b["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn kill_9_while_the_destination_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest_port = free_port(); // nothing listens: connections are refused
    write_config(
        dir.path(),
        &format!("  sink: {{ type: webhook, url: \"http://127.0.0.1:{dest_port}/in\" }}"),
        "  - to: [sink]",
    );
    let port = free_port();
    let client = reqwest::Client::new();
    let s = Serve::start(dir.path(), port).await;
    for id in 0..200u64 {
        let r = client
            .post(s.url("/hooks/sb"))
            .body(sb_event(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Attempts are failing against the refused port.
    let failing = wait_for(Duration::from_secs(10), || async {
        let m = client
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.contains(r#"hookrelay_deliveries_total{destination="sink",outcome="retry"}"#)
    })
    .await;
    assert!(failing);
    s.kill9();

    // The destination comes back; hookrelay restarts on the same database.
    let listener = TcpListener::bind(("127.0.0.1", dest_port)).unwrap();
    let sink = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let s = Serve::start(dir.path(), port).await;
    wait_received(&sink, 200, Duration::from_secs(30)).await;
    let settled = wait_for(Duration::from_secs(10), || async {
        api(&client, &s, "/api/deliveries?state=delivered&limit=1000").await["items"]
            .as_array()
            .unwrap()
            .len()
            == 200
    })
    .await;
    assert!(settled);
    let ids = ids_received(&sink).await;
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 200, "every accepted event delivered");
    // None had succeeded before the kill, so none is sent twice.
    assert_eq!(ids.len(), 200, "no duplicates: {}", ids.len());
}

#[tokio::test]
async fn with_http_proxy_set_destinations_send_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // The destination's host does not resolve: only the proxy can deliver it.
    write_config(
        dir.path(),
        "  sink: { type: webhook, url: \"http://hooks.invalid/in?key=k\" }",
        "  - to: [sink]",
    );
    let proxy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&proxy)
        .await;
    let port = free_port();
    let s = Serve::start_env(dir.path(), port, &[("HTTP_PROXY", &proxy.uri())]).await;
    let r = reqwest::Client::new()
        .post(s.url("/hooks/sb"))
        .body(sb_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_received(&proxy, 1, Duration::from_secs(20)).await;
    let got = proxy.received_requests().await.unwrap();
    // The proxy was asked for the destination's URL, with the body and headers.
    assert_eq!(got[0].url.host_str(), Some("hooks.invalid"));
    assert_eq!(got[0].url.path(), "/in");
    assert!(got[0].headers.contains_key("hookrelay-delivery-id"));
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(body.get("delivery_id").is_some(), "{body}");
}

#[tokio::test]
async fn an_attempt_interrupted_by_kill_9_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections, never answers: the attempt is in flight at the kill.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest_port = black_hole.local_addr().unwrap().port();
    write_config(
        dir.path(),
        &format!(
            "  sink: {{ type: webhook, url: \"http://127.0.0.1:{dest_port}/in\", timeout: 60s }}"
        ),
        "  - to: [sink]",
    );
    let port = free_port();
    let client = reqwest::Client::new();
    let s = Serve::start(dir.path(), port).await;
    let r = client
        .post(s.url("/hooks/sb"))
        .body(sb_event(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Wait until hookrelay has connected and sent its request.
    black_hole.set_nonblocking(false).unwrap();
    let (conn, _) = black_hole.accept().unwrap();
    s.kill9();
    drop(conn);
    drop(black_hole);

    let listener = TcpListener::bind(("127.0.0.1", dest_port)).unwrap();
    let sink = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let _s = Serve::start(dir.path(), port).await;
    wait_received(&sink, 1, Duration::from_secs(20)).await;
    assert_eq!(ids_received(&sink).await, vec!["7".to_string()]);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_send_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1500)))
        .mount(&sink)
        .await;
    write_config(
        dir.path(),
        &format!("  sink: {{ type: webhook, url: \"{}/in\" }}", sink.uri()),
        "  - to: [sink]",
    );
    let port = free_port();
    let client = reqwest::Client::new();
    let mut s = Serve::start(dir.path(), port).await;
    let r = client
        .post(s.url("/hooks/sb"))
        .body(sb_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_received(&sink, 1, Duration::from_secs(10)).await;
    s.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let st = s.child.wait().unwrap();
        std::mem::forget(s);
        st
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    // The send that was in flight was recorded as delivered before exit.
    let s = Serve::start(dir.path(), port).await;
    let d = api(&client, &s, "/api/deliveries").await;
    assert_eq!(d["items"][0]["state"], "delivered", "{d}");
    assert_eq!(sink.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn serve_logs_config_warnings_at_start_and_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let teams =
        |url: &str| format!("  t: {{ type: teams, enabled: false, webhook_url: \"{url}\" }}");
    write_config(
        dir.path(),
        &teams("https://prod-01.westus.logic.azure.com/workflows/abc?sig=SECRETSIG"),
        "  - to: [t]",
    );
    let s = Serve::start(dir.path(), free_port()).await;
    let log = dir.path().join("hookrelay.log");
    let logged = |want: &'static str| {
        let log = log.clone();
        async move {
            wait_for(Duration::from_secs(10), || async {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(want)
            })
            .await
        }
    };
    assert!(
        logged("relay.yaml: destinations.t.webhook_url: is a …logic.azure.com URL").await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    write_config(
        dir.path(),
        &teams("https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d/V2SECRET"),
        "  - to: [t]",
    );
    s.signal("HUP");
    assert!(
        logged("relay.yaml: destinations.t.webhook_url: is an Office 365 connector").await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!std::fs::read_to_string(&log).unwrap().contains("SECRET"));
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = MockServer::start().await;
    let b = MockServer::start().await;
    for m in [&a, &b] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(m)
            .await;
    }
    let dests = format!(
        "  a: {{ type: webhook, url: \"{}/a\" }}\n  b: {{ type: webhook, url: \"{}/b\" }}",
        a.uri(),
        b.uri()
    );
    write_config(dir.path(), &dests, "  - to: [a]");
    let port = free_port();
    let client = reqwest::Client::new();
    let s = Serve::start(dir.path(), port).await;
    client
        .post(s.url("/hooks/sb"))
        .body(sb_event(1))
        .send()
        .await
        .unwrap();
    wait_received(&a, 1, Duration::from_secs(10)).await;

    write_config(dir.path(), &dests, "  - to: [b]");
    s.signal("HUP");
    let log = dir.path().join("hookrelay.log");
    let switched = wait_for(Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reloaded relay.yaml")
    })
    .await;
    assert!(switched, "reload was not logged");
    client
        .post(s.url("/hooks/sb"))
        .body(sb_event(101))
        .send()
        .await
        .unwrap();
    wait_received(&b, 1, Duration::from_secs(10)).await;
    assert_eq!(
        a.received_requests().await.unwrap().len(),
        1,
        "the old route no longer applies"
    );

    std::fs::write(
        dir.path().join("relay.yaml"),
        "routes: [ { to: [nowhere] } ]\nbogus: 1\n",
    )
    .unwrap();
    s.signal("HUP");
    let logged = wait_for(Duration::from_secs(10), || async {
        std::fs::read_to_string(dir.path().join("hookrelay.log"))
            .unwrap()
            .contains("reload failed")
    })
    .await;
    assert!(logged);
    let log = std::fs::read_to_string(dir.path().join("hookrelay.log")).unwrap();
    assert!(log.contains("bogus: unknown key"), "{log}");
    let before = b.received_requests().await.unwrap().len();
    let r = client
        .post(s.url("/hooks/sb"))
        .body(sb_event(999))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "still serving with the old config");
    wait_received(&b, before + 1, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn deliveries_queued_before_a_reload_keep_their_destination() {
    let dest_port = free_port();
    let app = spawn_app(&format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\ndestinations:\n  old: {{ type: webhook, url: \"http://127.0.0.1:{dest_port}/x\" }}\nroutes:\n  - to: [old]\n"
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    // The new config no longer has `old`.
    let path = app.shared.config_path.clone();
    let cfg = std::fs::read_to_string(&path).unwrap();
    let new_cfg = cfg
        .replace("  old: { type: webhook", "  new: { type: webhook")
        .replace("to: [old]", "to: [new]");
    std::fs::write(&path, new_cfg).unwrap();
    app.shared.reload().expect("valid config reloads");
    assert!(app.shared.reload().is_ok());
    std::fs::write(&path, "sources: { x: { kind: nope } }\n").unwrap();
    let err = app.shared.reload().unwrap_err();
    assert!(err.contains("sources.x.kind"), "{err}");

    let listener = TcpListener::bind(("127.0.0.1", dest_port)).unwrap();
    let sink = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    wait_received(&sink, 1, Duration::from_secs(10)).await;
    let all = app.wait_settled(Duration::from_secs(10)).await;
    assert_eq!(all["items"][0]["destination"], "old");
    assert_eq!(all["items"][0]["state"], "delivered");
}

#[tokio::test]
async fn a_delivery_first_claimed_after_the_reload_that_removed_its_destination_is_sent_there() {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    // No delivery loops: nothing is claimed before the reload, whatever the timing.
    let app = spawn_app_drained(&format!(
        "sources:\n  sb: {{ kind: simplebackups }}\nadmin: {{ token: {ADMIN} }}\ndestinations:\n  old: {{ type: webhook, url: \"{}/old\" }}\nroutes:\n  - to: [old]\n",
        sink.uri()
    ))
    .await;
    let r = app
        .post("/hooks/sb", fixture("simplebackups/error.json"), &[])
        .await;
    assert_eq!(r.status(), 202);
    let path = app.shared.config_path.clone();
    let cfg = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        cfg.replace("  old: { type: webhook", "  new: { type: webhook")
            .replace("to: [old]", "to: [new]"),
    )
    .unwrap();
    app.shared.reload().expect("valid config reloads");
    assert_eq!(app.drain(3).await, 1);
    let got = sink.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].url.path(), "/old");
    let all = app.api("/api/deliveries").await;
    assert_eq!(all["items"][0]["destination"], "old");
    assert_eq!(all["items"][0]["state"], "delivered");
}

/// SQLite is one process's: deliveries queued for a destination the config no
/// longer has when it starts (removed while it was stopped) can be sent by nothing,
/// so they end dead, saying why, instead of waiting forever.
#[tokio::test]
async fn on_sqlite_a_start_without_a_queued_destination_marks_its_deliveries_dead() {
    let dir = tempfile::tempdir().unwrap();
    let refused = free_port(); // nothing listens: its delivery waits for a retry
    write_config(
        dir.path(),
        &format!("  gone: {{ type: webhook, url: \"http://127.0.0.1:{refused}/in\" }}"),
        "  - to: [gone]",
    );
    let port = free_port();
    let client = reqwest::Client::new();
    let s = Serve::start(dir.path(), port).await;
    let r = client
        .post(s.url("/hooks/sb"))
        .body(sb_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    s.kill9();
    // Restarted with `gone` removed from the config.
    let sink = MockServer::start().await;
    write_config(
        dir.path(),
        &format!("  other: {{ type: webhook, url: \"{}/in\" }}", sink.uri()),
        "  - to: [other]",
    );
    let s = Serve::start(dir.path(), port).await;
    let dead = wait_for(Duration::from_secs(20), || async {
        api(&client, &s, "/api/deliveries?state=dead").await["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let all = api(&client, &s, "/api/deliveries").await;
    assert!(dead, "{all:#}");
    assert_eq!(all["items"][0]["destination"], "gone");
    assert_eq!(all["items"][0]["state"], "dead");
    assert_eq!(
        all["items"][0]["last_error"],
        "destination \"gone\" is not configured"
    );
}

/// `backup.missing` events in the admin API, oldest first.
async fn missing_events(client: &reqwest::Client, s: &Serve) -> Vec<Value> {
    let v = api(client, s, "/api/events?limit=500").await;
    let mut items: Vec<Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "backup.missing")
        .cloned()
        .collect();
    items.reverse();
    items
}

#[tokio::test]
async fn a_deadline_passed_while_stopped_fires_once_after_start_and_kill_9_after_it_repeats_nothing(
) {
    let dir = tempfile::tempdir().unwrap();
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    write_config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"{}/h\" }}", sink.uri()),
        "  - match: { status: missing }\n    to: [hook]",
    );
    let mut yaml = std::fs::read_to_string(dir.path().join("relay.yaml")).unwrap();
    yaml.push_str("watch:\n  expect:\n    - match: { source: sb }\n      every: 2s\n");
    std::fs::write(dir.path().join("relay.yaml"), yaml).unwrap();
    let client = reqwest::Client::new();
    let port = free_port();

    // A success, then the process is killed before its deadline.
    let s = Serve::start(dir.path(), port).await;
    let mut ok: Value = serde_json::from_str(&fixture("simplebackups/success.json")).unwrap();
    ok["id"] = json!(1);
    let r = client
        .post(s.url("/hooks/sb"))
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let b = api(&client, &s, "/api/backups").await;
    let deadline =
        chrono::DateTime::parse_from_rfc3339(b["items"][0]["next_deadline"].as_str().unwrap())
            .unwrap();
    s.kill9();
    // Down over the deadline.
    let passed = wait_for(Duration::from_secs(20), || async {
        chrono::Utc::now() > deadline + chrono::Duration::milliseconds(500)
    })
    .await;
    assert!(passed);

    // Back: the missed deadline fires once; kill -9 right after it.
    let s = Serve::start(dir.path(), port).await;
    let fired = wait_for(Duration::from_secs(20), || async {
        !missing_events(&client, &s).await.is_empty()
    })
    .await;
    assert!(fired, "no backup.missing after the restart");
    s.kill9();

    // And again: still exactly one event (its delivery is at-least-once: a send
    // cut by the kill is sent again, the same event).
    let s = Serve::start(dir.path(), port).await;
    let delivered = wait_for(Duration::from_secs(20), || async {
        !received_json(&sink).await.is_empty()
    })
    .await;
    assert!(delivered, "the missing alert was not delivered");
    let b = api(&client, &s, "/api/backups").await;
    assert_eq!(b["items"][0]["state"], "missing");
    assert_eq!(
        b["items"][0]["next_deadline"],
        Value::Null,
        "nothing else is due"
    );
    let missing = missing_events(&client, &s).await;
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert!(missing[0]["occurred_at"]
        .as_str()
        .unwrap()
        .starts_with(&deadline.format("%Y-%m-%dT%H:%M:%S").to_string()));
    for b in received_json(&sink).await {
        assert_eq!(b["event"], "backup.missing");
        assert_eq!(b["occurred_at"], missing[0]["occurred_at"]);
    }
}

#[tokio::test]
async fn sighup_keeps_the_deadlines_of_unchanged_watch_rules_and_applies_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let dests = format!("  a: {{ type: webhook, url: \"{}/a\" }}", sink.uri());
    // Two backups that never report, pinned by the config; `nightly`'s rule is
    // changed by the reload, `weekly`'s is not.
    let with_watch = |nightly_every: &str| {
        write_config(dir.path(), &dests, "  - to: [a]");
        let mut yaml = std::fs::read_to_string(dir.path().join("relay.yaml")).unwrap();
        yaml.push_str(&format!(
            "watch:\n  by: [source, backup]\n  expect:\n\
             \x20   - match: {{ source: sb, backup: nightly }}\n      every: {nightly_every}\n\
             \x20   - match: {{ source: sb, backup: weekly }}\n      every: 1h\n"
        ));
        std::fs::write(dir.path().join("relay.yaml"), yaml).unwrap();
    };
    with_watch("1h");
    let port = free_port();
    let client = reqwest::Client::new();
    let s = Serve::start(dir.path(), port).await;
    let deadlines = || async {
        let v = api(&client, &s, "/api/backups").await;
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["subject"].as_str().unwrap().to_string(),
                    b["next_deadline"].clone(),
                )
            })
            .collect::<std::collections::BTreeMap<String, Value>>()
    };
    // Pinned subjects are written by the watch soon after start.
    let both = wait_for(Duration::from_secs(20), || async {
        deadlines().await.len() == 2
    })
    .await;
    let before = deadlines().await;
    assert!(both, "{before:?}");
    assert!(before.values().all(|d| d.is_string()), "{before:?}");

    with_watch("2s");
    s.signal("HUP");
    let log = dir.path().join("hookrelay.log");
    let reloaded = wait_for(Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reloaded relay.yaml")
    })
    .await;
    assert!(reloaded, "reload was not logged");
    // The changed rule is in force: nightly is missed within seconds, not an hour…
    let got = wait_received(&sink, 1, Duration::from_secs(30)).await;
    assert_eq!(got[0]["event"], "backup.missing");
    assert_eq!(got[0]["subject"], "sb/nightly");
    // …and the unchanged one kept its deadline rather than starting over.
    let after = deadlines().await;
    assert_eq!(
        after["sb/weekly"], before["sb/weekly"],
        "{before:?} {after:?}"
    );
    assert_ne!(
        after["sb/nightly"], before["sb/nightly"],
        "{before:?} {after:?}"
    );
}
