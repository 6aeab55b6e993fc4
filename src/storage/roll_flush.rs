//! Fsyncs of rolled segments, off the append path.
//!
//! A segment that rolls may hold up to `segment.bytes` the kernel has not
//! written back yet (a gigabyte by default). Fsyncing it inside the append
//! that rolled held the partition's lock, and with it the request and a
//! runtime thread, for as long as the disk took: 0.3 s here for 1 GiB.
//! Kafka schedules that flush in the background, and so does this module.
//! One thread takes rolled segments in the order they rolled and, for
//! each, fsyncs the segment, the producer state snapshot the roll wrote
//! and the directory (which holds both new names), and only then removes
//! older snapshots and writes the segment's index file. So an index on
//! disk still never describes data that is not, which is what lets a
//! start after a crash trust it.
//!
//! Until its flush has run, a closed segment is *pending*: a sync of the
//! log ([`PartitionLog::sync`](super::PartitionLog::sync), a
//! [`SyncHandle`](super::log::SyncHandle)) waits for it and fails if it
//! failed, and so does a clean close. A sync does not fsync the pending
//! segment itself: Linux reports a write-back error to one fsync of a file
//! only, so two fsyncs racing on one file could each believe the other.

use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// A closed segment waiting for its flush, and what to write after it.
pub(super) struct RolledSegment {
    pub file: Arc<File>,
    /// The segment's file: its index is written only while it is there.
    pub path: PathBuf,
    pub dir: PathBuf,
    /// The segment's first offset and the next segment's base.
    pub base_offset: i64,
    pub end: i64,
    /// The encoded index, written once the segment is durable.
    pub index: Option<Vec<u8>>,
    /// The producer state snapshot written at the roll, not yet fsynced.
    pub snapshot: Option<PathBuf>,
}

/// One log's side of the flushes: how far they have got, whether an fsync
/// of the log failed, and the lock that keeps a flush from writing into a
/// log that is losing files.
pub(super) struct RollFlushes {
    /// Closed segments that end at or before this offset are flushed (or
    /// their flush failed, which `failed` says).
    settled_below: AtomicI64,
    /// The end of the last segment whose flush was queued.
    submitted_below: AtomicI64,
    /// Flush in the rolling thread rather than the background one.
    in_place: AtomicBool,
    /// An fsync of this log failed: no index written from then on may
    /// vouch for anything, so flushes write none.
    failed: AtomicBool,
    /// The log's directory is going (a deleted topic), or the log was
    /// dropped without a close (a crash, in tests): flushes write nothing.
    gone: AtomicBool,
    /// Held while a flush writes its files, while segments are removed and
    /// while `failed` or `gone` is set, so a flush that checked them
    /// finishes its writes before anything it checked changes.
    writing: Mutex<()>,
    settled: Condvar,
}

impl RollFlushes {
    /// Every closed segment below `settled_below` is durable already (at
    /// open, a scanned segment is synced before its index is written).
    pub fn new(settled_below: i64) -> Arc<Self> {
        Arc::new(RollFlushes {
            settled_below: AtomicI64::new(settled_below),
            submitted_below: AtomicI64::new(settled_below),
            in_place: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            writing: Mutex::new(()),
            settled: Condvar::new(),
        })
    }

    /// Closed segments ending at or before this offset need no fsync.
    pub fn settled_below(&self) -> i64 {
        self.settled_below.load(Ordering::Acquire)
    }

    /// The end of the last segment whose flush was queued.
    pub fn submitted_below(&self) -> i64 {
        self.submitted_below.load(Ordering::Acquire)
    }

    /// Makes rolls flush in place, inside the append that rolls: for a log
    /// whose segments are small and whose syncs must not queue behind
    /// other logs' flushes (the committed offsets').
    pub fn flush_in_place(&self) {
        self.in_place.store(true, Ordering::Release);
    }

