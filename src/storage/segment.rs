//! One segment of a partition's log: a file of record batches (or memory,
//! with `--in-memory`) and its sparse index.
//!
//! The index ([`super::index`]) has an entry for the segment's first batch
//! and then one every [`INDEX_INTERVAL_BYTES`] of log (Kafka's
//! `log.index.interval.bytes`), so a lookup by offset or by time is a
//! binary search and then a walk over at most one interval's batch headers.
//!
//! A closed segment's index is written beside it (`<base offset>.index`)
//! when the segment rolls, and the active segment's at a clean close, so
//! that a start after a clean shutdown need not rescan them (only the
//! active segment's last batches are checked). An index that fails its
//! checks or covers a different length than the segment has is not used,
//! and the segment is scanned instead. A closed segment's lookups read its
//! entries from that file, block by block, each block checked as it is
//! read ([`super::index`]).

use std::fs::File;
use std::io::{self, Read, Seek};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::protocol::record_batch::{BATCH_HEADER_BYTES, BatchHeader, LOG_OVERHEAD_BYTES, batch_crc};
use crate::protocol::{FetchedRecords, FileSlice};

use super::index::{self, IndexEntry, IndexFooter, SparseIndex};

/// Kafka's `log.index.interval.bytes` default: an index entry per 4 KiB.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// How much of a segment file the first read takes while walking batch
/// headers: a lookup walks at most one index interval. Later reads of a
/// long walk double, up to [`WALK_WINDOW_BYTES_MAX`].
const WALK_WINDOW_BYTES_MIN: usize = 2 * INDEX_INTERVAL_BYTES as usize;
const WALK_WINDOW_BYTES_MAX: usize = 256 * 1024;
/// The most [`Segment::tail_is_sound`] reads; a longer tail (which the
/// index this log writes never leaves: an interval and one batch) is
/// scanned instead, in a stream.
const TAIL_CHECK_BYTES_MAX: u64 = 16 << 20;
/// Reads up to this size are one pread into a zeroed buffer; larger ones
/// a seek and a read into uninitialised capacity.
const PREAD_BYTES_MAX: usize = 16 * 1024;
/// Answers at least this large go out as file slices (sendfile) rather than
/// being read: below it, a read and a copy cost less than the extra
/// syscalls of sending the slice on its own.
pub const FILE_SLICE_BYTES_MIN: usize = 64 * 1024;

pub fn segment_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

pub fn index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.index")
}

/// Where one batch is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub position: u64,
    pub size: u64,
}

impl BatchInfo {
    /// A stored batch's place, refusing a header that cannot describe a
    /// batch of this segment: a closed segment trusted at start is read
    /// without a scan, and a scribbled one must fail, not mislead.
    fn stored(header: &BatchHeader, position: u64, segment_bytes: u64) -> io::Result<Self> {
        let min_length = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if header.batch_length < min_length || header.last_offset_delta < 0 {
            return Err(damaged(position));
        }
        let batch = BatchInfo::from_header(header, position);
        if batch.position.saturating_add(batch.size) > segment_bytes {
            return Err(damaged(position));
        }
        Ok(batch)
    }

    pub fn from_header(header: &BatchHeader, position: u64) -> Self {
        BatchInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            position,
            size: header.total_bytes() as u64,
        }
    }
}

pub enum Backing {
    File { path: PathBuf, file: Arc<File> },
    Memory(Vec<u8>),
}

pub struct Segment {
    pub base_offset: i64,
    pub backing: Backing,
    /// Bytes of whole, valid batches.
    pub size: u64,
    index: SparseIndex,
    /// Bytes of batches since the last index entry.
    bytes_since_entry: u64,
    /// The last offset of the last batch, `None` while empty.
    pub last_offset: Option<i64>,
    /// The largest batch timestamp (`i64::MIN` while empty) and the base
    /// offset of the first batch that has it.
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
    /// The first batch's largest timestamp: a segment's age for
    /// `segment.ms` counts from it, as Kafka's does.
    pub first_timestamp: Option<i64>,
    /// When the segment was created (wall clock, ms): by this process, or
    /// the file's birth time. Old producer timestamps would otherwise make
    /// the active segment roll at every append.
    pub created_ms: Option<i64>,
}

