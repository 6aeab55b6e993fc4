//! One partition's log: record batches appended verbatim (base offset and
//! leader epoch rewritten), offsets dense from the log start offset.
//!
//! The log is a sequence of segments ([`super::segment`]) named by their
//! base offset, as Kafka names them (`00000000000000000000.log`); appends go
//! to the last (active) one, which rolls at `segment.bytes` or when its
//! first batch is older than `segment.ms`. Retention and DeleteRecords
//! remove whole segments from the front and move the log start offset,
//! which is checkpointed (`log-start-offset`, written atomically).
//!
//! Recovery. A clean close syncs the log, writes a snapshot of the
//! producers' state and then a `clean-shutdown` marker; open removes the
//! marker, so a crash after it looks unclean. At open, a segment is scanned
//! batch by batch (length, magic, CRC32C, dense offsets) and cut at the
//! first batch that fails, with a log line saying how much went and why,
//! when it is:
//! - a segment whose index file is missing, damaged or covers another
//!   length than the segment has (a closed one's index is rebuilt);
//! - the last (active) segment, after an unclean shutdown (no marker), or
//!   when the batches after its last index entry do not check out: it is
//!   the one a crash tears, and the one damage is cut from.
//!
//! A closed segment's index is written only once the segment is synced
//! (by the roll's background flush, [`super::roll_flush`]), and a clean
//! close writes the active segment's too. So after a clean
//! shutdown only the tail of the active segment is read, and after a crash
//! the active segment, whatever the size of the log. Everything after a cut is removed. Producer state
//! comes from the newest snapshot at or below the log end, then the batch
//! headers after it.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;

use super::producer_state::ProducerStates;
use super::roll_flush::{RollFlushes, RolledSegment};
use super::segment::{Backing, BatchInfo, Segment, index_file_name, is_intact, segment_file_name};
use super::{StorageError, create_dir_durably, sync_dir, write_atomically};
use crate::protocol::FetchedRecords;
use crate::protocol::record_batch::{BATCH_HEADER_BYTES, BatchHeader, LOG_OVERHEAD_BYTES, rewritten_prefix};

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's `log.roll.ms` default (`log.roll.hours` = 168): 7 days.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 3600 * 1000;
/// The log start offset's checkpoint, in the partition's directory.
const LOG_START_CHECKPOINT: &str = "log-start-offset";
/// Present only between a clean close and the next open.
const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";
/// Producer-state snapshots kept per partition (the newest ones).
const SNAPSHOTS_KEPT: usize = 2;

fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}.snapshot")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What opening a log found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The log was closed cleanly last time.
    pub clean: bool,
    /// Segments read batch by batch (the others came from their index).
    pub segments_scanned: usize,
    /// Bytes cut off a damaged tail.
    pub bytes_cut: u64,
}

pub struct PartitionLog {
    dir: Option<PathBuf>,
    segment_bytes: u64,
    segment_ms: i64,
    /// In base offset order; the last one takes appends. Never empty.
    segments: Vec<Segment>,
    log_start_offset: i64,
    next_offset: i64,
    /// Idempotent producers' sequences, kept with the log they describe so
    /// that checking and appending happen under one lock.
    producers: ProducerStates,
    /// Records appended since the last sync (for `flush.messages`).
    unflushed: u64,
    /// Set once an fsync has failed. After a failed fsync the kernel may
    /// have dropped the dirty pages and a later fsync can succeed without
    /// them, so, as Kafka takes such a log directory offline, the log
    /// refuses appends and syncs from then on. Also set when a failed
    /// append could not be cut off the file: the file then ends in a tear
    /// that only the recovery of a restart removes.
    failed_sync: bool,
    /// Where a [`SyncHandle`] records its failure (the `end` it was for;
    /// `i64::MAX`: none), so that it reaches the log even when nobody waits
    /// for that fsync any more (a connection cut at shutdown).
    failed_outside: Arc<AtomicI64>,
    /// Fsyncs of rolled segments, run in the background ([`super::roll_flush`]).
    flushes: Arc<RollFlushes>,
    /// Closed segments ending at or before this offset have had their
    /// flush taken in: their index was swapped for the one on disk.
    taken_in_below: i64,
    /// A clean close wrote the marker; an append after it must remove it.
    closed: bool,
    recovery: Recovery,
}

impl PartitionLog {
    /// A log that lives in memory only (`--in-memory`).
    pub fn in_memory() -> Self {
        PartitionLog {
            dir: None,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            segments: vec![Segment::new(0, Backing::Memory(Vec::new())).created_at(now_ms())],
            log_start_offset: 0,
            next_offset: 0,
            producers: ProducerStates::default(),
            unflushed: 0,
            failed_sync: false,
            failed_outside: Arc::new(AtomicI64::new(i64::MAX)),
            flushes: RollFlushes::new(0),
            taken_in_below: 0,
            closed: false,
            recovery: Recovery::default(),
        }
    }

