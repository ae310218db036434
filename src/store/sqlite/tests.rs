//! Unit tests of the SQLite backend's internals (the writer's batches, opening).

mod open_tests {
    use super::super::*;

    #[test]
    fn open_errors_name_the_absolute_path_and_permission_problems() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-file"), "x").unwrap();
        let path = dir.path().join("a-file/sub/hookrelay.db");
        let opts = || Options {
            wake: Arc::default(),
        };
        let err = SqliteStore::open(path.to_str().unwrap(), opts())
            .err()
            .expect("a file where a folder should be")
            .to_string();
        assert!(
            err.contains(&dir.path().join("a-file/sub").display().to_string()),
            "{err}"
        );
        // A folder where the database file should be.
        std::fs::create_dir(dir.path().join("db-dir")).unwrap();
        let err = SqliteStore::open(dir.path().join("db-dir").to_str().unwrap(), opts())
            .err()
            .expect("a folder is not a database")
            .to_string();
        assert!(
            err.starts_with("storage.url: cannot open the SQLite database /"),
            "{err}"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(io_reason(&denied).starts_with("permission denied"));
    }
}

mod batches {
    use super::super::*;
    use crate::event::Event;

    fn new_event(key: &str) -> NewEvent {
        let mut event = Event {
            source: "s".into(),
            provider: "generic".into(),
            received_at: "2026-11-23T00:00:00Z".into(),
            ..Event::default()
        };
        let d = NewDelivery {
            destination: "d".into(),
            template: "default".into(),
            channel: None,
        };
        NewEvent::new(&mut event, None, key.into(), Duration::ZERO, true, vec![d]).unwrap()
    }