    /// Whether an fsync of the log failed (here, or as recorded).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Keeps flushes from writing while segment files are removed.
    pub fn lock_files(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that an fsync of the log failed; once this returns, no flush
    /// writes an index.
    pub fn record_failure(&self) {
        let _writing = self.lock_files();
        self.failed.store(true, Ordering::Release);
    }

    /// Once this returns, no flush writes into the log's directory.
    pub fn mark_gone(&self) {
        let _writing = self.lock_files();
        self.gone.store(true, Ordering::Release);
    }

    /// Blocks until the segments that end at or before `end` are settled.
    pub fn wait_until_settled(&self, end: i64) {
        if self.settled_below() >= end {
            return;
        }
        let mut writing = self.lock_files();
        while self.settled_below() < end {
            writing = self.settled.wait(writing).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Queues `segment`'s flush. A failed fsync is recorded in `failed_at`
    /// as [`SyncHandle`](super::log::SyncHandle) records one, for the log to
    /// take in at its next operation.
    pub fn submit(self: &Arc<Self>, segment: RolledSegment, failed_at: Arc<AtomicI64>) {
        self.submitted_below.fetch_max(segment.end, Ordering::AcqRel);
        let flushes = self.clone();
        let job: Job = Box::new(move || flushes.flush(segment, &failed_at));
        if self.in_place.load(Ordering::Acquire) {
            return job();
        }
        match flusher() {
            Some(queue) => {
                if let Err(returned) = queue.send(job) {
                    (returned.0)();
                }
            }
            // No thread could be started: flush in place, as before.
            None => job(),
        }
    }

    /// Runs one flush and settles it, whatever happens: a log's close
    /// waits for it.
    fn flush(&self, segment: RolledSegment, failed_at: &AtomicI64) {
        if catch_unwind(AssertUnwindSafe(|| self.write_back(&segment, failed_at))).is_err() {
            self.fail(&segment, failed_at, &io::Error::other("the flush panicked"));
        }
        let writing = self.lock_files();
        self.settled_below.fetch_max(segment.end, Ordering::AcqRel);
        drop(writing);
        self.settled.notify_all();
    }

    fn write_back(&self, segment: &RolledSegment, failed_at: &AtomicI64) {
        // A failure is recorded as soon as it is seen: a sync of the same
        // file elsewhere may have succeeded over the same lost pages, and
        // waits for this flush before it answers.
        if let Err(e) = segment.file.sync_data() {
            return self.fail(segment, failed_at, &e);
        }
        let snapshot_synced = segment.snapshot.as_deref().is_some_and(sync_snapshot);
        // The directory last: it holds the names of the new segment and of
        // the snapshot.
        if let Err(e) = File::open(&segment.dir).and_then(|dir| dir.sync_all()) {
            return self.fail(segment, failed_at, &e);
        }
        let _writing = self.lock_files();
        if self.gone.load(Ordering::Acquire) || self.failed() {
            return;
        }
        if snapshot_synced && let Err(e) = super::log::prune_snapshots(&segment.dir, segment.end) {
            tracing::warn!(error = %e, "could not remove old producer state snapshots");
        }
        // Removed (retention, DeleteRecords): no index for it.
        if let Some(index) = &segment.index
            && still_in_place(segment)
        {
            let index_path = segment.dir.join(super::segment::index_file_name(segment.base_offset));
            if let Err(e) = super::write_atomically(&index_path, index) {
                tracing::warn!(error = %e, "could not write a closed segment's index");
            }
        }
    }

    /// Records a failed flush for the log (unless its directory is going).
    fn fail(&self, segment: &RolledSegment, failed_at: &AtomicI64, error: &io::Error) {
        let _writing = self.lock_files();
        if self.gone.load(Ordering::Acquire) {
            return; // a deleted topic's directory
        }
        tracing::error!(path = %segment.path.display(), error = %error, "fsync of a rolled segment failed");
        self.failed.store(true, Ordering::Release);
        // Offsets from the segment's first on are in doubt.
        failed_at.fetch_min(segment.base_offset.saturating_add(1), Ordering::SeqCst);
    }
}

/// Fsyncs a snapshot written at a roll; whether it is durable. A failure
/// costs only the replay a snapshot spares (the older snapshots stay), so
/// it is logged and the flush goes on.
fn sync_snapshot(path: &std::path::Path) -> bool {
    match File::open(path).and_then(|file| file.sync_all()) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "fsync of a producer state snapshot failed");
            false
        }
    }
}

