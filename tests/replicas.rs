//! Several replicas (the real binary, `serve`) on one real PostgreSQL: each event
//! delivered once across them, a replica killed or frozen mid-send, the same event
//! posted to two replicas, replicas starting together, a new event picked up through
//! LISTEN/NOTIFY, and Slack's 1/s across two replicas. The server is a throwaway one
//! (see `support/pg.rs`).

#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");
const ADMIN: &str = "replica-admin-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it returns true or `within` passes.
async fn wait_for<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A destination that records every request (when, and its JSON body). With
/// `hang_first`, the first request is never answered: its sender is mid-send for
/// as long as the test wants.
#[derive(Clone)]
struct Sink {
    url: String,
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Sink {
    async fn start(hang_first: bool) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let hang = Arc::new(AtomicBool::new(hang_first));
        let g = got.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (g, hang) = (g.clone(), hang.clone());
                tokio::spawn(async move {
                    let mut conn = BufReader::new(sock);
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
                        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        g.lock().unwrap().push((Instant::now(), v));
                        if hang.swap(false, Ordering::SeqCst) {
                            // Held open, never answered.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.get_mut().write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Sink { url, got }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// How many requests carried each provider event id.
    fn per_id(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (_, v) in self.got.lock().unwrap().iter() {
            *m.entry(v["id"].to_string()).or_default() += 1;
        }
        m
    }

    fn times(&self) -> Vec<Instant> {
        self.got.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }
}

/// One replica: the real binary serving on its own port, sharing `db_url`.
struct Replica {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn write_config(dir: &Path, db_url: &str, destinations: &str) {
    std::fs::write(
        dir.join("relay.yaml"),
        format!(
            "storage: {{ url: \"{db_url}\" }}\nadmin: {{ token: {ADMIN} }}\n\
             delivery: {{ retry_schedule: [200ms], max_age: 1h, lease: 2s }}\n\
             sources:\n  sb: {{ kind: simplebackups }}\n\
             destinations:\n{destinations}\nroutes:\n  - to: [hook]\n"
        ),
    )
    .unwrap();
}

fn hook(sink: &Sink) -> String {
    format!(
        "  hook: {{ type: webhook, url: \"{}\", timeout: 2s }}",
        sink.url
    )
}

impl Replica {
    fn spawn(db_url: &str, destinations: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap().keep();
        write_config(&dir, db_url, destinations);
        let port = free_port();
        let log = std::fs::File::create(dir.join("hookrelay.log")).unwrap();
        let child = Command::new(BIN)
            .current_dir(&dir)
            .args(["serve", "-c", "relay.yaml"])
            .env("RUST_LOG", "info")
            .env("HOOKRELAY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hookrelay starts");
        Replica { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hookrelay.log")).unwrap_or_default()
    }

    async fn ready(&self) {
        let client = reqwest::Client::new();
        let url = self.url("/readyz");
        let ok = wait_for(Duration::from_secs(30), || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ok, "replica on {} not ready:\n{}", self.port, self.log());
    }

    async fn start(db_url: &str, destinations: &str) -> Replica {
        let r = Replica::spawn(db_url, destinations);
        r.ready().await;
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    async fn post(&self, client: &reqwest::Client, id: &str) -> (u16, Value) {
        let body = json!({
            "id": id, "status": "error", "type": "backup",
            "backup": { "name": "nightly" }, "message": "disk full"
        });
        let r = client
            .post(self.url("/hooks/sb"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn api(&self, client: &reqwest::Client, path: &str) -> Value {
        client
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls until no delivery is pending (any replica sees them all).
    async fn settled(&self, client: &reqwest::Client, within: Duration) -> Value {
        let ok = wait_for(within, || async {
            let v = self.api(client, "/api/deliveries?state=pending").await;
            v["items"].as_array().is_some_and(|a| a.is_empty())
        })
        .await;
        assert!(ok, "deliveries still pending");
        self.api(client, "/api/deliveries?limit=1000").await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn three_replicas_started_together_on_an_empty_database_all_come_up() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::spawn(&db, &hook(&sink))).collect();
    for r in &replicas {
        r.ready().await;
    }
    // And they work as one: an event posted to each is delivered once.
    let client = reqwest::Client::new();
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.post(&client, &format!("start-{i}")).await.0, 202);
    }
    replicas[0].settled(&client, Duration::from_secs(30)).await;
    assert_eq!(
        sink.per_id().values().copied().collect::<Vec<_>>(),
        [1, 1, 1]
    );
}

#[tokio::test]
async fn events_spread_over_three_replicas_are_each_delivered_once() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&db, &hook(&sink)).await);
    }
    let client = reqwest::Client::new();
    let posts = (0..300).map(|i| {
        let (r, client) = (&replicas[i % 3], &client);
        async move { r.post(client, &format!("ev-{i}")).await.0 }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let all = replicas[2].settled(&client, Duration::from_secs(60)).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 300);
    assert!(items.iter().all(|d| d["state"] == "delivered"));
    let per_id = sink.per_id();
    assert_eq!(per_id.len(), 300);
    assert!(per_id.values().all(|n| *n == 1), "sent twice: {per_id:?}");
    // The work was shared: more than one replica sent something.
    let senders = replicas
        .iter()
        .filter(|r| r.log().contains(": delivered ("))
        .count();
    assert!(senders > 1, "only {senders} replica delivered");
}

#[tokio::test]
async fn a_replica_killed_mid_send_has_its_delivery_sent_by_another_after_the_lease() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(true).await;
    let mut a = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    assert_eq!(a.post(&client, "held").await.0, 202);
    // A is mid-send (the destination never answers the first request).
    assert!(wait_for(Duration::from_secs(10), || async { sink.count() == 1 }).await);
    // Killed before B starts: starting a replica on a loaded machine can take
    // longer than the 2 s destination timeout, and A must not live to time out.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let b = Replica::start(&db, &hook(&sink)).await;

    // B sends it once A's lease has run out.
    let all = b.settled(&client, Duration::from_secs(60)).await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "A never recorded"
    );
    assert_eq!(sink.count(), 2);
    assert!(b.log().contains(": delivered ("));
}

#[tokio::test]
async fn a_replica_frozen_past_its_lease_changes_nothing_when_it_resumes() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(true).await;
    let a = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    assert_eq!(a.post(&client, "frozen").await.0, 202);
    assert!(wait_for(Duration::from_secs(10), || async { sink.count() == 1 }).await);
    a.signal("STOP");
    let b = Replica::start(&db, &hook(&sink)).await;
    let all = b.settled(&client, Duration::from_secs(60)).await;
    assert_eq!(all["items"][0]["state"], "delivered");

    // A wakes up: its send has timed out, and it tries to record a failure.
    a.signal("CONT");
    assert!(
        wait_for(Duration::from_secs(30), || async {
            a.log().contains("this result is not recorded")
        })
        .await,
        "A never came back:\n{}",
        a.log()
    );
    let all = b.api(&client, "/api/deliveries").await;
    let d = &all["items"][0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["last_error"], Value::Null, "{d}");
    assert_eq!(sink.count(), 2, "A's late failure scheduled nothing");
}

#[tokio::test]
async fn the_same_simplebackups_event_posted_to_two_replicas_is_one_event() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    let a = Replica::start(&db, &hook(&sink)).await;
    let b = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let id = format!("same-{i}");
        let ((sa, va), (sb, vb)) = tokio::join!(a.post(&client, &id), b.post(&client, &id));
        let mut statuses = [sa, sb];
        statuses.sort();
        assert_eq!(statuses, [200, 202], "{va} {vb}");
        assert_eq!(va["event_id"], vb["event_id"]);
    }
    a.settled(&client, Duration::from_secs(30)).await;
    let per_id = sink.per_id();
    assert_eq!(per_id.len(), 10);
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
}

#[tokio::test]
async fn a_new_event_after_a_quiet_spell_is_picked_up_through_notify() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    let a = Replica::start(&db, &hook(&sink)).await;
    let _b = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    // Idle loops sleep up to 5 s between looks at the queue. Five pickups each
    // within 1 s: a poll would explain that by chance about once in 3,000 runs;
    // the NOTIFY of each commit explains it every time.
    let mut latencies = Vec::new();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = sink.count();
        let t = Instant::now();
        assert_eq!(a.post(&client, &format!("quiet-{i}")).await.0, 202);
        assert!(wait_for(Duration::from_secs(10), || async { sink.count() > before }).await);
        latencies.push(t.elapsed());
    }
    eprintln!("pickup after a quiet spell (post to delivered): {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
}