    fn job<T: Send + 'static>(
        f: impl FnMut(&Connection) -> Result<T> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        let job = WriteJob {
            f,
            result: None,
            tx,
            lazy: false,
        };
        (Box::new(job), rx)
    }

    fn noop(lazy: bool) -> Box<dyn Job> {
        let (tx, _) = oneshot::channel::<Result<()>>();
        Box::new(WriteJob {
            f: |_: &Connection| Ok(()),
            result: None,
            tx,
            lazy,
        })
    }

    #[test]
    fn records_wait_for_a_webhook_to_commit_with_only_while_webhooks_arrive() {
        let long = Duration::from_secs(30);
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();

        // Webhooks arriving: a lazy write waits for the next urgent one.
        let last_urgent = Some(std::time::Instant::now());
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(noop(false)).unwrap())
        };
        let batch = gather(&rx, noop(true), last_urgent, long);
        sender.join().unwrap();
        assert_eq!(
            batch.iter().map(|j| j.lazy()).collect::<Vec<_>>(),
            [true, false]
        );

        // No webhook lately (a backlog draining): it goes at once, alone.
        let started = std::time::Instant::now();
        let batch = gather(&rx, noop(true), None, long);
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() < long / 2, "did not wait for company");
        let stale = Some(std::time::Instant::now());
        let batch = gather(&rx, noop(true), stale, Duration::ZERO);
        assert_eq!(batch.len(), 1);

        // Urgent writes never wait, and what is queued goes with them.
        tx.send(noop(true)).unwrap();
        let started = std::time::Instant::now();
        let batch = gather(&rx, noop(false), None, long);
        assert_eq!(batch.len(), 2);
        assert!(started.elapsed() < long / 2, "did not wait for company");
    }

    /// A store in a fresh folder (kept alive by the returned guard).
    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            wake: Arc::default(),
        };
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), opts).unwrap();
        (dir, store)
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_failing_job_in_a_batch_leaves_no_rows_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        migrate(&conn).unwrap();
        let (a, mut ra) = job(|c| ingest_tx(c, &new_event("a")));
        // Writes an event row, then fails: the row must not survive.
        let (b, mut rb) = job(|c| {
            ingest_tx(c, &new_event("b"))?;
            Err::<(), _>(StoreError::NotFound)
        });
        let (c, mut rc) = job(|c| ingest_tx(c, &new_event("c")));
        let mut batch = vec![a, b, c];
        run_batch(&conn, &mut batch).unwrap();
        for j in batch {
            j.finish(Ok(()));
        }
        assert!(matches!(
            ra.try_recv().unwrap(),
            Ok(Ingested::Stored { .. })
        ));
        assert!(matches!(rb.try_recv().unwrap(), Err(StoreError::NotFound)));
        assert!(matches!(
            rc.try_recv().unwrap(),
            Ok(Ingested::Stored { .. })
        ));
        let keys: Vec<String> = conn
            .prepare("SELECT dedup_key FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM deliveries"), 2);
    }

    #[test]
    fn an_uncommitted_batch_reports_a_commit_error() {
        let (mut a, mut ra) = job(|_| Ok(1));
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        assert!(matches!(a.run(&conn), Ran::Ok));
        a.finish(Err(StoreError::Commit));
        assert!(matches!(ra.try_recv().unwrap(), Err(StoreError::Commit)));
    }

    /// Only sources with a dedup window look their events up by key, so only
    /// their events are in the key's index (a write per webhook on a random page
    /// of it). An event stored while its source had no window is not found as the
    /// first of a duplicate once the source gets one.
    #[tokio::test]
    async fn only_events_of_sources_with_a_dedup_window_are_indexed_by_their_key() {
        let (_dir, store) = temp_store();
        let with_window = |window: Duration| {
            let mut e = new_event("k");
            e.dedup_window = window;
            e
        };
        let stored = |i: Ingested| matches!(i, Ingested::Stored { .. });
        for window in [Duration::ZERO, Duration::ZERO, Duration::from_secs(600)] {
            assert!(stored(store.ingest(with_window(window)).await.unwrap()));
        }
        let again = store.ingest(with_window(Duration::from_secs(600))).await;
        assert!(matches!(again.unwrap(), Ingested::Duplicate { .. }));

        let conn = store.point.lock().unwrap();
        let indexed: Vec<bool> = conn
            .prepare("SELECT deduplicated FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(indexed, [false, false, true]);
        let plan: String = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id FROM events
                 WHERE source = ?1 AND dedup_key = ?2 AND received_at >= ?3 AND deduplicated = 1
                 ORDER BY seq LIMIT 1",
            )
            .unwrap()
            .query_map(params!["s", "k", 0], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("; ");
        assert!(plan.contains("USING INDEX events_dedup"), "{plan}");
        let index: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'events_dedup'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index.ends_with("WHERE deduplicated = 1"), "{index}");
    }

    #[tokio::test]
    async fn an_unreadable_stored_event_ends_dead_without_stopping_the_others() {
        let (_dir, store) = temp_store();
        store.ingest(new_event("a")).await.unwrap();
        store.ingest(new_event("b")).await.unwrap();
        store
            .write(|c| Ok(c.execute("UPDATE events SET event = '{' WHERE seq = 1", [])?))
            .await
            .unwrap();
        let claimed = store.claim("d", 10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(claimed.len(), 1, "the readable one is claimed");
        let dead = store.list_deliveries(Some(State::Dead), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("stored event unreadable"),
            "{:?}",
            dead[0].last_error
        );
        assert_ne!(dead[0].id, claimed[0].id);
    }

    /// A database from before `deliveries.reached` (schema version 7) with a
    /// delivery waiting: migrated when opened, the delivery is claimed with
    /// nobody reached, and its record then keeps who was.
    #[tokio::test]
    async fn a_delivery_stored_before_reached_was_kept_is_claimed_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v7.db");
        {
            let conn = connect(path.to_str().unwrap()).unwrap();
            conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                .unwrap();
            for (i, sql) in MIGRATIONS[..7].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    params![i as i64 + 1],
                )
                .unwrap();
            }
            ingest_tx(&conn, &new_event("a")).unwrap();
        }
        let opts = Options {
            wake: Arc::default(),
        };
        let store = SqliteStore::open(path.to_str().unwrap(), opts).unwrap();
        let version = schema_version(&store.reader.lock().unwrap()).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let long = Duration::from_secs(60);
        let claimed = store.claim("d", 10, long).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(claimed[0].reached.is_empty());
        let attempt = Attempt {
            status: Some(451),
            error: Some("not yet to b@example.com".into()),
            duration_ms: 1,
            reached: vec!["a@example.com".into()],
        };
        let retry = Outcome::Retry {
            after: Duration::ZERO,
        };
        assert!(store
            .complete(claimed[0].lease(), attempt, retry)
            .await
            .unwrap());
        let again = store.claim("d", 10, long).await.unwrap();
        assert_eq!(again[0].reached, ["a@example.com"]);
    }
}

