//! A segment's sparse index and its file.
//!
//! An entry names a batch: its base offset, its position, and the largest
//! timestamp of the batches before it. All three only grow along the index,
//! so every lookup is "the last entry for which this holds", a binary
//! search, followed by a walk of batch headers from that entry's batch.
//!
//! The active segment holds its entries in memory, as it appends them. A
//! closed segment holds only its summary: the first entry of every block of
//! [`SUMMARY_STRIDE`] entries, with the block's CRC32C. A lookup searches
//! the summary, then reads that one block (at most 3 KiB, from the page
//! cache once read) from the index file and checks its CRC. What the broker
//! holds for a log is then 28 bytes per 128 entries of a closed segment
//! (per 512 KiB of log or more) rather than 24 bytes per 4 KiB, and a start
//! reads only each closed index's summary, not the whole file: Kafka maps
//! its index files and loads them lazily for the same two reasons.
//!
//! A block that fails its check (the file was changed under the broker, or
//! could not be read) is not needed for a right answer, only a fast one:
//! the lookup answers with the block's first entry, an earlier batch, and
//! the walk from there finds the same batch.
//!
//! The file (`MKI2`): the magic, the entries (24 bytes each), the summary
//! (per block its first entry and the CRC32C of its entries), then a footer:
//! what the segment's own fields need at a start without a scan (the
//! segment bytes covered, last offset, largest timestamp and its offset, the
//! first batch's timestamp), the last entry, the entry count, and a CRC32C
//! of the summary and footer. `MKI1` files, written before there was a
//! summary (entries, then the footer without the last entry, and a CRC32C of
//! the whole file), are still read, whole.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BufMut};

const MAGIC: &[u8; 4] = b"MKI2";
const MAGIC_V1: &[u8; 4] = b"MKI1";
const ENTRY_BYTES: usize = 24;
/// A block's first entry and the CRC32C of its entries.
const SUMMARY_ENTRY_BYTES: usize = ENTRY_BYTES + 4;
/// covered bytes, last offset, max timestamp, its offset, first timestamp,
/// the last entry, entry count, CRC32C.
const FOOTER_BYTES: usize = 8 * 5 + ENTRY_BYTES + 4 + 4;
/// As above, without the last entry.
const FOOTER_BYTES_V1: usize = 8 * 5 + 4 + 4;
/// A closed segment keeps the first of every this many entries in memory;
/// a lookup reads at most this many from the file.
pub const SUMMARY_STRIDE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    /// The base offset of the batch that starts at `position`.
    pub offset: i64,
    pub position: u64,
    /// The largest timestamp among the batches before `position`
    /// (`i64::MIN` before the first).
    pub max_timestamp_before: i64,
}

impl IndexEntry {
    fn put(&self, out: &mut impl BufMut) {
        out.put_i64(self.offset);
        out.put_u64(self.position);
        out.put_i64(self.max_timestamp_before);
    }

    fn get(bytes: &mut impl Buf) -> Self {
        IndexEntry {
            offset: bytes.get_i64(),
            position: bytes.get_u64(),
            max_timestamp_before: bytes.get_i64(),
        }
    }

    /// Whether `next` may follow this entry.
    fn precedes(&self, next: &IndexEntry) -> bool {
        self.offset < next.offset
            && self.position < next.position
            && self.max_timestamp_before <= next.max_timestamp_before
    }
}

/// What an index file says of its segment, beside the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFooter {
    pub covered_bytes: u64,
    /// -1 for an empty segment.
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub max_timestamp_offset: i64,
    /// `i64::MIN` for an empty segment.
    pub first_timestamp: i64,
}

impl IndexFooter {
    fn put(&self, out: &mut impl BufMut) {
        out.put_u64(self.covered_bytes);
        out.put_i64(self.last_offset);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.max_timestamp_offset);
        out.put_i64(self.first_timestamp);
    }

    fn get(bytes: &mut impl Buf) -> Self {
        IndexFooter {
            covered_bytes: bytes.get_u64(),
            last_offset: bytes.get_i64(),
            max_timestamp: bytes.get_i64(),
            max_timestamp_offset: bytes.get_i64(),
            first_timestamp: bytes.get_i64(),
        }
    }
}