/// Whether the segment's file is still at its path (retention and topic
/// deletion unlink segments whose flush may still be queued).
fn still_in_place(segment: &RolledSegment) -> bool {
    use std::os::unix::fs::MetadataExt;
    let same = |a: io::Result<std::fs::Metadata>, b: io::Result<std::fs::Metadata>| match (a, b) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    same(segment.file.metadata(), std::fs::metadata(&segment.path))
}

type Job = Box<dyn FnOnce() + Send>;

/// The one thread that runs flushes, in the order they were queued; `None`
/// if it could not be started.
fn flusher() -> Option<&'static Sender<Job>> {
    static QUEUE: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (queue, jobs) = channel::<Job>();
            let started = std::thread::Builder::new()
                .name("minikafka-roll-flush".into())
                .spawn(move || {
                    for job in jobs {
                        job();
                    }
                });
            match started {
                Ok(_) => Some(queue),
                Err(e) => {
                    tracing::warn!(error = %e, "no thread for rolled segments' fsyncs; rolls will fsync in place");
                    None
                }
            }
        })
        .as_ref()
}

/// Holds the flush thread until the returned sender is dropped: for tests
/// of what must wait for a flush. Flushes queued meanwhile run afterwards.
#[cfg(test)]
pub(super) fn hold_flusher() -> Sender<()> {
    let (release, released) = channel::<()>();
    let queue = flusher().expect("a flush thread");
    let held: Job = Box::new(move || while released.recv().is_ok() {});
    assert!(queue.send(held).is_ok(), "the flush thread takes jobs");
    release
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::segment::index_file_name;

    /// A segment file in `dir` and its flush, as a roll queues one.
    fn rolled(dir: &std::path::Path, base_offset: i64, end: i64) -> RolledSegment {
        let path = dir.join(crate::storage::segment::segment_file_name(base_offset));
        std::fs::write(&path, b"batches").unwrap();
        RolledSegment {
            file: Arc::new(File::open(&path).unwrap()),
            path,
            dir: dir.to_path_buf(),
            base_offset,
            end,
            index: Some(b"index".to_vec()),
            snapshot: None,
        }
    }

    #[test]
    fn a_flush_writes_the_index_of_a_segment_still_in_place_and_settles_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let flushes = RollFlushes::new(0);
        let failed_at = AtomicI64::new(i64::MAX);
        flushes.flush(rolled(dir.path(), 0, 10), &failed_at);
        assert_eq!(std::fs::read(dir.path().join(index_file_name(0))).unwrap(), b"index");
        assert_eq!(flushes.settled_below(), 10);
        // Retention (or a deleted topic) took the segment before its flush ran.
        let gone = rolled(dir.path(), 10, 20);
        std::fs::remove_file(&gone.path).unwrap();
        flushes.flush(gone, &failed_at);
        assert!(
            !dir.path().join(index_file_name(10)).exists(),
            "no index for a segment that went"
        );
        // A new file under the old name is not the segment either.
        let replaced = rolled(dir.path(), 20, 30);
        std::fs::remove_file(&replaced.path).unwrap();
        std::fs::write(&replaced.path, b"another").unwrap();
        flushes.flush(replaced, &failed_at);
        assert!(!dir.path().join(index_file_name(20)).exists());
        assert_eq!(flushes.settled_below(), 30, "settled all the same");
        assert_eq!(failed_at.load(Ordering::SeqCst), i64::MAX, "no failure recorded");
    }

    #[test]
    fn after_a_failed_fsync_of_the_log_flushes_write_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let flushes = RollFlushes::new(0);
        flushes.record_failure();
        flushes.flush(rolled(dir.path(), 0, 10), &AtomicI64::new(i64::MAX));
        assert!(!dir.path().join(index_file_name(0)).exists());
        assert_eq!(flushes.settled_below(), 10);
    }

    #[test]
    fn queued_flushes_run_in_order_and_waiters_wake() {
        let dir = tempfile::tempdir().unwrap();
        let flushes = RollFlushes::new(0);
        let failed_at = Arc::new(AtomicI64::new(i64::MAX));
        for base in 0..5 {
            flushes.submit(rolled(dir.path(), base * 10, base * 10 + 10), failed_at.clone());
        }
        flushes.wait_until_settled(50);
        assert_eq!(flushes.settled_below(), 50);
        for base in 0..5 {
            assert!(dir.path().join(index_file_name(base * 10)).exists(), "index {base}");
        }
    }
}
