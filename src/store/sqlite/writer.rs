//! The writer thread: one connection, kept to the file at the configured path, that
//! drains its queue of jobs into one transaction per batch.

use super::*;

/// Jobs the writer takes into one transaction at most.
pub(super) const MAX_BATCH: usize = 512;
/// How long a lazy write may wait for an urgent one to commit with (see `gather`).
pub(super) const LAZY_FOR: Duration = Duration::from_millis(2);

/// How a job's run went.
pub(super) enum Ran {
    Ok,
    Failed,
    /// Failed because of the database's state (read-only, disk full): the
    /// connection is opened again before the next batch.
    FailedTransient,
}

/// One write. It may run twice: see [`run_batch`].
pub(super) trait Job: Send {
    /// Runs the statements, keeps the result.
    fn run(&mut self, conn: &Connection) -> Ran;
    /// Hands the result over once the transaction is committed (or not).
    fn finish(self: Box<Self>, committed: std::result::Result<(), StoreError>);
    /// Nobody is held up until it commits: it may wait for other writes.
    fn lazy(&self) -> bool;
}

pub(super) struct WriteJob<T, F> {
    pub(super) f: F,
    pub(super) result: Option<Result<T>>,
    pub(super) tx: oneshot::Sender<Result<T>>,
    pub(super) lazy: bool,
}

impl<T, F> Job for WriteJob<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> Ran {
        let r = (self.f)(conn);
        let ran = match &r {
            Ok(_) => Ran::Ok,
            Err(e) if e.is_transient() => Ran::FailedTransient,
            Err(_) => Ran::Failed,
        };
        self.result = Some(r);
        ran
    }

    fn finish(self: Box<Self>, committed: std::result::Result<(), StoreError>) {
        let WriteJob { f, result, tx, .. } = *self;
        // Dropped before the answer goes out: what the job shares with its caller
        // (see `ingest`) is then freed by the caller, on the thread that made it.
        drop(f);
        let r = match (result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Commit),
        };
        let _ = tx.send(r);
    }

    fn lazy(&self) -> bool {
        self.lazy
    }
}

/// Which file a path is: device and inode.
pub(super) type FileId = (u64, u64);

pub(super) fn file_id(path: &str) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// An I/O error as a reason a person can act on.
pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (the user running hookrelay may not write there)".into()
        }
        _ => e.to_string(),
    }
}