#[tokio::test]
async fn slacks_one_per_second_holds_across_two_replicas() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    // A Slack incoming webhook: 1/s by default.
    let slack = format!(
        "  hook: {{ type: slack, webhook_url: \"{}\", timeout: 2s }}",
        sink.url
    );
    let a = Replica::start(&db, &slack).await;
    let b = Replica::start(&db, &slack).await;
    let client = reqwest::Client::new();
    for i in 0..6 {
        let r = if i % 2 == 0 { &a } else { &b };
        assert_eq!(r.post(&client, &format!("slack-{i}")).await.0, 202);
    }
    a.settled(&client, Duration::from_secs(60)).await;
    assert_eq!(sink.count(), 6);
    let mut times = sink.times();
    times.sort();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Six sends at 1/s take five seconds, whichever replica sends (two replicas
    // each keeping 1/s on its own would take about half that). Each gap is the
    // database's one second give or take how long each request took to arrive.
    let span = *times.last().unwrap() - times[0];
    assert!(span >= Duration::from_millis(4500), "{span:?} {gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(500)),
        "{gaps:?}"
    );
    let senders = [&a, &b]
        .iter()
        .filter(|r| r.log().contains(": delivered ("))
        .count();
    eprintln!("replicas that sent: {senders}; gaps: {gaps:?}");
}

