//! Subjects as last committed, kept in memory for the read every webhook makes
//! before it is stored (`watch::subject_for`).
//!
//! Read from a connection of its own, that read cost more than storing the event:
//! every commit invalidates a reading connection's page cache, so each read went
//! back to the WAL for the subject's pages. SQLite has one process and one writer,
//! so the writer knows every subject it commits: [`write_subject`] stages the row,
//! and the writer publishes what it staged right after the commit (and drops it
//! when the transaction, or one job of it, is rolled back). A subject not in the
//! cache is read from the database as before, and cached only if no commit was
//! published meanwhile, so a read that raced with a commit can never leave an older
//! state behind it.
//!
//! [`write_subject`]: super::write_subject

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::watch::Subject;

/// Subjects kept at most; past that the cache starts over (hot subjects come back
/// with their next event).
const MAX_SUBJECTS: usize = 4096;

thread_local! {
    /// Subjects written by the transaction running on this thread (the writer's):
    /// published when it commits.
    static STAGED: RefCell<Vec<Subject>> = const { RefCell::new(Vec::new()) };
    /// On the writer's thread: the cache it publishes to (see [`seen`]).
    static COMMITTED: RefCell<Option<Arc<SubjectCache>>> = const { RefCell::new(None) };
}

/// Called once by the writer's thread: [`seen`] answers from this cache there.
pub(super) fn serve_writes_from(cache: Arc<SubjectCache>) {
    COMMITTED.with(|c| *c.borrow_mut() = Some(cache));
}

/// The subject as the writer's transaction would read it, without reading it:
/// as staged by an earlier job of the transaction, else as last committed if
/// cached. The writer is the only one that writes subjects, so what it committed
/// is still so; `None` means read the row.
pub(super) fn seen(key: &str) -> Option<Subject> {
    let staged = STAGED.with(|st| st.borrow().iter().rev().find(|s| s.key == key).cloned());
    staged.or_else(|| COMMITTED.with(|c| c.borrow().as_ref().and_then(|c| c.get(key))))
}

#[derive(Default)]
pub(super) struct SubjectCache {
    map: Mutex<HashMap<String, Subject>>,
    /// Bumped by every publish, under the map's lock.
    generation: AtomicU64,
}

/// Called by `write_subject`, inside the writer's transaction.
pub(super) fn stage(s: &Subject) {
    STAGED.with(|st| st.borrow_mut().push(s.clone()));
}

/// How many subjects this thread's transaction has staged so far.
pub(super) fn staged() -> usize {
    STAGED.with(|st| st.borrow().len())
}

/// Drops what was staged after the first `keep` (a job rolled back to its
/// savepoint, or the whole transaction with 0).
pub(super) fn unstage(keep: usize) {
    STAGED.with(|st| st.borrow_mut().truncate(keep));
}

impl SubjectCache {
    /// The subject as last committed, if cached.
    pub(super) fn get(&self, key: &str) -> Option<Subject> {
        self.map.lock().ok()?.get(key).cloned()
    }

    /// Taken before reading a subject from the database; see [`Self::offer`].
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a subject read from the database, unless a commit was published
    /// since `generation` (the read may then be older than the cache).
    pub(super) fn offer(&self, generation: u64, s: &Subject) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if self.generation.load(Ordering::Acquire) == generation {
            insert(&mut map, s.clone());
        }
    }

    /// After the writer's commit: what its transaction staged is now the truth.
    pub(super) fn publish(&self) {
        let staged = STAGED.with(|st| std::mem::take(&mut *st.borrow_mut()));
        if staged.is_empty() {
            return;
        }
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        for s in staged {
            insert(&mut map, s);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The database file was opened again: nothing cached can be trusted.
    pub(super) fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn insert(map: &mut HashMap<String, Subject>, s: Subject) {
    if map.len() >= MAX_SUBJECTS && !map.contains_key(&s.key) {
        map.clear();
    }
    map.insert(s.key.clone(), s);
}
