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
pub use log::{AppendedBatch, PartitionLog};

use std::io;
use std::path::{Path, PathBuf};

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
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| StorageError::io(path, e))
}
