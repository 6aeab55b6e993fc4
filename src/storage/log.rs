//! One partition's log: record batches appended verbatim (base offset and
//! leader epoch rewritten), offsets dense from the log start offset.
//!
//! On open, the segment is scanned batch by batch (length, magic, CRC32C) and
//! cut at the first batch that fails, so a torn tail from a crash is dropped
//! with a log line instead of being served. Segments, sparse indexes,
//! retention and flush policy build on this shape (one segment today, named
//! by its base offset as Kafka names them).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::StorageError;
use super::producer_state::ProducerStates;
use crate::protocol::record_batch::{BATCH_HEADER_BYTES, BatchHeader, LOG_OVERHEAD_BYTES, batch_crc, rewritten_prefix};

/// Where a batch sits in the log.
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

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
}

pub struct PartitionLog {
    backing: Backing,
    /// Every batch in order. Kept whole in memory until segments bring a
    /// sparse on-disk index.
    batches: Vec<BatchPosition>,
    end_position: u64,
    log_start_offset: i64,
    next_offset: i64,
    /// Idempotent producers' sequences, kept with the log they describe so
    /// that checking and appending happen under one lock.
    producers: ProducerStates,
}

/// Name of the first (and, for now, only) segment of a partition.
pub const FIRST_SEGMENT: &str = "00000000000000000000.log";

impl PartitionLog {
    /// A log that lives in memory only (`--in-memory`).
    pub fn in_memory() -> Self {
        PartitionLog {
            backing: Backing::Memory(Vec::new()),
            batches: Vec::new(),
            end_position: 0,
            log_start_offset: 0,
            next_offset: 0,
            producers: ProducerStates::default(),
        }
    }

    /// Opens (creating if needed) the log in `dir`, recovering its tail.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let path = dir.join(FIRST_SEGMENT);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        let (batches, producers, valid_bytes, file_bytes) = scan(&file).map_err(|e| StorageError::io(&path, e))?;
        if valid_bytes < file_bytes {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = valid_bytes,
                cut_bytes = file_bytes - valid_bytes,
                "log tail is partial or fails its CRC32C; cutting it off"
            );
            file.set_len(valid_bytes).map_err(|e| StorageError::io(&path, e))?;
            file.sync_all().map_err(|e| StorageError::io(&path, e))?;
        }
        let next_offset = batches.last().map_or(0, |b| b.last_offset + 1);
        let log_start_offset = batches.first().map_or(0, |b| b.base_offset);
        Ok(PartitionLog {
            backing: Backing::File { path, file },
            batches,
            end_position: valid_bytes,
            log_start_offset,
            next_offset,
            producers,
        })
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
        self.end_position
    }

    /// Appends a batch that has been validated, assigning it the next offsets.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, leader_epoch: i32) -> io::Result<AppendedBatch> {
        debug_assert_eq!(batch.len(), header.total_bytes());
        let base_offset = self.next_offset;
        let prefix = rewritten_prefix(batch, base_offset, leader_epoch);
        match &mut self.backing {
            Backing::File { file, .. } => {
                if let Err(e) = write_all_vectored(file, &prefix, &batch[16..]) {
                    // Drop whatever part of the batch reached the file, so the
                    // next append starts where the log really ends.
                    let _ = file.set_len(self.end_position);
                    return Err(e);
                }
            }
            Backing::Memory(bytes) => {
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&batch[16..]);
            }
        }
        let last_offset = base_offset + header.offset_count() - 1;
        self.batches.push(BatchPosition {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            position: self.end_position,
            size: batch.len() as u32,
        });
        self.end_position += batch.len() as u64;
        self.next_offset = last_offset + 1;
        self.producers.record(header, base_offset, last_offset);
        Ok(AppendedBatch {
            base_offset,
            last_offset,
        })
    }

    /// Whole batches from the one containing `offset` on, up to `max_bytes`.
    /// With `min_one`, the first batch comes whole even when it is larger
    /// (KIP-74), so a reader always makes progress.
    pub fn read_from(&self, offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        let first = self.batches.partition_point(|b| b.last_offset < offset);
        let Some(start) = self.batches.get(first) else {
            return Ok(Bytes::new());
        };
        if !min_one && start.size as usize > max_bytes {
            return Ok(Bytes::new());
        }
        let mut end = start.position + u64::from(start.size);
        for batch in &self.batches[first + 1..] {
            let next_end = batch.position + u64::from(batch.size);
            if (next_end - start.position) as usize > max_bytes {
                break;
            }
            end = next_end;
        }
        self.read_range(start.position, (end - start.position) as usize)
    }

    /// Bytes a read from `offset` could return (from the batch holding it to
    /// the end of the log), without reading them.
    pub fn bytes_from(&self, offset: i64) -> u64 {
        let first = self.batches.partition_point(|b| b.last_offset < offset);
        self.batches.get(first).map_or(0, |b| self.end_position - b.position)
    }

    /// The first batch whose largest timestamp is at least `timestamp`: the
    /// one that holds the first record at or after that time.
    pub fn batch_at_timestamp(&self, timestamp: i64) -> io::Result<Option<Bytes>> {
        match self.batches.iter().find(|b| b.max_timestamp >= timestamp) {
            Some(b) => self.read_range(b.position, b.size as usize).map(Some),
            None => Ok(None),
        }
    }

    /// The batch holding the largest timestamp (the first such, on ties).
    pub fn batch_with_max_timestamp(&self) -> io::Result<Option<Bytes>> {
        let best = self
            .batches
            .iter()
            .reduce(|best, b| if b.max_timestamp > best.max_timestamp { b } else { best });
        match best {
            Some(b) => self.read_range(b.position, b.size as usize).map(Some),
            None => Ok(None),
        }
    }

    /// Every batch in the log, in order (for tests and tools).
    pub fn batches(&self) -> io::Result<Vec<Bytes>> {
        let all = self.read_range(0, self.end_position as usize)?;
        Ok(self
            .batches
            .iter()
            .map(|b| all.slice(b.position as usize..(b.position + u64::from(b.size)) as usize))
            .collect())
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

    /// Makes everything appended so far durable (fsync of the data).
    pub fn sync(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File { file, .. } => file.sync_data(),
            Backing::Memory(_) => Ok(()),
        }
    }

    /// The segment file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Memory(_) => None,
        }
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

/// Reads the segment from the start, returning the batches that are whole and
/// valid, the producer state they describe, the length of that valid prefix
/// and the file length.
fn scan(file: &File) -> io::Result<(Vec<BatchPosition>, ProducerStates, u64, u64)> {
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut batches = Vec::new();
    let mut position = 0u64;
    let mut buf = Vec::new();
    let mut expected_offset: Option<i64> = None;
    let mut producers = ProducerStates::default();
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
    Ok((batches, producers, position, file_bytes))
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
}
