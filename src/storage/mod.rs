//! Where records live: one append-only log per partition, and the data
//! directory that holds them. Knows batches and offsets, nothing of requests.
//!
//! Layout of a data directory (Kafka's own, so it reads familiarly):
//!
//! ```text
//! meta.properties                     cluster.id, node.id
//! producer_ids                        the next producer id to hand out
//! broker.config                       dynamic broker configs for this broker
//! cluster-default.config              dynamic broker configs, cluster-wide
//! group-offsets/                      committed offsets, as a log
//! <topic>-<partition>/
//!     partition.metadata              the topic id
//!     00000000000000000000.log        record batches, as produced; one
//!     00000000000000004096.log        file per segment, named by base offset
//!     00000000000000004096.index      its sparse index (storage::index)
//!     log-start-offset                set by retention and DeleteRecords
//!     topic.config                    the topic's configs (partition 0 only)
//! ```

pub mod catalog;
pub mod index;
pub mod log;
pub mod offsets;
pub mod producer_ids;
pub mod producer_state;
mod roll_flush;
pub mod segment;

pub use catalog::{BrokerConfigScope, Catalog, StoredTopic};
pub use log::{AppendedBatch, PartitionLog, SyncHandle};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A storage failure, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        StorageError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Fsyncs the directory `dir`, so that the names created, renamed or
/// removed in it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, each new one's name made durable
/// by an fsync of the directory holding it: a file fsynced in a directory
/// whose own name was never synced can still vanish with it.
pub(crate) fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        result => result?,
    }
    sync_dir(parent.unwrap_or(Path::new(".")))
}

/// Replaces `path` with `contents` atomically: write a temporary file, sync
/// it, rename it over the old one, and sync the directory so the rename
/// itself survives a crash.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), StorageError> {
    replace_file(path, contents, true)
}

/// Replaces `path` with `contents` through a temporary file and a rename,
/// so readers see the old file or the new one whole; with `sync`, the
/// file and then its directory are fsynced around the rename, so a power
/// loss does too.
pub(crate) fn replace_file(path: &Path, contents: &[u8], sync: bool) -> Result<(), StorageError> {
    use std::io::Write;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    result.map_err(|e| StorageError::io(path, e))
}

/// `job` applied to every item, on up to `threads` threads, the results in
/// item order. Opening a log after a crash (a CRC scan of its active
/// segment) and closing one (an fsync) are independent per partition and
/// bound by the disk or a core, so a data directory's partitions share
/// the work (Kafka's `num.recovery.threads.per.data.dir`).
pub fn in_parallel<T: Sync, R: Send>(items: &[T], threads: usize, job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(job).collect();
    }
    // Work is taken an item at a time, so one large partition does not
    // leave the other threads idle behind a fixed share.
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break mine };
                        mine.push((i, job(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_parallel_runs_jobs_at_once_and_keeps_item_order() {
        use std::sync::{Condvar, Mutex};
        use std::time::{Duration, Instant};
        // Each job waits, up to a deadline, until another one has started:
        // only jobs running on two threads at once see two started.
        let started = (Mutex::new(0usize), Condvar::new());
        let items: Vec<u64> = (0..20).collect();
        let results = in_parallel(&items, 2, |&i| {
            let (count, changed) = &started;
            let mut count = count.lock().unwrap();
            *count += 1;
            changed.notify_all();
            let deadline = Instant::now() + Duration::from_secs(10);
            while *count < 2 && Instant::now() < deadline {
                count = changed.wait_timeout(count, Duration::from_millis(50)).unwrap().0;
            }
            (i * i, *count >= 2)
        });
        assert_eq!(
            results.iter().map(|r| r.0).collect::<Vec<_>>(),
            items.iter().map(|i| i * i).collect::<Vec<_>>()
        );
        assert!(results[0].1, "the first job saw a second one start");
        assert_eq!(in_parallel(&items, 1, |&i| i + 1)[19], 20);
        assert!(in_parallel(&[] as &[u64], 4, |&i| i).is_empty());
    }
}