/// Whether entries only grow.
pub fn ordered(entries: &[IndexEntry]) -> bool {
    entries.windows(2).all(|w| w[0].precedes(&w[1]))
}

fn blocks(entries: usize) -> usize {
    entries.div_ceil(SUMMARY_STRIDE)
}

/// Where entry `i` starts in the file.
fn entry_position(i: usize) -> u64 {
    MAGIC.len() as u64 + i as u64 * ENTRY_BYTES as u64
}

/// The length of an `MKI2` file of `count` entries.
fn file_len(count: usize) -> u64 {
    entry_position(count) + (blocks(count) * SUMMARY_ENTRY_BYTES + FOOTER_BYTES) as u64
}

/// The bytes of block `block` (of `len` entries) in a whole file's `bytes`.
fn block_bytes(bytes: &[u8], block: usize, len: usize) -> Option<&[u8]> {
    let start = entry_position(block * SUMMARY_STRIDE) as usize;
    bytes.get(start..start + len * ENTRY_BYTES)
}

/// An index file's bytes.
pub fn encode(entries: &[IndexEntry], footer: &IndexFooter) -> Vec<u8> {
    let summary_len = blocks(entries.len()) * SUMMARY_ENTRY_BYTES;
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * ENTRY_BYTES + summary_len + FOOTER_BYTES);
    out.put_slice(MAGIC);
    for entry in entries {
        entry.put(&mut out);
    }
    let tail_start = out.len();
    for (block, chunk) in entries.chunks(SUMMARY_STRIDE).enumerate() {
        let crc = block_bytes(&out, block, chunk.len()).map_or(0, crc32c::crc32c);
        chunk[0].put(&mut out);
        out.put_u32(crc);
    }
    footer.put(&mut out);
    entries.last().copied().unwrap_or_default().put(&mut out);
    out.put_u32(entries.len() as u32);
    let crc = crc32c::crc32c(&out[tail_start..]);
    out.put_u32(crc);
    out
}

/// An index file's entries and footer, read whole, if every check holds:
/// magic, CRCs, counts, the summary against the entries, and entries that
/// only grow. Whether it fits its segment is the segment's to check.
pub fn decode(bytes: &[u8]) -> Option<(Vec<IndexEntry>, IndexFooter)> {
    let (entries, footer) = match bytes.get(..MAGIC.len())? {
        magic if magic == MAGIC => {
            let count = footer_count(bytes)?;
            let entries_end = entry_position(count) as usize;
            let tail = Tail::decode(bytes.get(entries_end..)?)?;
            let entries = decode_entries(&bytes[MAGIC.len()..entries_end]);
            let blocks_hold = entries.chunks(SUMMARY_STRIDE).enumerate().all(|(block, chunk)| {
                let crc = block_bytes(bytes, block, chunk.len()).map(crc32c::crc32c);
                tail.summary[block] == chunk[0] && Some(tail.block_crcs[block]) == crc
            });
            if !(blocks_hold && entries.last() == tail.last.as_ref()) {
                return None;
            }
            (entries, tail.footer)
        }
        magic if magic == MAGIC_V1 => decode_v1(bytes)?,
        _ => return None,
    };
    ordered(&entries).then_some((entries, footer))
}

fn decode_entries(mut bytes: &[u8]) -> Vec<IndexEntry> {
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
    while bytes.len() >= ENTRY_BYTES {
        entries.push(IndexEntry::get(&mut bytes));
    }
    entries
}

/// The entry count an `MKI2` file's footer gives, if the file is long
/// enough to hold that many.
fn footer_count(bytes: &[u8]) -> Option<usize> {
    let count_at = bytes.len().checked_sub(8)?;
    let count = (&bytes[count_at..]).get_u32() as usize;
    (bytes.len() as u64 == file_len(count)).then_some(count)
}

fn decode_v1(bytes: &[u8]) -> Option<(Vec<IndexEntry>, IndexFooter)> {
    let body_len = bytes.len().checked_sub(4)?;
    if bytes.len() < MAGIC_V1.len() + FOOTER_BYTES_V1 {
        return None;
    }
    let crc = (&bytes[body_len..]).get_u32();
    if crc32c::crc32c(&bytes[..body_len]) != crc {
        return None;
    }
    let entries_len = bytes.len() - MAGIC_V1.len() - FOOTER_BYTES_V1;
    if !entries_len.is_multiple_of(ENTRY_BYTES) {
        return None;
    }
    let entries = decode_entries(&bytes[MAGIC_V1.len()..MAGIC_V1.len() + entries_len]);
    let mut footer_bytes = &bytes[MAGIC_V1.len() + entries_len..];
    let footer = IndexFooter::get(&mut footer_bytes);
    (footer_bytes.get_u32() as usize == entries.len()).then_some((entries, footer))
}