mod ordered {
    use super::super::*;
    use crate::event::Event;
    use futures_util::FutureExt;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    fn new_event(key: &str) -> NewEvent {
        let mut event = Event {
            source: "s".into(),
            provider: "generic".into(),
            received_at: "2026-11-23T00:00:00Z".into(),
            ..Event::default()
        };
        let d = NewDelivery {
            destination: "d".into(),
            template: "default".into(),
            channel: None,
        };
        NewEvent::new(&mut event, None, key.into(), Duration::ZERO, true, vec![d]).unwrap()
    }

    /// Polls `f` once.
    async fn poll_once<T>(f: &mut std::pin::Pin<Box<impl Future<Output = T>>>) -> Poll<T> {
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
    }

    /// Ordered sends on SQLite (see `Store::begin_ordered`): a send of a key
    /// another send holds is told to wait from memory, without a write (nor
    /// waiting for the writer, here kept busy), and so is a stale lease told it is
    /// lost; a lease lost while its send's check waits for the writer is an
    /// answer, not a failed write that would roll back the batch it is in and run
    /// every job of it again; and a key's hold is gone once its send is recorded
    /// (or turns out not to be made).
    #[tokio::test]
    async fn a_key_held_or_a_lease_lost_costs_no_write_nor_a_batch_run_again_and_holds_go() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            wake: Arc::default(),
        };
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), opts).unwrap();
        for k in ["a", "b", "c"] {
            store.ingest(new_event(k)).await.unwrap();
        }
        let claimed = store.claim("d", 10, Duration::from_secs(60)).await.unwrap();
        let [a, b, c] = [0, 1, 2].map(|i| claimed[i].lease());
        let begin = |l: Lease, key: &'static str| store.begin_ordered(l, "d", key, "trigger");
        assert_eq!(begin(a, "k").await.unwrap(), Ordered::Send);

        // The writer kept busy until released.
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = store.write(move |_| {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        });
        assert!(busy.now_or_never().is_none());
        started_rx.recv().unwrap();

        assert!(matches!(
            begin(b, "k").now_or_never(),
            Some(Ok(Ordered::Wait(w))) if w > Duration::ZERO && w <= Duration::from_secs(1)
        ));
        let stale = Lease {
            id: c.id,
            token: c.token + 1000,
        };
        assert!(matches!(
            begin(stale, "k2").now_or_never(),
            Some(Err(StoreError::LeaseLost(_)))
        ));

        // A webhook's write and a send's check queued together, one batch; the
        // send's lease is lost before the writer gets to it.
        let runs = Arc::new(AtomicUsize::new(0));
        let mut webhook = Box::pin({
            let runs = runs.clone();
            store.write(move |conn| {
                runs.fetch_add(1, Ordering::SeqCst);
                ingest_tx(conn, &new_event("e")).map(|_| ())
            })
        });
        assert!(poll_once(&mut webhook).await.is_pending());
        let mut lost = Box::pin(begin(c, "k3"));
        assert!(
            poll_once(&mut lost).await.is_pending(),
            "its lease was held"
        );
        store.leases.lock().unwrap().remove(&c.id);
        release_tx.send(()).unwrap();
        assert!(matches!(lost.await, Err(StoreError::LeaseLost(_))));
        webhook.await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the batch was not run again"
        );

        let done = Attempt {
            status: Some(202),
            error: None,
            duration_ms: 1,
            reached: Vec::new(),
        };
        assert!(store
            .complete(a, done.clone(), Outcome::Delivered)
            .await
            .unwrap());
        assert!(store.holds.lock().unwrap().is_empty(), "k and k3 are free");
        assert_eq!(begin(b, "k").await.unwrap(), Ordered::Send);
        assert!(store.complete(b, done, Outcome::Delivered).await.unwrap());
        assert!(store.holds.lock().unwrap().is_empty());
    }
}

mod subject_cache {
    use super::super::subjects::SubjectCache;
    use super::super::*;
    use crate::watch::SubjectState;

    fn subject(key: &str, failures: u32) -> Subject {
        Subject {
            key: key.into(),
            state: SubjectState::Failing,
            failures,
            last_event_at: None,
            last_success_at: None,
            down_since: None,
            next_deadline: None,
            rule: None,
            fields: Default::default(),
        }
    }

