//! The writer thread: one connection, kept to the file at the configured path, that
//! drains its queue of jobs into one transaction per batch; and the sync thread,
//! which makes each committed batch durable before its jobs learn their result.
//!
//! The writer's connection commits with `synchronous = NORMAL`: SQLite writes the
//! batch's frames to the WAL file and returns without an `fsync`. The batch then
//! goes to the sync thread, which `fdatasync`s the WAL file and only then answers
//! the batch's jobs (a webhook's 202 waits for that). Meanwhile the writer runs the
//! jobs that arrive in its next transaction, and commits it when the flush is
//! done: the statements of one batch run while the disk flushes the one before,
//! where with `synchronous = FULL` the writer sat idle in every commit's `fsync`,
//! and batches stay as large (pages written and flushes per webhook as before).
//!
//! What a job is told is unchanged: `Ok` means its rows are on disk. The database
//! stays whole across a power cut as well: in WAL mode, `NORMAL` still flushes the
//! WAL before each checkpoint copies it into the database file, and the database
//! file after it. What other connections see may run ahead of the disk by the
//! batches waiting for their flush (a delivery may be claimed a moment before its
//! webhook is answered); a power cut in that moment loses those batches, whose
//! senders were never answered 202.

use std::sync::atomic::{AtomicBool, Ordering};

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
    /// A message to the writer itself rather than a write (see [`Control`]).
    fn control(&self) -> Option<Control> {
        None
    }
}

/// What the sync thread and the store tell the writer through its queue.
#[derive(Clone, Copy, Debug)]
pub(super) enum Control {
    /// The sync thread flushed this many committed batches.
    Flushed(usize),
    /// The store is gone: commit what is open, then stop.
    Stop,
}

pub(super) struct ControlJob(pub(super) Control);

impl Job for ControlJob {
    fn run(&mut self, _: &Connection) -> Ran {
        Ran::Ok
    }
    fn finish(self: Box<Self>, _: std::result::Result<(), StoreError>) {}
    fn lazy(&self) -> bool {
        true
    }
    fn control(&self) -> Option<Control> {
        Some(self.0)
    }
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
    // FULL for every connection but the writer's (see `Writer::open`); only the
    // writer writes.
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
    /// The read connections, opened again with the writer's.
    pub(super) readers: Vec<Arc<Mutex<Connection>>>,
    /// Told of every subject committed (see `subjects`).
    pub(super) subjects: Arc<super::subjects::SubjectCache>,
    /// Set by the sync thread when a flush failed: the connections are opened
    /// again before the next batch.
    pub(super) reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Opens (or reopens) the file at the path for writing and migrates it.
    pub(super) fn open(path: &str) -> std::result::Result<(Connection, FileId), StoreError> {
        let id = file_id(path).ok_or_else(|| gone(path))?;
        let conn = connect(path)?;
        // The sync thread flushes the WAL after each commit (see the module's doc).
        conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
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
        if self.reopen.swap(false, Ordering::AcqRel) && self.conn.take().is_some() {
            log::error!(
                "storage: the WAL of {} could not be flushed; opening the database again",
                self.path
            );
        }
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
            let (conn, id) = Writer::open(&self.path)?;
            for r in &self.readers {
                let reader = connect(&self.path)?;
                *r.lock().unwrap_or_else(|e| e.into_inner()) = reader;
            }
            self.subjects.clear();
            log::info!("storage: {} opened again", self.path);
            self.conn = Some((conn, id));
        }
        match &self.conn {
            Some((conn, _)) => Ok(conn),
            None => Err(gone(&self.path)),
        }
    }
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
/// where a failing job is undone alone (see [`redo`]). (A savepoint per job on the
/// first pass would cost SQLite a copy of every page the job touches.)
///
/// Subjects the jobs write are staged (see `subjects`) and unstaged with what is
/// rolled back; the caller publishes them once this returns `Ok`. (The writer
/// runs the same steps as jobs arrive: see [`writer_loop`].)
#[cfg(test)]
pub(super) fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<bool> {
    subjects::unstage(0);
    exec(conn, "BEGIN IMMEDIATE")?;
    let transient = if batch.iter_mut().all(|job| matches!(job.run(conn), Ran::Ok)) {
        false
    } else {
        redo(conn, batch)?
    };
    exec(conn, "COMMIT").map(|_| transient)
}

