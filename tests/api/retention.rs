//! Retention on a running server: finished events older than `storage.retention`
//! are deleted, and with a steady flow the SQLite file stops growing (a short
//! soak: eight rounds of 3 MB of webhooks delivered and then aged out; after the
//! third round the file and its WAL never grow by as much as one round's data).

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn with_a_short_retention_the_sqlite_file_stops_growing() {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let app = spawn_app(&format!(
        "storage: {{ url: \"sqlite://{{dir}}/hookrelay.db\", retention: 1s }}\n\
         admin: {{ token: {ADMIN} }}\n\
         sources:\n  g: {{ kind: generic, token: t, fields: {{ id: /id, status: /status }} }}\n\
         destinations:\n  hook: {{ type: webhook, url: \"{}/x\" }}\nroutes:\n  - to: [hook]\n",
        sink.uri()
    ))
    .await;
    let db = app._dir.path().join("hookrelay.db");
    let pad = "p".repeat(20_000);
    let mut sizes = Vec::new();
    for round in 0..8 {
        for i in 0..150 {
            let body = json!({ "id": format!("r{round}-{i}"), "status": "error", "pad": pad });
            let r = app.post("/hooks/g?token=t", body.to_string(), &[]).await;
            assert_eq!(r.status(), 202);
        }
        app.wait_settled(Duration::from_secs(30)).await;
        // Aged out and deleted (the newest event is always kept).
        let purged = wait_for(Duration::from_secs(30), || async {
            let v = app.api("/api/events?limit=500").await;
            v["items"].as_array().is_some_and(|a| a.len() <= 1)
        })
        .await;
        assert!(purged, "round {round}: finished events were not deleted");
        // The file and its write-ahead log (where new pages go first).
        let wal = app._dir.path().join("hookrelay.db-wal");
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        sizes.push(size(&db) + size(&wal));
        eprintln!("round {round}: db {} wal {}", size(&db), size(&wal));
    }
    eprintln!("database + WAL size after each round (3 MB ingested per round): {sizes:?}");
    // 24 MB went through. Without retention every round would add about 3 MB;
    // with it, after the first rounds (the WAL filling up to its checkpoint size)
    // the file never grows by as much as one round's data.
    assert!(
        sizes[3..].iter().all(|s| *s < sizes[2] + 3_000_000),
        "the file kept growing: {sizes:?}"
    );
}

/// The running server's retention also deletes the recorded last run of a digest
/// schedule that is no longer configured once it is older than
/// `storage.retention`; a configured schedule's stays, however old.
#[tokio::test]
async fn retention_deletes_the_last_run_of_a_digest_schedule_no_longer_configured() {
    use hookrelay::store::NewEvent;
    let app = spawn_app(
        "storage: { url: \"sqlite://{dir}/hookrelay.db\", retention: 1s }\n\
         sources:\n  sb: { kind: simplebackups }\n\
         destinations:\n  hook: { type: webhook, url: \"http://127.0.0.1:9/x\" }\n\
         digest:\n  - { cron: \"0 0 1 1 *\", to: [hook] }\n",
    )
    .await;
    let store = app.shared.store.clone();
    let digest = app.shared.relay.load().digests[0].clone();
    let now = store.clock_ms().await.unwrap();
    // The configured schedule's last run: its latest time, so none is due now.
    let last = digest
        .due(0, now)
        .expect("a yearly schedule has run before");
    for (key, at) in [
        (digest.key.as_str(), last),
        ("0 8 * * *|UTC|gone|digest", 1_000),
    ] {
        let mut e = hookrelay::event::Event::default();
        let mut new = NewEvent::new(
            &mut e,
            None,
            format!("digest:{key}:{at}"),
            Duration::ZERO,
            true,
            vec![],
        )
        .unwrap();
        new.digest_run = Some((key.to_string(), at));
        store.ingest(new).await.unwrap();
    }
    let pruned = wait_for(Duration::from_secs(10), || async {
        store
            .last_digest("0 8 * * *|UTC|gone|digest")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(pruned, "the removed schedule's last run was kept");
    assert_eq!(store.last_digest(&digest.key).await.unwrap(), Some(last));
}
