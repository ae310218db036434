//! The storage contract, one test body run against every backend: SQLite always,
//! PostgreSQL on a real server (see `support/pg.rs`). Whatever a backend does
//! inside (SQLite keeps leases in memory, PostgreSQL in rows), these hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/pg.rs"]
mod pg;

use hookrelay::config::RateLimit;
use hookrelay::event::Status;
use hookrelay::store::{
    self, Attempt, Ingested, NewDelivery, NewEvent, Ordered, Outcome, State, Store, StoreError,
    Take,
};

/// A fresh store of one backend, and what keeps it alive.
struct Fixture {
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
    url: String,
    _keep: Option<tempfile::TempDir>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/c.db", dir.path().display());
    let wake = Arc::new(tokio::sync::Notify::new());
    let opts = store::Options { wake: wake.clone() };
    Fixture {
        store: store::open(&url, opts).await.unwrap(),
        wake,
        url,
        _keep: Some(dir),
    }
}

async fn postgres() -> Fixture {
    let url = pg::fresh_database().await;
    let wake = Arc::new(tokio::sync::Notify::new());
    let opts = store::Options { wake: wake.clone() };
    Fixture {
        store: store::open(&url, opts).await.unwrap(),
        wake,
        url,
        _keep: None,
    }
}

fn new_event(key: &str, destinations: &[&str], window: Duration) -> NewEvent {
    NewEvent {
        source: "s".into(),
        status: Status::Failure,
        event_json: serde_json::json!({
            "source": "s", "provider": "generic", "received_at": "2026-11-23T00:00:00Z",
            "status": "failure", "raw": { "k": key }
        })
        .to_string(),
        dedup_key: key.into(),
        dedup_window: window,
        routed: true,
        deliveries: destinations
            .iter()
            .map(|d| NewDelivery {
                destination: d.to_string(),
                template: "default".into(),
                channel: None,
            })
            .collect(),
        watch: None,
        groups: Vec::new(),
        digest_run: None,
    }
}

fn attempt(status: u16) -> Attempt {
    Attempt {
        status: Some(status),
        error: (status >= 400).then(|| format!("status {status}")),
        duration_ms: 3,
        reached: Vec::new(),
    }
}

const LONG: Duration = Duration::from_secs(60);

/// Polls `claim` until it hands out something (a lease running out), or 10 s.
async fn claim_when_free(s: &dyn Store, dest: &str) -> Vec<store::Claimed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = s.claim(dest, 10, LONG).await.unwrap();
        if !c.is_empty() || Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_claimed_delivery_is_leased_until_its_attempt_is_recorded(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let first = s.claim("d", 10, LONG).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 0);
    assert!(first[0].age < LONG, "{:?}", first[0].age);
    assert_eq!(first[0].event.source, "s");
    assert!(s.claim("d", 10, LONG).await.unwrap().is_empty());
    // Due again only when the lease ends.
    let due = s.next_due("d").await.unwrap().unwrap();
    assert!(due > LONG - Duration::from_secs(10), "{due:?}");

    let retry = Outcome::Retry {
        after: Duration::ZERO,
    };
    assert!(s
        .complete(first[0].lease(), attempt(503), retry)
        .await
        .unwrap());
    let again = claim_when_free(s, "d").await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first[0].id, 1));
    assert_ne!(again[0].token, first[0].token);
    assert!(s
        .complete(again[0].lease(), attempt(200), Outcome::Delivered)
        .await
        .unwrap());
    let all = s.list_deliveries(None, 10).await.unwrap();
    assert_eq!(all[0].state, State::Delivered);
    assert_eq!(all[0].attempts.len(), 2);
    assert_eq!(all[0].last_error.as_deref(), Some("status 503"));
    assert_eq!(s.next_due("d").await.unwrap(), None);
}

async fn a_late_result_from_a_stale_lease_changes_nothing(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    // A lease that runs out at once, as for a process paused past it.
    let stale = s.claim("d", 10, Duration::ZERO).await.unwrap();
    assert_eq!(stale.len(), 1);
    let fresh = claim_when_free(s, "d").await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].id, stale[0].id);

    assert!(matches!(
        s.renew(stale[0].lease(), LONG).await,
        Err(StoreError::LeaseLost(_))
    ));
    s.renew(fresh[0].lease(), LONG).await.unwrap();
    assert!(s
        .complete(fresh[0].lease(), attempt(200), Outcome::Delivered)
        .await
        .unwrap());
    // The paused one comes back with a failure: ignored.
    let late = s
        .complete(stale[0].lease(), attempt(500), Outcome::Dead)
        .await
        .unwrap();
    assert!(!late, "a stale result is not recorded");
    let d = &s.list_deliveries(None, 10).await.unwrap()[0];
    assert_eq!(d.state, State::Delivered);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.last_error, None);
}

/// The stale result and the current one arriving together (recorded in one
/// statement where the backend gathers records): only the current one counts.
async fn a_stale_and_a_current_result_at_once_record_one_attempt(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let stale = s.claim("d", 10, Duration::ZERO).await.unwrap();
    let fresh = claim_when_free(s, "d").await;
    assert_eq!(fresh[0].id, stale[0].id);
    let (late, current) = tokio::join!(
        s.complete(stale[0].lease(), attempt(500), Outcome::Dead),
        s.complete(fresh[0].lease(), attempt(200), Outcome::Delivered),
    );
    assert_eq!((late.unwrap(), current.unwrap()), (false, true));
    let d = &s.list_deliveries(None, 10).await.unwrap()[0];
    assert_eq!(d.state, State::Delivered);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status, Some(200));
}

async fn a_lease_that_runs_out_makes_the_delivery_claimable_again(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let first = s.claim("d", 10, Duration::from_millis(50)).await.unwrap();
    assert_eq!(first.len(), 1);
    // No attempt recorded (a process killed mid-send).
    let again = claim_when_free(s, "d").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
}

async fn a_renewed_lease_runs_from_the_renewal(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let first = s.claim("d", 10, Duration::from_millis(300)).await.unwrap();
    assert_eq!(first.len(), 1);
    s.renew(first[0].lease(), LONG).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.claim("d", 10, LONG).await.unwrap().is_empty());
}

async fn a_manual_retry_makes_the_send_in_flight_stale(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let c = s.claim("d", 10, LONG).await.unwrap();
    // Buried (its destination removed from the config) while being sent.
    assert_eq!(s.bury("d", "gone").await.unwrap(), 1);
    s.retry_delivery(c[0].id).await.unwrap();
    assert!(!s
        .complete(c[0].lease(), attempt(500), Outcome::Dead)
        .await
        .unwrap());
    let again = s.claim("d", 10, LONG).await.unwrap();
    assert_eq!(again.len(), 1);
}