/// An `MKI2` file's summary and footer.
struct Tail {
    footer: IndexFooter,
    last: Option<IndexEntry>,
    summary: Vec<IndexEntry>,
    block_crcs: Vec<u32>,
}

impl Tail {
    /// From the bytes after the entries, if their CRC holds and the
    /// summary only grows, up to the last entry.
    fn decode(bytes: &[u8]) -> Option<Tail> {
        let body_len = bytes.len().checked_sub(4)?;
        let footer_start = bytes.len().checked_sub(FOOTER_BYTES)?;
        if crc32c::crc32c(&bytes[..body_len]) != (&bytes[body_len..]).get_u32() {
            return None;
        }
        let mut footer_bytes = &bytes[footer_start..];
        let footer = IndexFooter::get(&mut footer_bytes);
        let last = IndexEntry::get(&mut footer_bytes);
        let count = footer_bytes.get_u32() as usize;
        if footer_start != blocks(count) * SUMMARY_ENTRY_BYTES {
            return None;
        }
        let mut summary_bytes = &bytes[..footer_start];
        let mut summary = Vec::with_capacity(blocks(count));
        let mut block_crcs = Vec::with_capacity(blocks(count));
        while summary_bytes.has_remaining() {
            summary.push(IndexEntry::get(&mut summary_bytes));
            block_crcs.push(summary_bytes.get_u32());
        }
        let last = (count > 0).then_some(last);
        let reaches_last = match (summary.last(), last) {
            (Some(first_of_last_block), Some(last)) => {
                // The last block holds the rest: at least one entry, at most a stride.
                let in_last_block = count - (summary.len() - 1) * SUMMARY_STRIDE;
                if in_last_block == 1 {
                    *first_of_last_block == last
                } else {
                    first_of_last_block.precedes(&last)
                }
            }
            (None, None) => true,
            _ => false,
        };
        (ordered(&summary) && reaches_last).then_some(Tail {
            footer,
            last,
            summary,
            block_crcs,
        })
    }
}

pub enum SparseIndex {
    /// Every entry in memory: the active segment, a segment in memory, or
    /// a closed one whose index file could not be written or opened.
    Held(Vec<IndexEntry>),
    /// A closed segment's summary, the rest read from its file as lookups
    /// need it.
    OnDisk(OnDiskIndex),
}

/// What [`SparseIndex::open`] found.
pub struct OpenedIndex {
    pub index: SparseIndex,
    pub footer: IndexFooter,
    /// The file is `MKI1`: read whole, its entries held, and worth writing
    /// again.
    pub earlier_format: bool,
}

pub struct OnDiskIndex {
    /// Open for as long as the segment is, so that a removal of the file
    /// (a failed fsync takes away the indexes it covered) does not take
    /// the entries from this process, which still describe the segment.
    file: File,
    path: std::path::PathBuf,
    len: usize,
    /// Entries 0, [`SUMMARY_STRIDE`], 2 × [`SUMMARY_STRIDE`], …
    summary: Vec<IndexEntry>,
    /// The CRC32C of each block's entries, as the file has them.
    block_crcs: Vec<u32>,
    last: IndexEntry,
    /// A block failed its check: logged, and the file removed, once.
    failed: AtomicBool,
}

impl Default for SparseIndex {
    fn default() -> Self {
        SparseIndex::Held(Vec::new())
    }
}