#[tokio::test]
async fn two_replicas_watching_one_backup_fire_each_missed_deadline_once() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    // A backup that never reports, pinned by the config both replicas load: missed
    // 2 s after start, then reminded every 2 s while it stays missing. Each
    // deadline and each reminder is claimed by one replica only.
    let config = format!(
        "{}\nwatch:\n  by: [source, backup]\n  expect:\n    - match: {{ source: sb, backup: nightly }}\n      every: 2s\n      remind: 2s",
        hook(&sink)
    );
    let a = Replica::start(&db, &config).await;
    let b = Replica::start(&db, &config).await;
    let client = reqwest::Client::new();
    let four = wait_for(Duration::from_secs(60), || async { sink.count() >= 4 }).await;
    assert!(four, "{} missed alerts:\n{}", sink.count(), a.log());
    a.signal("STOP");
    b.signal("STOP");
    // Nothing can be in flight past a stop except a send the sink already counted.
    let got: Vec<Value> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    assert!(
        got.iter().all(|m| m["event"] == "backup.missing"),
        "{got:?}"
    );
    assert!(got.iter().all(|m| m["subject"] == "sb/nightly"), "{got:?}");
    // One alert per deadline: no deadline (occurred_at) was sent twice…
    let mut deadlines: Vec<&str> = got
        .iter()
        .map(|m| m["occurred_at"].as_str().unwrap())
        .collect();
    deadlines.sort();
    let n = deadlines.len();
    deadlines.dedup();
    assert_eq!(deadlines.len(), n, "a deadline fired twice: {got:#?}");
    a.signal("CONT");
    b.signal("CONT");
    // …and each stored event was delivered once.
    let events = a.api(&client, "/api/events?limit=100").await;
    let stored: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "backup.missing")
        .collect();
    let mut stored_deadlines: Vec<&str> = stored
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    stored_deadlines.sort();
    let m = stored_deadlines.len();
    stored_deadlines.dedup();
    assert_eq!(stored_deadlines.len(), m, "a deadline was stored twice");
    // Both replicas take part in watching (either may fire a given deadline).
    assert!(
        a.log().contains("backup missing") || b.log().contains("backup missing"),
        "{}",
        a.log()
    );
}

