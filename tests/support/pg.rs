//! A throwaway PostgreSQL server for the tests: Debian's binaries, `initdb` and
//! `pg_ctl` run as the `postgres` user in a temporary folder, on a free port, once
//! per test binary (shared by its tests, a fresh database each), stopped when the
//! test process exits. Nothing is downloaded and no Docker is involved. With
//! `HOOKRELAY_TEST_PG_URL` set, that server is used instead.
//!
//! Without PostgreSQL installed the tests using it fail, saying how to install it:
//! they never pass silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A server the tests may stop and start (see [`Server::stop`]).
pub struct Server {
    pub url: String,
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
}

fn find_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl): \
             install Debian's postgresql package (apt-get install -y postgresql), or set \
             HOOKRELAY_TEST_PG_URL to a server the tests may create databases on"
        )
    })
}

fn is_root() -> bool {
    // SAFETY-free: the uid from the process's own status file.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `cmd` as the `postgres` user when running as root (PostgreSQL refuses root).
fn as_postgres(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A new server of its own (for tests that stop it), stopped and removed when
    /// this test process exits.
    pub fn start_new() -> Server {
        let bin = find_bin();
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hookrelay-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(&dir);
                    c
                },
                "chown",
            );
        }
        let data = dir.join("data");
        run(
            as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            ),
            "initdb",
        );
        let port = free_port();
        let server = Server {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            data,
            bin,
        };
        server.start();
        // Stopped and removed once this process is gone, however it ends.
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = if is_root() {
                format!("runuser -u postgres -- {}", server.bin.join("pg_ctl").display())
            } else {
                server.bin.join("pg_ctl").display().to_string()
            },
            data = server.data.display(),
            dir = dir.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        server
    }

    /// Starts (again) on the same port.
    pub fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        let log = self.data.parent().unwrap().join("log");
        run(
            as_postgres(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    self.data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-o",
                    &opts,
                    "start",
                ],
            ),
            "pg_ctl start",
        );
    }

    /// Stops at once (connections cut), as a crash or a failover would.
    pub fn stop(&self) {
        run(
            as_postgres(
                &self.bin.join("pg_ctl"),
                &[
                    "-D",
                    self.data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            ),
            "pg_ctl stop",
        );
    }
}

/// The URL of the server this test binary shares.
pub fn shared_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("HOOKRELAY_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => Server::start_new().url,
    })
}

/// A new, empty database on `server_url`; returns its URL.
pub async fn fresh_database_on(server_url: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "hr_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    let driver = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    // The same server, the new database (query parameters dropped).
    let base = server_url.split('?').next().unwrap_or(server_url);
    let host_at = base.find("://").map(|i| i + 3).unwrap_or(0);
    match base[host_at..].find('/') {
        Some(i) => format!("{}/{name}", &base[..host_at + i]),
        None => format!("{base}/{name}"),
    }
}

/// A new, empty database on the shared server.
pub async fn fresh_database() -> String {
    fresh_database_on(shared_url()).await
}