/// After a job of the open transaction failed: rolls it back and runs every job
/// again, each in a savepoint, so the one that fails leaves nothing. The
/// transaction stays open; true if a job failed because of the database's state.
fn redo(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<bool> {
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
    Ok(transient)
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

/// A committed (or failed) batch on its way to the sync thread.
pub(super) type Committed = (Vec<Box<dyn Job>>, std::result::Result<(), StoreError>);

/// The transaction the writer has open: the jobs run in it so far.
#[derive(Default)]
struct Open {
    jobs: Vec<Box<dyn Job>>,
    /// It cannot commit: its jobs are told this. The flag: the connection is
    /// opened again afterwards (the error came from the database, not from
    /// `Writer::usable`).
    failed: Option<(StoreError, bool)>,
    /// A job failed because of the database's state.
    transient: bool,
    /// Commit as soon as possible (after a job failed and the rest were redone).
    now: bool,
}

/// The writer keeps one transaction open while the sync thread flushes the
/// batch before it, running jobs into it as they arrive, and commits it once the
/// flush is done: as many webhooks share a commit (and its pages and flush) as
/// when the writer waited for each flush itself, but the statements of the next
/// batch run while the disk works.
pub(super) fn writer_loop(
    writer: &mut Writer,
    rx: mpsc::Receiver<Box<dyn Job>>,
    synced: mpsc::Sender<Committed>,
) {
    subjects::serve_writes_from(writer.subjects.clone());
    let mut last_urgent = None;
    let mut open = Open::default();
    // Batches committed and not yet flushed.
    let mut flushing = 0usize;
    let mut stop = false;
    loop {
        let full = open.jobs.len() >= MAX_BATCH;
        if !open.jobs.is_empty() && (flushing == 0 || full || open.now || stop) {
            let urgent = open.jobs.iter().any(|j| !j.lazy());
            let batch = commit(writer, &mut open);
            if urgent {
                // After the commit: a slow flush must not make the next records
                // think the webhooks have stopped.
                last_urgent = Some(std::time::Instant::now());
            }
            if let Err(mpsc::SendError((jobs, _))) = synced.send(batch) {
                // The sync thread is gone (it never ends first): nobody is told Ok.
                finish(jobs, &Err(StoreError::Closed));
            } else {
                flushing += 1;
            }
            continue;
        }
        if stop {
            break;
        }
        let Ok(first) = rx.recv() else { break };
        let mut incoming = if first.control().is_none() && open.jobs.is_empty() && flushing == 0 {
            gather(&rx, first, last_urgent, LAZY_FOR)
        } else {
            let mut jobs = vec![first];
            jobs.extend(rx.try_iter().take(MAX_BATCH));
            jobs
        };
        incoming.retain(|job| match job.control() {
            Some(Control::Flushed(n)) => {
                flushing = flushing.saturating_sub(n);
                false
            }
            Some(Control::Stop) => {
                stop = true;
                false
            }
            None => true,
        });
        if !incoming.is_empty() {
            run_into(writer, &mut open, incoming);
        }
    }
}

/// Runs jobs in the open transaction (begun if none is).
fn run_into(writer: &mut Writer, open: &mut Open, incoming: Vec<Box<dyn Job>>) {
    let start = open.jobs.len();
    open.jobs.extend(incoming);
    if open.failed.is_some() {
        return;
    }
    // The file is checked (and opened again if it changed) before a transaction
    // begins, never under an open one.
    let conn = if start == 0 {
        writer.usable().map_err(|e| (e, false))
    } else {
        match &writer.conn {
            Some((conn, _)) => Ok(conn),
            None => Err((StoreError::Closed, true)),
        }
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(f) => {
            open.failed = Some(f);
            open.now = true;
            return;
        }
    };
    if start == 0 {
        subjects::unstage(0);
        if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
            open.failed = Some((e.into(), true));
            open.now = true;
            return;
        }
    }
    if !open.jobs[start..]
        .iter_mut()
        .all(|job| matches!(job.run(conn), Ran::Ok))
    {
        match redo(conn, &mut open.jobs) {
            Ok(transient) => open.transient |= transient,
            Err(e) => open.failed = Some((e.into(), true)),
        }
        open.now = true;
    }
}

/// Commits the open transaction (or rolls back one that failed).
fn commit(writer: &mut Writer, open: &mut Open) -> Committed {
    let jobs = std::mem::take(&mut open.jobs);
    let transient = std::mem::take(&mut open.transient);
    open.now = false;
    let failed = open.failed.take();
    let committed = match (failed, writer.conn.as_ref()) {
        (None, Some((conn, _))) => exec(conn, "COMMIT").map_err(|e| (StoreError::from(e), true)),
        (None, None) => Err((StoreError::Closed, true)),
        (Some(f), _) => Err(f),
    };
    let result = match committed {
        Ok(_) => {
            writer.subjects.publish();
            if transient {
                // Read-only or full: a new connection sees the file as it
                // is by the next batch (SQLite keeps a read-only open so).
                writer.conn = None;
            }
            Ok(())
        }
        Err((e, from_db)) => {
            subjects::unstage(0);
            if from_db {
                log::error!("storage: cannot commit {} writes: {e}", jobs.len());
                if let Some((conn, _)) = &writer.conn {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
                writer.conn = None;
            } else {
                log::error!("storage: {} writes refused: {e}", jobs.len());
            }
            Err(e)
        }
    };
    (jobs, result)
}

/// The sync thread: flushes the WAL once for every batch committed since the last
/// flush, then answers those batches' jobs.
pub(super) fn sync_loop(
    path: &str,
    rx: mpsc::Receiver<Committed>,
    writer: mpsc::Sender<Box<dyn Job>>,
    reopen: &AtomicBool,
) {
    let mut wal = WalFile::new(path);
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        let n = batches.len();
        let flushed = if batches.iter().any(|(_, c)| c.is_ok()) {
            wal.flush().inspect_err(|e| {
                log::error!("storage: {e}");
                reopen.store(true, Ordering::Release);
            })
        } else {
            Ok(())
        };
        for (batch, committed) in batches {
            let result = match (committed, &flushed) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(reason(e)),
                (Ok(()), Ok(())) => Ok(()),
            };
            finish(batch, &result);
        }
        // Gone only once the writer has stopped.
        let _ = writer.send(Box::new(ControlJob(Control::Flushed(n))));
    }
}

