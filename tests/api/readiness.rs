//! `/readyz` tells whether a webhook would be stored now, and webhooks are refused
//! (503) rather than accepted into storage that cannot keep them: the database
//! file deleted or replaced under the running server, read-only at the start, or
//! its disk full. Each case recovers without a restart once storage is usable
//! again. (A file made read-only while open stays writable through the open file,
//! WAL included: webhooks are then really stored, and 202 is the truth.) Its WAL
//! or WAL index (`-shm`) deleted loses nothing acknowledged.
//!
//! Read-only and full are provoked as root (CI runs as root): `chattr +i` makes a
//! file read-only even for root, and a small tmpfs fills up. Without root these
//! tests fail saying so.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

use crate::helpers::*;

const SOURCE: &str =
    "sources:\n  g: { kind: generic, token: t, fields: { id: /id, status: /status } }\n";

async fn post(app: &TestApp, id: &str) -> reqwest::Response {
    let body = json!({ "id": id, "status": "error" }).to_string();
    app.post("/hooks/g?token=t", body, &[]).await
}

async fn ready(app: &TestApp) -> u16 {
    app.get("/readyz", None).await.status().as_u16()
}

async fn stored_ids(app: &TestApp) -> Vec<String> {
    let v = app.api("/api/events?limit=500").await;
    let mut ids: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["provider_id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Runs a command to its end; `needs` says what it takes, for when it fails.
fn run(cmd: &str, args: &[&str], needs: &str) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run ({needs}): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({needs}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const ROOT: &str = "these tests need root";

/// `chattr +i` while alive, `-i` when dropped (so the temp folder can be removed).
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn set(path: &'a Path) -> Immutable<'a> {
        run("chattr", &["+i", path.to_str().unwrap()], ROOT);
        Immutable(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-i", self.0.to_str().unwrap()])
            .status();
    }
}

/// Uptime checkers and load balancers often probe with HEAD.
#[tokio::test]
async fn health_and_readiness_answer_head_as_get() {
    let app = spawn_app(SOURCE).await;
    for path in ["/healthz", "/readyz"] {
        let head = app
            .client
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(app.get(path, None).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_database_file_deleted_under_the_server_is_refused_until_it_is_back() {
    let app = spawn_app(&format!("{SOURCE}admin: {{ token: {ADMIN} }}\n")).await;
    let db = app._dir.path().join("hookrelay.db");
    assert_eq!(post(&app, "before").await.status(), 202);
    assert_eq!(ready(&app).await, 200);

    // Moved away (as a delete does, but kept to bring back).
    let away = app._dir.path().join("away.db");
    std::fs::rename(&db, &away).unwrap();
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "storage is not usable");
    for i in 0..5 {
        let r = post(&app, &format!("while-gone-{i}")).await;
        assert_eq!(r.status(), 503, "never a 202 into a file that is gone");
    }
    assert!(!db.exists(), "no empty database was created in its place");

    // Back: ready again without a restart, and nothing was lost or half-stored.
    std::fs::rename(&away, &db).unwrap();
    assert_eq!(ready(&app).await, 200);
    assert_eq!(post(&app, "after").await.status(), 202);
    assert_eq!(stored_ids(&app).await, ["after", "before"]);
}

/// Events in the database a restart after a crash would read: the file at the
/// path and the WAL at the path, if any (copied, so nothing checkpoints them).
/// Copied by `cp`, in a process of its own: a file opened and closed in the
/// server's process would drop the server's locks on it (POSIX locks belong to
/// the process), which SQLite elsewhere reads as nobody else having it open.
fn events_after_a_crash(dir: &Path) -> Result<i64, String> {
    let crash = dir.join("crash");
    std::fs::create_dir_all(&crash).unwrap();
    for f in ["hookrelay.db", "hookrelay.db-wal"] {
        if dir.join(f).exists() {
            let (from, to) = (dir.join(f), crash.join(f));
            run("cp", &[from.to_str().unwrap(), to.to_str().unwrap()], "cp");
        }
    }
    count_events(&crash.join("hookrelay.db"))
}

fn count_events(db: &Path) -> Result<i64, String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_wal_file_deleted_under_the_server_loses_nothing_acknowledged() {
    let app = spawn_app(&format!("{SOURCE}admin: {{ token: {ADMIN} }}\n")).await;
    let dir = app._dir.path();
    let wal = dir.join("hookrelay.db-wal");
    assert_eq!(post(&app, "before").await.status(), 202);
    assert!(wal.exists(), "the database is in WAL mode");

    // Deleted, as a cleanup script might: the commits the server makes into the
    // file it still has open would be gone at the next start.
    std::fs::remove_file(&wal).unwrap();
    assert_eq!(post(&app, "after").await.status(), 202);
    assert_eq!(
        events_after_a_crash(dir),
        Ok(2),
        "both acknowledged webhooks are in what a restart would read"
    );

    // And it goes on: a new WAL, everything readable, nothing lost.
    assert_eq!(post(&app, "later").await.status(), 202);
    assert!(wal.exists(), "a new WAL is in use");
    assert_eq!(stored_ids(&app).await, ["after", "before", "later"]);
    assert_eq!(events_after_a_crash(dir), Ok(3));
    assert_eq!(ready(&app).await, 200);
}

/// Runs the `sqlite3` shell on the database in a process of its own, as a backup
/// tool would (a connection made in this process would share the server's WAL
/// index instead of opening the file at `<path>-shm`).
fn sqlite3(db: &Path, commands: &[&str]) {
    let args: Vec<&str> = [db.to_str().unwrap()]
        .into_iter()
        .chain(commands.iter().copied())
        .collect();
    run(
        "sqlite3",
        &args,
        "the sqlite3 shell, which .ci/run installs",
    );
}

#[tokio::test]
async fn a_shm_file_deleted_under_the_server_loses_nothing_acknowledged() {
    let app = spawn_app(&format!("{SOURCE}admin: {{ token: {ADMIN} }}\n")).await;
    let dir = app._dir.path();
    let db = dir.join("hookrelay.db");
    let shm = dir.join("hookrelay.db-shm");
    assert_eq!(post(&app, "before").await.status(), 202);
    assert!(shm.exists(), "the database is in WAL mode, with its index");

    // Deleted, as a cleanup script might: the server's connections go on with the
    // file they have open, and the next process to open the database makes a new
    // one, blind to the server's locks and to what its WAL holds.
    std::fs::remove_file(&shm).unwrap();
    assert_eq!(post(&app, "after").await.status(), 202);
    assert!(
        shm.exists(),
        "a new index, made by the server's connections"
    );

    // Backups from another process, as an operator takes them: everything copied
    // into the database file, then a copy of that. Each time, the server goes on
    // writing where the backup left the files.
    let mut acknowledged = vec!["after", "before"];
    for (i, next) in ["later", "last"].into_iter().enumerate() {
        let backup = dir.join(format!("backup-{i}.db"));
        let to = format!(".backup {}", backup.display());
        sqlite3(&db, &["PRAGMA wal_checkpoint(TRUNCATE);", &to]);
        assert_eq!(
            count_events(&backup),
            Ok(acknowledged.len() as i64),
            "the backup has every acknowledged webhook"
        );
        assert_eq!(post(&app, next).await.status(), 202);
        acknowledged.push(next);
        assert_eq!(
            events_after_a_crash(dir),
            Ok(acknowledged.len() as i64),
            "every acknowledged webhook is in what a restart would read"
        );
    }
    acknowledged.sort();
    assert_eq!(stored_ids(&app).await, acknowledged);
    assert_eq!(ready(&app).await, 200);
}

#[tokio::test]
async fn a_database_file_replaced_under_the_server_is_opened_again() {
    let app = spawn_app(&format!("{SOURCE}admin: {{ token: {ADMIN} }}\n")).await;
    let db = app._dir.path().join("hookrelay.db");
    assert_eq!(post(&app, "first").await.status(), 202);
    // A copy put in its place (a restore): a different file at the same path.
    let copy = app._dir.path().join("copy.db");
    let src = rusqlite::Connection::open(&db).unwrap();
    src.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    drop(src);
    std::fs::rename(&copy, &db).unwrap();

    assert_eq!(ready(&app).await, 200);
    assert_eq!(post(&app, "second").await.status(), 202);
    // Both in the file now at the path, as a restart would see it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn a_read_only_database_at_start_is_not_ready_until_it_can_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    let url = format!("sqlite://{}", db.display());
    // A database made by an earlier run.
    {
        let first = spawn_app(&format!(
            "{SOURCE}admin: {{ token: {ADMIN} }}\nstorage: {{ url: \"{url}\" }}\n"
        ))
        .await;
        assert_eq!(post(&first, "earlier").await.status(), 202);
    }
    let guard = Immutable::set(&db);
    let app = spawn_app(&format!(
        "{SOURCE}admin: {{ token: {ADMIN} }}\nstorage: {{ url: \"{url}\" }}\n"
    ))
    .await;
    assert_eq!(ready(&app).await, 503);
    assert_eq!(post(&app, "refused").await.status(), 503);
    // What is stored can still be read.
    assert_eq!(stored_ids(&app).await, ["earlier"]);

    drop(guard);
    assert_eq!(ready(&app).await, 200, "recovers without a restart");
    assert_eq!(post(&app, "accepted").await.status(), 202);
    assert_eq!(stored_ids(&app).await, ["accepted", "earlier"]);
}

#[tokio::test]
async fn a_full_disk_is_not_ready_and_refuses_webhooks_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=2m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
        ROOT,
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // Lazily: the app may still hold its files open when this runs.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let url = format!("sqlite://{}/hookrelay.db", mnt.display());
    let app = spawn_app(&format!(
        "{SOURCE}admin: {{ token: {ADMIN} }}\nstorage: {{ url: \"{url}\" }}\n"
    ))
    .await;
    assert_eq!(post(&app, "before").await.status(), 202);
    // Fill the disk.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    // Webhooks big enough to need new pages.
    let big = "x".repeat(64 << 10);
    let mut accepted = vec!["before".to_string()];
    let mut refused = false;
    for i in 0..40 {
        let id = format!("big-{i}");
        let body = json!({ "id": id, "status": "error", "pad": big }).to_string();
        let r = app.post("/hooks/g?token=t", body, &[]).await;
        match r.status().as_u16() {
            202 => accepted.push(id),
            503 => {
                refused = true;
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(refused, "a full disk refuses webhooks");
    assert_eq!(ready(&app).await, 503);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(ready(&app).await, 200, "recovers without a restart");
    assert_eq!(post(&app, "after").await.status(), 202);
    accepted.push("after".into());
    accepted.sort();
    assert_eq!(stored_ids(&app).await, accepted, "every 202 is stored");
}