    fn write(key: &'static str, failures: u32, fail: bool) -> Box<dyn Job> {
        let (tx, _) = oneshot::channel::<Result<()>>();
        Box::new(WriteJob {
            f: move |c: &Connection| {
                write_subject(c, &subject(key, failures))?;
                if fail {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            },
            result: None,
            tx,
            lazy: false,
        })
    }

    #[test]
    fn only_committed_subjects_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        migrate(&conn).unwrap();
        let cache = SubjectCache::default();
        // The second job writes the subject again, then fails: rolled back, and
        // its version must not be served.
        let mut batch = vec![
            write("x", 1, false),
            write("x", 9, true),
            write("y", 2, false),
        ];
        run_batch(&conn, &mut batch).unwrap();
        cache.publish();
        assert_eq!(cache.get("x").unwrap().failures, 1);
        assert_eq!(cache.get("y").unwrap().failures, 2);
        assert_eq!(read_subject(&conn, "x").unwrap().unwrap().failures, 1);
    }

    #[test]
    fn a_read_that_raced_with_a_commit_is_not_cached() {
        let cache = SubjectCache::default();
        let before = cache.generation();
        // A commit publishes a newer state while the read was under way.
        subjects::stage(&subject("x", 2));
        cache.publish();
        cache.offer(before, &subject("x", 1));
        assert_eq!(cache.get("x").unwrap().failures, 2);
        // With nothing published meanwhile, a read is cached.
        let now = cache.generation();
        cache.offer(now, &subject("z", 5));
        assert_eq!(cache.get("z").unwrap().failures, 5);
    }

    #[test]
    fn a_subject_written_over_its_row_keeps_or_replaces_its_fields_and_comes_back_if_gone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("t.db").to_str().unwrap()).unwrap();
        migrate(&conn).unwrap();
        let fields = |v: &str| {
            let mut m = serde_json::Map::new();
            m.insert("server".into(), Value::String(v.into()));
            Arc::new(m)
        };
        let mut first = subject("k", 1);
        first.fields = fields("a");
        write_subject(&conn, &first).unwrap();
        // Same fields (the same map): the row's counts change, its fields stay.
        let mut second = first.clone();
        second.failures = 2;
        second.next_deadline = Some(7);
        write_subject_over(&conn, &second, Some(&first)).unwrap();
        let row = read_subject(&conn, "k").unwrap().unwrap();
        assert_eq!((row.failures, row.next_deadline), (2, Some(7)));
        assert_eq!(row.fields, fields("a"));
        // New fields: written.
        let mut third = second.clone();
        third.failures = 3;
        third.fields = fields("b");
        write_subject_over(&conn, &third, Some(&second)).unwrap();
        let row = read_subject(&conn, "k").unwrap().unwrap();
        assert_eq!((row.failures, row.fields), (3, fields("b")));
        // The row gone under the writer (its cache still knows it): written whole.
        conn.execute("DELETE FROM subjects", []).unwrap();
        let mut fourth = third.clone();
        fourth.failures = 4;
        write_subject_over(&conn, &fourth, Some(&third)).unwrap();
        let row = read_subject(&conn, "k").unwrap().unwrap();
        assert_eq!((row.failures, row.fields), (4, fields("b")));
    }

    #[tokio::test]
    async fn webhooks_read_their_subject_as_last_committed() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            wake: Arc::default(),
        };
        let store = SqliteStore::open(dir.path().join("t.db").to_str().unwrap(), opts).unwrap();
        assert!(store.get_subject("a").await.unwrap().is_none());
        store
            .write(|c| write_subject(c, &subject("a", 1)))
            .await
            .unwrap();
        assert_eq!(store.get_subject("a").await.unwrap().unwrap().failures, 1);
        let failed = store
            .write(|c| {
                write_subject(c, &subject("a", 9))?;
                Err::<(), _>(StoreError::NotFound)
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(store.get_subject("a").await.unwrap().unwrap().failures, 1);
    }
}

mod retention {
    use super::super::*;