impl SparseIndex {
    /// A closed segment's index from its file at `path`: only the summary
    /// and footer are read. `None` if the file is missing or fails a check;
    /// an error if it cannot be read. An `MKI1` file is read whole and its
    /// entries held, for the segment to write them again as `MKI2`.
    pub fn open(path: &Path) -> io::Result<Option<OpenedIndex>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file_bytes = file.metadata()?.len();
        if file_bytes < (MAGIC.len() + FOOTER_BYTES_V1) as u64 {
            return Ok(None);
        }
        let mut magic = [0u8; 4];
        file.read_exact_at(&mut magic, 0)?;
        if &magic == MAGIC_V1 {
            let mut bytes = vec![0u8; usize::try_from(file_bytes).map_err(io::Error::other)?];
            file.read_exact_at(&mut bytes, 0)?;
            return Ok(decode(&bytes).map(|(entries, footer)| OpenedIndex {
                index: SparseIndex::Held(entries),
                footer,
                earlier_format: true,
            }));
        }
        if &magic != MAGIC {
            return Ok(None);
        }
        let mut count = [0u8; 4];
        file.read_exact_at(&mut count, file_bytes - 8)?;
        let count = u32::from_be_bytes(count) as usize;
        // The length the count implies, before reading anything that long.
        if file_len(count) != file_bytes {
            return Ok(None);
        }
        let tail_start = entry_position(count);
        let mut tail = vec![0u8; (file_bytes - tail_start) as usize];
        file.read_exact_at(&mut tail, tail_start)?;
        let Some(tail) = Tail::decode(&tail) else {
            return Ok(None);
        };
        let index = match tail.last {
            None => SparseIndex::Held(Vec::new()),
            Some(last) => SparseIndex::OnDisk(OnDiskIndex {
                file,
                path: path.to_path_buf(),
                len: count,
                summary: tail.summary,
                block_crcs: tail.block_crcs,
                last,
                failed: AtomicBool::new(false),
            }),
        };
        Ok(Some(OpenedIndex {
            index,
            footer: tail.footer,
            earlier_format: false,
        }))
    }

    pub fn len(&self) -> usize {
        match self {
            SparseIndex::Held(entries) => entries.len(),
            SparseIndex::OnDisk(index) => index.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in memory.
    pub fn held(&self) -> usize {
        match self {
            SparseIndex::Held(entries) => entries.len(),
            SparseIndex::OnDisk(index) => index.summary.len(),
        }
    }

    /// Bytes of entries in memory (a summary entry holds its block's CRC
    /// too).
    pub fn bytes_held(&self) -> usize {
        match self {
            SparseIndex::Held(entries) => entries.len() * ENTRY_BYTES,
            SparseIndex::OnDisk(index) => index.summary.len() * SUMMARY_ENTRY_BYTES,
        }
    }

    pub fn first(&self) -> Option<IndexEntry> {
        match self {
            SparseIndex::Held(entries) => entries.first().copied(),
            SparseIndex::OnDisk(index) => index.summary.first().copied(),
        }
    }

    pub fn last(&self) -> Option<IndexEntry> {
        match self {
            SparseIndex::Held(entries) => entries.last().copied(),
            SparseIndex::OnDisk(index) => Some(index.last),
        }
    }

    /// Adds an entry after the last. Only the active segment takes
    /// entries, and its index is held; one on disk is read back first.
    pub fn push(&mut self, entry: IndexEntry) {
        if let SparseIndex::OnDisk(_) = self {
            // Our own invariant, not input: debug builds stop on it, while
            // a release build reads the entries back and carries on.
            debug_assert!(false, "an entry for a closed segment's index");
            match self.entries() {
                Ok(entries) => *self = SparseIndex::Held(entries.into_owned()),
                // Without the entry, lookups past it walk further: slower,
                // not wrong.
                Err(_) => return,
            }
        }
        if let SparseIndex::Held(entries) = self {
            entries.push(entry);
        }
    }

    /// Every entry (from the file, for a closed segment).
    pub fn entries(&self) -> io::Result<Cow<'_, [IndexEntry]>> {
        match self {
            SparseIndex::Held(entries) => Ok(Cow::Borrowed(entries)),
            SparseIndex::OnDisk(index) => {
                let mut entries = Vec::with_capacity(index.len);
                for block in 0..index.summary.len() {
                    let read = index.read_block(block).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "a segment index block fails its check")
                    })?;
                    entries.extend(read);
                }
                Ok(Cow::Owned(entries))
            }
        }
    }

    /// The position of the last entry for which `holds` is true, 0 when
    /// there is none. `holds` must be true for a prefix of the entries,
    /// as "offset at most", "position at most" and "timestamps before
    /// below" are. On disk, a block that fails its check answers with its
    /// first entry: an earlier batch, from which a walk finds the same one.
    pub fn position_of_last(&self, holds: impl Fn(&IndexEntry) -> bool) -> u64 {
        let position_in = |entries: &[IndexEntry]| {
            let at = entries.partition_point(&holds);
            at.checked_sub(1).and_then(|i| entries.get(i)).map_or(0, |e| e.position)
        };
        match self {
            SparseIndex::Held(entries) => position_in(entries),
            SparseIndex::OnDisk(index) => {
                let Some(block) = index.summary.partition_point(&holds).checked_sub(1) else {
                    return 0;
                };
                let first = index.summary[block];
                if index.block_len(block) == 1 {
                    return first.position;
                }
                match index.read_block(block) {
                    Some(entries) => position_in(&entries),
                    None => {
                        index.note_failure(block);
                        first.position
                    }
                }
            }
        }
    }

    /// Serves lookups from the index file at `path` from now on, holding
    /// only the summary. The file must be this index's (just written);
    /// one that is not stays unused.
    pub fn keep_on_disk(&mut self, path: &Path) -> io::Result<()> {
        let SparseIndex::Held(entries) = self else {
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let summary_holds = |index: &SparseIndex| match index {
            SparseIndex::OnDisk(on_disk) => on_disk.summary.iter().eq(entries.iter().step_by(SUMMARY_STRIDE)),
            SparseIndex::Held(_) => false,
        };
        match SparseIndex::open(path)? {
            Some(opened)
                if opened.index.len() == entries.len()
                    && opened.index.last() == entries.last().copied()
                    && summary_holds(&opened.index) =>
            {
                *self = opened.index;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the index file just written does not read back",
            )),
        }
    }
}