pub(super) fn connect(path: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    // Plans that do not depend on bound values: otherwise a claim whose LIMIT
    // differs from the last one is parsed and planned again on every run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// The writer's connection, kept to the file at the configured path.
pub(super) struct Writer {
    pub(super) path: String,
    pub(super) conn: Option<(Connection, FileId)>,
    /// The WAL file the connections write to and its index (see [`wal_files`]), as
    /// found after they were opened.
    pub(super) wal: [Option<FileId>; 2],
    /// The read connections, opened again with the writer's.
    pub(super) readers: Vec<Arc<Mutex<Connection>>>,
    /// Told of every subject committed (see `subjects`).
    pub(super) subjects: Arc<super::subjects::SubjectCache>,
}

impl Writer {
    /// Opens (or reopens) the file at the path for writing and migrates it.
    pub(super) fn open(path: &str) -> std::result::Result<(Connection, FileId), StoreError> {
        let id = file_id(path).ok_or_else(|| gone(path))?;
        let conn = connect(path)?;
        // SQLite opens a file it may not write read-only, without an error.
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(StoreError::Unavailable(format!(
                "the database file {path} is read-only"
            )));
        }
        migrate(&conn)?;
        Ok((conn, id))
    }

    /// The connection to write with, if the file at the path is the one it has
    /// open; else the file is opened again (a new reader too), or the reason not.
    fn usable(&mut self) -> std::result::Result<&Connection, StoreError> {
        let now = file_id(&self.path);
        let current = matches!((&self.conn, now), (Some((_, id)), Some(now)) if *id == now);
        if !current {
            if self.conn.take().is_some() {
                log::error!(
                    "storage: the database file {} was {}; opening it again",
                    self.path,
                    if now.is_some() { "replaced" } else { "removed" }
                );
            }
            // Not created again: a file that is gone held the queue, and an empty
            // new one would hide that. Nothing is accepted until it is back.
            if now.is_none() {
                return Err(gone(&self.path));
            }
            self.open_again(false)?;
        }
        match &self.conn {
            Some((conn, _)) => Ok(conn),
            None => Err(gone(&self.path)),
        }
    }

    /// Opens the writer and every reader again. With `new_index`, every old
    /// connection is closed before the first new one opens: SQLite shares one WAL
    /// index among a process's connections to a file, and a connection opened
    /// beside an old one would use the old index, even one deleted from the disk.
    /// Without it, the readers are opened again only once the writer is: until it
    /// can be, they go on reading through the connections they have.
    fn open_again(&mut self, new_index: bool) -> std::result::Result<(), StoreError> {
        self.conn = None;
        if new_index {
            let mut readers: Vec<_> = self.readers.iter().map(|r| lock(r)).collect();
            for r in &mut readers {
                **r = Connection::open_in_memory()?;
            }
            for r in &mut readers {
                **r = connect(&self.path)?;
            }
        }
        let (conn, id) = Writer::open(&self.path)?;
        if !new_index {
            for r in &self.readers {
                *lock(r) = connect(&self.path)?;
            }
        }
        self.subjects.clear();
        log::info!("storage: {} opened again", self.path);
        self.wal = wal_ids(&self.path);
        self.conn = Some((conn, id));
        Ok(())
    }

    /// After a commit: the WAL the connections write to and its index are still
    /// the files at their paths (see [`wal_files`]). If the WAL was deleted (or
    /// replaced) under the server, the commit sits in a file no later open will
    /// read, and a crash would lose it. If the index was, the next connection to
    /// open the database (a `hookrelay` command, a backup) makes a new one that
    /// knows neither what the WAL holds nor the server's locks on it, and may copy
    /// the WAL into the database and start it over while the server still appends
    /// to it. Either way, what the WAL holds is copied into the database file now,
    /// through the connection that still has it open, before anyone is told it is
    /// stored; every connection is then opened again, with a new WAL and index.
    fn keep_wal(&mut self) -> std::result::Result<(), StoreError> {
        let Some((conn, _)) = &self.conn else {
            return Ok(());
        };
        let files = wal_files(&self.path);
        let mut lost = None;
        for (i, file) in files.iter().enumerate() {
            let now = file_id(file);
            if now.is_some() && now == self.wal[i] {
                continue;
            }
            if self.wal[i].is_none() && now.is_some() {
                // Not there when the connections were opened: made since.
                self.wal[i] = now;
                continue;
            }
            lost = Some((i, if now.is_some() { "replaced" } else { "removed" }));
            break;
        }
        let Some((i, how)) = lost else {
            return Ok(());
        };
        let what = format!("{} {}", ["WAL file", "WAL index file"][i], files[i]);
        log::error!(
            "storage: the {what} was {how} while in use; copying what the WAL holds into {} \
             and opening the database again",
            self.path
        );
        // (busy, frames in the WAL, frames copied): busy means readers kept part of it.
        let copied = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        if let Err(e) = self.open_again(true) {
            // What the WAL held is in the database file: the next batch tries again.
            log::error!("storage: cannot open {} again: {e}", self.path);
        }
        match copied {
            Ok(0) => Ok(()),
            Ok(_) => Err(StoreError::Unavailable(format!(
                "the {what} was {how} and what the WAL held could not all be copied \
                 into the database"
            ))),
            Err(e) => Err(StoreError::from(e)),
        }
    }
}

/// A reader's connection, even if a thread panicked holding it (it is replaced).
fn lock(r: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The WAL file and its index (`-shm`, which also holds the WAL's locks), where
/// SQLite keeps them beside the database file.
pub(super) fn wal_files(path: &str) -> [String; 2] {
    [format!("{path}-wal"), format!("{path}-shm")]
}

pub(super) fn wal_ids(path: &str) -> [Option<FileId>; 2] {
    wal_files(path).map(|f| file_id(&f))
}

pub(super) fn gone(path: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the database file {path} is gone (deleted or moved while in use)"
    ))
}