    /// Opens (creating if needed) the log in `dir`, recovering it as the
    /// module documentation says.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e| StorageError::io(&path, e)
        };
        create_dir_durably(dir).map_err(io_err(dir))?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        if clean {
            // From here on a crash must look unclean.
            std::fs::remove_file(&marker).map_err(io_err(&marker))?;
            sync_dir(dir).map_err(io_err(dir))?;
        }
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
                // Only names this log writes: `0.log` would be a second
                // name for segment 0, opened and cut as if it followed it.
                (name == segment_file_name(base)).then_some(base)
            })
            .collect();
        bases.sort_unstable();
        // A new log: its first segment's name must survive a power loss
        // as its records will.
        let new_log = bases.is_empty();
        if new_log {
            bases.push(0);
        }
        let mut recovery = Recovery {
            clean,
            ..Recovery::default()
        };
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let mut expected: Option<i64> = None;
        let mut cut = false;
        let last = bases.len() - 1;
        for (i, base) in bases.into_iter().enumerate() {
            let path = dir.join(segment_file_name(base));
            let index_path = dir.join(index_file_name(base));
            if cut {
                // Everything after a damaged segment is beyond the cut.
                tracing::warn!(path = %path.display(), "removing a segment that follows a cut");
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                remove_if_present(&index_path)?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if new_log {
                sync_dir(dir).map_err(io_err(dir))?;
            }
            let metadata = file.metadata().map_err(io_err(&path))?;
            let file_bytes = metadata.len();
            let mut segment = Segment::new(
                base,
                Backing::File {
                    path: path.clone(),
                    file: Arc::new(file),
                },
            );
            // The file's birth time where the file system keeps one: the
            // floor of the segment's age for segment.ms.
            let created_ms = Some(
                metadata
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or_else(now_ms, |d| d.as_millis() as i64),
            );
            segment.created_ms = created_ms;
            let follows = expected.is_none_or(|e| e == base);
            // A closed segment's index is read only as far as its summary;
            // the active segment's is read whole, as appends extend it.
            let index_ok = follows
                && if i < last {
                    segment.open_index_on_disk(dir, file_bytes)
                } else {
                    std::fs::read(&index_path).is_ok_and(|bytes| segment.load_index(&bytes, file_bytes))
                };
            // A closed segment's index is written after the segment's fsync
            // (by its roll's flush, or below after a scan), so it vouches for the
            // segment after a crash too: Kafka's recovery point sits at the
            // active segment for the same reason. The active segment's
            // index comes only from a clean close, and even then its tail
            // is checked, being where a crash or damage shows first.
            let trusted = index_ok
                && if i < last {
                    true
                } else {
                    clean && segment.tail_is_sound().map_err(io_err(&path))?
                };
            if !trusted {
                let segment_file = segment.backing;
                segment = Segment::new(base, segment_file);
                segment.created_ms = created_ms;
                recovery.segments_scanned += 1;
                let valid_bytes = scan(&mut segment, expected).map_err(io_err(&path))?;
                if valid_bytes < file_bytes {
                    tracing::warn!(
                        path = %path.display(),
                        kept_bytes = valid_bytes,
                        cut_bytes = file_bytes - valid_bytes,
                        "log tail is partial or fails its CRC32C; cutting it off"
                    );
                    if let Backing::File { file, .. } = &segment.backing {
                        file.set_len(valid_bytes).map_err(io_err(&path))?;
                        file.sync_all().map_err(io_err(&path))?;
                    }
                    recovery.bytes_cut += file_bytes - valid_bytes;
                    cut = true;
                }
                if i < last && !cut {
                    if !index_ok {
                        // A rebuilt index spares the next start the scan. It
                        // vouches for the segment, so the segment is synced first.
                        let synced = match &segment.backing {
                            Backing::File { file, .. } => file.sync_all().map_err(io_err(&path)),
                            Backing::Memory(_) => Ok(()),
                        };
                        match synced.and_then(|()| segment.write_index(dir)) {
                            Ok(()) => segment.keep_index_on_disk(dir),
                            Err(e) => tracing::warn!(error = %e, "could not write a rebuilt segment index"),
                        }
                    }
                } else {
                    remove_if_present(&index_path)?;
                }
            }
            if let Some(last_offset) = segment.last_offset {
                // Bounded by load_index and scan: the next offset exists.
                expected = Some(last_offset.saturating_add(1));
            }
            segments.push(segment);
        }
        let next_offset = expected.unwrap_or_else(|| segments.last().map_or(0, |s| s.base_offset));
        let first = segments.first().map_or(0, |s| s.base_offset);
        let checkpoint = read_checkpoint(&dir.join(LOG_START_CHECKPOINT))?;
        let log_start_offset = checkpoint.unwrap_or(first).max(first).min(next_offset);
        // Closed segments were synced at their roll or by the scan above.
        let active_base = segments.last().map_or(0, |s| s.base_offset);
        let mut log = PartitionLog {
            dir: Some(dir.to_path_buf()),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            segments,
            log_start_offset,
            next_offset,
            producers: ProducerStates::default(),
            unflushed: 0,
            failed_sync: false,
            failed_outside: Arc::new(AtomicI64::new(i64::MAX)),
            flushes: RollFlushes::new(active_base),
            taken_in_below: active_base,
            closed: false,
            recovery,
        };
        if checkpoint.is_some_and(|c| c != log_start_offset) {
            // A cut took the log below its checkpointed start: offsets from
            // here on are new records, which a later start must not hide.
            log.checkpoint().map_err(io_err(dir))?;
        }
        log.recover_producers().map_err(io_err(dir))?;
        if !log.recovery.clean {
            // After a crash: the removals of recovery (segments after a
            // cut, stale snapshots) and names a crashed run made without
            // syncing them become durable, so that a second power cut
            // cannot bring back files that no longer follow the log.
            sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(log)
    }

    /// Producer state: the newest snapshot at or below the log end, then
    /// the headers of every batch after it.
    fn recover_producers(&mut self) -> io::Result<()> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        let mut snapshots = list_snapshots(&dir)?;
        snapshots.sort_unstable_by(|a, b| b.cmp(a));
        let mut from = self.segments[0].base_offset;
        for offset in snapshots {
            let path = dir.join(snapshot_file_name(offset));
            if offset > self.next_offset {
                // Describes batches the log no longer has (cut at recovery).
                std::fs::remove_file(&path)?;
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| ProducerStates::decode_snapshot(&b, now_ms()))
            {
                Some(states) => {
                    self.producers = states;
                    from = offset;
                    break;
                }
                None => tracing::warn!(path = %path.display(), "ignoring a damaged producer state snapshot"),
            }
        }
        let producers = &mut self.producers;
        for segment in &self.segments {
            if segment.last_offset.is_none_or(|last| last < from) {
                continue;
            }
            let position = match segment.locate(from)? {
                Some(batch) if segment.base_offset < from => batch.position,
                _ => 0,
            };
            segment.walk_headers(position, |header, _| {
                producers.record(header, header.base_offset, header.last_offset());
                ControlFlow::Continue(())
            })?;
        }
        Ok(())
    }

    /// What opening this log found.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Sets the size at which the active segment rolls (`segment.bytes`).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes.max(BATCH_HEADER_BYTES as u64);
    }

    /// Sets the age at which the active segment rolls (`segment.ms`).
    pub fn set_segment_ms(&mut self, ms: i64) {
        self.segment_ms = ms.max(1);
    }

    /// The offset the next appended record gets (Kafka's log end offset; with
    /// one replica it is also the high watermark).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Idempotent producers' state in this partition.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Forgets the producers that wrote nothing here for `expiration_ms`
    /// (see [`ProducerStates::expire`]). The next snapshot leaves them out.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.expire(now_ms, expiration_ms)
    }

    /// Bytes in the log.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Sparse index entries held in memory, across segments.
    pub fn index_entries_held(&self) -> usize {
        self.segments.iter().map(Segment::index_entries_held).sum()
    }

    /// Bytes of index held in memory, over all segments.
    pub fn index_bytes_held(&self) -> usize {
        self.segments.iter().map(Segment::index_bytes_held).sum()
    }

    fn active(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has a segment")
    }

    /// Starts a new active segment at the next offset, and writes a
    /// producer state snapshot (not yet fsynced). The closed segment's
    /// fsync, the snapshot's and the directory's, then the closed segment's
    /// index, are queued for the background ([`super::roll_flush`]).
    fn roll(&mut self) -> io::Result<()> {
        let base_offset = self.next_offset;
        let backing = match &self.dir {
            Some(dir) => {
                let path = dir.join(segment_file_name(base_offset));
                let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
                if let Some(closed) = self.segments.last()
                    && let Backing::File { file, path } = &closed.backing
                {
                    let index = closed
                        .encode_index()
                        .inspect_err(|e| {
                            // Only costs the next start a scan of the segment.
                            tracing::warn!(error = %e, "could not encode a closed segment's index");
                        })
                        .ok();
                    // Written now, as the state it describes is, so that a
                    // process that dies before the flush still finds it; the
                    // flush makes it durable, then removes older ones.
                    let snapshot = dir.join(snapshot_file_name(base_offset));
                    let snapshot = match store_snapshot(dir, base_offset, &self.producers.encode_snapshot(), false) {
                        Ok(()) => Some(snapshot),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not write a producer state snapshot");
                            None
                        }
                    };
                    let rolled = RolledSegment {
                        file: file.clone(),
                        path: path.clone(),
                        dir: dir.clone(),
                        base_offset: closed.base_offset,
                        end: base_offset,
                        index,
                        snapshot,
                    };
                    self.flushes.submit(rolled, self.failed_outside.clone());
                }
                Backing::File {
                    path,
                    file: Arc::new(file),
                }
            }
            None => Backing::Memory(Vec::new()),
        };
        self.segments
            .push(Segment::new(base_offset, backing).created_at(now_ms()));
        Ok(())
    }

    /// Waits for the background flushes of every closed segment, and takes
    /// in their index files: what a clean close needs, and what a test
    /// that crashes after a roll waits for.
    pub fn settle_rolled_segments(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let active_base = self.segments.last().map_or(0, |s| s.base_offset);
        self.flushes.wait_until_settled(active_base);
        self.take_in_flushes();
    }

    /// Swaps the index of each closed segment whose flush has run for the
    /// one it wrote, so that closed segments hold only a summary.
    fn take_in_flushes(&mut self) {
        let settled = self.flushes.settled_below();
        if settled <= self.taken_in_below {
            return;
        }
        if let Some(dir) = &self.dir
            && !self.failed_sync
        {
            let closed = self.segments.len().saturating_sub(1);
            for i in 0..closed {
                let end = self.segments[i + 1].base_offset;
                if end > self.taken_in_below
                    && end <= settled
                    && dir.join(index_file_name(self.segments[i].base_offset)).exists()
                {
                    self.segments[i].keep_index_on_disk(dir);
                }
            }
        }
        self.taken_in_below = settled;
    }

    /// Writes the producers' state as of the log end, keeping the newest
    /// [`SNAPSHOTS_KEPT`].
    fn write_snapshot(&self) -> Result<(), StorageError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        store_snapshot(dir, self.next_offset, &self.producers.encode_snapshot(), true)?;
        prune_snapshots(dir, i64::MAX)
    }

    /// Flushes rolled segments inside the append that rolls, not in the
    /// background: for a log of small segments whose syncs must not wait
    /// behind other logs' flushes.
    pub fn flush_rolls_in_place(&mut self) {
        self.flushes.flush_in_place();
    }

    /// The log's directory is about to be removed (DeleteTopics): flushes
    /// still queued for it write nothing there. Appends may go on into the
    /// unlinked files, as Kafka's deleted logs take them until closed.
    pub fn mark_deleted(&mut self) {
        self.flushes.mark_gone();
    }

    /// Whether the active segment is due to roll before taking `batch_bytes`.
    fn due_to_roll(&mut self, batch_bytes: u64, now: i64) -> bool {
        let (segment_bytes, segment_ms) = (self.segment_bytes, self.segment_ms);
        let active = self.active();
        if active.size == 0 {
            return false;
        }
        // Its age counts from its first batch's timestamp, as in Kafka, but
        // never from before the segment was created here: old timestamps
        // from producers would otherwise roll at every append.
        let born = active
            .first_timestamp
            .unwrap_or(now)
            .max(active.created_ms.unwrap_or(now));
        active.size + batch_bytes > segment_bytes || now.saturating_sub(born) > segment_ms
    }

    /// Appends a batch that has been validated, assigning it the next offsets.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, leader_epoch: i32) -> io::Result<AppendedBatch> {
        debug_assert_eq!(batch.len(), header.total_bytes());
        self.check_not_failed()?;
        if self.closed {
            self.reopen_after_close()?;
        }
        if self.due_to_roll(batch.len() as u64, now_ms()) {
            self.roll()?;
        }
        let base_offset = self.next_offset;
        let prefix = rewritten_prefix(batch, base_offset, leader_epoch);
        let segment = self.active();
        match &mut segment.backing {
            Backing::File { file, .. } => {
                if let Err(e) = write_all_vectored(file, &prefix, &batch[16..]) {
                    // Drop whatever part of the batch reached the file (a
                    // full disk takes part of a write), so the next append
                    // starts where the log really ends. If that fails too,
                    // the file ends in a torn batch the log cannot account
                    // for: it refuses appends until a restart, whose
                    // recovery cuts the tear off.
                    if let Err(cut) = file.set_len(segment.size) {
                        tracing::error!(error = %cut, "could not cut a failed append off the segment; refusing appends until a restart");
                        self.failed_sync = true;
                    }
                    return Err(e);
                }
            }
            Backing::Memory(bytes) => {
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&batch[16..]);
            }
        }
        let last_offset = base_offset + header.offset_count() - 1;
        let position = segment.size;
        segment.note_batch(BatchInfo {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            position,
            size: batch.len() as u64,
        });
        self.next_offset = last_offset + 1;
        self.unflushed += header.offset_count() as u64;
        self.producers.record(header, base_offset, last_offset);
        Ok(AppendedBatch {
            base_offset,
            last_offset,
        })
    }

    /// The index of the segment that would hold `offset`: the last one
    /// starting at or before it.
    fn first_segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// The first batch holding `offset` or after it (a segment may end
    /// before the next one's base), with the index of its segment.
    fn locate(&self, offset: i64) -> io::Result<Option<(usize, BatchInfo)>> {
        let offset = offset.max(self.log_start_offset);
        let first = self.first_segment_for(offset);
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let found = if segment.base_offset >= offset {
                segment.find_from(0, |_| true)?
            } else {
                segment.locate(offset)?
            };
            if let Some(batch) = found {
                return Ok(Some((i, batch)));
            }
        }
        Ok(None)
    }

    /// Whole batches from the one containing `offset` on, up to `max_bytes`,
    /// from one segment. With `min_one`, the first batch comes whole even
    /// when it is larger (KIP-74), so a reader always makes progress.
    pub fn read_from(&self, offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        match self.segment_to_read(offset) {
            Some((segment, from)) => segment.read_from_offset(from, max_bytes, min_one),
            None => Ok(Bytes::new()),
        }
    }

    /// As [`read_from`](Self::read_from), but an answer of `copy_below`
    /// bytes or more comes as a slice of a segment file (see
    /// [`Segment::slice_from_offset`]).
    pub fn slice_from(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        copy_below: usize,
    ) -> io::Result<FetchedRecords> {
        match self.segment_to_read(offset) {
            Some((segment, from)) => segment.slice_from_offset(from, max_bytes, min_one, copy_below),
            None => Ok(FetchedRecords::default()),
        }
    }

    /// The first segment with a batch at or after `offset` (and the log
    /// start), with the offset to read it from.
    fn segment_to_read(&self, offset: i64) -> Option<(&Segment, i64)> {
        let offset = offset.max(self.log_start_offset);
        let first = self.first_segment_for(offset);
        self.segments[first..].iter().find_map(|segment| {
            let from = offset.max(segment.base_offset);
            segment
                .last_offset
                .is_some_and(|last| last >= from)
                .then_some((segment, from))
        })
    }

    /// Bytes a read from `offset` could return (from the batch holding it to
    /// the end of the log), without reading them.
    pub fn bytes_from(&self, offset: i64) -> io::Result<u64> {
        if offset >= self.next_offset {
            return Ok(0);
        }
        let Some((s, batch)) = self.locate(offset)? else {
            return Ok(0);
        };
        let rest: u64 = self.segments[s + 1..].iter().map(|s| s.size).sum();
        Ok(self.segments[s].size - batch.position + rest)
    }

    /// The first batch, among those ending at or after `from_offset` (and
    /// the log start), whose largest timestamp is at least `timestamp`: the
    /// one that holds the first record at or after that time.
    pub fn batch_at_timestamp(&self, timestamp: i64, from_offset: i64) -> io::Result<Option<Bytes>> {
        let Some((first, start)) = self.locate(from_offset)? else {
            return Ok(None);
        };
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let position = if i == first { start.position } else { 0 };
            if let Some(b) = segment.find_by_time(timestamp, position)? {
                return segment.read_range(b.position, b.size as usize).map(Some);
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp (the first such, on ties)
    /// among those the log start has not passed.
    pub fn batch_with_max_timestamp(&self) -> io::Result<Option<Bytes>> {
        let mut best: Option<(usize, i64)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.is_empty() || best.is_some_and(|(_, ts)| segment.max_timestamp <= ts) {
                continue;
            }
            best = Some((i, segment.max_timestamp));
        }
        let Some((s, _)) = best else { return Ok(None) };
        let segment = &self.segments[s];
        let start = self.log_start_offset;
        let batch = if segment.max_timestamp_offset >= start {
            segment.locate(segment.max_timestamp_offset)?
        } else {
            // The log start is inside this segment, past its best batch:
            // look again among the batches that are left, in every segment.
            return self.max_timestamp_batch_from(start);
        };
        match batch {
            Some(b) => segment.read_range(b.position, b.size as usize).map(Some),
            None => Ok(None),
        }
    }

    /// The largest-timestamp batch ending at or after `offset`, by walking.
    fn max_timestamp_batch_from(&self, offset: i64) -> io::Result<Option<Bytes>> {
        let Some((first, start)) = self.locate(offset)? else {
            return Ok(None);
        };
        let mut best: Option<(usize, BatchInfo)> = None;
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let position = if i == first { start.position } else { 0 };
            segment.walk_headers(position, |_, b| {
                if best.is_none_or(|(_, x)| b.max_timestamp > x.max_timestamp) {
                    best = Some((i, b));
                }
                ControlFlow::Continue(())
            })?;
        }
        match best {
            Some((i, b)) => self.segments[i].read_range(b.position, b.size as usize).map(Some),
            None => Ok(None),
        }
    }

    /// Closes the active segment unless it is empty, so that everything
    /// appended so far can go whole with
    /// [`delete_records_before`](Self::delete_records_before).
    pub fn roll_unless_empty(&mut self) -> io::Result<()> {
        self.check_not_failed()?;
        if self.closed {
            self.reopen_after_close()?;
        }
        if !self.active().is_empty() {
            self.roll()?;
        }
        Ok(())
    }

    /// Every batch in the log, in order (for tests and tools).
    pub fn batches(&self) -> io::Result<Vec<Bytes>> {
        let mut all = Vec::new();
        for segment in &self.segments {
            let bytes = segment.read_range(0, segment.size as usize)?;
            segment.walk_headers(0, |_, b| {
                all.push(bytes.slice(b.position as usize..(b.position + b.size) as usize));
                ControlFlow::Continue(())
            })?;
        }
        Ok(all)
    }

    /// Makes everything appended so far durable: an fsync of the active
    /// segment, and a wait for the flushes of closed ones that have not run.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(handle) = self.sync_handle()?
            && let Err(e) = handle.sync()
        {
            // The handle recorded the failure; take it in now.
            let _ = self.check_not_failed();
            return Err(e);
        }
        Ok(())
    }

    /// Syncs the log and leaves what the next open needs to skip most of
    /// recovery: a producer state snapshot, then the clean-shutdown marker.
    pub fn close(&mut self) -> Result<(), StorageError> {
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        self.settle_rolled_segments();
        self.sync().map_err(|e| StorageError::io(&dir, e))?;
        if let Some(active) = self.segments.last()
            && let Err(e) = active.write_index(&dir)
        {
            // Only costs the next start a scan of the active segment.
            tracing::warn!(error = %e, "could not write the active segment's index");
        }
        self.write_snapshot()?;
        write_atomically(&dir.join(CLEAN_SHUTDOWN_MARKER), b"")?;
        self.closed = true;
        Ok(())
    }

    /// An append after [`close`](Self::close): the log is about to differ
    /// from what the marker vouches for, so the marker goes first.
    fn reopen_after_close(&mut self) -> io::Result<()> {
        if let Some(dir) = &self.dir {
            remove_if_present(&dir.join(CLEAN_SHUTDOWN_MARKER)).map_err(|e| io::Error::other(e.to_string()))?;
            sync_dir(dir)?;
        }
        self.closed = false;
        Ok(())
    }

    /// What an fsync outside the log's lock needs: the active segment, the
    /// flushes of the closed ones (the sync waits for those that have not
    /// run), and the offset everything before which they make durable.
    /// `None` in memory.
    pub fn sync_handle(&mut self) -> io::Result<Option<SyncHandle>> {
        self.check_not_failed()?;
        let end = self.next_offset;
        self.unflushed = 0;
        match self.segments.last().map(|s| &s.backing) {
            Some(Backing::File { file, .. }) => {
                let active_base = self.segments.last().map_or(0, |s| s.base_offset);
                Ok(Some(SyncHandle {
                    file: file.clone(),
                    flushes: self.flushes.clone(),
                    flushed_below: active_base,
                    end,
                    failed: self.failed_outside.clone(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// Records that an fsync done outside the lock, on a
    /// [`sync_handle`](Self::sync_handle) that made offsets before `end`
    /// durable, failed. A roll may have happened meanwhile, and the fsync
    /// of its flush cannot be relied on: Linux reports a writeback error
    /// once per file, and the failed sync already took it. So no flush
    /// writes an index from now on, and the index files of the
    /// segments holding `end - 1` and after no longer vouch for them: they
    /// are removed, and those segments are scanned at the next start.
    pub fn mark_sync_failed(&mut self, end: i64) {
        self.failed_sync = true;
        let Some(dir) = &self.dir else { return };
        // No background flush writes an index from here on either.
        self.flushes.record_failure();
        for segment in &self.segments {
            if segment.last_offset.is_none_or(|last| last >= end - 1)
                && let Err(e) = remove_if_present(&dir.join(index_file_name(segment.base_offset)))
            {
                tracing::warn!(error = %e, "could not remove the index of a segment a failed fsync covered");
            }
        }
    }

    /// Takes in what fsyncs outside the lock did: a failure, or the index
    /// files of rolled segments.
    fn check_not_failed(&mut self) -> io::Result<()> {
        let failed_at = self.failed_outside.swap(i64::MAX, Ordering::SeqCst);
        if failed_at != i64::MAX {
            self.mark_sync_failed(failed_at);
        }
        self.take_in_flushes();
        if self.failed_sync {
            return Err(io::Error::other(
                "an earlier fsync of this log failed, or a failed write could not be undone",
            ));
        }
        Ok(())
    }

    /// Records appended since the last sync.
    pub fn unflushed_messages(&self) -> u64 {
        self.unflushed
    }

    /// The active segment's file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self.segments.last().map(|s| &s.backing) {
            Some(Backing::File { path, .. }) => Some(path),
            _ => None,
        }
    }

    /// Moves the log start offset forward to `offset` (DeleteRecords), and
    /// drops the segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> io::Result<i64> {
        let offset = offset.clamp(self.log_start_offset, self.next_offset);
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.checkpoint()?;
            self.drop_segments_below_start()?;
        }
        Ok(self.log_start_offset)
    }

    /// Deletes whole segments that are older than `retention_ms` (by their
    /// newest record) or that the log can lose while keeping at least
    /// `retention_bytes`; -1 turns either off. Returns how many segments
    /// went. When the active segment is past the limits too, the log rolls
    /// first and then deletes it with the rest, as Kafka does, so a
    /// partition that stopped receiving records still ages out.
    pub fn apply_retention(&mut self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> io::Result<usize> {
        let mut total = self.size_bytes() as i64;
        let mut removable = 0;
        for segment in self.segments.iter().take_while(|s| !s.is_empty()) {
            let too_old = retention_ms >= 0 && segment.max_timestamp < now_ms.saturating_sub(retention_ms);
            let too_big = retention_bytes >= 0 && total - segment.size as i64 >= retention_bytes;
            if !(too_old || too_big) {
                break;
            }
            total -= segment.size as i64;
            removable += 1;
        }
        if removable == 0 {
            return Ok(0);
        }
        if removable == self.segments.len() {
            self.roll()?;
        }
        let new_start = self.segments[removable].base_offset;
        let removed: Vec<Segment> = self.segments.drain(..removable).collect();
        self.log_start_offset = self.log_start_offset.max(new_start);
        self.checkpoint()?;
        for segment in removed {
            remove_segment(segment, &self.flushes)?;
        }
        Ok(removable)
    }

    fn drop_segments_below_start(&mut self) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            let segment = self.segments.remove(0);
            remove_segment(segment, &self.flushes)?;
        }
        Ok(())
    }

    fn checkpoint(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        write_atomically(
            &dir.join(LOG_START_CHECKPOINT),
            format!("{}\n", self.log_start_offset).as_bytes(),
        )
        .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl Drop for PartitionLog {
    /// A log dropped without a close (a deleted topic's, or a crash as tests
    /// make one) leaves its queued flushes nothing to write: what is on disk
    /// is what a process that died here would leave.
    fn drop(&mut self) {
        self.flushes.mark_gone();
    }
}

/// An fsync of the active segment, and a wait for the flushes of closed
/// segments still pending, to run outside the log's lock (see
/// [`PartitionLog::sync_handle`]).
pub struct SyncHandle {
    /// The active segment when the handle was taken.
    file: Arc<File>,
    /// Closed segments below this offset must have been flushed (their data,
    /// and the directory holding the active segment's name) too.
    flushed_below: i64,
    flushes: Arc<RollFlushes>,
    /// Everything before this offset is durable once the fsync succeeds.
    pub end: i64,
    failed: Arc<AtomicI64>,
}

impl SyncHandle {
    /// Fsyncs. A failure is recorded for the log at once, whoever waits for
    /// the answer: the log takes it in at its next operation, as
    /// [`PartitionLog::mark_sync_failed`] would.
    pub fn sync(self) -> io::Result<()> {
        let synced = self.file.sync_data().and_then(|()| {
            // If the segment synced here has rolled since, its flush may
            // have met a write-back error this fsync was not told of: wait
            // for that flush too.
            let rolled_since = self.flushes.submitted_below() > self.flushed_below;
            self.flushes
                .wait_until_settled(self.flushed_below + i64::from(rolled_since));
            if self.flushes.failed() {
                return Err(io::Error::other("an fsync of this log failed"));
            }
            Ok(())
        });
        if synced.is_err() {
            self.flushes.record_failure();
            self.failed.fetch_min(self.end, Ordering::SeqCst);
        }
        synced
    }
}

/// Deletes a segment's files. A background flush of the segment may still
/// be queued; it writes nothing for a segment that is gone.
fn remove_segment(segment: Segment, flushes: &RollFlushes) -> io::Result<()> {
    if let Backing::File { path, file } = segment.backing {
        drop(file);
        let _files = flushes.lock_files();
        tracing::info!(path = %path.display(), "deleting segment");
        std::fs::remove_file(&path)?;
        remove_if_present(&path.with_extension("index")).map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Writes a producer state snapshot as of `offset` into `dir` (fsynced, with
/// `sync`).
fn store_snapshot(dir: &Path, offset: i64, snapshot: &[u8], sync: bool) -> Result<(), StorageError> {
    super::replace_file(&dir.join(snapshot_file_name(offset)), snapshot, sync)
}

/// Removes the snapshots at or below `durable_up_to` (a snapshot known to
/// be fsynced, or `i64::MAX` when all are) but the newest
/// [`SNAPSHOTS_KEPT`] of them; newer ones, not yet durable, stay too. So a
/// power loss always leaves a durable one to start from.
pub(super) fn prune_snapshots(dir: &Path, durable_up_to: i64) -> Result<(), StorageError> {
    let mut snapshots = list_snapshots(dir).map_err(|e| StorageError::io(dir, e))?;
    snapshots.retain(|offset| *offset <= durable_up_to);
    snapshots.sort_unstable_by(|a, b| b.cmp(a));
    for offset in snapshots.into_iter().skip(SNAPSHOTS_KEPT) {
        remove_if_present(&dir.join(snapshot_file_name(offset)))?;
    }
    Ok(())
}

fn read_checkpoint(path: &Path) -> Result<Option<i64>, StorageError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| StorageError::invalid(path, "not an offset")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

fn write_all_vectored(mut file: &File, first: &[u8], second: &[u8]) -> io::Result<()> {
    let (mut a, mut b) = (first, second);
    while !a.is_empty() || !b.is_empty() {
        let written = file.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
        if written == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "log write returned 0"));
        }
        let from_a = written.min(a.len());
        a = &a[from_a..];
        b = &b[written - from_a..];
    }
    Ok(())
}

/// Reads a segment file from the start, noting in `segment` every batch
/// that is whole and valid (and follows `expected_offset`, where the
/// previous segment ended). Returns the length of that valid prefix.
fn scan(segment: &mut Segment, mut expected_offset: Option<i64>) -> io::Result<u64> {
    let Backing::File { file, .. } = &segment.backing else {
        return Ok(0);
    };
    let file = Arc::clone(file);
    let file_bytes = file.metadata()?.len();
    let mut window = ScanWindow::new(&file);
    let mut position = 0u64;
    loop {
        let remaining = file_bytes - position;
        if remaining < BATCH_HEADER_BYTES as u64 {
            break;
        }
        let overhead = window.peek(LOG_OVERHEAD_BYTES)?;
        let batch_length = i32::from_be_bytes([overhead[8], overhead[9], overhead[10], overhead[11]]);
        let total = LOG_OVERHEAD_BYTES as u64 + batch_length.max(0) as u64;
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 || total > remaining {
            break;
        }
        // Bounded by the file's length just above.
        let total = total as usize;
        let batch = window.peek(total)?;
        let Some(header) = BatchHeader::parse(batch) else { break };
        if !is_intact(&header, batch) {
            break;
        }
        // Offsets are dense: a batch that does not follow its predecessor is
        // not something this log wrote.
        let follows = match expected_offset {
            Some(expected) => expected == header.base_offset,
            None => header.base_offset == segment.base_offset,
        };
        if !follows {
            break;
        }
        // An offset at the very end of the range leaves no next one.
        let Some(next) = header.last_offset().checked_add(1) else {
            break;
        };
        expected_offset = Some(next);
        segment.note_batch(BatchInfo::from_header(&header, position));
        window.advance(total);
        position += total as u64;
    }
    Ok(position)
}

/// Bytes a scan reads at once. Every batch is checked where it was read,
/// except that one straddling two reads is first moved to the front of the
/// buffer. Small enough that the CRC pass finds the bytes still in the CPU's
/// cache: with 8 MiB reads the CRC cost half as much again and the scan
/// gained little over copying each batch out (protocol-notes/storage.md).
const SCAN_READ_BYTES: usize = 2 << 20;

/// A scan's view of a segment file: the bytes from the scan's position on
/// are `buf[start..end]`, read with `pread` in `SCAN_READ_BYTES` at a time.
struct ScanWindow<'a> {
    file: &'a File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The file offset of `buf[start]`.
    offset: u64,
}

impl<'a> ScanWindow<'a> {
    fn new(file: &'a File) -> Self {
        ScanWindow {
            file,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// The next `len` bytes of the file, reading more as needed. The
    /// caller has checked that the file's length holds them: a file that
    /// ends sooner has shrunk since, and the scan fails rather than cut it.
    fn peek(&mut self, len: usize) -> io::Result<&[u8]> {
        use std::os::unix::fs::FileExt;
        if self.end - self.start < len {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            // A batch larger than a read grows the buffer, but later reads
            // stay SCAN_READ_BYTES long, for the CPU's cache.
            let read_up_to = len.max(SCAN_READ_BYTES);
            if self.buf.len() < read_up_to {
                self.buf.resize(read_up_to, 0);
            }
            while self.end < len {
                let at = self.offset + self.end as u64;
                match self.file.read_at(&mut self.buf[self.end..read_up_to], at) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(read) => self.end += read,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.start..self.start + len])
    }

    /// Moves past `len` bytes already peeked.
    fn advance(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }
}

/// Offsets of the producer state snapshots in `dir`.
fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse::<i64>().ok()
        })
        .collect())
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::protocol::record_batch::batch_crc;
    use crate::protocol::record_batch::tests::sample_batch;
    use crate::storage::index;
    use crate::storage::producer_state::SequenceCheck;
    use crate::storage::segment::{self, INDEX_INTERVAL_BYTES};

    fn append(log: &mut PartitionLog, records: usize) -> AppendedBatch {
        let batch = sample_batch(records);
        let header = BatchHeader::parse(&batch).unwrap();
        log.append(&batch, &header, 0).unwrap()
    }

    /// Appends a batch of one record holding `value`; returns the batch's length.
    fn append_one_record(log: &mut PartitionLog, value: Vec<u8>) -> usize {
        let mut builder = crate::protocol::records::RecordBatchBuilder::new(1_700_000_000_000);
        builder.push(crate::protocol::records::Record {
            value: Some(Bytes::from(value)),
            ..Default::default()
        });
        let batch = builder.build(crate::protocol::record_batch::Compression::None).unwrap();
        log.append(&batch, &BatchHeader::parse(&batch).unwrap(), 0).unwrap();
        batch.len()
    }

    /// Batch sizes of `bytes` if it is whole batches, back to back.
    fn whole_batch_sizes(bytes: &[u8]) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let size = BatchHeader::parse(&bytes[at..]).unwrap().total_bytes();
            assert!(at + size <= bytes.len(), "a cut batch at {at}");
            sizes.push(size);
            at += size;
        }
        sizes
    }

    #[test]
    fn file_slices_hold_the_whole_batches_a_read_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        // Batches from one record to hundreds, so index entries (every 4
        // KiB) fall a varying number of batches apart.
        for i in 0..600 {
            append(&mut log, 1 + (i * 37) % 400);
        }
        let largest = whole_batch_sizes(&log.read_from(0, usize::MAX, true).unwrap())
            .into_iter()
            .max()
            .unwrap();
        let mut slices = 0;
        for offset in (0..log.next_offset()).step_by(3_571).chain([log.next_offset() - 1]) {
            for max in [10, 64 * 1024, 100_000, 1 << 20, usize::MAX] {
                let read = log.read_from(offset, max, true).unwrap();
                let sliced = log
                    .slice_from(offset, max, true, segment::FILE_SLICE_BYTES_MIN)
                    .unwrap();
                let bytes = sliced.to_bytes().unwrap();
                assert!(
                    read.starts_with(&bytes),
                    "offset {offset}, max {max}: not the read's start"
                );
                assert!(
                    !whole_batch_sizes(&bytes).is_empty(),
                    "offset {offset}, max {max}: nothing"
                );
                assert!(
                    read.len() - bytes.len() <= INDEX_INTERVAL_BYTES as usize + largest,
                    "offset {offset}, max {max}: {} bytes short of the read's {}",
                    read.len() - bytes.len(),
                    read.len()
                );
                if bytes.len() >= segment::FILE_SLICE_BYTES_MIN {
                    assert!(matches!(sliced, FetchedRecords::File(_)), "a large answer is a slice");
                    slices += 1;
                } else {
                    assert!(matches!(sliced, FetchedRecords::Bytes(_)), "a small answer is read");
                }
            }
        }
        assert!(slices > 10, "only {slices} answers were slices");
        // Without min_one, a first batch larger than the limit is left out.
        let first = whole_batch_sizes(&log.read_from(0, 1, true).unwrap())[0];
        assert!(
            log.slice_from(0, first - 1, false, segment::FILE_SLICE_BYTES_MIN)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn sync_resets_the_unflushed_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        append(&mut log, 3);
        append(&mut log, 2);
        assert_eq!(log.unflushed_messages(), 5);
        log.sync().unwrap();
        assert_eq!(log.unflushed_messages(), 0);
        append(&mut log, 4);
        let handle = log.sync_handle().unwrap().expect("a file-backed log");
        assert_eq!((handle.end, log.unflushed_messages()), (9, 0));
    }

    #[test]
    fn after_a_failed_fsync_the_log_refuses_appends_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        append(&mut log, 1);
        log.mark_sync_failed(1);
        let batch = sample_batch(1);
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(log.append(&batch, &header, 0).is_err());
        assert!(log.sync().is_err());
        assert!(log.sync_handle().is_err());
        assert_eq!(log.next_offset(), 1, "nothing appended after the failure");
    }

    #[test]
    fn a_failed_fsync_takes_away_the_indexes_it_covered() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        // The handle covers offsets 0..8; then the log rolls twice more,
        // writing indexes whose fsync the failure may have hidden.
        let end = log.sync_handle().unwrap().expect("a file-backed log").end;
        assert_eq!(end, 8);
        for _ in 0..4 {
            append(&mut log, 2);
        }
        assert_eq!(log.segment_count(), 4);
        log.settle_rolled_segments();
        log.mark_sync_failed(end);
        let indexed: Vec<bool> = [0, 4, 8, 12]
            .iter()
            .map(|base| dir.path().join(index_file_name(*base)).exists())
            .collect();
        assert_eq!(indexed, [true, false, false, false]);
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.recovery().clean, log.recovery().segments_scanned), (false, 3));
        assert_eq!(log.next_offset(), 16);
    }

    /// A process that dies between a roll and the roll's background flush:
    /// the closed segment has no index yet, so the next start scans it, and
    /// rebuilds the index; a sync meanwhile covers the closed segment and
    /// the directory too.
    #[test]
    fn a_crash_before_a_rolled_segments_flush_leaves_it_to_be_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        log.set_segment_bytes(sample_batch(2).len() as u64 * 2);
        // Holding the lock its flush takes to write the index keeps the
        // flush from finishing.
        let flushes = log.flushes.clone();
        let held = flushes.lock_files();
        for _ in 0..4 {
            append(&mut log, 2);
        }
        assert_eq!(log.segment_count(), 2);
        let handle = log.sync_handle().unwrap().expect("a file-backed log");
        assert_eq!(
            (handle.flushes.settled_below(), handle.flushed_below, handle.end),
            (0, 4, 8),
            "a sync waits for the flush of segment 0"
        );
        // What a crash now leaves on disk.
        let image = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), image.path().join(entry.file_name())).unwrap();
        }
        drop(held);
        assert!(
            !image.path().join(index_file_name(0)).exists(),
            "no index before the flush"
        );
        assert!(
            image.path().join(snapshot_file_name(4)).exists(),
            "the roll's snapshot is written at the roll"
        );
        let crashed = PartitionLog::open(image.path()).unwrap();
        assert_eq!(
            (crashed.recovery().segments_scanned, crashed.next_offset()),
            (2, 8),
            "both segments scanned, nothing lost"
        );
        assert!(image.path().join(index_file_name(0)).exists(), "the index rebuilt");
        // The flush itself finishes once the lock is free.
        log.settle_rolled_segments();
        assert!(dir.path().join(index_file_name(0)).exists());
        handle.sync().unwrap();
    }

    /// Snapshots newer than the one a flush made durable are not yet
    /// durable themselves: pruning keeps them and the newest durable ones.
    #[test]
    fn pruning_keeps_the_newest_durable_snapshots_and_every_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        for offset in [100, 200, 300, 400] {
            std::fs::write(dir.path().join(snapshot_file_name(offset)), b"").unwrap();
        }
        let left = || {
            let mut offsets = list_snapshots(dir.path()).unwrap();
            offsets.sort_unstable();
            offsets
        };
        prune_snapshots(dir.path(), 200).unwrap();
        assert_eq!(left(), [100, 200, 300, 400]);
        prune_snapshots(dir.path(), 300).unwrap();
        assert_eq!(left(), [200, 300, 400]);
        prune_snapshots(dir.path(), i64::MAX).unwrap();
        assert_eq!(left(), [300, 400]);
    }

    /// A close right after rolls waits for their flushes: every closed
    /// segment has its index, and the next start reads none of them.
    #[test]
    fn a_clean_close_waits_for_the_flushes_of_rolled_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        log.set_segment_bytes(sample_batch(2).len() as u64 * 2);
        for _ in 0..10 {
            append(&mut log, 2);
        }
        log.close().unwrap();
        for base in [0, 4, 8, 12, 16] {
            assert!(dir.path().join(index_file_name(base)).exists(), "index {base}");
        }
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.recovery().clean, log.recovery().segments_scanned), (true, 0));
        assert_eq!(log.next_offset(), 20);
    }

    #[test]
    fn a_failure_recorded_by_a_sync_handle_reaches_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        // As SyncHandle::sync records a failed fsync nobody waited for.
        let handle = log.sync_handle().unwrap().expect("a file-backed log");
        handle.failed.fetch_min(handle.end, Ordering::SeqCst);
        let batch = sample_batch(1);
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(log.append(&batch, &header, 0).is_err());
        assert!(log.close().is_err(), "no clean-shutdown marker over a failed fsync");
        assert!(!dir.path().join(index_file_name(4)).exists());
    }

    #[test]
    fn offsets_are_dense_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            append(&mut log, 3),
            AppendedBatch {
                base_offset: 0,
                last_offset: 2
            }
        );
        assert_eq!(
            append(&mut log, 2),
            AppendedBatch {
                base_offset: 3,
                last_offset: 4
            }
        );
        drop(log);
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 5);
        assert_eq!(append(&mut log, 1).base_offset, 5);
        let batches = log.batches().unwrap();
        assert_eq!(batches.len(), 3);
        let sent = sample_batch(2);
        assert_eq!(&batches[1][16..], &sent[16..], "stored verbatim after the prefix");
        assert_eq!(BatchHeader::parse(&batches[1]).unwrap().base_offset, 3);
    }

    #[test]
    fn reads_start_at_the_batch_containing_the_offset() {
        let mut log = PartitionLog::in_memory();
        append(&mut log, 3);
        append(&mut log, 3);
        append(&mut log, 3);
        let from_middle = log.read_from(4, usize::MAX, true).unwrap();
        assert_eq!(BatchHeader::parse(&from_middle).unwrap().base_offset, 3);
        assert_eq!(from_middle.len(), 2 * sample_batch(3).len());
        let one = log.read_from(4, 1, true).unwrap();
        assert_eq!(
            one.len(),
            sample_batch(3).len(),
            "the first batch comes whole even over max_bytes"
        );
        assert!(log.read_from(4, 1, false).unwrap().is_empty());
        assert!(log.read_from(9, 100, true).unwrap().is_empty());
        assert_eq!(log.bytes_from(4).unwrap(), from_middle.len() as u64);
        assert_eq!(log.bytes_from(9).unwrap(), 0);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        append(&mut log, 2);
        append(&mut log, 2);
        let path = log.path().unwrap().to_path_buf();
        let size = log.size_bytes();
        drop(log);

        // A torn write: half a batch at the end.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&sample_batch(2)[..30]).unwrap();
        drop(file);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 4);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        drop(log);

        // Scribbled bytes inside the last batch: its CRC fails, it goes.
        overwrite(&path, size - 5, b"garbage");
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 2);
        assert_eq!(log.batches().unwrap().len(), 1);
    }

    /// A closed segment without its index is scanned; damage found there
    /// cuts the log, and the segments after it go too, their indexes with
    /// them: what follows a cut cannot follow its offsets.
    #[test]
    fn damage_in_a_closed_segment_cuts_the_log_there_and_drops_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 3);
        log.close().unwrap();
        drop(log);
        std::fs::remove_file(dir.path().join(index_file_name(0))).unwrap();
        // The second batch of segment 0 (offsets 2 and 3), scribbled.
        let batch_bytes = sample_batch(2).len() as u64;
        overwrite(&dir.path().join(segment_file_name(0)), batch_bytes + 40, b"garbage");
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 2, "only segment 0's first batch is left");
        assert_eq!(log.recovery().bytes_cut, batch_bytes);
        assert_eq!(log.batches().unwrap().len(), 1);
        for base in [4, 8] {
            assert!(!dir.path().join(segment_file_name(base)).exists(), "segment {base}");
            assert!(!dir.path().join(index_file_name(base)).exists(), "index {base}");
        }
        // Appends go on from the cut, and survive a reopen.
        assert_eq!(append(&mut log, 2).base_offset, 2);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 4);
        assert_eq!(log.batches().unwrap().len(), 2);
    }

    /// The log-start checkpoint as a start finds it: missing (the first
    /// segment's base), outside the log (brought inside and written back),
    /// or not an offset (the open fails, naming the file).
    #[test]
    fn a_log_start_checkpoint_is_kept_inside_the_log_and_a_garbled_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 3);
        assert_eq!(log.delete_records_before(6).unwrap(), 6);
        log.close().unwrap();
        drop(log);
        let checkpoint = dir.path().join(LOG_START_CHECKPOINT);
        let reopened_start = || PartitionLog::open(dir.path()).unwrap().log_start_offset();
        assert_eq!(reopened_start(), 6);

        std::fs::remove_file(&checkpoint).unwrap();
        assert_eq!(reopened_start(), 4, "the first segment kept");
        for (written, start) in [("999\n", 12), ("1\n", 4)] {
            std::fs::write(&checkpoint, written).unwrap();
            assert_eq!(reopened_start(), start, "{written:?}");
            assert_eq!(
                std::fs::read_to_string(&checkpoint).unwrap(),
                format!("{start}\n"),
                "written back"
            );
        }
        std::fs::write(&checkpoint, "six\n").unwrap();
        let refused = PartitionLog::open(dir.path())
            .err()
            .expect("a garbled checkpoint is refused");
        assert!(refused.to_string().contains(LOG_START_CHECKPOINT), "{refused}");
    }

    #[test]
    fn segments_roll_and_reads_cross_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        let batch_bytes = sample_batch(2).len() as u64;
        log.set_segment_bytes(batch_bytes * 2);
        for _ in 0..5 {
            append(&mut log, 2);
        }
        assert_eq!(log.segment_count(), 3, "two batches per segment");
        assert!(
            dir.path().join("00000000000000000004.log").exists(),
            "named by base offset"
        );
        let from_second = log.read_from(5, usize::MAX, true).unwrap();
        assert_eq!(BatchHeader::parse(&from_second).unwrap().base_offset, 4);
        assert_eq!(log.bytes_from(5).unwrap(), 3 * batch_bytes);
        drop(log);

        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            (log.segment_count(), log.next_offset(), log.log_start_offset()),
            (3, 10, 0)
        );
        assert_eq!(append(&mut log, 1).base_offset, 10);
        let offsets: Vec<i64> = log
            .batches()
            .unwrap()
            .iter()
            .map(|b| BatchHeader::parse(b).unwrap().base_offset)
            .collect();
        assert_eq!(offsets, vec![0, 2, 4, 6, 8, 10]);
    }

    #[test]
    fn retention_and_delete_records_drop_whole_segments_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        let batch_bytes = sample_batch(2).len() as u64;
        log.set_segment_bytes(batch_bytes * 2);
        for _ in 0..6 {
            append(&mut log, 2);
        }
        assert_eq!(log.segment_count(), 3);
        // Keep at least 3 batches' worth: the oldest segment (2 batches) goes.
        assert_eq!(log.apply_retention(0, -1, (batch_bytes * 3) as i64).unwrap(), 1);
        assert_eq!((log.segment_count(), log.log_start_offset()), (2, 4));
        assert!(!dir.path().join("00000000000000000000.log").exists());
        assert_eq!(
            BatchHeader::parse(&log.read_from(0, usize::MAX, true).unwrap())
                .unwrap()
                .base_offset,
            4
        );
        // DeleteRecords inside a segment: the start moves, the segment stays.
        assert_eq!(log.delete_records_before(5).unwrap(), 5);
        assert_eq!(log.segment_count(), 2);
        // Time-based: every segment, the active one too, is older than any
        // limit; the log rolls and keeps only a new, empty active segment.
        assert_eq!(log.apply_retention(i64::MAX, 1, -1).unwrap(), 2);
        assert_eq!((log.segment_count(), log.log_start_offset()), (1, 12));
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            (log.segment_count(), log.log_start_offset(), log.next_offset()),
            (1, 12, 12)
        );
    }

    /// A sample batch from idempotent producer `producer_id`, epoch 0.
    fn idempotent_batch(records: usize, producer_id: i64, base_sequence: i32) -> Vec<u8> {
        let mut batch = sample_batch(records).to_vec();
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        batch[51..53].copy_from_slice(&0i16.to_be_bytes());
        batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// Writes `bytes` over a stored file at `position`, as damage would.
    fn overwrite(path: &Path, position: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, position).unwrap();
    }

    fn log_with_segments(dir: &Path, segments: usize) -> PartitionLog {
        let mut log = PartitionLog::open(dir).unwrap();
        log.set_segment_bytes(sample_batch(2).len() as u64 * 2);
        for _ in 0..segments * 2 {
            append(&mut log, 2);
        }
        assert_eq!(log.segment_count(), segments);
        // As if the background had caught up before whatever comes next.
        log.settle_rolled_segments();
        log
    }

    #[test]
    fn after_a_clean_close_no_segment_is_scanned_and_after_a_crash_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 4);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.recovery(),
            Recovery {
                clean: true,
                segments_scanned: 0,
                bytes_cut: 0
            },
            "every segment, the active one too, is taken from its index"
        );
        assert_eq!((log.next_offset(), log.batches().unwrap().len()), (16, 8));
        // Opening took the marker away: dropping the log now is a crash.
        drop(log);
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.recovery().clean, log.recovery().segments_scanned), (false, 1));
        assert_eq!(log.next_offset(), 16);
        assert_eq!(append(&mut log, 1).base_offset, 16);
        let read = log.read_from(5, usize::MAX, true).unwrap();
        assert_eq!(BatchHeader::parse(&read).unwrap().base_offset, 4);
    }

    #[test]
    fn a_large_damaged_tail_after_a_clean_close_costs_only_its_batch() {
        // The tail check after a clean close reads a tail of more than
        // 16 KiB with a seek on the segment's file, moving the cursor a
        // scan once shared: it must not make the scan start anywhere but 0.
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        let mut lengths = Vec::new();
        for size in [100, 100, 100, 100, 20 << 10] {
            lengths.push(append_one_record(&mut log, vec![b'v'; size]));
        }
        log.close().unwrap();
        drop(log);
        let path = dir.path().join(segment_file_name(0));
        let mut bytes = std::fs::read(&path).unwrap();
        let in_last_batch = bytes.len() - 1000;
        bytes[in_last_batch] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.recovery(),
            Recovery {
                clean: true,
                segments_scanned: 1,
                bytes_cut: lengths[4] as u64
            }
        );
        assert_eq!(log.next_offset(), 4);
        assert_eq!(log.batches().unwrap().len(), 4);
    }

    #[test]
    fn a_sync_waits_for_the_flush_of_the_segment_that_rolled_under_it() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        log.set_segment_bytes(4096);
        append(&mut log, 1);
        // Taken on segment 0, synced only after segment 0 rolled: its
        // fsync may have missed a write-back error the roll's flush is told.
        let handle = log.sync_handle().unwrap().unwrap();
        let hold = super::super::roll_flush::hold_flusher();
        while log.segments.len() == 1 {
            append(&mut log, 10);
        }
        let flushes = log.flushes.clone();
        let rolled_end = flushes.submitted_below();
        assert!(flushes.settled_below() < rolled_end, "the roll's flush is held");
        let (done, answered) = channel();
        let syncing = std::thread::spawn(move || {
            let synced = handle.sync();
            done.send((synced.is_ok(), flushes.settled_below())).unwrap();
        });
        // A sync that did not wait would answer now, with the flush still held.
        assert!(
            answered.recv_timeout(Duration::from_millis(100)).is_err(),
            "the sync answered while the flush of its segment was held"
        );
        drop(hold);
        let (ok, settled_when_answered) = answered.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(ok);
        assert!(
            settled_when_answered >= rolled_end,
            "the flush ran before the sync answered"
        );
        syncing.join().unwrap();
    }

    #[test]
    fn a_scan_reads_batches_across_its_reads_and_larger_than_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        // Batches of 300 KiB do not divide a read, so some straddle two;
        // one of one and a half reads is longer than any read.
        let value_sizes = [300 << 10; 12]
            .into_iter()
            .chain([SCAN_READ_BYTES * 3 / 2])
            .chain([300 << 10; 8]);
        let mut lengths = Vec::new();
        for (i, size) in value_sizes.enumerate() {
            lengths.push(append_one_record(&mut log, vec![i as u8; size]));
        }
        let file_bytes: usize = lengths.iter().sum();
        assert!(file_bytes > 4 * SCAN_READ_BYTES);
        drop(log); // a crash: the active segment is scanned
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.recovery(),
            Recovery {
                clean: false,
                segments_scanned: 1,
                bytes_cut: 0
            }
        );
        assert_eq!(log.next_offset(), 21);
        let stored = log.batches().unwrap();
        assert_eq!(stored.iter().map(|b| b.len()).collect::<Vec<_>>(), lengths);
        // A torn last batch is still found: the scan stops at the file's end.
        let path = dir.path().join(segment_file_name(0));
        drop(log);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((file_bytes - 10) as u64)
            .unwrap();
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 20);
        assert_eq!(log.recovery().bytes_cut as usize, lengths[20] - 10);
    }

    #[test]
    fn a_missing_or_damaged_index_is_rebuilt_from_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 3);
        log.close().unwrap();
        drop(log);
        std::fs::remove_file(dir.path().join(index_file_name(0))).unwrap();
        let index = dir.path().join(index_file_name(4));
        // Its footer: a closed segment's entries are checked only as
        // lookups read them.
        let mut bytes = std::fs::read(&index).unwrap();
        let in_footer = bytes.len() - 10;
        bytes[in_footer] ^= 0xff;
        std::fs::write(&index, bytes).unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 2, "the active segment's index held");
        assert_eq!(log.next_offset(), 12);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 0, "the rebuilt indexes were written");
        assert_eq!(log.batches().unwrap().len(), 6);
    }

    #[test]
    fn a_clean_start_checks_the_active_segments_tail_and_scans_it_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        log.close().unwrap();
        drop(log);
        // The active segment (base offset 4) keeps its length, so its index
        // still matches, but its last batch's bytes change.
        let path = dir.path().join(segment_file_name(4));
        let len = std::fs::metadata(&path).unwrap().len();
        overwrite(&path, len - 4, &[0xee; 4]);
        let log = PartitionLog::open(dir.path()).unwrap();
        let batch = sample_batch(2).len() as u64;
        assert_eq!(
            log.recovery(),
            Recovery {
                clean: true,
                segments_scanned: 1,
                bytes_cut: batch
            },
            "the active segment was scanned and its last batch cut"
        );
        assert_eq!((log.next_offset(), log.batches().unwrap().len()), (6, 3));
    }

    #[test]
    fn each_clean_close_leaves_an_index_of_the_active_segment_as_it_then_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        log.close().unwrap();
        drop(log);
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 0);
        // The index just read no longer covers the segment once it grows.
        assert_eq!(append(&mut log, 3).base_offset, 8);
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.recovery().clean, log.recovery().segments_scanned), (true, 0));
        assert_eq!((log.next_offset(), log.batches().unwrap().len()), (11, 5));
        let read = log.read_from(9, usize::MAX, true).unwrap();
        assert_eq!(BatchHeader::parse(&read).unwrap().base_offset, 8);
    }

    #[test]
    fn an_append_after_close_makes_the_next_open_recover() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        log.close().unwrap();
        append(&mut log, 2);
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.recovery().clean, log.next_offset()), (false, 10));
    }

    #[test]
    fn producer_state_outlives_the_segments_retention_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        log.set_segment_bytes(sample_batch(2).len() as u64 * 2);
        let batch = idempotent_batch(2, 42, 0);
        let header = BatchHeader::parse(&batch).unwrap();
        log.append(&batch, &header, 0).unwrap();
        for _ in 0..4 {
            append(&mut log, 2);
        }
        assert_eq!(log.apply_retention(0, -1, 0).unwrap(), 3, "every segment goes");
        for close in [false, true] {
            if close {
                log.close().unwrap();
            }
            drop(log);
            log = PartitionLog::open(dir.path()).unwrap();
            let next = BatchHeader::parse(&idempotent_batch(2, 42, 2)).unwrap();
            assert_eq!(log.producers().check(&next), Ok(SequenceCheck::Append));
            let gap = BatchHeader::parse(&idempotent_batch(2, 42, 5)).unwrap();
            assert!(log.producers().check(&gap).is_err(), "clean: {close}");
        }
    }

    #[test]
    fn the_active_segment_rolls_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        log.set_segment_ms(60_000);
        append(&mut log, 2);
        append(&mut log, 2);
        assert_eq!(log.segment_count(), 1, "young: no roll");
        // Its first batch (2023) and its creation both a day ago.
        let active = log.active();
        active.created_ms = Some(now_ms() - 86_400_000);
        active.first_timestamp = Some(now_ms() - 86_400_000);
        append(&mut log, 2);
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.segments[1].base_offset, 4);
    }

    #[test]
    fn fetch_and_time_lookups_work_across_many_small_batches() {
        let mut log = PartitionLog::in_memory();
        log.set_segment_bytes(64 * 1024);
        for _ in 0..3000 {
            append(&mut log, 1);
        }
        assert!(log.segment_count() > 3);
        assert!(
            log.index_entries_held() < 3000 / 10,
            "sparse: {}",
            log.index_entries_held()
        );
        for offset in [0, 1, 1499, 2998, 2999] {
            let read = log.read_from(offset, 1, true).unwrap();
            assert_eq!(BatchHeader::parse(&read).unwrap().base_offset, offset);
        }
        let found = log.batch_at_timestamp(1_700_000_000_000, 2500).unwrap().unwrap();
        assert_eq!(BatchHeader::parse(&found).unwrap().base_offset, 2500);
        assert!(log.batch_at_timestamp(1_700_000_000_001, 0).unwrap().is_none());
    }

    /// A batch of `records` records whose timestamps are all `timestamp`.
    fn timed_batch(records: usize, timestamp: i64) -> Bytes {
        let mut builder = crate::protocol::records::RecordBatchBuilder::new(timestamp);
        for i in 0..records {
            builder.push(crate::protocol::records::Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                ..Default::default()
            });
        }
        builder.build(crate::protocol::record_batch::Compression::None).unwrap()
    }

    #[test]
    fn closed_segments_answer_from_their_index_files_as_held_entries_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut on_disk = PartitionLog::open(dir.path()).unwrap();
        // The same appends in memory, where every segment holds its entries.
        let mut held = PartitionLog::in_memory();
        on_disk.set_segment_bytes(1 << 20);
        held.set_segment_bytes(1 << 20);
        let base_time = 1_700_000_000_000i64;
        for i in 0..6000usize {
            // 1 to 40 records; time rises, with ties and an occasional dip.
            let dip = if i % 50 == 0 { 25 } else { 0 };
            let batch = timed_batch(1 + (i * 7) % 40, base_time + (i as i64 / 3) * 10 - dip);
            let header = BatchHeader::parse(&batch).unwrap();
            on_disk.append(&batch, &header, 0).unwrap();
            held.append(&batch, &header, 0).unwrap();
        }
        // Every batch in a closed segment.
        on_disk.roll_unless_empty().unwrap();
        held.roll_unless_empty().unwrap();
        on_disk.settle_rolled_segments();
        assert!(on_disk.segment_count() >= 4, "{} segments", on_disk.segment_count());
        let end = held.next_offset();
        let same_answers = |log: &PartitionLog, when: &str| {
            assert_eq!(log.next_offset(), end, "{when}");
            assert!(
                log.index_entries_held() * 10 < held.index_entries_held(),
                "{when}: {} entries held, of {}",
                log.index_entries_held(),
                held.index_entries_held()
            );
            for offset in (0..end).step_by(487).chain([end - 1]) {
                for (max, min_one) in [(1, true), (5000, false), (100_000, true)] {
                    let read = log.read_from(offset, max, min_one).unwrap();
                    assert_eq!(
                        read,
                        held.read_from(offset, max, min_one).unwrap(),
                        "{when}: {offset}, {max}"
                    );
                }
                // 128 KiB slices end inside a segment, at an entry the index
                // gives; 1 MiB ones at a segment's end.
                for max in [128 * 1024, 1 << 20] {
                    let read = log.read_from(offset, max, true).unwrap();
                    let sliced = log
                        .slice_from(offset, max, true, segment::FILE_SLICE_BYTES_MIN)
                        .unwrap()
                        .to_bytes()
                        .unwrap();
                    assert!(
                        !sliced.is_empty() && read.starts_with(&sliced),
                        "{when}: slice at {offset}"
                    );
                    assert!(!whole_batch_sizes(&sliced).is_empty());
                    assert!(
                        read.len() - sliced.len() <= INDEX_INTERVAL_BYTES as usize + 2048,
                        "{when}: a slice at {offset} ends {} bytes short",
                        read.len() - sliced.len()
                    );
                }
            }
            for timestamp in (base_time - 30..base_time + 20_100).step_by(53) {
                for from in [0, end / 2] {
                    assert_eq!(
                        log.batch_at_timestamp(timestamp, from).unwrap(),
                        held.batch_at_timestamp(timestamp, from).unwrap(),
                        "{when}: time {timestamp} from {from}"
                    );
                }
            }
        };
        same_answers(&on_disk, "as written");
        on_disk.close().unwrap();
        drop(on_disk);
        let reopened = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(reopened.recovery().segments_scanned, 0);
        same_answers(&reopened, "after a clean close");
        // Dropped without a close: the next open recovers as after a crash.
        drop(reopened);
        let recovered = PartitionLog::open(dir.path()).unwrap();
        assert!(!recovered.recovery().clean);
        same_answers(&recovered, "after a crash");
    }

    /// A log on disk of 5,000 batches of 20 records in 1 MiB segments
    /// (about 250 index entries each, two blocks), closed cleanly.
    fn log_with_two_block_segments(dir: &Path) -> i64 {
        let mut log = PartitionLog::open(dir).unwrap();
        log.set_segment_bytes(1 << 20);
        for i in 0..5000 {
            let batch = timed_batch(20, 1_700_000_000_000 + i);
            let header = BatchHeader::parse(&batch).unwrap();
            log.append(&batch, &header, 0).unwrap();
        }
        assert!(log.segment_count() >= 3);
        let end = log.next_offset();
        log.close().unwrap();
        end
    }

    /// Every offset of `log` up to `end`, read one batch at a time, and
    /// 128 KiB slices that reach their limit (within an index interval;
    /// with a damaged index block, slices may stop at its first entry).
    fn reads_every_offset(log: &PartitionLog, end: i64, damaged: bool) {
        for offset in (0..end).step_by(7) {
            let read = log.read_from(offset, 1, true).unwrap();
            let header = BatchHeader::parse(&read).unwrap();
            assert!(
                header.base_offset <= offset && offset <= header.last_offset(),
                "{offset}"
            );
        }
        for offset in (0..end).step_by(1009) {
            let read = log.read_from(offset, 128 * 1024, true).unwrap();
            let sliced = log
                .slice_from(offset, 128 * 1024, true, segment::FILE_SLICE_BYTES_MIN)
                .unwrap()
                .to_bytes()
                .unwrap();
            assert!(!sliced.is_empty() && read.starts_with(&sliced), "{offset}");
            assert!(
                damaged || read.len() - sliced.len() <= INDEX_INTERVAL_BYTES as usize + 1024,
                "a slice at {offset}: {} bytes of {}",
                sliced.len(),
                read.len()
            );
        }
    }

    #[test]
    fn an_index_in_the_earlier_format_is_read_and_written_again_with_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let end = log_with_two_block_segments(dir.path());
        let path = dir.path().join(index_file_name(0));
        let (entries, footer) = index::decode(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::write(&path, index::encode_v1(&entries, &footer)).unwrap();
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 0);
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"MKI2", "written again");
        assert_eq!(index::decode(&std::fs::read(&path).unwrap()), Some((entries, footer)));
        reads_every_offset(&log, end, false);
    }

    #[test]
    fn a_damaged_index_block_is_walked_past_and_rebuilt_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let end = log_with_two_block_segments(dir.path());
        let path = dir.path().join(index_file_name(0));
        // Entry 130 (the second block) of the first segment's index.
        overwrite(&path, 4 + 130 * 24, &[0xff; 24]);
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.recovery().segments_scanned,
            0,
            "entries are checked as lookups read them"
        );
        reads_every_offset(&log, end, true);
        assert!(!path.exists(), "removed once the damage showed");
        log.close().unwrap();
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 1, "the segment without an index");
        assert!(index::decode(&std::fs::read(&path).unwrap()).is_some(), "rebuilt");
        reads_every_offset(&log, end, false);
    }

    #[test]
    fn a_start_cut_below_its_checkpoint_is_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        for _ in 0..5 {
            append(&mut log, 2);
        }
        assert_eq!(log.delete_records_before(8).unwrap(), 8);
        let path = log.path().unwrap().to_path_buf();
        drop(log);
        // A crash took the last three batches (offsets 4..9) with it.
        let keep = sample_batch(2).len() as u64 * 2;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (4, 4));
        for _ in 0..3 {
            append(&mut log, 2);
        }
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            log.log_start_offset(),
            4,
            "the records appended after the cut stay visible"
        );
    }

    #[test]
    fn stray_segment_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        append(&mut log, 2);
        drop(log);
        std::fs::write(dir.path().join("0.log"), b"").unwrap();
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!((log.segment_count(), log.next_offset()), (1, 2));
    }

    #[test]
    fn a_scribbled_trusted_segment_fails_reads_instead_of_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_segments(dir.path(), 2);
        log.close().unwrap();
        drop(log);
        // The closed segment keeps its length (so its index still matches)
        // but its second batch claims a negative length.
        let path = dir.path().join(segment_file_name(0));
        let second = sample_batch(2).len() as u64;
        overwrite(&path, second + 8, &(-7i32).to_be_bytes());
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.recovery().segments_scanned, 0, "both segments were trusted");
        assert!(log.batches().is_err());
        assert!(log.read_from(2, usize::MAX, true).is_err());
        assert!(
            log.read_from(4, usize::MAX, true).is_ok(),
            "the other segment still serves"
        );
    }
}
