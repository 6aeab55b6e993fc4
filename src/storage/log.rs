//! One partition's log: record batches appended verbatim (base offset and
//! leader epoch rewritten), offsets dense from the log start offset.
//!
//! The log is a sequence of segment files named by their base offset, as
//! Kafka names them (`00000000000000000000.log`); appends go to the last
//! (active) one, which rolls at `segment_bytes`. Retention and DeleteRecords
//! remove whole segments from the front and move the log start offset, which
//! is checkpointed (`log-start-offset`, written atomically).
//!
//! On open, every segment is scanned batch by batch (length, magic, CRC32C,
//! dense offsets); the log is cut at the first batch that fails, so a torn
//! tail from a crash is dropped with a log line instead of being served.
//! Where each batch sits is kept in memory per segment (a sparse on-disk
//! index would spare that memory and the scan; not built yet).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::producer_state::ProducerStates;
use super::{StorageError, write_atomically};
use crate::protocol::record_batch::{BATCH_HEADER_BYTES, BatchHeader, LOG_OVERHEAD_BYTES, batch_crc, rewritten_prefix};

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// The log start offset's checkpoint, in the partition's directory.
const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// Where a batch sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchPosition {
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    position: u64,
    size: u32,
}

enum Backing {
    File { path: PathBuf, file: File },
    Memory(Vec<u8>),
}

struct Segment {
    base_offset: i64,
    backing: Backing,
    size: u64,
    batches: Vec<BatchPosition>,
}

impl Segment {
    fn max_timestamp(&self) -> i64 {
        self.batches.iter().map(|b| b.max_timestamp).max().unwrap_or(i64::MIN)
    }

    fn last_offset(&self) -> Option<i64> {
        self.batches.last().map(|b| b.last_offset)
    }

    fn read_range(&self, position: u64, len: usize) -> io::Result<Bytes> {
        match &self.backing {
            Backing::File { file, .. } => {
                let mut buf = BytesMut::zeroed(len);
                file.read_exact_at(&mut buf, position)?;
                Ok(buf.freeze())
            }
            Backing::Memory(bytes) => Ok(Bytes::copy_from_slice(
                &bytes[position as usize..position as usize + len],
            )),
        }
    }

    fn read_batch(&self, batch: &BatchPosition) -> io::Result<Bytes> {
        self.read_range(batch.position, batch.size as usize)
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
}

pub struct PartitionLog {
    dir: Option<PathBuf>,
    segment_bytes: u64,
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
    /// refuses appends and syncs from then on.
    failed_sync: bool,
}

fn segment_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

impl PartitionLog {
    /// A log that lives in memory only (`--in-memory`).
    pub fn in_memory() -> Self {
        PartitionLog {
            dir: None,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segments: vec![Segment {
                base_offset: 0,
                backing: Backing::Memory(Vec::new()),
                size: 0,
                batches: Vec::new(),
            }],
            log_start_offset: 0,
            next_offset: 0,
            producers: ProducerStates::default(),
            unflushed: 0,
            failed_sync: false,
        }
    }

    /// Opens (creating if needed) the log in `dir`, recovering its tail.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(|e| StorageError::io(dir, e))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let mut segments = Vec::with_capacity(bases.len());
        let mut producers = ProducerStates::default();
        let mut expected: Option<i64> = None;
        let mut cut = false;
        for base in bases {
            let path = dir.join(segment_name(base));
            if cut {
                // Everything after a damaged segment is beyond the cut.
                tracing::warn!(path = %path.display(), "removing a segment that follows a cut");
                std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|e| StorageError::io(&path, e))?;
            let (batches, valid_bytes, file_bytes) =
                scan(&file, expected, &mut producers).map_err(|e| StorageError::io(&path, e))?;
            if valid_bytes < file_bytes {
                tracing::warn!(
                    path = %path.display(),
                    kept_bytes = valid_bytes,
                    cut_bytes = file_bytes - valid_bytes,
                    "log tail is partial or fails its CRC32C; cutting it off"
                );
                file.set_len(valid_bytes).map_err(|e| StorageError::io(&path, e))?;
                file.sync_all().map_err(|e| StorageError::io(&path, e))?;
                cut = true;
            }
            if let Some(last) = batches.last() {
                expected = Some(last.last_offset + 1);
            }
            segments.push(Segment {
                base_offset: base,
                backing: Backing::File { path, file },
                size: valid_bytes,
                batches,
            });
        }
        let next_offset = expected.unwrap_or_else(|| segments.last().map_or(0, |s| s.base_offset));
        let first = segments
            .first()
            .map_or(0, |s| s.batches.first().map_or(s.base_offset, |b| b.base_offset));
        let checkpoint = read_checkpoint(&dir.join(LOG_START_CHECKPOINT))?;
        Ok(PartitionLog {
            dir: Some(dir.to_path_buf()),
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segments,
            log_start_offset: checkpoint.unwrap_or(first).max(first).min(next_offset),
            next_offset,
            producers,
            unflushed: 0,
            failed_sync: false,
        })
    }