/// A replica whose config lacks a destination another replica has (a rolling
/// deploy, or a reload applied one replica at a time, that adds it) leaves that
/// destination's deliveries pending for the replica that has it, and says so in its
/// log: the alert arrives once the destination answers, nothing is marked dead.
#[tokio::test]
async fn a_replica_whose_config_lacks_a_new_destination_leaves_its_deliveries_to_the_one_that_has_it(
) {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    // The new destination is having a bad minute: 503, so its deliveries wait for
    // their retries, pending, while B looks at the queue.
    let pager = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&pager)
        .await;
    // B: the old config (hook only).
    let b = Replica::start(&db, &hook(&sink)).await;
    // A: the new config (hook and pager), routes to both.
    let a = Replica::spawn(
        &db,
        &format!(
            "{}\n  pager: {{ type: webhook, url: \"{}/in\", timeout: 2s }}",
            hook(&sink),
            pager.uri()
        ),
    );
    let cfg = std::fs::read_to_string(a.dir.join("relay.yaml")).unwrap();
    // write_config routes to [hook]; A routes to both (it reads its file at start,
    // so rewrite it and send SIGHUP once it is up), retrying every second for a
    // minute (write_config's one retry at 200 ms, then hourly, would leave nothing
    // to see once the destination is back).
    a.ready().await;
    let every_second = vec!["1s"; 60].join(", ");
    std::fs::write(
        a.dir.join("relay.yaml"),
        cfg.replace("  - to: [hook]", "  - to: [hook, pager]")
            .replace(
                "retry_schedule: [200ms]",
                &format!("retry_schedule: [{every_second}]"),
            ),
    )
    .unwrap();
    a.signal("HUP");
    let client = reqwest::Client::new();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            a.post(&client, &format!("probe-{}", fastrand::u32(..)))
                .await
                .1["deliveries"]
                == 2
        })
        .await,
        "A did not reload:\n{}",
        a.log()
    );
    // B sees the pager deliveries pending (it looks every 5 s) and leaves them.
    let warned = "destination \"pager\" has pending deliveries, but this replica's config lacks it";
    assert!(
        wait_for(Duration::from_secs(30), || async {
            b.log().contains(warned)
        })
        .await,
        "B did not warn:\n{}",
        b.log()
    );
    let dead = a.api(&client, "/api/deliveries?state=dead").await;
    assert_eq!(dead["items"], json!([]), "B's log:\n{}", b.log());

    // Pager is back (this mock goes before the 503 one): A sends them.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&pager)
        .await;
    let all = a.settled(&client, Duration::from_secs(30)).await;
    let dead = a.api(&client, "/api/deliveries?state=dead").await;
    assert!(
        dead["items"].as_array().is_some_and(|x| x.is_empty()),
        "a delivery to pager was marked dead by a replica that lacks it: {dead}"
    );
    let to_pager: Vec<&Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["destination"] == "pager")
        .collect();
    assert!(!to_pager.is_empty(), "{all:#}");
    assert!(
        to_pager.iter().all(|d| d["state"] == "delivered"),
        "{to_pager:#?}"
    );
    let got = pager.received_requests().await.unwrap();
    assert!(got.len() > to_pager.len(), "503s, then each once");
    assert!(!b.log().contains("marked dead"), "{}", b.log());
    assert_eq!(
        b.log().matches(warned).count(),
        1,
        "warned once:\n{}",
        b.log()
    );
}

