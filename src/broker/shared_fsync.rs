//! One fsync shared by everyone waiting for a log's appends to be durable
//! (group commit): while one waiter fsyncs, the others queue, and the
//! next fsync covers them all. Used by partitions and by the
//! committed-offsets log, under `--fsync always`, `--flush-messages` and
//! `--flush-ms`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::SyncHandle;

pub struct SharedFsync {
    /// The offset below which everything is known to be fsynced.
    durable: tokio::sync::Mutex<i64>,
    /// Fsyncs run so far (for the group commit figure).
    syncs: AtomicU64,
}

impl SharedFsync {
    /// For a log whose records before `durable` are on disk.
    pub fn new(durable: i64) -> Self {
        SharedFsync {
            durable: tokio::sync::Mutex::new(durable),
            syncs: AtomicU64::new(0),
        }
    }

    /// Waits until every record before `offset` is fsynced, syncing if no
    /// one else has. `handle` takes what the fsync needs from the log
    /// (`None` in memory), and `failed` records a failure there; each takes
    /// the log's lock for a moment. The fsync itself runs outside it, on a
    /// blocking thread, so appends go on meanwhile.
    pub async fn wait_for(
        &self,
        offset: i64,
        handle: impl FnOnce() -> std::io::Result<Option<SyncHandle>>,
        failed: impl FnOnce(i64),
    ) -> std::io::Result<()> {
        let mut durable = self.durable.lock().await;
        if *durable >= offset {
            return Ok(());
        }
        let Some(handle) = handle()? else {
            *durable = i64::MAX; // in memory: nothing to sync
            return Ok(());
        };
        let end = handle.end;
        // A failure reaches the log through the handle even if this future
        // is dropped meanwhile.
        let synced = tokio::task::spawn_blocking(move || handle.sync())
            .await
            .map_err(std::io::Error::other)
            .and_then(|result| result);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = synced {
            failed(end);
            return Err(e);
        }
        *durable = end;
        Ok(())
    }

    /// How many fsyncs waiters have caused.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}