/// For a destination this process's config lacks, on a store replicas share: only
/// the deliveries nobody is sending end dead (`bury_unsent`), not one being sent,
/// nor one whose next try is ahead, nor any whose window is not over.
async fn only_deliveries_nobody_is_sending_are_buried_as_unsent(f: Fixture) {
    let s = &*f.store;
    assert_eq!(s.is_shared(), f.url.starts_with("postgres"));
    for k in ["sending", "retrying", "left"] {
        s.ingest(new_event(k, &["d"], Duration::ZERO))
            .await
            .unwrap();
    }
    let sending = s.claim("d", 1, LONG).await.unwrap();
    let retrying = s.claim("d", 1, LONG).await.unwrap();
    assert!(s
        .complete(
            retrying[0].lease(),
            attempt(503),
            Outcome::Retry { after: LONG }
        )
        .await
        .unwrap());
    // Windows not over, or not due for long enough: nothing.
    assert_eq!(
        s.bury_unsent("d", LONG, Duration::ZERO, "gone")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.bury_unsent("d", Duration::ZERO, LONG, "gone")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.bury_unsent("d", Duration::ZERO, Duration::ZERO, "gone")
            .await
            .unwrap(),
        1
    );
    let dead = s.list_deliveries(Some(State::Dead), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("gone"));
    assert!(dead[0].id != sending[0].id && dead[0].id != retrying[0].id);
    // The send in flight still records its outcome.
    assert!(s
        .complete(sending[0].lease(), attempt(200), Outcome::Delivered)
        .await
        .unwrap());
    assert_eq!(
        s.list_deliveries(Some(State::Pending), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Only a dead delivery is retried: a pending one may be on its way right now,
/// a delivered one arrived; either would be sent twice.
async fn a_retry_takes_only_a_dead_delivery(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let c = s.claim("d", 10, LONG).await.unwrap();
    let id = c[0].id;
    match s.retry_delivery(id).await {
        Err(StoreError::NotDead { id: i, state }) => {
            assert_eq!((i, state), (id, State::Pending))
        }
        other => panic!("a retry of a delivery in flight gave {other:?}"),
    }
    // The send in flight still records its result, and nothing is due again.
    assert!(s
        .complete(c[0].lease(), attempt(200), Outcome::Delivered)
        .await
        .unwrap());
    assert!(s.claim("d", 10, LONG).await.unwrap().is_empty());
    match s.retry_delivery(id).await {
        Err(StoreError::NotDead { state, .. }) => assert_eq!(state, State::Delivered),
        other => panic!("a retry of a delivered delivery gave {other:?}"),
    }
    assert!(s.claim("d", 10, LONG).await.unwrap().is_empty());
    assert!(matches!(
        s.retry_delivery(id + 1000).await,
        Err(StoreError::NotFound)
    ));

    s.ingest(new_event("b", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let c = s.claim("d", 10, LONG).await.unwrap();
    assert!(s
        .complete(c[0].lease(), attempt(400), Outcome::Dead)
        .await
        .unwrap());
    s.retry_delivery(c[0].id).await.unwrap();
    let again = s.claim("d", 10, LONG).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (c[0].id, 1));
}

/// A page after an event retention deleted starts where that event was (its
/// UUIDv7 id says when), never at the top again; an id that cannot say is
/// NotFound. Deliveries page by id.
async fn a_page_after_a_deleted_event_starts_where_it_was(f: Fixture) {
    let s = &*f.store;
    let mut ids = Vec::new();
    for k in ["a", "b", "c", "d"] {
        match s
            .ingest(new_event(k, &["d"], Duration::ZERO))
            .await
            .unwrap()
        {
            Ingested::Stored { event_id, .. } => ids.push(event_id),
            other => panic!("{other:?}"),
        }
    }
    let page = |before: String| async move {
        s.list_events(store::EventQuery {
            limit: 10,
            before: Some(before),
            ..Default::default()
        })
        .await
        .map(|v| v.into_iter().map(|r| r.id).collect::<Vec<_>>())
    };
    let after = |id: &str| {
        let u = uuid::Uuid::parse_str(id).unwrap().as_u128() + 1;
        uuid::Uuid::from_u128(u).to_string()
    };
    assert_eq!(
        page(ids[2].clone()).await.unwrap(),
        vec![ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(
        page(after(&ids[1])).await.unwrap(),
        vec![ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(page(after(&ids[3])).await.unwrap().len(), 4);
    let before_all = uuid::Uuid::from_u128(uuid::Uuid::parse_str(&ids[0]).unwrap().as_u128() - 1);
    assert!(page(before_all.to_string()).await.unwrap().is_empty());
    assert!(matches!(
        page("6f1c9f4e-2b1a-4c3d-9e8f-0a1b2c3d4e5f".into()).await,
        Err(StoreError::NotFound)
    ));

    let all = s.list_deliveries(None, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    let older = s
        .list_deliveries_before(None, 2, Some(all[1].id))
        .await
        .unwrap();
    let older: Vec<i64> = older.iter().map(|d| d.id).collect();
    assert_eq!(older, vec![all[2].id, all[3].id]);
}

async fn a_repeated_event_within_its_window_is_one_event(f: Fixture) {
    let s = &*f.store;
    let w = Duration::from_secs(3600);
    let Ingested::Stored { event_id, .. } = s.ingest(new_event("k", &["d"], w)).await.unwrap()
    else {
        panic!("stored first")
    };
    // Many at once, as from several requests in one batch.
    let repeats =
        futures_util::future::join_all((0..5).map(|_| s.ingest(new_event("k", &["d"], w)))).await;
    for r in repeats {
        assert_eq!(
            r.unwrap(),
            Ingested::Duplicate {
                event_id: event_id.clone()
            }
        );
    }
    let e = s.get_event(&event_id).await.unwrap();
    assert_eq!(e.duplicates, 5);
    assert_eq!(e.deliveries.len(), 1);
    // Without a window, the same key is a new event.
    assert!(matches!(
        s.ingest(new_event("k", &["d"], Duration::ZERO))
            .await
            .unwrap(),
        Ingested::Stored { .. }
    ));
}

async fn many_webhooks_at_once_are_each_stored(f: Fixture) {
    let s = &*f.store;
    let all = futures_util::future::join_all(
        (0..200).map(|i| s.ingest(new_event(&format!("m{i}"), &["d", "e"], Duration::ZERO))),
    )
    .await;
    let mut ids: Vec<String> = all
        .into_iter()
        .map(|r| match r.unwrap() {
            Ingested::Stored {
                event_id,
                deliveries,
            } => {
                assert_eq!(deliveries, 2);
                event_id
            }
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    let depth = s.queue_depth().await.unwrap();
    let mut depth: Vec<_> = depth.into_iter().collect();
    depth.sort();
    assert_eq!(depth, [("d".to_string(), 200), ("e".to_string(), 200)]);
    let mut dests = s.pending_destinations().await.unwrap();
    dests.sort();
    assert_eq!(dests, ["d", "e"]);
}

async fn new_deliveries_wake_the_delivery_loops(f: Fixture) {
    let notified = f.wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    f.store
        .ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), notified)
        .await
        .expect("woken");
}

async fn finished_events_past_retention_are_deleted_and_pending_ones_kept(f: Fixture) {
    let s = &*f.store;
    for i in 0..3 {
        s.ingest(new_event(&format!("done{i}"), &["d"], Duration::ZERO))
            .await
            .unwrap();
        let c = s.claim("d", 10, LONG).await.unwrap();
        assert!(s
            .complete(c[0].lease(), attempt(200), Outcome::Delivered)
            .await
            .unwrap());
    }
    s.ingest(new_event("pending", &["d"], Duration::ZERO))
        .await
        .unwrap();
    // Nothing is old enough yet.
    assert_eq!(s.purge(Duration::from_secs(3600), 10).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // In small batches.
    assert_eq!(s.purge(Duration::from_millis(1), 2).await.unwrap(), 2);
    assert_eq!(s.purge(Duration::from_millis(1), 2).await.unwrap(), 1);
    assert_eq!(s.purge(Duration::from_millis(1), 2).await.unwrap(), 0);
    let left = s
        .list_events(store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].deliveries[0].state, State::Pending);
    assert_eq!(s.list_deliveries(None, 10).await.unwrap().len(), 1);
}

/// Whether `take_send` took a send (`Now`), or how long it says to wait.
fn waits(t: Take) -> Duration {
    match t {
        Take::Now(_) => Duration::ZERO,
        Take::Wait(w) => w,
    }
}

async fn a_rate_limit_and_a_pause_hold_for_the_store(f: Fixture) {
    let s = &*f.store;
    let rl = Some(RateLimit {
        count: 1,
        per: Duration::from_secs(2),
    });
    assert_eq!(
        waits(s.take_send("slack", rl).await.unwrap()),
        Duration::ZERO
    );
    let wait = waits(s.take_send("slack", rl).await.unwrap());
    assert!(
        wait > Duration::from_millis(500) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    // Another destination is not held back.
    assert_eq!(
        waits(s.take_send("other", rl).await.unwrap()),
        Duration::ZERO
    );
    assert_eq!(s.paused_for("other").await.unwrap(), Duration::ZERO);
    s.pause("other", Duration::from_secs(30)).await.unwrap();
    let p = s.paused_for("other").await.unwrap();
    assert!(
        p > Duration::from_secs(20) && p <= Duration::from_secs(30),
        "{p:?}"
    );
    assert!(waits(s.take_send("other", None).await.unwrap()) > Duration::from_secs(20));
    assert_eq!(
        waits(s.take_send("third", None).await.unwrap()),
        Duration::ZERO
    );
}

/// A send taken from the rate limit and handed back (the attempt sent nothing:
/// it waits for another send of its PagerDuty key, or was superseded) leaves the
/// limit as if it had never been taken: the next send goes at once. Handed back
/// again, it frees nothing more; the send made after it still counts.
async fn a_send_handed_back_frees_its_place_in_the_rate_limit(f: Fixture) {
    let s = &*f.store;
    let rl = Some(RateLimit {
        count: 1,
        per: Duration::from_secs(60),
    });
    let take = || async move { s.take_send("pd", rl).await.unwrap() };
    let Take::Now(waiting) = take().await else {
        panic!("the first send is free");
    };
    assert!(waits(take().await) > Duration::from_secs(30));
    s.give_back_send("pd", rl, waiting).await.unwrap();
    let Take::Now(made) = take().await else {
        panic!("the send handed back left its place free");
    };
    assert!(waits(take().await) > Duration::from_secs(30));
    s.give_back_send("pd", rl, waiting).await.unwrap();
    assert!(
        waits(take().await) > Duration::from_secs(30),
        "a send handed back twice freed the place of the send made after it"
    );
    // Another destination's limit is its own.
    assert_eq!(
        waits(s.take_send("other", rl).await.unwrap()),
        Duration::ZERO
    );
    s.give_back_send("pd", rl, made).await.unwrap();
    assert_eq!(waits(take().await), Duration::ZERO);
}

async fn storage_that_works_is_ready(f: Fixture) {
    f.store.ready().await.unwrap();
    assert!(!f.url.is_empty());
}

/// An event of subject `k` (status `status`), watched by a rule `every: 1s`.
fn watched(status: Status, claim: Option<i64>) -> NewEvent {
    let settings: hookrelay::config::WatchSettings =
        serde_json::from_value(serde_json::json!({"expect": [{"every": "1s"}]})).unwrap();
    let w = hookrelay::watch::Watch::compile(&settings, &Default::default()).unwrap();
    let mut e = new_event(&format!("{status:?}{claim:?}"), &["d"], Duration::ZERO);
    e.status = status;
    e.watch = Some(store::WatchUpdate {
        key: "k".into(),
        fields: claim.is_none().then(|| {
            std::sync::Arc::new(
                serde_json::from_value(serde_json::json!({"source": "s", "server": "db1"}))
                    .unwrap(),
            )
        }),
        rule: Some(w.rules[0].clone()),
        at: None,
        claim,
        recovered: None,
    });
    e
}

async fn a_deadline_is_claimed_once_with_its_event(f: Fixture) {
    use hookrelay::watch::SubjectState;
    assert!(matches!(
        f.store
            .ingest(watched(Status::Success, None))
            .await
            .unwrap(),
        Ingested::Stored { .. }
    ));
    let s = f.store.get_subject("k").await.unwrap().unwrap();
    assert_eq!(s.state, SubjectState::Ok);
    assert_eq!(s.fields["server"], "db1");
    let deadline = s.next_deadline.unwrap();
    assert!(
        f.store.due_subjects(10).await.unwrap().is_empty(),
        "not before `every`"
    );
    let start = Instant::now();
    let due = loop {
        let due = f.store.due_subjects(10).await.unwrap();
        if !due.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break due;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].next_deadline, Some(deadline));
    // Two claims of one deadline at once (two replicas): one event.
    let (a, b) = tokio::join!(
        f.store.ingest(watched(Status::Missing, Some(deadline))),
        f.store.ingest(watched(Status::Missing, Some(deadline)))
    );
    let results = [a.unwrap(), b.unwrap()];
    let stored = results
        .iter()
        .filter(|r| matches!(r, Ingested::Stored { .. }))
        .count();
    assert_eq!(stored, 1, "{results:?}");
    assert!(results.contains(&Ingested::Skipped));
    let s = f.store.get_subject("k").await.unwrap().unwrap();
    assert_eq!(
        (s.state, s.failures, s.next_deadline),
        (SubjectState::Missing, 1, None)
    );
    assert_eq!(
        s.fields["server"], "db1",
        "a synthetic event keeps the subject's fields"
    );
    assert!(f.store.due_subjects(10).await.unwrap().is_empty());
    let listed = f
        .store
        .list_subjects(Some(SubjectState::Missing))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(f
        .store
        .list_subjects(Some(SubjectState::Ok))
        .await
        .unwrap()
        .is_empty());
}

/// Webhooks of two subjects arriving at once (gathered into shared transactions
/// where the backend does): every one counts on its own subject, none is lost to
/// another written in the same transaction.
async fn many_webhooks_of_one_subject_at_once_each_count(f: Fixture) {
    use hookrelay::watch::SubjectState;
    let event = |key: &str| {
        let mut e = watched(Status::Failure, None);
        e.watch.as_mut().unwrap().key = key.into();
        e
    };
    let all = futures_util::future::join_all(
        (0..60).map(|i| f.store.ingest(event(if i % 2 == 0 { "k" } else { "k2" }))),
    )
    .await;
    for r in all {
        assert!(matches!(r.unwrap(), Ingested::Stored { .. }));
    }
    for key in ["k", "k2"] {
        let s = f.store.get_subject(key).await.unwrap().unwrap();
        assert_eq!((s.state, s.failures), (SubjectState::Failing, 30), "{key}");
    }
}

/// The web page's queries: the delivery log's filter by delivery state, and the
/// outcomes behind the board's 14-day strip.
async fn the_web_page_finds_events_by_delivery_state_and_lists_outcomes(f: Fixture) {
    let s = &*f.store;
    let mut ids = Vec::new();
    for (key, dests) in [("dead", &["d"][..]), ("pending", &["d"]), ("unrouted", &[])] {
        match s
            .ingest(new_event(key, dests, Duration::ZERO))
            .await
            .unwrap()
        {
            Ingested::Stored { event_id, .. } => ids.push(event_id),
            other => panic!("{other:?}"),
        }
    }
    let c = claim_when_free(s, "d").await;
    let first = c.iter().find(|c| c.event_id == ids[0]).expect("claimed");
    assert!(s
        .complete(first.lease(), attempt(400), Outcome::Dead)
        .await
        .unwrap());
    let q = |limit| store::EventQuery {
        limit,
        ..Default::default()
    };
    let with = |r: Vec<store::EventRecord>| r.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        with(
            s.list_events_with_delivery(q(10), State::Dead)
                .await
                .unwrap()
        ),
        [ids[0].clone()]
    );
    assert_eq!(
        with(
            s.list_events_with_delivery(q(10), State::Pending)
                .await
                .unwrap()
        ),
        [ids[1].clone()]
    );
    assert!(s
        .list_events_with_delivery(q(10), State::Delivered)
        .await
        .unwrap()
        .is_empty());
    let outcomes = s.outcomes_since(0).await.unwrap();
    let got: Vec<(&str, &str, &str)> = outcomes
        .iter()
        .map(|o| (o.event_id.as_str(), o.subject.as_str(), o.status.as_str()))
        .collect();
    assert_eq!(
        got,
        ids.iter()
            .map(|id| (id.as_str(), "s", "failure"))
            .collect::<Vec<_>>(),
        "oldest first"
    );
    let later = chrono::Utc::now().timestamp_millis() + 3_600_000;
    assert!(s.outcomes_since(later).await.unwrap().is_empty());
}

fn grouped(key: &str, group: &str, wait: Duration, max: u32) -> NewEvent {
    let mut e = new_event(key, &[], Duration::ZERO);
    e.groups = vec![store::GroupJoin {
        key: group.into(),
        wait,
        max,
        deliveries: vec![NewDelivery {
            destination: "d".into(),
            template: "default".into(),
            channel: None,
        }],
    }];
    e
}

async fn stored_id(s: &dyn Store, e: NewEvent) -> String {
    match s.ingest(e).await.unwrap() {
        Ingested::Stored {
            event_id,
            deliveries,
        } => {
            assert_eq!(deliveries, 1, "the group's destination counts");
            event_id
        }
        other => panic!("{other:?}"),
    }
}

/// Flushes until something went out (the group's `wait` passes), bounded.
async fn flush_when_due(s: &dyn Store) -> usize {
    let start = Instant::now();
    loop {
        let n = s.flush_groups(100).await.unwrap();
        if n > 0 || start.elapsed() > Duration::from_secs(20) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Groups (SPEC §10): events join the open group of their key; when it is due
/// its deliveries are queued once, on its first event, and read its events back
/// in order; a full group is due at once; a group of one is ordinary.
async fn held_events_go_out_once_as_one_group(f: Fixture) {
    let s = f.store.as_ref();
    let wait = Duration::from_millis(1500);
    let a = stored_id(s, grouped("a", "g", wait, 10)).await;
    let b = stored_id(s, grouped("b", "g", wait, 10)).await;
    let c = stored_id(s, grouped("c", "g", wait, 10)).await;
    assert!(s.claim("d", 10, LONG).await.unwrap().is_empty(), "held");
    let view = s.group_of(&c).await.unwrap().unwrap();
    assert_eq!((view.state.as_str(), view.count), ("open", 3));
    assert_eq!(view.first_event, a);
    assert_eq!(s.flush_groups(100).await.unwrap(), 0, "not before `wait`");

    assert_eq!(flush_when_due(s).await, 1);
    assert_eq!(s.flush_groups(100).await.unwrap(), 0, "once");
    let claimed = s.claim("d", 10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event_id, a);
    let id = claimed[0].group.expect("a group's delivery");
    let keys: Vec<String> = s
        .group_events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.raw["k"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(s.group_of(&b).await.unwrap().unwrap().state, "sent");

    // After it went out, the key opens a new group.
    let d = stored_id(s, grouped("d", "g", wait, 10)).await;
    let view = s.group_of(&d).await.unwrap().unwrap();
    assert_ne!(view.id, id);
    assert_eq!((view.state.as_str(), view.count), ("open", 1));

    // Full at `max`: due at once, whatever `wait` says.
    stored_id(s, grouped("e", "full", LONG, 2)).await;
    let f2 = stored_id(s, grouped("f", "full", LONG, 2)).await;
    assert_eq!(s.group_of(&f2).await.unwrap().unwrap().state, "full");
    assert_eq!(s.flush_groups(100).await.unwrap(), 1);

    // A group of one: an ordinary delivery of its event.
    let solo = stored_id(s, grouped("solo", "solo", Duration::from_millis(100), 10)).await;
    assert!(flush_when_due(s).await >= 1);
    let claimed = s.claim("d", 10, LONG).await.unwrap();
    let mine: Vec<_> = claimed.iter().filter(|c| c.event_id == solo).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].group, None);
}

/// A group an older hookrelay left open under its key form (`routes[<index>]…`,
/// before keys named the route's identity) still goes out when due, beside the
/// group that events of the new form open: the flush goes by `due_at`, not the key.
async fn a_group_left_open_under_an_older_key_form_still_goes_out(f: Fixture) {
    let s = f.store.as_ref();
    let wait = Duration::from_millis(1000);
    let old = stored_id(s, grouped("old", "routes[0]\u{1f}", wait, 10)).await;
    let new = stored_id(s, grouped("new", "route:0123456789abcdef\u{1f}", wait, 10)).await;
    let (o, n) = (
        s.group_of(&old).await.unwrap().unwrap(),
        s.group_of(&new).await.unwrap().unwrap(),
    );
    assert_ne!(o.id, n.id, "a new key does not join the old group");
    let start = Instant::now();
    let mut out = 0;
    while out < 2 && start.elapsed() < Duration::from_secs(20) {
        out += flush_when_due(s).await;
    }
    assert_eq!(out, 2);
    let mut firsts: Vec<String> = s
        .claim("d", 10, LONG)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.event_id)
        .collect();
    firsts.sort();
    let mut want = vec![old.clone(), new];
    want.sort();
    assert_eq!(firsts, want, "each group's delivery is queued");
    assert_eq!(s.group_of(&old).await.unwrap().unwrap().state, "sent");
}

/// Retention keeps the events of a group that is still held; an ordinary finished
/// event of the same age goes.
async fn retention_keeps_a_held_group(f: Fixture) {
    let s = f.store.as_ref();
    let held = stored_id(s, grouped("held", "g", LONG, 10)).await;
    let plain = match s
        .ingest(new_event("plain", &[], Duration::ZERO))
        .await
        .unwrap()
    {
        Ingested::Stored { event_id, .. } => event_id,
        other => panic!("{other:?}"),
    };
    // The newest event is never purged (SQLite keeps its rowids unique so).
    s.ingest(new_event("newest", &[], Duration::ZERO))
        .await
        .unwrap();
    // Purged once it is older than the retention (a millisecond).
    let start = Instant::now();
    while s.get_event(&plain).await.is_ok() && start.elapsed() < Duration::from_secs(10) {
        s.purge(Duration::from_millis(1), 100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        s.get_event(&plain).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.get_event(&held).await.is_ok(), "held in its group");
    assert_eq!(s.group_of(&held).await.unwrap().unwrap().state, "open");
}

/// The digest's "webhooks received" counts webhooks, not the events hookrelay
/// stores of its own (a digest, a `backup.missing`, a `backup.recovered`); their
/// deliveries are alerts like any other and count as delivered.
async fn the_digest_counts_webhooks_received_not_hookrelays_own_events(f: Fixture) {
    let s = f.store.as_ref();
    for key in ["id:1", "sha256:ab"] {
        stored_id(s, new_event(key, &["d"], Duration::ZERO)).await;
    }
    // A recovery's key: `recovered:<id>` on SQLite, empty on PostgreSQL.
    for key in [
        "missing:s/x/y:1000",
        "",
        "recovered:e1",
        "digest:daily:1000",
    ] {
        stored_id(s, new_event(key, &["d"], Duration::ZERO)).await;
    }
    let claims = claim_when_free(s, "d").await;
    assert_eq!(claims.len(), 6);
    for c in &claims {
        s.complete(c.lease(), attempt(200), Outcome::Delivered)
            .await
            .unwrap();
    }
    let counts = s.digest_counts(0, i64::MAX).await.unwrap();
    assert_eq!(counts.received, 2, "{counts:?}");
    assert_eq!(
        counts.delivered, 5,
        "the digest's own delivery is not counted: {counts:?}"
    );
    assert_eq!(counts.dead, 0);
}

/// Completes the one delivery of `dest` with `status`: 200 delivered, 503 to
/// be retried at once, anything else dead.
async fn end_one(s: &dyn Store, dest: &str, status: u16) {
    let c = claim_when_free(s, dest).await;
    assert_eq!(c.len(), 1, "{dest}");
    let outcome = match status {
        200 => Outcome::Delivered,
        503 => Outcome::Retry {
            after: Duration::ZERO,
        },
        _ => Outcome::Dead,
    };
    assert!(s
        .complete(c[0].lease(), attempt(status), outcome)
        .await
        .unwrap());
}

/// The digest's `delivered` and `dead` count alerts by when they ended, whenever
/// they were queued: one queued before the previous digest and delivered, given
/// up (after retries that began before it) or buried after it counts in the
/// next digest; one queued and ended before it does not. A dead one retried by
/// hand is pending again and no longer counts dead; delivered then, it counts
/// delivered.
async fn the_digest_counts_alerts_by_when_they_ended(f: Fixture) {
    let s = f.store.as_ref();
    // Queued and ended before the previous digest.
    for (key, dest, status) in [("old-ok", "old-ok", 200), ("old-dead", "old-dead", 400)] {
        stored_id(s, new_event(key, &[dest], Duration::ZERO)).await;
        end_one(s, dest, status).await;
    }
    // Queued before it, ended after it; "late-dead" fails once before it.
    for k in ["late-ok", "late-dead", "late-buried"] {
        stored_id(s, new_event(k, &[k], Duration::ZERO)).await;
    }
    end_one(s, "late-dead", 503).await;
    // The previous digest's time.
    let since = s.clock_ms().await.unwrap() + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.clock_ms().await.unwrap() <= since {
        assert!(Instant::now() < deadline, "the store's clock stands still");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let none = s.digest_counts(since, i64::MAX).await.unwrap();
    assert_eq!(
        (none.received, none.delivered, none.dead),
        (0, 0, 0),
        "nothing ended since: {none:?}"
    );
    end_one(s, "late-ok", 200).await;
    end_one(s, "late-dead", 400).await;
    // Ends without an attempt (a destination no longer configured).
    assert_eq!(s.bury("late-buried", "gone").await.unwrap(), 1);
    let counts = s.digest_counts(since, i64::MAX).await.unwrap();
    assert_eq!(
        (counts.received, counts.delivered, counts.dead),
        (0, 1, 2),
        "alerts queued before the previous digest and ended after it: {counts:?}"
    );
    let all = s.digest_counts(0, i64::MAX).await.unwrap();
    assert_eq!(
        (all.received, all.delivered, all.dead),
        (5, 2, 3),
        "{all:?}"
    );
    // Up to the previous digest's time: what ended at or after it is the next
    // digest's, not counted twice.
    let before = s.digest_counts(0, since).await.unwrap();
    assert_eq!(
        (before.received, before.delivered, before.dead),
        (5, 1, 1),
        "{before:?}"
    );
    // Retried by hand: pending, so not dead; then delivered.
    let buried = s.list_deliveries(Some(State::Dead), 10).await.unwrap();
    let buried = buried
        .iter()
        .find(|d| d.destination == "late-buried")
        .unwrap();
    s.retry_delivery(buried.id).await.unwrap();
    let counts = s.digest_counts(since, i64::MAX).await.unwrap();
    assert_eq!((counts.delivered, counts.dead), (1, 1), "{counts:?}");
    end_one(s, "late-buried", 200).await;
    let counts = s.digest_counts(since, i64::MAX).await.unwrap();
    assert_eq!((counts.delivered, counts.dead), (2, 1), "{counts:?}");
}

/// Ordered sends (a PagerDuty dedup_key): while one send of a key is in flight
/// another waits; once an event's message is delivered for the key, the
/// deliveries of older events of it are superseded (a trigger retried after the
/// resolve of a later success is never sent); other keys and destinations are
/// not held up; a holder whose lease ran out holds nothing.
async fn a_key_s_older_event_is_superseded_once_a_later_one_is_delivered(f: Fixture) {
    let s = f.store.as_ref();
    let id = |i: Ingested| match i {
        Ingested::Stored { event_id, .. } => event_id,
        other => panic!("{other:?}"),
    };
    let failure = id(s
        .ingest(new_event("1", &["pd"], Duration::ZERO))
        .await
        .unwrap());
    let success = id(s
        .ingest(new_event("2", &["pd"], Duration::ZERO))
        .await
        .unwrap());
    let claimed = s.claim("pd", 10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let of = |e: &str| claimed.iter().find(|c| c.event_id == e).unwrap().clone();
    let (trigger, resolve) = (of(&failure), of(&success));

    let begin = |c: &store::Claimed, action: &'static str| {
        let lease = c.lease();
        async move { s.begin_ordered(lease, "pd", "sb/job", action).await }
    };
    assert_eq!(begin(&trigger, "trigger").await.unwrap(), Ordered::Send);
    // The trigger is being sent: the resolve waits for it, whatever its order.
    assert!(matches!(
        begin(&resolve, "resolve").await.unwrap(),
        Ordered::Wait(w) if w > Duration::ZERO && w <= Duration::from_secs(1)
    ));
    // Another key, another destination: not held up.
    assert_eq!(
        s.begin_ordered(resolve.lease(), "pd", "sb/other", "resolve")
            .await
            .unwrap(),
        Ordered::Send
    );
    let retry = Outcome::Retry {
        after: Duration::ZERO,
    };
    assert!(s
        .complete(trigger.lease(), attempt(503), retry)
        .await
        .unwrap());
    // The trigger failed (to be retried): the resolve goes now, and is delivered.
    assert_eq!(begin(&resolve, "resolve").await.unwrap(), Ordered::Send);
    assert!(s
        .complete(resolve.lease(), attempt(202), Outcome::Delivered)
        .await
        .unwrap());
    // The trigger's retry comes after the resolve of a later event: not sent.
    let again = claim_when_free(s, "pd").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event_id, failure);
    assert_eq!(
        begin(&again[0], "trigger").await.unwrap(),
        Ordered::Superseded {
            event_id: success.clone(),
            action: "resolve".into()
        }
    );
    // A newer event's send is not superseded by an older one's.
    let later = id(s
        .ingest(new_event("3", &["pd"], Duration::ZERO))
        .await
        .unwrap());
    let c = claim_when_free(s, "pd").await;
    let newest = c.iter().find(|c| c.event_id == later).unwrap();
    assert_eq!(begin(newest, "trigger").await.unwrap(), Ordered::Send);
    // A stale lease decides nothing.
    assert!(matches!(
        begin(&trigger, "trigger").await,
        Err(StoreError::LeaseLost(_))
    ));

    // A holder whose lease runs out (its process died mid-send) holds nothing.
    let a = id(s
        .ingest(new_event("4", &["pd2"], Duration::ZERO))
        .await
        .unwrap());
    let short = s
        .claim("pd2", 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(short[0].event_id, a);
    assert_eq!(
        s.begin_ordered(short[0].lease(), "pd2", "k", "trigger")
            .await
            .unwrap(),
        Ordered::Send
    );
    let b = id(s
        .ingest(new_event("5", &["pd2"], Duration::ZERO))
        .await
        .unwrap());
    let next = s.claim("pd2", 10, LONG).await.unwrap();
    let next = next.iter().find(|c| c.event_id == b).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s
            .begin_ordered(next.lease(), "pd2", "k", "resolve")
            .await
            .unwrap()
        {
            Ordered::Send => break,
            Ordered::Wait(w) => {
                assert!(Instant::now() < deadline, "still held after the lease");
                tokio::time::sleep(w).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A digest records its schedule's last run in its own transaction; the later
/// run is kept, and retention deleting the digests leaves it.
async fn a_digest_run_is_recorded_with_its_digest_and_outlives_retention(f: Fixture) {
    let s = f.store.as_ref();
    assert_eq!(s.last_digest("daily").await.unwrap(), None);
    for at in [2_000, 1_000] {
        let mut e = new_event(&format!("digest:daily:{at}"), &["d"], Duration::ZERO);
        e.digest_run = Some(("daily".into(), at));
        stored_id(s, e).await;
    }
    stored_id(s, new_event("id:1", &["d"], Duration::ZERO)).await;
    assert_eq!(s.last_digest("daily").await.unwrap(), Some(2_000));
    assert_eq!(s.last_digest("weekly").await.unwrap(), None);
    for c in claim_when_free(s, "d").await {
        s.complete(c.lease(), attempt(200), Outcome::Delivered)
            .await
            .unwrap();
    }
    assert!(s.purge(Duration::ZERO, 100).await.unwrap() >= 2);
    assert_eq!(s.last_digest("daily").await.unwrap(), Some(2_000));
}

/// Retention deletes the recorded last runs of digest schedules no longer
/// configured once they are older than it; a configured schedule's stays however
/// old, and an unconfigured one's until it is that old.
async fn retention_prunes_the_last_runs_of_digest_schedules_no_longer_configured(f: Fixture) {
    let s = f.store.as_ref();
    let now = s.clock_ms().await.unwrap();
    let runs = [("kept", 1_000), ("gone", 1_000), ("recent", now)];
    for (key, at) in runs {
        let mut e = new_event(&format!("digest:{key}:{at}"), &["d"], Duration::ZERO);
        e.digest_run = Some((key.into(), at));
        stored_id(s, e).await;
    }
    let hour = Duration::from_secs(3600);
    let configured = ["kept".to_string()];
    assert_eq!(s.prune_digest_runs(hour, &configured).await.unwrap(), 1);
    assert_eq!(s.last_digest("kept").await.unwrap(), Some(1_000));
    assert_eq!(s.last_digest("gone").await.unwrap(), None);
    assert_eq!(s.last_digest("recent").await.unwrap(), Some(now));
    assert_eq!(s.prune_digest_runs(hour, &configured).await.unwrap(), 0);
    // With no schedule configured, only what is older than retention goes.
    assert_eq!(s.prune_digest_runs(hour, &[]).await.unwrap(), 1);
    assert_eq!(s.last_digest("kept").await.unwrap(), None);
    assert_eq!(s.last_digest("recent").await.unwrap(), Some(now));
}

/// Who an attempt reached (an email's addresses that took it while others were
/// refused for now) is stored with its record and comes back with the next claim,
/// on another process too (a restart, another replica); each record replaces it,
/// a stale one changes nothing, and a manual retry keeps it.
async fn the_recipients_an_attempt_reached_come_back_with_the_next_claim(f: Fixture) {
    let s = &*f.store;
    s.ingest(new_event("a", &["d"], Duration::ZERO))
        .await
        .unwrap();
    let retry = || Outcome::Retry {
        after: Duration::ZERO,
    };
    let reached = |status: u16, who: &[&str]| Attempt {
        reached: who.iter().map(|w| w.to_string()).collect(),
        ..attempt(status)
    };
    let first = s.claim("d", 10, LONG).await.unwrap();
    assert!(first[0].reached.is_empty());
    assert!(s
        .complete(first[0].lease(), reached(451, &["a@example.com"]), retry())
        .await
        .unwrap());

    // A new process on the same database.
    let opts = store::Options {
        wake: Arc::default(),
    };
    let other = store::open(&f.url, opts).await.unwrap();
    let again = claim_when_free(&*other, "d").await;
    assert_eq!(again[0].reached, ["a@example.com"]);
    let two = ["a@example.com", "b@example.com"];
    assert!(other
        .complete(again[0].lease(), reached(452, &two), retry())
        .await
        .unwrap());
    // Claimed with a lease that runs out at once: its record comes too late.
    let stale = s.claim("d", 10, Duration::ZERO).await.unwrap();
    assert_eq!(stale[0].reached, two);
    let current = claim_when_free(s, "d").await;
    assert!(!s
        .complete(stale[0].lease(), reached(451, &[]), retry())
        .await
        .unwrap());
    s.renew(current[0].lease(), Duration::ZERO).await.unwrap();
    let current = claim_when_free(s, "d").await;
    assert_eq!(current[0].reached, two, "the stale record changed nothing");
    // Dead with it; a manual retry still skips them.
    assert!(s
        .complete(current[0].lease(), reached(451, &two), Outcome::Dead)
        .await
        .unwrap());
    s.retry_delivery(current[0].id).await.unwrap();
    let retried = s.claim("d", 10, LONG).await.unwrap();
    assert_eq!(retried[0].reached, two);
    // A record with none clears it.
    assert!(s
        .complete(retried[0].lease(), reached(451, &[]), retry())
        .await
        .unwrap());
    assert!(claim_when_free(s, "d").await[0].reached.is_empty());
}

/// Each contract test, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(sqlite().await).await;
                }
            )*
        }
        mod on_postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(postgres().await).await;
                }
            )*
        }
    };
}

contract!(
    a_claimed_delivery_is_leased_until_its_attempt_is_recorded,
    a_late_result_from_a_stale_lease_changes_nothing,
    a_stale_and_a_current_result_at_once_record_one_attempt,
    a_lease_that_runs_out_makes_the_delivery_claimable_again,
    a_renewed_lease_runs_from_the_renewal,
    a_manual_retry_makes_the_send_in_flight_stale,
    only_deliveries_nobody_is_sending_are_buried_as_unsent,
    a_retry_takes_only_a_dead_delivery,
    a_page_after_a_deleted_event_starts_where_it_was,
    a_repeated_event_within_its_window_is_one_event,
    many_webhooks_at_once_are_each_stored,
    new_deliveries_wake_the_delivery_loops,
    finished_events_past_retention_are_deleted_and_pending_ones_kept,
    a_rate_limit_and_a_pause_hold_for_the_store,
    a_send_handed_back_frees_its_place_in_the_rate_limit,
    storage_that_works_is_ready,
    a_deadline_is_claimed_once_with_its_event,
    many_webhooks_of_one_subject_at_once_each_count,
    the_web_page_finds_events_by_delivery_state_and_lists_outcomes,
    held_events_go_out_once_as_one_group,
    a_group_left_open_under_an_older_key_form_still_goes_out,
    retention_keeps_a_held_group,
    the_digest_counts_webhooks_received_not_hookrelays_own_events,
    the_digest_counts_alerts_by_when_they_ended,
    a_key_s_older_event_is_superseded_once_a_later_one_is_delivered,
    a_digest_run_is_recorded_with_its_digest_and_outlives_retention,
    the_recipients_an_attempt_reached_come_back_with_the_next_claim,
    retention_prunes_the_last_runs_of_digest_schedules_no_longer_configured,
);

// PostgreSQL only: what several replicas on one database rely on.

async fn pg_store(url: &str) -> (Arc<dyn Store>, Arc<tokio::sync::Notify>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let opts = store::Options { wake: wake.clone() };
    (store::open(url, opts).await.unwrap(), wake)
}

/// Stores events on `a` (ids `prefix0`, `prefix1`, …, one delivery each to "d")
/// until `wake` — another replica's wake-up — fires for one of them: from then
/// on that replica's LISTEN connection is up. Returns how many were stored.
async fn until_woken(a: &dyn Store, wake: &tokio::sync::Notify, prefix: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        // Armed before the commit: a notification may race the replica's start.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        a.ingest(new_event(&format!("{prefix}{i}"), &["d"], Duration::ZERO))
            .await
            .unwrap();
        i += 1;
        if tokio::time::timeout(Duration::from_millis(500), notified)
            .await
            .is_ok()
        {
            return i;
        }
        assert!(Instant::now() < deadline, "B was never woken by A's commit");
    }
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_naming_storage_url_but_not_its_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://hookrelay:s3cret-pw@127.0.0.1:{port}/relay");
    let opts = store::Options {
        wake: Arc::default(),
    };
    let err = store::open(&url, opts)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("storage.url: "), "{err}");
    assert!(
        err.contains(&format!("postgres://hookrelay@127.0.0.1:{port}/relay")),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");

    let opts = store::Options {
        wake: Arc::default(),
    };
    let err = store::open("postgres://u:pw@[oops/db", opts)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("storage.url: "), "{err}");
    assert!(!err.contains("pw@"), "{err}");
}

#[tokio::test]
async fn replicas_starting_together_on_an_empty_database_all_open() {
    let url = pg::fresh_database().await;
    let opened = futures_util::future::join_all((0..3).map(|_| {
        let url = url.clone();
        async move {
            let opts = store::Options {
                wake: Arc::default(),
            };
            store::open(&url, opts).await.map(|_| ())
        }
    }))
    .await;
    for r in opened {
        r.unwrap();
    }
}

#[tokio::test]
async fn a_commit_on_one_replica_wakes_the_loops_of_another() {
    let url = pg::fresh_database().await;
    let (a, _) = pg_store(&url).await;
    let (b, wake_b) = pg_store(&url).await;
    // B's LISTEN is up once B's ready; a notification may race its start, so
    // each round arms the wait before A commits.
    let i = until_woken(&*a, &wake_b, "w").await;
    assert_eq!(b.claim("d", 100, LONG).await.unwrap().len(), i);
}

#[tokio::test]
async fn a_pause_recorded_on_one_replica_holds_on_another() {
    let url = pg::fresh_database().await;
    let (a, _) = pg_store(&url).await;
    let (b, wake_b) = pg_store(&url).await;
    // Once B has been woken by A's commit its LISTEN connection is up, and B
    // knows pauses from their announcements instead of asking the database.
    until_woken(&*a, &wake_b, "p").await;
    assert_eq!(b.paused_for("d").await.unwrap(), Duration::ZERO);
    a.pause("d", Duration::from_secs(30)).await.unwrap();
    let p = a.paused_for("d").await.unwrap();
    assert!(
        p > Duration::from_secs(25) && p <= Duration::from_secs(30),
        "{p:?}"
    );
    // A shorter pause does not shorten it, on either replica.
    a.pause("d", Duration::from_secs(2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let p = loop {
        let p = b.paused_for("d").await.unwrap();
        if !p.is_zero() {
            break p;
        }
        assert!(Instant::now() < deadline, "B never saw A's pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        p > Duration::from_secs(25) && p <= Duration::from_secs(30),
        "{p:?}"
    );
    let p = a.paused_for("d").await.unwrap();
    assert!(p > Duration::from_secs(25), "{p:?}");
    // Another destination is not paused.
    assert_eq!(b.paused_for("other").await.unwrap(), Duration::ZERO);
}

#[tokio::test]
async fn the_same_event_on_two_replicas_at_once_is_one_event() {
    let url = pg::fresh_database().await;
    let (a, _) = pg_store(&url).await;
    let (b, _) = pg_store(&url).await;
    let w = Duration::from_secs(600);
    for round in 0..20 {
        let key = format!("sb-{round}");
        let (ra, rb) = tokio::join!(
            a.ingest(new_event(&key, &["d"], w)),
            b.ingest(new_event(&key, &["d"], w))
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let ids: Vec<&String> = [&ra, &rb]
            .iter()
            .map(|r| match r {
                Ingested::Stored { event_id, .. } | Ingested::Duplicate { event_id } => event_id,
                Ingested::Skipped => panic!("no deadline was claimed"),
            })
            .collect();
        assert_eq!(ids[0], ids[1], "{ra:?} {rb:?}");
        let stored = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Ingested::Stored { .. }))
            .count();
        assert_eq!(stored, 1, "{ra:?} {rb:?}");
    }
    let depth = a.queue_depth().await.unwrap();
    assert_eq!(depth, [("d".to_string(), 20)]);
}

#[tokio::test]
async fn a_database_that_goes_away_is_unavailable_and_comes_back_by_itself() {
    let server = pg::Server::start_new();
    let url = pg::fresh_database_on(&server.url).await;
    let (s, _) = pg_store(&url).await;
    s.ready().await.unwrap();
    s.ingest(new_event("before", &["d"], Duration::ZERO))
        .await
        .unwrap();

    server.stop();
    let e = s.ready().await.expect_err("not ready without a database");
    assert!(e.is_transient(), "{e}");
    let e = s
        .ingest(new_event("during", &["d"], Duration::ZERO))
        .await
        .expect_err("not stored");
    assert!(e.is_transient(), "{e}");

    server.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.ready().await.is_err() {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.ingest(new_event("after", &["d"], Duration::ZERO))
        .await
        .unwrap();
    // What was acknowledged is there; what was refused is not.
    let mut keys: Vec<String> = s
        .list_events(store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.raw["k"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["after", "before"]);
}

#[tokio::test]
async fn two_replicas_join_one_group_and_flush_it_once() {
    let url = pg::fresh_database().await;
    let (a, _) = pg_store(&url).await;
    let (b, _) = pg_store(&url).await;
    // Both replicas take events of one key at once: one group holds them all.
    let mut first = None;
    for round in 0..10 {
        let (ra, rb) = tokio::join!(
            a.ingest(grouped(
                &format!("a{round}"),
                "g",
                Duration::from_secs(2),
                100
            )),
            b.ingest(grouped(
                &format!("b{round}"),
                "g",
                Duration::from_secs(2),
                100
            ))
        );
        for r in [ra.unwrap(), rb.unwrap()] {
            if let Ingested::Stored { event_id, .. } = r {
                first.get_or_insert(event_id);
            }
        }
    }
    let view = a.group_of(first.as_ref().unwrap()).await.unwrap().unwrap();
    assert_eq!(view.count, 20);
    // Both flush as soon as it is due: it goes out once.
    let start = Instant::now();
    let mut flushed = 0;
    while flushed == 0 && start.elapsed() < Duration::from_secs(20) {
        let (fa, fb) = tokio::join!(a.flush_groups(100), b.flush_groups(100));
        flushed = fa.unwrap() + fb.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(flushed, 1);
    assert_eq!(
        a.flush_groups(100).await.unwrap() + b.flush_groups(100).await.unwrap(),
        0
    );
    assert_eq!(a.queue_depth().await.unwrap(), [("d".to_string(), 1)]);
    let claimed = b.claim("d", 10, LONG).await.unwrap();
    assert_eq!(
        a.group_events(claimed[0].group.unwrap())
            .await
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test]
async fn two_replicas_send_a_scheduled_digest_once() {
    use hookrelay::startup::Application;
    let url = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    std::fs::write(
        &path,
        format!(
            "storage: {{ url: \"{url}\" }}\nserver: {{ listen: \"127.0.0.1:0\" }}\n\
             sources: {{ sb: {{ kind: simplebackups }} }}\n\
             templates: {{ dir: \"{}/none\" }}\n\
             destinations:\n  out: {{ type: webhook, url: \"http://127.0.0.1:9/in\" }}\n\
             digest:\n  - {{ cron: \"* * * * *\", to: [out] }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let settings = || hookrelay::config::load_with_env(&path, &Default::default()).unwrap();
    let one = Application::build_without_workers(settings())
        .await
        .unwrap();
    let two = Application::build_without_workers(settings())
        .await
        .unwrap();
    let (one, two) = (one.shared(), two.shared());
    let t0 = one.store.clock_ms().await.unwrap();
    let (mut c1, mut c2) = (
        hookrelay::digest::Clock::default(),
        hookrelay::digest::Clock::default(),
    );
    assert_eq!(hookrelay::digest::tick(&one, &mut c1, t0).await.unwrap(), 0);
    assert_eq!(hookrelay::digest::tick(&two, &mut c2, t0).await.unwrap(), 0);
    let later = t0 + 120_000;
    let (x, y) = tokio::join!(
        hookrelay::digest::tick(&one, &mut c1, later),
        hookrelay::digest::tick(&two, &mut c2, later)
    );
    assert_eq!(
        x.unwrap() + y.unwrap(),
        1,
        "one digest for the two replicas"
    );
    assert_eq!(
        one.store.queue_depth().await.unwrap(),
        [("out".to_string(), 1)]
    );
}

/// Whether another send of a key is in flight (PostgreSQL's `begin_ordered`, asked
/// under the key's lock) is read from the key's pending rows by an index of their
/// own: not from every row of the key ever sent (a backup job's whole history),
/// nor from every pending row of the destination (a backlog).
#[tokio::test]
async fn on_postgres_whether_a_key_is_busy_is_read_from_its_pending_rows_only() {
    let url = pg::fresh_database().await;
    let (_store, _) = pg_store(&url).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO events (id, source, dedup_key, status, routed, event)
                 VALUES ('e', 's', 'e', 'failure', true, '{}');
             INSERT INTO deliveries (event_id, destination, template, state, order_key, order_seq)
                 SELECT 'e', 'pd', 'default', 'delivered',
                        CASE WHEN n % 10 = 0 THEN 'sb/job' ELSE 'sb/other-' || n % 100 END, n
                 FROM generate_series(1, 20000) n;
             INSERT INTO deliveries (event_id, destination, template, order_key, visible_at)
                 SELECT 'e', 'pd', 'default',
                        CASE WHEN n <= 3 THEN 'sb/job' ELSE 'sb/other-' || n % 100 END,
                        now() + n * interval '1 second'
                 FROM generate_series(1, 5000) n;
             ANALYZE deliveries;",
        )
        .await
        .unwrap();
    // The statement `begin_ordered` runs, with values for its parameters.
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT (extract(epoch FROM visible_at - now()) * 1000)::int8 FROM deliveries
             WHERE destination = 'pd' AND order_key = 'sb/job' AND id <> 1 AND state = 'pending'
               AND visible_at > now() AND lease_token = order_token
               AND attempts = order_attempt
             LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("deliveries_order_pending"), "{plan}");
}

/// The digest reads the deliveries ended since the previous digest by their
/// index (deliveries_ended), not the whole table (a month of alerts).
#[tokio::test]
async fn on_postgres_the_digest_reads_only_the_deliveries_ended_since() {
    let url = pg::fresh_database().await;
    let (_store, _) = pg_store(&url).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO events (id, source, dedup_key, status, routed, event)
                 SELECT 'e' || n, 's', 'id:' || n, 'failure', true, '{}'
                 FROM generate_series(1, 20050) n;
             INSERT INTO deliveries (event_id, destination, template, state, ended_at)
                 SELECT 'e' || n, 'd', 'default', CASE WHEN n % 20 = 0 THEN 'dead' ELSE 'delivered' END,
                        CASE WHEN n <= 20000 THEN now() - interval '30 days' + n * interval '2 minutes'
                             ELSE now() END
                 FROM generate_series(1, 20050) n;
             INSERT INTO deliveries (event_id, destination, template)
                 SELECT 'e' || n, 'd', 'default' FROM generate_series(1, 50) n;
             ANALYZE;",
        )
        .await
        .unwrap();
    // The statement `digest_counts` runs, with values for its parameters.
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT
                 (SELECT COUNT(*) FROM events WHERE received_at >= now() - interval '1 day'
                  AND dedup_key NOT LIKE 'digest:%' AND dedup_key NOT LIKE 'missing:%'
                  AND dedup_key NOT LIKE 'recovered:%' AND dedup_key <> ''),
                 COUNT(*) FILTER (WHERE d.state = 'delivered'),
                 COUNT(*) FILTER (WHERE d.state = 'dead')
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.ended_at >= now() - interval '1 day' AND e.dedup_key NOT LIKE 'digest:%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("deliveries_ended"), "{plan}");
    assert!(!plan.contains("Seq Scan on deliveries"), "{plan}");
}

/// A database from before `deliveries.ended_at` (PostgreSQL schema 6): its
/// delivered and dead rows get their end on upgrade (a recorded attempt's end,
/// kept as visible_at; a buried row's last due time, never later than now), so
/// the first digest after it counts them; pending ones have none.
#[tokio::test]
async fn on_postgres_deliveries_ended_before_the_upgrade_get_their_end() {
    let url = pg::fresh_database().await;
    let (store, _) = pg_store(&url).await;
    drop(store);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // Back to schema 7, with rows as it wrote them.
    client
        .batch_execute(
            "DROP INDEX deliveries_ended;
             ALTER TABLE deliveries DROP COLUMN ended_at;
             DELETE FROM schema_version WHERE version = 8;
             INSERT INTO events (id, source, dedup_key, status, routed, event)
                 VALUES ('e', 's', 'id:1', 'failure', true, '{}');
             INSERT INTO deliveries (id, event_id, destination, template, state, visible_at) VALUES
                 (1, 'e', 'd', 'default', 'delivered', now() - interval '2 days'),
                 (2, 'e', 'd', 'default', 'dead', now() - interval '1 hour'),
                 (3, 'e', 'd', 'default', 'dead', now() + interval '1 hour'),
                 (4, 'e', 'd', 'default', 'pending', now() + interval '1 hour');",
        )
        .await
        .unwrap();
    let (store, _) = pg_store(&url).await;
    let rows = client
        .query(
            "SELECT ended_at = visible_at, ended_at <= now(), ended_at IS NULL
             FROM deliveries ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(Option<bool>, Option<bool>, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (Some(true), Some(true), false),
            (Some(true), Some(true), false),
            (Some(false), Some(true), false),
            (None, None, true),
        ]
    );
    let day_ago = store.clock_ms().await.unwrap() - 86_400_000;
    let counts = store.digest_counts(day_ago, i64::MAX).await.unwrap();
    assert_eq!((counts.delivered, counts.dead), (0, 2), "{counts:?}");
}

async fn failures(s: &dyn Store) -> Option<u32> {
    s.get_subject("k").await.unwrap().map(|s| s.failures)
}

/// Each replica keeps the subjects it read or wrote in memory while its LISTEN
/// connection is up: a write on another replica must make it read them again.
#[tokio::test]
async fn a_subject_written_on_one_replica_is_read_on_another() {
    let url = pg::fresh_database().await;
    let (a, _) = pg_store(&url).await;
    let (b, wake_b) = pg_store(&url).await;
    // Once B has been woken by A's commit, its LISTEN connection is up.
    until_woken(&*a, &wake_b, "s").await;
    // B reads (and keeps) "no such subject"; then A writes it, twice.
    assert_eq!(failures(&*b).await, None);
    for n in 1..=2 {
        a.ingest(watched(Status::Failure, None)).await.unwrap();
        assert_eq!(failures(&*a).await, Some(n), "A sees its own write at once");
        let deadline = Instant::now() + Duration::from_secs(10);
        while failures(&*b).await != Some(n) {
            assert!(Instant::now() < deadline, "B never read A's write {n}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // And the other way round: A had kept what it wrote.
    b.ingest(watched(Status::Failure, None)).await.unwrap();
    assert_eq!(failures(&*b).await, Some(3));
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(&*a).await != Some(3) {
        assert!(Instant::now() < deadline, "A never read B's write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A webhook as `POST /hooks/sb` prepares it on `app`: normalized, its subject
/// read (from that replica's memory of subjects, if it has one), routed; not
/// stored yet.
async fn prepared(app: &hookrelay::startup::Shared, id: &str, status: &str) -> NewEvent {
    let relay = app.relay.load_full();
    let raw = serde_json::json!({
        "id": id, "status": status, "type": "backup", "backup": { "name": "nightly" }
    });
    let mut e =
        hookrelay::providers::normalize("sb", &relay.sources["sb"].cfg, raw, chrono::Utc::now());
    let watch = hookrelay::watch::subject_for(&relay, app.store.as_ref(), &mut e)
        .await
        .unwrap();
    let (routed, deliveries, groups) = relay.plan_grouped(&e);
    let mut new =
        NewEvent::new(&mut e, None, id.into(), Duration::ZERO, routed, deliveries).unwrap();
    new.watch = Some(watch);
    new.groups = groups;
    new
}

/// The `backup.recovered` events stored, and the subject's state.
async fn recoveries(s: &dyn Store) -> (usize, hookrelay::watch::SubjectState, u32) {
    let events = s
        .list_events(store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let n = events
        .iter()
        .filter(|r| r.event.event.as_deref() == Some("backup.recovered"))
        .count();
    let subject = s.get_subject("sb/nightly").await.unwrap().unwrap();
    (n, subject.state, subject.failures)
}

/// Two processes (`a`, `b`; the same one on SQLite) on one store, watching one
/// backup. A success read its subject as ok (`b`'s memory, or a read just before
/// another webhook's commit) while a failure was being stored on `a`: the success
/// is stored after the failure, so it ends a bad run and brings its
/// `backup.recovered`, once. And a success read as failing after that recovery was
/// stored brings none.
async fn a_success_read_before_a_failure_was_stored_still_brings_one_recovery(
    a: &hookrelay::startup::Shared,
    b: &hookrelay::startup::Shared,
) {
    use hookrelay::watch::SubjectState;
    stored_id(&*b.store, prepared(b, "ok-0", "success").await).await;
    // B has read (and keeps) the subject as ok.
    let success = prepared(b, "ok-1", "success").await;
    stored_id(&*a.store, prepared(a, "fail-1", "error").await).await;
    assert_eq!(recoveries(&*a.store).await, (0, SubjectState::Failing, 1));
    // A read it as failing, before B's success is stored.
    let late = prepared(a, "ok-2", "success").await;
    stored_id(&*b.store, success).await;
    assert_eq!(
        recoveries(&*b.store).await,
        (1, SubjectState::Ok, 0),
        "the success after the failure ends the bad run"
    );
    stored_id(&*a.store, late).await;
    assert_eq!(
        recoveries(&*a.store).await,
        (1, SubjectState::Ok, 0),
        "a bad run ends once"
    );
}

/// A success that ends a bad run and a failure of the same backup stored at once
/// (on PostgreSQL: queued together, so one batch, in this order): the success's
/// `backup.recovered`, stored after the whole batch there, still ranks with the
/// success, before the failure. Once the success's and the recovery's resolves
/// are delivered for the backup's key, the failure's trigger is sent, not
/// superseded (PagerDuty would otherwise end with the incident resolved while the
/// backup fails); and once it is, the two resolves would be superseded by it.
///
/// `stored_last`: whether the store stores the recovery after the failure
/// (PostgreSQL's batch; SQLite stores it right after its success), checked so
/// that the case is really the one tested.
async fn a_recovery_ranks_with_its_success_before_a_failure_stored_with_it(
    app: &hookrelay::startup::Shared,
    stored_last: bool,
) {
    let s = app.store.as_ref();
    stored_id(s, prepared(app, "fail-1", "error").await).await;
    for c in claim_when_free(s, "out").await {
        assert!(s
            .complete(c.lease(), attempt(202), Outcome::Delivered)
            .await
            .unwrap());
    }
    let success = prepared(app, "ok-2", "success").await;
    let failure = prepared(app, "fail-3", "error").await;
    // Both queued before either is stored (one poll of the pair).
    let (ok, failed) = futures_util::future::join(s.ingest(success), s.ingest(failure)).await;
    let id = |i: Ingested| match i {
        Ingested::Stored { event_id, .. } => event_id,
        other => panic!("{other:?}"),
    };
    let (ok, failed) = (id(ok.unwrap()), id(failed.unwrap()));
    let events = s
        .list_events(store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let recovered: Vec<&str> = events
        .iter()
        .filter(|r| r.event.event.as_deref() == Some("backup.recovered"))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(recovered.len(), 1, "the success ended the bad run");
    assert_eq!(
        events[0].id == recovered[0],
        stored_last,
        "newest first: {:?}",
        events.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    let claimed = s.claim("out", 10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let of = |e: &str| claimed.iter().find(|c| c.event_id == e).unwrap();
    let (ok, recovery, failed) = (of(&ok), of(recovered[0]), of(&failed));
    for (c, action) in [(ok, "resolve"), (recovery, "resolve")] {
        assert_eq!(
            s.begin_ordered(c.lease(), "out", "sb/nightly", action)
                .await
                .unwrap(),
            Ordered::Send,
            "{action} of {}",
            c.event_id
        );
        assert!(s
            .complete(c.lease(), attempt(202), Outcome::Delivered)
            .await
            .unwrap());
    }
    assert_eq!(
        s.begin_ordered(failed.lease(), "out", "sb/nightly", "trigger")
            .await
            .unwrap(),
        Ordered::Send,
        "the failure was received after the success and its recovery"
    );
}

#[tokio::test]
async fn on_sqlite_a_recovery_ranks_with_its_success_before_a_failure_stored_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/w.db", dir.path().display());
    let app = watching_app(&url, dir.path()).await;
    a_recovery_ranks_with_its_success_before_a_failure_stored_with_it(&app, false).await;
}

#[tokio::test]
async fn on_postgres_a_recovery_ranks_with_its_success_before_a_failure_stored_with_it() {
    let url = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let app = watching_app(&url, dir.path()).await;
    a_recovery_ranks_with_its_success_before_a_failure_stored_with_it(&app, true).await;
}

async fn watching_app(url: &str, dir: &std::path::Path) -> Arc<hookrelay::startup::Shared> {
    let path = dir.join("relay.yaml");
    std::fs::write(
        &path,
        format!(
            "storage: {{ url: \"{url}\" }}\nserver: {{ listen: \"127.0.0.1:0\" }}\n\
             sources: {{ sb: {{ kind: simplebackups, dedup_window: 0s }} }}\n\
             templates: {{ dir: \"{}/none\" }}\n\
             destinations:\n  out: {{ type: webhook, url: \"http://127.0.0.1:9/in\" }}\n\
             routes:\n  - to: [out]\n",
            dir.display()
        ),
    )
    .unwrap();
    let settings = hookrelay::config::load_with_env(&path, &Default::default()).unwrap();
    hookrelay::startup::Application::build_without_workers(settings)
        .await
        .unwrap()
        .shared()
}

#[tokio::test]
async fn on_sqlite_a_success_read_before_a_failure_was_stored_still_brings_one_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/w.db", dir.path().display());
    let app = watching_app(&url, dir.path()).await;
    a_success_read_before_a_failure_was_stored_still_brings_one_recovery(&app, &app).await;
}

#[tokio::test]
async fn two_replicas_a_success_read_before_a_failure_was_stored_still_brings_one_recovery() {
    let url = pg::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = watching_app(&url, dir.path()).await;
    let b = watching_app(&url, dir.path()).await;
    a_success_read_before_a_failure_was_stored_still_brings_one_recovery(&a, &b).await;
}