#[tokio::test]
async fn while_the_database_is_away_webhooks_get_503_and_nothing_acknowledged_is_lost() {
    let server = pg::Server::start_new();
    let db = pg::fresh_database_on(&server.url).await;
    // The first send hangs past its timeout: its attempt ends while the database
    // is away, and must still be retried and delivered after it is back.
    let sink = Sink::start(true).await;
    let r = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    assert_eq!(r.post(&client, "before").await.0, 202);
    let sending = wait_for(Duration::from_secs(20), || async { sink.count() >= 1 }).await;
    assert!(sending, "{}", r.log());

    server.stop();
    let (status, body) = r.post(&client, "during").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let ready = client.get(r.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    server.start();
    let back = wait_for(Duration::from_secs(60), || async {
        client
            .get(r.url("/readyz"))
            .send()
            .await
            .is_ok_and(|x| x.status() == 200)
    })
    .await;
    assert!(back, "never ready again:\n{}", r.log());
    assert_eq!(r.post(&client, "after").await.0, 202);
    let all = r.settled(&client, Duration::from_secs(60)).await;
    let items = all["items"].as_array().unwrap();
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{all:#}");
    // What got a 202 arrived (the hung first send and its retry are the same
    // event); what got a 503 was never stored; the process never stopped.
    let per_id = sink.per_id();
    assert_eq!(
        per_id.keys().cloned().collect::<Vec<_>>(),
        ["\"after\"", "\"before\""],
        "{per_id:?}"
    );
    assert_eq!(per_id["\"after\""], 1, "{per_id:?}");
    assert_eq!(items.len(), 2, "{all:#}");
    drop(r);
    server.stop();
}

/// PagerDuty that refuses (503) every trigger until it has received a resolve,
/// and takes everything after: a trigger sent after the resolve is accepted, as
/// PagerDuty would, and reopens the incident.
struct TriggerRefusedUntilResolved(Arc<AtomicBool>);

impl wiremock::Respond for TriggerRefusedUntilResolved {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let v: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if v["event_action"] == "resolve" {
            self.0.store(true, Ordering::SeqCst);
        } else if !self.0.load(Ordering::SeqCst) {
            return wiremock::ResponseTemplate::new(503);
        }
        wiremock::ResponseTemplate::new(202).set_body_json(json!({"status": "success"}))
    }
}

/// Review 13 #2 on PostgreSQL: a failure's trigger is refused and retried by one
/// replica while another replica takes the success; PagerDuty gets the success's
/// resolve and never a trigger after it (the retry would reopen the incident for
/// a good backup): the trigger's delivery ends delivered, superseded.
#[tokio::test]
async fn pagerduty_never_gets_a_trigger_after_the_resolve_of_a_later_success_across_replicas() {
    let db = pg::fresh_database().await;
    let pd = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(TriggerRefusedUntilResolved(Arc::default()))
        .mount(&pd)
        .await;
    let dest = format!(
        "  hook: {{ type: pagerduty, routing_key: \"R0UTINGKEYR0UTINGKEYR0UTINGKEY12\", \
         url: \"{}/v2/enqueue\" }}",
        pd.uri()
    );
    let a = Replica::start(&db, &dest).await;
    let b = Replica::start(&db, &dest).await;
    let client = reqwest::Client::new();
    let (status, failure) = a.post(&client, "bad-1").await;
    assert_eq!(status, 202, "{failure}");
    // Refused at least once: the trigger waits for its retry (every ~200 ms).
    let refused = wait_for(Duration::from_secs(20), || async {
        pd.received_requests().await.is_some_and(|r| !r.is_empty())
    })
    .await;
    assert!(refused);
    let success = json!({
        "id": "good-1", "status": "success", "type": "backup",
        "backup": { "name": "nightly" }, "message": "done"
    });
    let r = client
        .post(b.url("/hooks/sb"))
        .json(&success)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    b.settled(&client, Duration::from_secs(60)).await;
    let actions: Vec<String> = pd
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["event_action"].as_str().unwrap().to_string()
        })
        .collect();
    let first_resolve = actions
        .iter()
        .position(|a| a == "resolve")
        .unwrap_or_else(|| panic!("no resolve: {actions:?}"));
    assert!(
        actions[first_resolve..].iter().all(|a| a == "resolve"),
        "a trigger after the resolve of a later success: {actions:?}"
    );
    let ev = a
        .api(
            &client,
            &format!("/api/events/{}", failure["event_id"].as_str().unwrap()),
        )
        .await;
    let d = &ev["deliveries"][0];
    assert_eq!(d["state"], "delivered", "{ev}");
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .starts_with("not sent: superseded by the resolve of event "),
        "{ev}"
    );
}