impl OnDiskIndex {
    fn block_len(&self, block: usize) -> usize {
        (self.len - block * SUMMARY_STRIDE).min(SUMMARY_STRIDE)
    }

    /// Block `block`'s entries, if they read and hold their CRC, begin
    /// with its summary entry, only grow, and end before the next block (or
    /// at the last entry).
    fn read_block(&self, block: usize) -> Option<Vec<IndexEntry>> {
        let mut bytes = [0u8; SUMMARY_STRIDE * ENTRY_BYTES];
        let bytes = &mut bytes[..self.block_len(block) * ENTRY_BYTES];
        self.file
            .read_exact_at(bytes, entry_position(block * SUMMARY_STRIDE))
            .ok()?;
        if crc32c::crc32c(bytes) != *self.block_crcs.get(block)? {
            return None;
        }
        let entries = decode_entries(bytes);
        let ends_in_place = match (entries.last(), self.summary.get(block + 1)) {
            (Some(last), Some(next)) => last.precedes(next),
            (Some(last), None) => *last == self.last,
            (None, _) => false,
        };
        (entries.first() == self.summary.get(block) && ends_in_place && ordered(&entries)).then_some(entries)
    }

    /// The first failed block check: logged, and the file removed so that
    /// the next start rebuilds it from the segment (this process keeps
    /// reading the file it has open, and walks past the damage). The
    /// directory is not synced: should the removal not survive a crash, the
    /// damage is found again, as it was this time.
    fn note_failure(&self, block: usize) {
        if self.failed.swap(true, Ordering::Relaxed) {
            return;
        }
        let removed = std::fs::remove_file(&self.path);
        tracing::warn!(
            path = %self.path.display(),
            block,
            removed = removed.is_ok(),
            "a segment index block fails its check; lookups in it walk from its first entry, and the next start rebuilds the index"
        );
    }
}