    /// Sets the size at which the active segment rolls (`segment.bytes`).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes.max(BATCH_HEADER_BYTES as u64);
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

    /// Bytes in the log.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has a segment")
    }

    /// Starts a new active segment at the next offset.
    fn roll(&mut self) -> io::Result<()> {
        let base_offset = self.next_offset;
        let backing = match &self.dir {
            Some(dir) => {
                let path = dir.join(segment_name(base_offset));
                let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
                // The segment before is complete: make it durable before
                // anything lands in the next one.
                let previous = match self.segments.last().map(|s| &s.backing) {
                    Some(Backing::File { file, .. }) => file.sync_data(),
                    _ => Ok(()),
                };
                // The new file's name must survive a crash too.
                if let Err(e) = previous.and_then(|()| File::open(dir)?.sync_all()) {
                    self.failed_sync = true;
                    return Err(e);
                }
                Backing::File { path, file }
            }
            None => Backing::Memory(Vec::new()),
        };
        self.segments.push(Segment {
            base_offset,
            backing,
            size: 0,
            batches: Vec::new(),
        });
        Ok(())
    }

    /// Appends a batch that has been validated, assigning it the next offsets.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, leader_epoch: i32) -> io::Result<AppendedBatch> {
        debug_assert_eq!(batch.len(), header.total_bytes());
        self.check_not_failed()?;
        let segment_bytes = self.segment_bytes;
        if self.active().size > 0 && self.active().size + batch.len() as u64 > segment_bytes {
            self.roll()?;
        }
        let base_offset = self.next_offset;
        let prefix = rewritten_prefix(batch, base_offset, leader_epoch);
        let segment = self.active();
        match &mut segment.backing {
            Backing::File { file, .. } => {
                if let Err(e) = write_all_vectored(file, &prefix, &batch[16..]) {
                    // Drop whatever part of the batch reached the file, so the
                    // next append starts where the log really ends.
                    let _ = file.set_len(segment.size);
                    return Err(e);
                }
            }
            Backing::Memory(bytes) => {
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&batch[16..]);
            }
        }
        let last_offset = base_offset + header.offset_count() - 1;
        segment.batches.push(BatchPosition {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            position: segment.size,
            size: batch.len() as u32,
        });
        segment.size += batch.len() as u64;
        self.next_offset = last_offset + 1;
        self.unflushed += header.offset_count() as u64;
        self.producers.record(header, base_offset, last_offset);
        Ok(AppendedBatch {
            base_offset,
            last_offset,
        })
    }

    /// The segment and batch index holding `offset`, if any batch does.
    fn locate(&self, offset: i64) -> Option<(usize, usize)> {
        let offset = offset.max(self.log_start_offset);
        let first = self
            .segments
            .partition_point(|s| s.last_offset().is_some_and(|last| last < offset));
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let at = segment.batches.partition_point(|b| b.last_offset < offset);
            if at < segment.batches.len() {
                return Some((i, at));
            }
        }
        None
    }

    /// Whole batches from the one containing `offset` on, up to `max_bytes`,
    /// from one segment. With `min_one`, the first batch comes whole even
    /// when it is larger (KIP-74), so a reader always makes progress.
    pub fn read_from(&self, offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        let Some((s, first)) = self.locate(offset) else {
            return Ok(Bytes::new());
        };
        let segment = &self.segments[s];
        let start = segment.batches[first];
        if !min_one && start.size as usize > max_bytes {
            return Ok(Bytes::new());
        }
        let mut end = start.position + u64::from(start.size);
        for batch in &segment.batches[first + 1..] {
            let next_end = batch.position + u64::from(batch.size);
            if (next_end - start.position) as usize > max_bytes {
                break;
            }
            end = next_end;
        }
        segment.read_range(start.position, (end - start.position) as usize)
    }

    /// Bytes a read from `offset` could return (from the batch holding it to
    /// the end of the log), without reading them.
    pub fn bytes_from(&self, offset: i64) -> u64 {
        let Some((s, first)) = self.locate(offset) else {
            return 0;
        };
        let segment = &self.segments[s];
        let rest: u64 = self.segments[s + 1..].iter().map(|s| s.size).sum();
        segment.size - segment.batches[first].position + rest
    }

    /// The first batch, among those ending at or after `from_offset` (and
    /// the log start), whose largest timestamp is at least `timestamp`: the
    /// one that holds the first record at or after that time.
    pub fn batch_at_timestamp(&self, timestamp: i64, from_offset: i64) -> io::Result<Option<Bytes>> {
        let from_offset = from_offset.max(self.log_start_offset);
        for segment in &self.segments {
            if let Some(b) = segment
                .batches
                .iter()
                .find(|b| b.max_timestamp >= timestamp && b.last_offset >= from_offset)
            {
                return segment.read_batch(b).map(Some);
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp (the first such, on ties).
    pub fn batch_with_max_timestamp(&self) -> io::Result<Option<Bytes>> {
        let mut best: Option<(&Segment, &BatchPosition)> = None;
        for segment in &self.segments {
            for b in segment
                .batches
                .iter()
                .filter(|b| b.last_offset >= self.log_start_offset)
            {
                if best.is_none_or(|(_, x)| b.max_timestamp > x.max_timestamp) {
                    best = Some((segment, b));
                }
            }
        }
        match best {
            Some((segment, b)) => segment.read_batch(b).map(Some),
            None => Ok(None),
        }
    }

    /// Every batch in the log, in order (for tests and tools).
    pub fn batches(&self) -> io::Result<Vec<Bytes>> {
        let mut all = Vec::new();
        for segment in &self.segments {
            let bytes = segment.read_range(0, segment.size as usize)?;
            all.extend(
                segment
                    .batches
                    .iter()
                    .map(|b| bytes.slice(b.position as usize..(b.position + u64::from(b.size)) as usize)),
            );
        }
        Ok(all)
    }

    /// Makes everything appended so far durable (fsync of the data).
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_not_failed()?;
        if let Some(Backing::File { file, .. }) = self.segments.last().map(|s| &s.backing)
            && let Err(e) = file.sync_data()
        {
            self.failed_sync = true;
            return Err(e);
        }
        self.unflushed = 0;
        Ok(())
    }

    /// What an fsync outside the log's lock needs: a handle to the active
    /// segment and the offset everything before which it makes durable
    /// (earlier segments were synced when they rolled). `None` in memory.
    pub fn sync_handle(&mut self) -> io::Result<Option<(File, i64)>> {
        self.check_not_failed()?;
        let end = self.next_offset;
        match self.segments.last().map(|s| &s.backing) {
            Some(Backing::File { file, .. }) => {
                let handle = file.try_clone()?;
                self.unflushed = 0;
                Ok(Some((handle, end)))
            }
            _ => Ok(None),
        }
    }

    /// Records that an fsync done outside the lock (on a
    /// [`sync_handle`](Self::sync_handle)) failed.
    pub fn mark_sync_failed(&mut self) {
        self.failed_sync = true;
    }

    fn check_not_failed(&self) -> io::Result<()> {
        if self.failed_sync {
            return Err(io::Error::other("an earlier fsync of this log failed"));
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

    /// Deletes whole segments (never the active one) that are older than
    /// `retention_ms` (by their newest record) or that the log can lose while
    /// keeping at least `retention_bytes`; -1 turns either off. Returns how
    /// many segments went.
    pub fn apply_retention(&mut self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> io::Result<usize> {
        let mut total = self.size_bytes() as i64;
        let mut removable = 0;
        for segment in &self.segments[..self.segments.len() - 1] {
            let too_old = retention_ms >= 0 && segment.max_timestamp() < now_ms.saturating_sub(retention_ms);
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
        let new_start = self.segments[removable].base_offset;
        let removed: Vec<Segment> = self.segments.drain(..removable).collect();
        self.log_start_offset = self.log_start_offset.max(new_start);
        self.checkpoint()?;
        for segment in removed {
            remove_segment(segment)?;
        }
        Ok(removable)
    }

    fn drop_segments_below_start(&mut self) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            let segment = self.segments.remove(0);
            remove_segment(segment)?;
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

fn remove_segment(segment: Segment) -> io::Result<()> {
    if let Backing::File { path, file } = segment.backing {
        drop(file);
        tracing::info!(path = %path.display(), "deleting segment");
        std::fs::remove_file(&path)?;
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

fn write_all_vectored(file: &mut File, first: &[u8], second: &[u8]) -> io::Result<()> {
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

/// Reads a segment from the start, returning the batches that are whole and
/// valid (and follow `expected`, the offset the previous segment ended
/// before), the length of that valid prefix and the file length. Producer
/// state is recorded into `producers` as batches go by.
fn scan(
    file: &File,
    mut expected_offset: Option<i64>,
    producers: &mut ProducerStates,
) -> io::Result<(Vec<BatchPosition>, u64, u64)> {
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut batches = Vec::new();
    let mut position = 0u64;
    let mut buf = Vec::new();
    loop {
        let remaining = file_bytes - position;
        if remaining < BATCH_HEADER_BYTES as u64 {
            break;
        }
        buf.resize(LOG_OVERHEAD_BYTES, 0);
        reader.read_exact(&mut buf)?;
        let batch_length = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let total = LOG_OVERHEAD_BYTES as u64 + batch_length.max(0) as u64;
        if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 || total > remaining {
            break;
        }
        buf.resize(total as usize, 0);
        reader.read_exact(&mut buf[LOG_OVERHEAD_BYTES..])?;
        let Some(header) = BatchHeader::parse(&buf) else { break };
        if header.magic != 2 || batch_crc(&buf) != header.crc || header.last_offset_delta < 0 {
            break;
        }
        // Offsets are dense: a batch that does not follow its predecessor is
        // not something this log wrote.
        if expected_offset.is_some_and(|expected| expected != header.base_offset) {
            break;
        }
        expected_offset = Some(header.last_offset() + 1);
        producers.record(&header, header.base_offset, header.last_offset());
        batches.push(BatchPosition {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            position,
            size: total as u32,
        });
        position += total;
    }
    Ok((batches, position, file_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::tests::sample_batch;

    fn append(log: &mut PartitionLog, records: usize) -> AppendedBatch {
        let batch = sample_batch(records);
        let header = BatchHeader::parse(&batch).unwrap();
        log.append(&batch, &header, 0).unwrap()
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
        let (_, end) = log.sync_handle().unwrap().expect("a file-backed log");
        assert_eq!((end, log.unflushed_messages()), (9, 0));
    }

    #[test]
    fn after_a_failed_fsync_the_log_refuses_appends_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path()).unwrap();
        append(&mut log, 1);
        log.mark_sync_failed();
        let batch = sample_batch(1);
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(log.append(&batch, &header, 0).is_err());
        assert!(log.sync().is_err());
        assert!(log.sync_handle().is_err());
        assert_eq!(log.next_offset(), 1, "nothing appended after the failure");
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
        assert_eq!(log.bytes_from(4), from_middle.len() as u64);
        assert_eq!(log.bytes_from(9), 0);
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
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"garbage", size - 5).unwrap();
        drop(file);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 2);
        assert_eq!(log.batches().unwrap().len(), 1);
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
        assert_eq!(log.bytes_from(5), 3 * batch_bytes);
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
        // Time-based: everything but the active segment is older than any limit.
        assert_eq!(log.apply_retention(i64::MAX, 1, -1).unwrap(), 1);
        drop(log);
        let log = PartitionLog::open(dir.path()).unwrap();
        assert_eq!(
            (log.segment_count(), log.log_start_offset(), log.next_offset()),
            (1, 8, 12)
        );
    }
}