/// A SimpleBackups webhook of backup `backup` (its subject `sb/<backup>`).
async fn post_backup(r: &Replica, client: &reqwest::Client, id: &str, backup: &str, status: &str) {
    let body = json!({
        "id": id, "status": status, "type": "backup", "backup": { "name": backup }
    });
    let res = client
        .post(r.url("/hooks/sb"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{id}");
}

/// A backup's failure posted to A and its next success to B at the same moment,
/// B having read (and kept) the backup as ok just before: whichever is stored
/// last decides. The success stored after the failure ends a bad run and brings
/// one `backup.recovered`, even though B read the backup as ok; the failure
/// stored after the success leaves it failing with none.
#[tokio::test]
async fn a_success_on_one_replica_after_a_failure_on_another_brings_one_recovery() {
    let db = pg::fresh_database().await;
    let sink = Sink::start(false).await;
    let a = Replica::start(&db, &hook(&sink)).await;
    let b = Replica::start(&db, &hook(&sink)).await;
    let client = reqwest::Client::new();
    let backups: Vec<String> = (0..20).map(|i| format!("job-{i}")).collect();
    for name in &backups {
        post_backup(&b, &client, &format!("{name}-0"), name, "success").await;
    }
    futures_util::future::join_all(backups.iter().map(|name| {
        let client = &client;
        let (a, b) = (&a, &b);
        async move {
            let (failure, success) = (format!("{name}-1"), format!("{name}-2"));
            tokio::join!(
                post_backup(a, client, &failure, name, "error"),
                post_backup(b, client, &success, name, "success"),
            );
        }
    }))
    .await;
    let subjects = a.api(&client, "/api/backups").await;
    let events = a.api(&client, "/api/events?limit=500").await;
    let mut wrong = Vec::new();
    let mut recovered_now = 0;
    for name in &backups {
        let key = format!("sb/{name}");
        let s = subjects["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subject"] == key.as_str())
            .unwrap();
        let recoveries = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "backup.recovered" && e["subject"] == key.as_str())
            .count();
        let expected = match s["state"].as_str() {
            Some("ok") => 1,
            Some("failing") => 0,
            other => panic!("{key}: {other:?}"),
        };
        recovered_now += expected;
        if recoveries != expected {
            wrong.push(format!(
                "{key} is {} with {recoveries} backup.recovered",
                s["state"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // And each was sent.
    a.settled(&client, Duration::from_secs(60)).await;
    let sent = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["event"] == "backup.recovered")
        .count();
    assert_eq!(sent, recovered_now);
}

/// Review 14 #2: a backup's failure and its success stored at the same moment on
/// two replicas, the failure's row written first (A) but the success applied to
/// the backup first (B's batch takes the backup's lock while A's waits): the
/// backup ends failing, so PagerDuty's incident must end open. The failure ranks
/// after the success, as the two were applied to the backup, not as their rows
/// were written: its trigger goes after the success's resolve instead of being
/// superseded by it (which left the incident resolved for a failing backup).
///
/// The interleaving is forced: a trigger on this test's database holds the
/// failure's transaction on a lock the test holds, after its row is written and
/// before the backup's lock is taken, until the success is stored and its
/// resolves delivered.
#[tokio::test]
async fn a_failure_applied_after_a_success_on_another_replica_ranks_after_it() {
    let db = pg::fresh_database().await;
    let pd = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(202).set_body_json(json!({
                "status": "success", "message": "Event processed", "dedup_key": "sb/nightly"})))
        .mount(&pd)
        .await;
    let dest = format!(
        "  hook: {{ type: pagerduty, routing_key: \"R0UTINGKEYR0UTINGKEYR0UTINGKEY12\", \
         url: \"{}/v2/enqueue\" }}",
        pd.uri()
    );
    let a = Replica::start(&db, &dest).await;
    let b = Replica::start(&db, &dest).await;
    let client = reqwest::Client::new();
    let actions = || async {
        pd.received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                v["event_action"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    };
    // The backup fails: the incident opens.
    post_backup(&a, &client, "bad-0", "nightly", "error").await;
    b.settled(&client, Duration::from_secs(30)).await;
    assert_eq!(actions().await, ["trigger"]);

    let (sql, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    const HOLD: i64 = 0x7465_7374; // "test"
    sql.batch_execute(&format!(
        "CREATE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.event LIKE '%\"bad-1\"%' THEN PERFORM pg_advisory_xact_lock({HOLD}); END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER test_hold AFTER INSERT ON events
             FOR EACH ROW EXECUTE FUNCTION test_hold();
         SELECT pg_advisory_lock({HOLD});"
    ))
    .await
    .unwrap();
    // The next failure, on A: its row written (its seq drawn), then held.
    let failing = {
        let (client, url) = (client.clone(), a.url("/hooks/sb"));
        tokio::spawn(async move {
            let body = json!({
                "id": "bad-1", "status": "error", "type": "backup",
                "backup": { "name": "nightly" }
            });
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    let held = wait_for(Duration::from_secs(20), || async {
        let n: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND NOT granted AND objid = $1",
                &[&(HOLD as u32)],
            )
            .await
            .unwrap()
            .get(0);
        n == 1
    })
    .await;
    assert!(held, "the failure's transaction never waited:\n{}", a.log());
    // The success, on B: written after the failure, applied to the backup before
    // it. It ends the bad run (its backup.recovered too); both resolves are
    // delivered while the failure waits.
    post_backup(&b, &client, "good-1", "nightly", "success").await;
    b.settled(&client, Duration::from_secs(30)).await;
    assert_eq!(actions().await, ["trigger", "resolve", "resolve"]);
    assert_eq!(
        b.api(&client, "/api/backups").await["items"][0]["state"],
        "ok"
    );

    // The failure goes on: applied after the success.
    sql.execute("SELECT pg_advisory_unlock($1)", &[&HOLD])
        .await
        .unwrap();
    let (status, failure) = failing.await.unwrap();
    assert_eq!(status, 202, "{failure}");
    a.settled(&client, Duration::from_secs(30)).await;
    let backup = &a.api(&client, "/api/backups").await["items"][0];
    assert_eq!(backup["state"], "failing", "{backup}");
    assert_eq!(
        actions().await,
        ["trigger", "resolve", "resolve", "trigger"],
        "the incident ends open, as the backup is failing"
    );
    let ev = a
        .api(
            &client,
            &format!("/api/events/{}", failure["event_id"].as_str().unwrap()),
        )
        .await;
    let d = &ev["deliveries"][0];
    assert_eq!(d["state"], "delivered", "{ev}");
    assert_eq!(d["last_error"], Value::Null, "sent, not superseded: {ev}");
}

/// PagerDuty that takes every event (202 with its JSON), answering the first one
/// `slow` late.
struct SlowFirstPd {
    slow: Duration,
    /// When each event arrived.
    at: Arc<Mutex<Vec<Instant>>>,
}

impl wiremock::Respond for SlowFirstPd {
    fn respond(&self, _req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let answer = wiremock::ResponseTemplate::new(202)
            .set_body_json(json!({"status": "success", "message": "Event processed"}));
        let mut at = self.at.lock().unwrap();
        at.push(Instant::now());
        if at.len() == 1 {
            answer.set_delay(self.slow)
        } else {
            answer
        }
    }
}

/// Review 14 #1 on PostgreSQL, where the rate limit lives in the database: a
/// send put back to wait for another send of its key hands back the place it
/// took. Under 15/min (one send every 4 s, for every replica together) a
/// backup's trigger is being answered (10 s) while its success's resolve and its
/// recovery's wait for it, and another backup fails. The resolves each take the
/// next place in turn and hand it back, so the other backup's trigger goes at
/// the first place after the slow one (before the slow one is answered); each
/// used to keep its place, and the other's trigger came only after three.
#[tokio::test]
async fn on_postgres_a_send_waiting_for_its_key_takes_no_place_in_the_rate_limit() {
    let db = pg::fresh_database().await;
    let pd = wiremock::MockServer::start().await;
    let at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(SlowFirstPd {
            slow: Duration::from_secs(10),
            at: at.clone(),
        })
        .mount(&pd)
        .await;
    let dest = format!(
        "  hook: {{ type: pagerduty, routing_key: \"R0UTINGKEYR0UTINGKEYR0UTINGKEY12\", \
         url: \"{}/v2/enqueue\", rate_limit: 15/min, timeout: 30s }}",
        pd.uri()
    );
    let r = Replica::start(&db, &dest).await;
    let client = reqwest::Client::new();
    let received = || async {
        pd.received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    v["event_action"].as_str().unwrap().to_string(),
                    v["dedup_key"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (status, failure) = {
        let body = json!({
            "id": "bad-1", "status": "error", "type": "backup", "backup": { "name": "nightly" }
        });
        let res = client
            .post(r.url("/hooks/sb"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 202, "{failure}");
    let sent = wait_for(Duration::from_secs(20), || async {
        !received().await.is_empty()
    })
    .await;
    assert!(sent, "{}", r.log());
    // Being answered now: the success's resolve and its recovery's wait for it.
    post_backup(&r, &client, "good-1", "nightly", "success").await;
    post_backup(&r, &client, "bad-2", "weekly", "error").await;
    let two = wait_for(Duration::from_secs(30), || async {
        received().await.len() >= 2
    })
    .await;
    let got = received().await;
    assert!(two, "{got:?}\n{}", r.log());
    // Before the slow trigger's answer: its attempt is not recorded yet.
    let ev = r
        .api(
            &client,
            &format!("/api/events/{}", failure["event_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(ev["deliveries"][0]["attempts"], json!([]), "{ev}");
    let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(got[0].0, "trigger");
    assert_eq!(got[1].0, "trigger", "{got:?}");
    assert_ne!(
        keys[0], keys[1],
        "the other backup's trigger second: {got:?}"
    );
    let at = at.lock().unwrap().clone();
    eprintln!(
        "the other backup's trigger {:?} after the slow one",
        at[1] - at[0]
    );
}