impl Segment {
    pub fn new(base_offset: i64, backing: Backing) -> Self {
        Segment {
            base_offset,
            backing,
            size: 0,
            index: SparseIndex::default(),
            bytes_since_entry: 0,
            last_offset: None,
            max_timestamp: i64::MIN,
            max_timestamp_offset: -1,
            first_timestamp: None,
            created_ms: None,
        }
    }

    pub fn created_at(mut self, ms: i64) -> Self {
        self.created_ms = Some(ms);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.last_offset.is_none()
    }

    /// Index entries held in memory (for tests and the memory figure).
    pub fn index_entries_held(&self) -> usize {
        self.index.held()
    }

    /// Bytes of index held in memory.
    pub fn index_bytes_held(&self) -> usize {
        self.index.bytes_held()
    }

    /// Takes note of a batch that now ends the segment (appended, or found
    /// by a scan).
    pub fn note_batch(&mut self, batch: BatchInfo) {
        debug_assert_eq!(batch.position, self.size);
        if self.index.is_empty() || self.bytes_since_entry >= INDEX_INTERVAL_BYTES {
            self.index.push(IndexEntry {
                offset: batch.base_offset,
                position: batch.position,
                max_timestamp_before: self.max_timestamp,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch.size;
        self.size = batch.position + batch.size;
        self.last_offset = Some(batch.last_offset);
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.max_timestamp_offset = batch.base_offset;
        }
        self.first_timestamp.get_or_insert(batch.max_timestamp);
    }

    pub fn read_range(&self, position: u64, len: usize) -> io::Result<Bytes> {
        match &self.backing {
            Backing::File { file, .. } if len <= PREAD_BYTES_MAX => {
                // Small (a header window, a fetch at the tail): one pread
                // into a zeroed buffer costs less than a seek and a read.
                let mut buf = vec![0u8; len];
                std::os::unix::fs::FileExt::read_exact_at(&**file, &mut buf, position)?;
                Ok(Bytes::from(buf))
            }
            Backing::File { file, .. } => {
                // Read into uninitialised capacity (std's read_to_end does
                // that safely) rather than zeroing the buffer first: a
                // memset as large as every fetch. The cursor is this log's
                // alone (appends are O_APPEND, and every read and append
                // holds the partition's lock), so a seek then a read is as
                // good as a pread.
                let mut reader: &File = file;
                reader.seek(io::SeekFrom::Start(position))?;
                let mut buf = Vec::with_capacity(len);
                reader.take(len as u64).read_to_end(&mut buf)?;
                if buf.len() != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past a segment's end",
                    ));
                }
                Ok(Bytes::from(buf))
            }
            Backing::Memory(bytes) => {
                let range = usize::try_from(position)
                    .ok()
                    .and_then(|start| Some(start..start.checked_add(len)?))
                    .filter(|range| range.end <= bytes.len())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past a memory segment"))?;
                Ok(Bytes::copy_from_slice(&bytes[range]))
            }
        }
    }

    /// Calls `visit` with each batch from the one starting at `position`
    /// on, until it breaks or the segment ends. Reads headers only, in
    /// windows, trusting what was validated when the batch was appended or
    /// scanned.
    pub fn walk_headers(
        &self,
        position: u64,
        mut visit: impl FnMut(&BatchHeader, BatchInfo) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let mut window = Bytes::new();
        let mut window_start = position;
        let mut window_bytes = WALK_WINDOW_BYTES_MIN;
        let mut at = position;
        while at + BATCH_HEADER_BYTES as u64 <= self.size {
            let in_window = at >= window_start && at + BATCH_HEADER_BYTES as u64 <= window_start + window.len() as u64;
            if !in_window {
                let len = (self.size - at).min(window_bytes as u64) as usize;
                window = self.read_range(at, len)?;
                window_start = at;
                window_bytes = (window_bytes * 2).min(WALK_WINDOW_BYTES_MAX);
            }
            let offset_in_window = (at - window_start) as usize;
            let header = BatchHeader::parse(&window[offset_in_window..])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a stored batch header does not parse"))?;
            let batch = BatchInfo::stored(&header, at, self.size)?;
            if visit(&header, batch).is_break() {
                return Ok(());
            }
            at += batch.size;
        }
        Ok(())
    }

    /// The first batch, from `position` on, that `wanted` accepts.
    pub fn find_from(&self, position: u64, wanted: impl Fn(&BatchInfo) -> bool) -> io::Result<Option<BatchInfo>> {
        let mut found = None;
        self.walk_headers(position, |_, batch| {
            if wanted(&batch) {
                found = Some(batch);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }

    /// The batch holding `offset`, if this segment has it.
    pub fn locate(&self, offset: i64) -> io::Result<Option<BatchInfo>> {
        if self.last_offset.is_none_or(|last| last < offset) {
            return Ok(None);
        }
        let start = self.index.position_of_last(|e| e.offset <= offset);
        self.find_from(start, |b| b.last_offset >= offset)
    }

    /// The first batch at or after `position` whose largest timestamp is at
    /// least `timestamp`.
    pub fn find_by_time(&self, timestamp: i64, position: u64) -> io::Result<Option<BatchInfo>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        // Every batch before the last entry whose predecessors all stay
        // below `timestamp` can be skipped.
        let start = self
            .index
            .position_of_last(|e| e.max_timestamp_before < timestamp)
            .max(position);
        self.find_from(start, |b| b.max_timestamp >= timestamp)
    }

    /// Whole batches from the one holding `offset` on, up to `max_bytes`
    /// (with `min_one`, the first batch whole even when it is larger).
    /// One read from the index entry before `offset` usually covers both
    /// the walk to its batch and the batches returned.
    pub fn read_from_offset(&self, offset: i64, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        if self.last_offset.is_none_or(|last| last < offset) {
            return Ok(Bytes::new());
        }
        let entry = self.index.position_of_last(|e| e.offset <= offset);
        let span = (self.size - entry).min((2 * INDEX_INTERVAL_BYTES).saturating_add(max_bytes as u64));
        let bytes = self.read_range(entry, span as usize)?;
        let mut walked = 0usize;
        let first = loop {
            let Some(header) = bytes.get(walked..).and_then(BatchHeader::parse) else {
                // A batch larger than the read lies between: walk the file.
                return match self.locate(offset)? {
                    Some(batch) => self.read_whole_batches(batch.position, batch.size, max_bytes, min_one),
                    None => Ok(Bytes::new()),
                };
            };
            let batch = BatchInfo::stored(&header, entry + walked as u64, self.size)?;
            if batch.last_offset >= offset {
                break batch.size;
            }
            walked += batch.size as usize;
        };
        let start = entry + walked as u64;
        let want = ((self.size - start) as usize).min(max_bytes);
        if first as usize <= want && walked + want <= bytes.len() {
            return Ok(whole_batches(bytes.slice(walked..walked + want)));
        }
        self.read_whole_batches(start, first, max_bytes, min_one)
    }

    /// As [`read_from_offset`](Self::read_from_offset), but a large answer
    /// comes as a slice of the segment file, for the connection to send
    /// from the page cache without reading it. The slice ends at a batch
    /// boundary the segment already knows (an index entry, or its end), so
    /// finding it reads nothing past the batch holding `offset`; it may
    /// stop up to an index interval short of `max_bytes`. An answer shorter
    /// than `copy_below` is read instead (`FILE_SLICE_BYTES_MIN` is where
    /// reading starts to cost more; 0 reads nothing into memory).
    pub fn slice_from_offset(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        copy_below: usize,
    ) -> io::Result<FetchedRecords> {
        let Backing::File { file, .. } = &self.backing else {
            return self
                .read_from_offset(offset, max_bytes, min_one)
                .map(FetchedRecords::Bytes);
        };
        if max_bytes < copy_below {
            return self
                .read_from_offset(offset, max_bytes, min_one)
                .map(FetchedRecords::Bytes);
        }
        let Some(first) = self.locate(offset)? else {
            return Ok(FetchedRecords::default());
        };
        let limit = first.position.saturating_add(max_bytes as u64).min(self.size);
        let first_end = first.position + first.size;
        let end = if first_end > limit {
            if !min_one {
                return Ok(FetchedRecords::default());
            }
            first_end
        } else if self.size <= limit {
            self.size
        } else {
            // The last index entry at or before the limit starts a batch, so
            // everything before it is whole batches. An entry no further
            // than the first batch (a damaged index block answers with an
            // earlier one) would make every such slice one batch long: the
            // headers up to the limit are walked instead.
            let entry = self.index.position_of_last(|e| e.position <= limit);
            if entry > first.position {
                entry.max(first_end)
            } else {
                self.end_of_batches_within(first_end, limit)?
            }
        };
        let len = (end - first.position) as usize;
        if len < copy_below {
            return self.read_range(first.position, len).map(FetchedRecords::Bytes);
        }
        Ok(FetchedRecords::File(FileSlice {
            file: file.clone(),
            position: first.position,
            len,
        }))
    }

    /// The end of the last whole batch from `position` (a batch boundary)
    /// on that ends by `limit`; `position` itself if none does.
    fn end_of_batches_within(&self, position: u64, limit: u64) -> io::Result<u64> {
        let mut end = position;
        self.walk_headers(position, |_, batch| {
            if batch.position + batch.size > limit {
                return ControlFlow::Break(());
            }
            end = batch.position + batch.size;
            ControlFlow::Continue(())
        })?;
        Ok(end)
    }

    /// Whole batches from the one at `position` (of `first_size` bytes) on,
    /// up to `max_bytes`, read from the file.
    fn read_whole_batches(&self, position: u64, first_size: u64, max_bytes: usize, min_one: bool) -> io::Result<Bytes> {
        if first_size as usize > max_bytes {
            return if min_one {
                self.read_range(position, first_size as usize)
            } else {
                Ok(Bytes::new())
            };
        }
        let len = ((self.size - position) as usize).min(max_bytes);
        Ok(whole_batches(self.read_range(position, len)?))
    }

    /// The index file's bytes.
    pub fn encode_index(&self) -> io::Result<Vec<u8>> {
        let footer = IndexFooter {
            covered_bytes: self.size,
            last_offset: self.last_offset.unwrap_or(-1),
            max_timestamp: self.max_timestamp,
            max_timestamp_offset: self.max_timestamp_offset,
            first_timestamp: self.first_timestamp.unwrap_or(i64::MIN),
        };
        Ok(index::encode(&self.index.entries()?, &footer))
    }

    /// Takes the index from an index file's bytes (read whole: the active
    /// segment's) if they are whole and cover exactly `file_bytes` of
    /// segment; `false` leaves the segment as it was (empty), to be scanned.
    pub fn load_index(&mut self, bytes: &[u8], file_bytes: u64) -> bool {
        match index::decode(bytes) {
            Some((entries, footer)) => self.take_index(SparseIndex::Held(entries), &footer, file_bytes),
            None => false,
        }
    }

    /// As [`load_index`](Self::load_index) for a closed segment, whose
    /// index file in `dir` is read only as far as its summary: lookups
    /// read the rest as they need it.
    pub fn open_index_on_disk(&mut self, dir: &Path, file_bytes: u64) -> bool {
        let path = dir.join(index_file_name(self.base_offset));
        let opened = match SparseIndex::open(&path) {
            Ok(Some(opened)) => opened,
            Ok(None) => return false,
            Err(e) => {
                // Out of file descriptors, say: the scan that follows costs
                // the start time, so it should not go unexplained.
                tracing::warn!(path = %path.display(), error = %e, "cannot read a segment index; scanning the segment");
                return false;
            }
        };
        if !self.take_index(opened.index, &opened.footer, file_bytes) {
            return false;
        }
        if opened.earlier_format {
            // Written again with a summary, so that the next start reads
            // only that, and served from that file from now on.
            match self.write_index(dir) {
                Ok(()) => self.keep_index_on_disk(dir),
                Err(e) => tracing::warn!(error = %e, "could not write an index in the current format"),
            }
        }
        true
    }

    /// Takes `index` and the fields its footer gives, if they fit this
    /// segment: its base offset, its length, and entries inside it.
    fn take_index(&mut self, index: SparseIndex, footer: &IndexFooter, file_bytes: u64) -> bool {
        // The last offset must leave room for the next one.
        if footer.covered_bytes != file_bytes
            || (index.is_empty() != (footer.last_offset < 0))
            || footer.last_offset == i64::MAX
        {
            return false;
        }
        if index
            .first()
            .is_some_and(|e| e.offset != self.base_offset || e.position != 0)
        {
            return false;
        }
        let inside = index
            .last()
            .is_none_or(|e| e.position < footer.covered_bytes && e.offset <= footer.last_offset);
        if !inside {
            return false;
        }
        self.size = footer.covered_bytes;
        self.last_offset = (footer.last_offset >= 0).then_some(footer.last_offset);
        self.max_timestamp = footer.max_timestamp;
        self.max_timestamp_offset = footer.max_timestamp_offset;
        self.first_timestamp = (footer.first_timestamp != i64::MIN).then_some(footer.first_timestamp);
        // The interval restarts at the last entry: appends after a clean
        // start may index a little more densely, which is harmless.
        self.bytes_since_entry = index.last().map_or(0, |e| self.size - e.position);
        self.index = index;
        true
    }

    /// A closed segment's lookups read its entries from the index file in
    /// `dir` from now on, which must be this segment's (just written).
    /// Should that file not read back, the entries stay in memory.
    pub fn keep_index_on_disk(&mut self, dir: &Path) {
        let path = dir.join(index_file_name(self.base_offset));
        if let Err(e) = self.index.keep_on_disk(&path) {
            tracing::warn!(path = %path.display(), error = %e, "keeping a closed segment's index in memory");
        }
    }

    /// Whether the batches from the last index entry to the end are whole
    /// and intact, with dense offsets ending at `last_offset`: what a
    /// segment taken from its index at a clean start is checked for in
    /// place of a scan. It reads at most an index interval and one batch.
    pub fn tail_is_sound(&self) -> io::Result<bool> {
        let Some(entry) = self.index.last() else {
            return Ok(self.size == 0 && self.last_offset.is_none());
        };
        let Some(len) = self
            .size
            .checked_sub(entry.position)
            .filter(|len| *len <= TAIL_CHECK_BYTES_MAX)
            .and_then(|len| usize::try_from(len).ok())
        else {
            return Ok(false);
        };
        let tail = self.read_range(entry.position, len)?;
        let mut at = 0;
        let mut expected = entry.offset;
        while at < tail.len() {
            let Some(header) = BatchHeader::parse(&tail[at..]) else {
                return Ok(false);
            };
            let end = at + header.total_bytes();
            let whole = end <= tail.len() && header.batch_length >= (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
            if !(whole && header.base_offset == expected && is_intact(&header, &tail[at..end])) {
                return Ok(false);
            }
            let Some(next) = header.last_offset().checked_add(1) else {
                return Ok(false);
            };
            expected = next;
            at = end;
        }
        Ok(self
            .last_offset
            .is_some_and(|last| last.checked_add(1) == Some(expected)))
    }

    /// Writes this segment's index beside it (atomically).
    pub fn write_index(&self, dir: &Path) -> Result<(), super::StorageError> {
        let path = dir.join(index_file_name(self.base_offset));
        let bytes = self.encode_index().map_err(|e| super::StorageError::io(&path, e))?;
        super::write_atomically(&path, &bytes)
    }
}

/// Whether a stored batch (`bytes`, whole, with its parsed `header`) is
/// one this log could have written: magic 2, its CRC32C holds and its
/// offset delta is not negative.
pub fn is_intact(header: &BatchHeader, bytes: &[u8]) -> bool {
    header.magic == 2 && header.last_offset_delta >= 0 && batch_crc(bytes) == header.crc
}

/// The whole batches at the front of `bytes` (each one's length is at its
/// bytes 8..12).
fn whole_batches(bytes: Bytes) -> Bytes {
    let mut end = 0usize;
    while end + LOG_OVERHEAD_BYTES <= bytes.len() {
        let mut length = &bytes[end + 8..end + LOG_OVERHEAD_BYTES];
        let total = LOG_OVERHEAD_BYTES + length.get_i32().max(0) as usize;
        if end + total > bytes.len() {
            break;
        }
        end += total;
    }
    bytes.slice(..end)
}

fn damaged(position: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the stored batch at position {position} is damaged"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::tests::sample_batch;

    #[test]
    fn a_tail_checks_out_only_when_whole_intact_and_dense() {
        let segment = memory_segment(3, 2);
        assert!(segment.tail_is_sound().unwrap());

        let mut scribbled = memory_segment(3, 2);
        if let Backing::Memory(bytes) = &mut scribbled.backing {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        assert!(!scribbled.tail_is_sound().unwrap(), "a CRC that fails");

        let mut short = memory_segment(3, 2);
        short.last_offset = Some(4);
        assert!(!short.tail_is_sound().unwrap(), "offsets that end elsewhere");
    }

    #[test]
    fn a_batch_at_the_end_of_the_offset_range_is_refused_without_overflow() {
        let base = i64::MAX - 1;
        let mut batch = sample_batch(2).to_vec();
        batch[..8].copy_from_slice(&base.to_be_bytes());
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.last_offset(), i64::MAX);
        let mut segment = Segment::new(base, Backing::Memory(batch.clone()));
        segment.note_batch(BatchInfo::from_header(&header, 0));
        assert!(!segment.tail_is_sound().unwrap());
        let mut reloaded = Segment::new(base, Backing::Memory(batch));
        assert!(
            !reloaded.load_index(&segment.encode_index().unwrap(), segment.size),
            "an index whose last offset leaves no next one"
        );
    }

    /// A memory segment of `batches` sample batches of `records` each, with
    /// timestamps as the sample batch has them.
    fn memory_segment(batches: usize, records: usize) -> Segment {
        let mut segment = Segment::new(0, Backing::Memory(Vec::new()));
        let mut offset = 0i64;
        for _ in 0..batches {
            let mut batch = sample_batch(records).to_vec();
            batch[..8].copy_from_slice(&offset.to_be_bytes());
            let header = BatchHeader::parse(&batch).unwrap();
            let info = BatchInfo::from_header(&header, segment.size);
            if let Backing::Memory(bytes) = &mut segment.backing {
                bytes.extend_from_slice(&batch);
            }
            segment.note_batch(info);
            offset = header.last_offset() + 1;
        }
        segment
    }

    #[test]
    fn the_index_is_sparse_and_lookups_find_every_offset() {
        let segment = memory_segment(2000, 3);
        let batch_bytes = sample_batch(3).len() as u64;
        let expected_entries = (2000 * batch_bytes).div_ceil(INDEX_INTERVAL_BYTES + batch_bytes - 1);
        assert!(
            segment.index_entries_held() as u64 <= expected_entries + 1,
            "{} entries",
            segment.index_entries_held()
        );
        for offset in [0, 1, 2, 3, 2999, 5998, 5999] {
            let batch = segment.locate(offset).unwrap().unwrap();
            assert!(batch.base_offset <= offset && offset <= batch.last_offset, "{offset}");
            assert_eq!(batch.position, (batch.base_offset / 3) as u64 * batch_bytes);
        }
        assert!(segment.locate(6000).unwrap().is_none());
    }

    #[test]
    fn reads_keep_whole_batches() {
        let segment = memory_segment(10, 2);
        let batch_bytes = sample_batch(2).len();
        let read = segment.read_from_offset(3, batch_bytes * 3 + 5, false).unwrap();
        assert_eq!(read.len(), batch_bytes * 3);
        assert_eq!(BatchHeader::parse(&read).unwrap().base_offset, 2);
        assert!(segment.read_from_offset(0, 5, false).unwrap().is_empty());
        assert_eq!(segment.read_from_offset(0, 5, true).unwrap().len(), batch_bytes);
        assert_eq!(
            segment.read_from_offset(19, usize::MAX, false).unwrap().len(),
            batch_bytes
        );
        assert!(segment.read_from_offset(20, usize::MAX, true).unwrap().is_empty());
    }

    #[test]
    fn an_index_file_round_trips_and_refuses_damage() {
        let segment = memory_segment(500, 2);
        let bytes = segment.encode_index().unwrap();
        let mut loaded = Segment::new(0, Backing::Memory(Vec::new()));
        assert!(loaded.load_index(&bytes, segment.size));
        assert_eq!(loaded.index.entries().unwrap(), segment.index.entries().unwrap());
        assert_eq!(
            (loaded.size, loaded.last_offset, loaded.max_timestamp),
            (segment.size, segment.last_offset, segment.max_timestamp)
        );
        let mut other = Segment::new(0, Backing::Memory(Vec::new()));
        assert!(!other.load_index(&bytes, segment.size + 1), "covers another length");
        let mut scribbled = bytes.clone();
        scribbled[10] ^= 1;
        assert!(!other.load_index(&scribbled, segment.size), "CRC");
        assert!(!other.load_index(&bytes[..bytes.len() - 1], segment.size), "torn");
        assert!(other.is_empty());
    }
}
