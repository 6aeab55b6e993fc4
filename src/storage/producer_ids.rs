//! Handing out producer ids that are never reused, even across restarts.
//!
//! Ids are reserved in blocks: before the first id of a block is handed
//! out, the end of the block is written (atomically) to `producer_ids` in
//! the data directory. After a restart, allocation starts at the stored end,
//! so at most one block of ids is skipped and none is repeated.

use std::path::{Path, PathBuf};

use super::{StorageError, write_atomically};

const FILE: &str = "producer_ids";
/// Ids reserved per write of the file.
const BLOCK: i64 = 1000;

pub struct ProducerIdAllocator {
    path: Option<PathBuf>,
    next: i64,
    reserved_until: i64,
}

impl ProducerIdAllocator {
    pub fn in_memory() -> Self {
        ProducerIdAllocator {
            path: None,
            next: 0,
            reserved_until: i64::MAX,
        }
    }

    /// Opens the allocator in `dir`; `floor` is one past the largest id
    /// found in the logs, a second guard should the file have been lost.
    pub fn open(dir: &Path, floor: i64) -> Result<Self, StorageError> {
        let path = dir.join(FILE);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .find_map(|l| l.strip_prefix("next_producer_id="))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| StorageError::invalid(&path, "no next_producer_id"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let next = stored.max(floor);
        Ok(ProducerIdAllocator {
            path: Some(path),
            next,
            reserved_until: next,
        })
    }

    /// The next unused id.
    pub fn allocate(&mut self) -> Result<i64, StorageError> {
        if self.next == i64::MAX {
            let path = self.path.clone().unwrap_or_default();
            return Err(StorageError::invalid(&path, "producer ids exhausted"));
        }
        if self.next >= self.reserved_until {
            let until = self.next.saturating_add(BLOCK);
            if let Some(path) = &self.path {
                write_atomically(path, format!("next_producer_id={until}\n").as_bytes())?;
            }
            self.reserved_until = until;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = ProducerIdAllocator::open(dir.path(), 0).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let mut ids = ProducerIdAllocator::open(dir.path(), 0).unwrap();
        assert!(ids.allocate().unwrap() > 2);
        let mut guarded = ProducerIdAllocator::open(dir.path(), 5000).unwrap();
        assert_eq!(guarded.allocate().unwrap(), 5000);
    }
}