    /// How many events retention finds to delete and the SQLite VM steps it takes
    /// to find them, with `old` finished events past retention before `kept`
    /// recent ones.
    fn purge_query(old: usize, kept: usize) -> (usize, i32) {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("db").to_str().unwrap()).unwrap();
        migrate(&conn).unwrap();
        let day = 86_400_000;
        let now = now_ms();
        let add = |i: usize, at: i64| {
            conn.execute(
                "INSERT INTO events (id, source, received_at, dedup_key, status, routed, event)
                 VALUES (?1, 's', ?2, ?1, 'error', 1, '{}')",
                params![format!("e{i}"), at],
            )
            .unwrap();
        };
        (0..old).for_each(|i| add(i, now - 40 * day));
        (old..old + kept).for_each(|i| add(i, now));
        let found = purge_candidates(&conn, now - 30 * day, 200).unwrap().len();
        // The cached statements it ran, with their counts.
        let steps = [PURGE_OLDEST, PURGE_DELETABLE]
            .iter()
            .map(|sql| {
                let s = conn.prepare_cached(sql).unwrap();
                s.get_status(rusqlite::StatementStatus::VmStep)
            })
            .sum();
        (found, steps)
    }

    #[test]
    fn finding_what_retention_may_delete_does_not_read_the_events_it_keeps() {
        let (found, few) = purge_query(3, 10);
        assert_eq!(found, 3);
        let (found, many) = purge_query(3, 5_000);
        assert_eq!(found, 3);
        // Every kept event read would be several steps: 5,000 of them, thousands.
        assert!(
            many <= few + 20,
            "{many} steps with 5,000 kept events, {few} with 10"
        );
        // Nothing past retention: nothing found, and nothing read to find it.
        let (found, none) = purge_query(0, 5_000);
        assert_eq!(found, 0);
        assert!(none <= few, "{none} steps to find nothing");
        // More past retention than a batch: one batch, oldest first.
        assert_eq!(purge_query(500, 10).0, 200);
    }
}

mod digest {
    use super::super::*;

    /// A database at schema version `v`, as that version left it.
    fn at_version(v: usize) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = connect(dir.path().join("db").to_str().unwrap()).unwrap();
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .unwrap();
        for (i, sql) in MIGRATIONS[..v].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i as i64 + 1],
            )
            .unwrap();
        }
        (dir, conn)
    }

    /// Deliveries that ended before the digest counted them by when they ended
    /// get an end from what the row says: a recorded attempt's end (set as its
    /// next_attempt_at), a buried row's last due time but never later than now;
    /// a pending one has none.
    #[test]
    fn deliveries_ended_before_the_upgrade_get_their_end() {
        let (_dir, conn) = at_version(8);
        let now = now_ms();
        let ahead = now + 3_600_000;
        conn.execute_batch(&format!(
            "INSERT INTO events (id, source, received_at, dedup_key, status, routed, event)
                 VALUES ('e', 's', 1000, 'id:1', 'failure', 1, '{{}}');
             INSERT INTO deliveries (id, event_id, destination, template, state, created_at,
                     window_start, next_attempt_at)
                 VALUES (1, 'e', 'd', 'default', 'delivered', 1000, 1000, 5000),
                        (2, 'e', 'd', 'default', 'dead', 1000, 1000, 6000),
                        (3, 'e', 'd', 'default', 'dead', 1000, 1000, {ahead}),
                        (4, 'e', 'd', 'default', 'pending', 1000, 1000, {ahead});"
        ))
        .unwrap();
        migrate(&conn).unwrap();
        let ended: Vec<Option<i64>> = conn
            .prepare("SELECT ended_at FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(&ended[..2], [Some(5000), Some(6000)]);
        let buried = ended[2].unwrap();
        assert!(buried >= now && buried < ahead, "{buried} (now {now})");
        assert_eq!(ended[3], None);
    }

    /// The digest reads the deliveries ended since the previous digest by their
    /// index, not the whole table.
    #[test]
    fn the_digest_reads_only_the_deliveries_ended_since() {
        let (_dir, conn) = at_version(MIGRATIONS.len());
        let plan: String = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", group::DIGEST_COUNTS))
            .unwrap()
            .query_map(params![0, "digest:%", "missing:%", "recovered:%", 1], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("; ");
        assert!(
            plan.contains("SEARCH d USING INDEX deliveries_ended (ended_at>? AND ended_at<?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN d"), "{plan}");
    }
}