pub(super) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Runs every job of the batch in one transaction; true if one failed because of
/// the database's state (see [`Ran::FailedTransient`]).
///
/// Jobs almost never fail, so the first pass runs them back to back. If one does
/// fail, its partial rows must not be committed with the others: the transaction
/// is rolled back and the batch runs again with each job in its own savepoint,
/// where a failing job is undone alone. (A savepoint per job on the first pass
/// would cost SQLite a copy of every page the job touches.)
///
/// Subjects the jobs write are staged (see `subjects`) and unstaged with what is
/// rolled back; the caller publishes them once this returns `Ok`.
pub(super) fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<bool> {
    subjects::unstage(0);
    exec(conn, "BEGIN IMMEDIATE")?;
    if batch.iter_mut().all(|job| matches!(job.run(conn), Ran::Ok)) {
        return exec(conn, "COMMIT").map(|_| false);
    }
    subjects::unstage(0);
    if !conn.is_autocommit() {
        exec(conn, "ROLLBACK")?;
    }
    exec(conn, "BEGIN IMMEDIATE")?;
    let mut transient = false;
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT job")?;
        let staged = subjects::staged();
        match job.run(conn) {
            Ran::Ok => {}
            Ran::Failed => {
                subjects::unstage(staged);
                exec(conn, "ROLLBACK TO job")?;
            }
            Ran::FailedTransient => {
                transient = true;
                subjects::unstage(staged);
                exec(conn, "ROLLBACK TO job")?;
            }
        }
        exec(conn, "RELEASE job")?;
    }
    exec(conn, "COMMIT").map(|_| transient)
}

/// Takes what is queued, up to [`MAX_BATCH`].
///
/// Attempt records are lazy. While webhooks are arriving (a commit with an urgent
/// write ended within the last [`LAZY_FOR`]), a batch of lazy writes waits for the next webhook,
/// at most [`LAZY_FOR`], and commits with it: during a burst, records ride along
/// with webhooks' commits instead of paying an fsync of their own. With no webhook
/// arriving (a backlog draining), they commit at once, as any write.
pub(super) fn gather(
    rx: &mpsc::Receiver<Box<dyn Job>>,
    first: Box<dyn Job>,
    last_urgent: Option<std::time::Instant>,
    lazy_for: Duration,
) -> Vec<Box<dyn Job>> {
    let now = std::time::Instant::now();
    let mut batch = vec![first];
    let recent = last_urgent.is_some_and(|t| now.duration_since(t) < lazy_for);
    let mut lazy = batch[0].lazy() && recent;
    let deadline = now + lazy_for;
    while batch.len() < MAX_BATCH {
        let next = if lazy {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            rx.recv_timeout(left).ok()
        } else {
            rx.try_recv().ok()
        };
        let Some(job) = next else { break };
        lazy &= job.lazy();
        batch.push(job);
    }
    batch
}

pub(super) fn writer_loop(writer: &mut Writer, rx: mpsc::Receiver<Box<dyn Job>>) {
    subjects::serve_writes_from(writer.subjects.clone());
    let mut last_urgent = None;
    while let Ok(first) = rx.recv() {
        let mut batch = gather(&rx, first, last_urgent, LAZY_FOR);
        let urgent = batch.iter().any(|j| !j.lazy());
        let committed = match writer.usable() {
            Ok(conn) => match run_batch(conn, &mut batch) {
                Ok(transient) => {
                    writer.subjects.publish();
                    if transient {
                        // Read-only or full: a new connection sees the file as it
                        // is by the next batch (SQLite keeps a read-only open so).
                        writer.conn = None;
                    }
                    writer.keep_wal()
                }
                Err(e) => {
                    subjects::unstage(0);
                    log::error!("storage: cannot commit {} writes: {e}", batch.len());
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    writer.conn = None;
                    Err(StoreError::from(e))
                }
            },
            Err(e) => {
                log::error!("storage: {} writes refused: {e}", batch.len());
                Err(e)
            }
        };
        if urgent {
            // After the commit: a slow fsync must not make the next records
            // think the webhooks have stopped.
            last_urgent = Some(std::time::Instant::now());
        }
        for job in batch {
            let committed = match &committed {
                Ok(()) => Ok(()),
                Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m.clone())),
                Err(_) => Err(StoreError::Commit),
            };
            job.finish(committed);
        }
    }
}
