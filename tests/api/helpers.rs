//! Test harness: the real application on a random port with a fresh database in a
//! temporary folder, local servers standing in for Slack and Teams (wiremock), a
//! real SMTP server (aiosmtpd), and polling helpers instead of sleeps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrelay::config;
use hookrelay::startup::{Application, Shared};
use serde_json::Value;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Runs the `hookrelay` binary in `dir` with `args` and `env` (and no
/// `HOOKRELAY_CONFIG` from the test's own environment).
pub fn run_hookrelay(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
    c.current_dir(dir).args(args).env_remove("HOOKRELAY_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).expect("fixture exists")
}

/// Every provider fixture: (source kind, file).
pub fn all_fixtures() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for kind in ["cloud66", "centurylink", "simplebackups"] {
        let mut files: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/{kind}"))
            .expect("fixture dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for f in files {
            out.push((kind, format!("{kind}/{f}")));
        }
    }
    out
}

pub struct TestApp {
    pub address: String,
    pub shared: Arc<Shared>,
    /// Kept so the folder lives as long as the app.
    pub _dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// A config with the storage in `dir`, test-friendly delivery timing, and the
/// given sections appended. `{dir}` in the YAML is replaced by the temp folder.
pub async fn spawn_app(yaml: &str) -> TestApp {
    spawn_app_env(yaml, &[]).await
}

pub async fn spawn_app_env(yaml: &str, env: &[(&str, &str)]) -> TestApp {
    spawn(yaml, env, true).await
}

/// [`spawn_app`] without the delivery loops: nothing is sent until the test
/// calls [`TestApp::drain`], so what was sent, and when, is the test's decision.
pub async fn spawn_app_drained(yaml: &str) -> TestApp {
    spawn(yaml, &[], false).await
}

async fn spawn(yaml: &str, env: &[(&str, &str)], workers: bool) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.yaml");
    let d = dir.path().display().to_string();
    let mut full = String::new();
    if !yaml.lines().any(|l| l.starts_with("storage:")) {
        full.push_str(&format!(
            "storage: {{ url: \"sqlite://{d}/hookrelay.db\" }}\n"
        ));
    }
    if !yaml.contains("server:") {
        full.push_str("server: { listen: \"127.0.0.1:0\" }\n");
    }
    if !yaml.contains("delivery:") {
        full.push_str("delivery: { retry_schedule: [100ms, 200ms, 300ms], max_age: 1h }\n");
    }
    if !yaml.contains("templates:") {
        full.push_str(&format!("templates: {{ dir: \"{d}/templates\" }}\n"));
    }
    full.push_str(&yaml.replace("{dir}", &d));
    std::fs::write(&path, full).expect("write config");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let settings = config::load_with_env(&path, &env).unwrap_or_else(|e| panic!("{e}"));
    let app = if workers {
        Application::build(settings).await
    } else {
        Application::build_without_workers(settings).await
    }
    .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let shared = app.shared();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        shared,
        _dir: dir,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .header("Content-Type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn api(&self, path: &str) -> Value {
        let r = self.get(path, Some(ADMIN)).await;
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.expect("json")
    }

    /// Sends every delivery that is due, and again while retries come due at once
    /// (`retry_schedule: [0s]`), at most `passes` rounds; returns the attempts made.
    /// Only for apps from [`spawn_app_drained`].
    pub async fn drain(&self, passes: usize) -> usize {
        hookrelay::worker::drain(&self.shared, passes).await
    }

    /// Another application on this one's config and database, without delivery
    /// loops, as a new process would be (hookrelay restarted, another replica):
    /// it shares nothing with this one but the database. Drain it with
    /// `hookrelay::worker::drain`.
    pub async fn another_drained(&self) -> Arc<Shared> {
        let path = self._dir.path().join("relay.yaml");
        let settings =
            config::load_with_env(&path, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
        let app = Application::build_without_workers(settings)
            .await
            .expect("app builds");
        let shared = app.shared();
        tokio::spawn(app.run_until_stopped());
        shared
    }

    /// Polls the admin API until every delivery of every event has left
    /// `pending`, or panics after `within`.
    pub async fn wait_settled(&self, within: Duration) -> Value {
        let ok = wait_for(within, || async {
            let v = self.api("/api/deliveries?state=pending").await;
            v["items"].as_array().is_some_and(|a| a.is_empty())
        })
        .await;
        assert!(
            ok,
            "deliveries still pending: {}",
            self.api("/api/deliveries?state=pending").await
        );
        self.api("/api/deliveries").await
    }
}

pub const ADMIN: &str = "test-admin-token";

/// Polls `f` every 20 ms until it returns true or `within` passes.
pub async fn wait_for<F, Fut>(within: Duration, mut f: F) -> bool
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

/// Requests a wiremock server received, as JSON bodies.
pub async fn received_json(server: &wiremock::MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("valid JSON body"))
        .collect()
}

/// Waits until `server` has received `n` requests; returns their JSON bodies.
pub async fn wait_received(
    server: &wiremock::MockServer,
    n: usize,
    within: Duration,
) -> Vec<Value> {
    let ok = wait_for(within, || async {
        server.received_requests().await.unwrap_or_default().len() >= n
    })
    .await;
    let got = received_json(server).await;
    assert!(ok, "expected {n} requests, got {}: {got:#?}", got.len());
    got
}

/// Every string in a JSON value, joined: what a person would read.
pub fn all_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            other => {
                out.push_str(&other.to_string());
                out.push('\n');
            }
        }
    }
    let mut s = String::new();
    walk(v, &mut s);
    s
}

/// A real SMTP server (aiosmtpd) on a free local port.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl SmtpSink {
    pub fn start(auth: Option<(&str, &str)>) -> SmtpSink {
        match auth {
            Some((u, p)) => SmtpSink::start_with(&["--user", u, "--password", p]),
            None => SmtpSink::start_with(&[]),
        }
    }

    /// Starts the sink with its command-line options (`--tls implicit --ca-out
    /// FILE`, see tests/support/smtp_sink.py).
    pub fn start_with(args: &[&str]) -> SmtpSink {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .expect("python3 runs the SMTP sink (pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("SMTP sink printed its port")
            .trim()
            .parse()
            .expect("a port number");
        SmtpSink {
            port,
            child,
            lines: rx,
        }
    }

    /// The next message the server received, as the sink's JSON.
    pub fn next_message(&self, within: Duration) -> Value {
        let line = self.lines.recv_timeout(within).expect("an email arrived");
        serde_json::from_str(&line).expect("sink prints JSON")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