/// Makes an `MKI2` file's CRCs match its bytes, when its length fits its
/// entry count: for the fuzz target, to reach the checks past the CRCs.
#[doc(hidden)]
pub fn reseal(bytes: &mut [u8]) {
    let Some(count) = footer_count(bytes) else { return };
    if bytes.get(..MAGIC.len()) != Some(MAGIC) {
        return;
    }
    let tail_start = entry_position(count) as usize;
    for block in 0..blocks(count) {
        let len = (count - block * SUMMARY_STRIDE).min(SUMMARY_STRIDE);
        let crc = block_bytes(bytes, block, len).map_or(0, crc32c::crc32c);
        let at = tail_start + block * SUMMARY_ENTRY_BYTES + ENTRY_BYTES;
        bytes[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    let crc_at = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[tail_start..crc_at]);
    bytes[crc_at..].copy_from_slice(&crc.to_be_bytes());
}

/// A file as the format before the summary had it (for tests).
#[cfg(test)]
pub(crate) fn encode_v1(entries: &[IndexEntry], footer: &IndexFooter) -> Vec<u8> {
    let mut out = MAGIC_V1.to_vec();
    entries.iter().for_each(|e| e.put(&mut out));
    footer.put(&mut out);
    out.put_u32(entries.len() as u32);
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(count: usize) -> Vec<IndexEntry> {
        (0..count)
            .map(|i| IndexEntry {
                offset: i as i64 * 10,
                position: i as u64 * 4096,
                max_timestamp_before: if i == 0 { i64::MIN } else { i as i64 * 100 },
            })
            .collect()
    }

    fn footer(entries: &[IndexEntry]) -> IndexFooter {
        IndexFooter {
            covered_bytes: entries.len() as u64 * 4096,
            last_offset: entries.len() as i64 * 10 - 1,
            max_timestamp: entries.len() as i64 * 100,
            max_timestamp_offset: 0,
            first_timestamp: 100,
        }
    }

    /// The same index, held and on disk.
    fn both(count: usize, dir: &Path) -> (SparseIndex, SparseIndex) {
        let entries = entries(count);
        let path = dir.join("0.index");
        std::fs::write(&path, encode(&entries, &footer(&entries))).unwrap();
        let mut on_disk = SparseIndex::Held(entries.clone());
        on_disk.keep_on_disk(&path).unwrap();
        (SparseIndex::Held(entries), on_disk)
    }

    #[test]
    fn lookups_on_disk_answer_as_the_held_entries_do() {
        let dir = tempfile::tempdir().unwrap();
        for count in [
            1,
            2,
            SUMMARY_STRIDE - 1,
            SUMMARY_STRIDE,
            SUMMARY_STRIDE + 1,
            3 * SUMMARY_STRIDE + 7,
        ] {
            let (held, on_disk) = both(count, dir.path());
            assert!(matches!(on_disk, SparseIndex::OnDisk(_)));
            assert_eq!(on_disk.held(), count.div_ceil(SUMMARY_STRIDE));
            assert_eq!((on_disk.len(), on_disk.last()), (held.len(), held.last()));
            assert_eq!(on_disk.entries().unwrap(), held.entries().unwrap());
            for target in -1..=(count as i64 * 10 + 1) {
                let by_offset = |e: &IndexEntry| e.offset <= target;
                let by_position = |e: &IndexEntry| e.position <= target.max(0) as u64 * 410;
                let by_time = |e: &IndexEntry| e.max_timestamp_before < target * 10;
                for (what, found) in [
                    (
                        "offset",
                        (held.position_of_last(by_offset), on_disk.position_of_last(by_offset)),
                    ),
                    (
                        "position",
                        (
                            held.position_of_last(by_position),
                            on_disk.position_of_last(by_position),
                        ),
                    ),
                    (
                        "time",
                        (held.position_of_last(by_time), on_disk.position_of_last(by_time)),
                    ),
                ] {
                    assert_eq!(found.0, found.1, "{count} entries, {what} {target}");
                }
            }
        }
    }

    #[test]
    fn a_block_changed_after_it_was_read_answers_with_its_first_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (_, on_disk) = both(3 * SUMMARY_STRIDE, dir.path());
        let path = dir.path().join("0.index");
        assert_eq!(on_disk.position_of_last(|e| e.offset <= 2005), 200 * 4096);
        // Entry 200's offset lowered to 1999: still in order, so only the
        // block's CRC can tell.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&1999i64.to_be_bytes(), entry_position(200)).unwrap();
        assert_eq!(
            on_disk.position_of_last(|e| e.offset <= 2005),
            SUMMARY_STRIDE as u64 * 4096,
            "the block's first entry, before the batch looked for"
        );
        assert_eq!(
            on_disk.position_of_last(|e| e.offset <= 1005),
            100 * 4096,
            "other blocks answer"
        );
        assert!(!path.exists(), "removed, for the next start to rebuild");
        assert!(on_disk.entries().is_err());
        file.set_len(10).unwrap();
        assert_eq!(
            on_disk.position_of_last(|e| e.offset <= 2605),
            2 * SUMMARY_STRIDE as u64 * 4096,
            "a cut file: the block's first entry"
        );
    }

    #[test]
    fn a_start_reads_the_summary_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let entries = entries(3 * SUMMARY_STRIDE + 7);
        let bytes = encode(&entries, &footer(&entries));
        let path = dir.path().join("0.index");
        let write = |bytes: &[u8]| std::fs::write(&path, bytes).unwrap();
        write(&bytes);
        let opened = SparseIndex::open(&path).unwrap().unwrap();
        assert!(!opened.earlier_format);
        let (index, read_footer) = (opened.index, opened.footer);
        assert_eq!(
            (index.held(), index.len(), read_footer),
            (4, entries.len(), footer(&entries))
        );
        assert_eq!(
            (index.first(), index.last()),
            (entries.first().copied(), entries.last().copied())
        );

        // Damage among the entries is found by the lookups, not at start.
        let mut in_entries = bytes.clone();
        in_entries[30] ^= 1;
        write(&in_entries);
        assert!(SparseIndex::open(&path).unwrap().is_some());
        assert_eq!(decode(&in_entries), None, "read whole, it fails");

        let last_byte = bytes.len() - 1;
        for (what, at) in [
            ("the summary", bytes.len() - FOOTER_BYTES - 3),
            ("the footer", last_byte - 20),
        ] {
            let mut scribbled = bytes.clone();
            scribbled[at] ^= 1;
            write(&scribbled);
            assert!(SparseIndex::open(&path).unwrap().is_none(), "{what}");
        }
        write(&bytes[..bytes.len() - 1]);
        assert!(SparseIndex::open(&path).unwrap().is_none(), "torn");
        write(b"MKI2");
        assert!(SparseIndex::open(&path).unwrap().is_none(), "short");
        std::fs::remove_file(&path).unwrap();
        assert!(SparseIndex::open(&path).unwrap().is_none(), "missing");
    }

    #[test]
    fn a_resealed_file_passes_its_crcs_and_meets_the_checks_behind_them() {
        let entries = entries(300);
        let mut bytes = encode(&entries, &footer(&entries));
        let sound = bytes.clone();
        reseal(&mut bytes);
        assert_eq!(bytes, sound, "a sound file is left as it is");
        // Entry 1's offset, below entry 0's: the CRCs hold once resealed,
        // and the order check refuses it.
        bytes[4 + 24..4 + 32].copy_from_slice(&(-5i64).to_be_bytes());
        reseal(&mut bytes);
        assert_eq!(decode(&bytes), None);
    }

    #[test]
    fn files_round_trip_and_the_format_before_the_summary_still_reads() {
        let entries = entries(500);
        let footer = footer(&entries);
        for (format, bytes) in [
            ("MKI2", encode(&entries, &footer)),
            ("MKI1", encode_v1(&entries, &footer)),
        ] {
            assert_eq!(decode(&bytes), Some((entries.clone(), footer)), "{format}");
            let mut scribbled = bytes.clone();
            scribbled[10] ^= 1;
            assert_eq!(decode(&scribbled), None, "{format}: CRC");
            assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "{format}: torn");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("0.index");
            std::fs::write(&path, &bytes).unwrap();
            let opened = SparseIndex::open(&path).unwrap().unwrap();
            assert_eq!(opened.earlier_format, format == "MKI1");
            let (index, read_footer) = (opened.index, opened.footer);
            // MKI1 entries are held, for the segment to write them again.
            let held = if format == "MKI1" { entries.len() } else { 4 };
            assert_eq!((index.held(), read_footer), (held, footer), "{format}");
            assert_eq!(index.entries().unwrap(), &entries[..], "{format}");
            assert_eq!(index.position_of_last(|e| e.offset <= 3333), 333 * 4096, "{format}");
        }
        let empty = encode(&[], &footer);
        assert_eq!(decode(&empty), Some((Vec::new(), footer)));
        assert!(!ordered(&[entries[1], entries[0]]));
        let unordered = encode(&[entries[1], entries[0]], &footer);
        assert_eq!(decode(&unordered), None, "entries that do not grow");
    }
}