fn finish(batch: Vec<Box<dyn Job>>, committed: &std::result::Result<(), StoreError>) {
    for job in batch {
        job.finish(committed.as_ref().map_err(reason).copied());
    }
}

/// What each job of a failed batch is told: a storage outage keeps its words.
fn reason(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        _ => StoreError::Commit,
    }
}

/// The WAL file of the database at a path, opened for `fdatasync`.
struct WalFile {
    path: String,
    file: Option<(std::fs::File, FileId)>,
}

impl WalFile {
    fn new(db: &str) -> WalFile {
        WalFile {
            path: format!("{db}-wal"),
            file: None,
        }
    }

    /// Flushes the WAL file now at the path (opened again if it was replaced:
    /// the writer's connection follows the file at the path too).
    fn flush(&mut self) -> std::result::Result<(), StoreError> {
        let failed = |e: std::io::Error| {
            StoreError::Unavailable(format!(
                "cannot flush {} to disk: {}",
                self.path,
                io_reason(&e)
            ))
        };
        let now = std::fs::metadata(&self.path).map_err(failed)?;
        let id = (now.dev(), now.ino());
        if !matches!(&self.file, Some((_, open)) if *open == id) {
            self.file = Some((std::fs::File::open(&self.path).map_err(failed)?, id));
        }
        match &self.file {
            Some((f, _)) => f.sync_data().map_err(|e| {
                self.file = None;
                failed(e)
            }),
            None => Ok(()),
        }
    }
}
