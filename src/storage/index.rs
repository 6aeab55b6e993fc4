//! A segment's sparse index and its file.
//!
//! An entry names a batch: its base offset, its position, and the largest
//! timestamp of the batches before it. All three only grow along the index,
//! so every lookup is "the last entry for which this holds", a binary
//! search.
//!
//! The active segment holds its entries in memory, as it appends them. A
//! closed segment's entries are in its index file, and memory keeps only
//! every [`SUMMARY_STRIDE`]th one: a lookup searches that summary, then
//! reads the one block of entries between two of its entries (at most 3 KiB,
//! from the page cache once read). What the broker holds for a log is then
//! 1/128 of its index, 24 bytes per 512 KiB or more of closed segment,
//! rather than growing by 24 bytes per 4 KiB of data stored; Kafka maps its
//! index files for the same reason.
//!
//! The file: a magic `MKI1`, the entries (24 bytes each), then a footer with
//! what the segment's own fields need at a start without a scan (the
//! segment bytes covered, last offset, largest timestamp and its offset,
//! the first batch's timestamp), the entry count and a CRC32C of everything
//! before it.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::{Buf, BufMut};

const INDEX_MAGIC: &[u8; 4] = b"MKI1";
const INDEX_ENTRY_BYTES: usize = 24;
/// covered bytes, last offset, max timestamp, its offset, first timestamp,
/// entry count, CRC32C.
const INDEX_FOOTER_BYTES: usize = 8 * 5 + 4 + 4;
/// A closed segment keeps every this many entries in memory; a lookup reads
/// at most this many from the file.
pub const SUMMARY_STRIDE: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// An index file's bytes.
pub fn encode(entries: &[IndexEntry], footer: &IndexFooter) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_MAGIC.len() + entries.len() * INDEX_ENTRY_BYTES + INDEX_FOOTER_BYTES);
    out.put_slice(INDEX_MAGIC);
    for entry in entries {
        entry.put(&mut out);
    }
    out.put_u64(footer.covered_bytes);
    out.put_i64(footer.last_offset);
    out.put_i64(footer.max_timestamp);
    out.put_i64(footer.max_timestamp_offset);
    out.put_i64(footer.first_timestamp);
    out.put_u32(entries.len() as u32);
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out
}

/// An index file's entries and footer, if its bytes are whole: the magic,
/// the CRC and the entry count hold. Whether it fits its segment is the
/// segment's to check.
pub fn decode(bytes: &[u8]) -> Option<(Vec<IndexEntry>, IndexFooter)> {
    let body_len = bytes.len().checked_sub(4)?;
    if bytes.len() < INDEX_MAGIC.len() + INDEX_FOOTER_BYTES || &bytes[..4] != INDEX_MAGIC {
        return None;
    }
    let crc = (&bytes[body_len..]).get_u32();
    if crc32c::crc32c(&bytes[..body_len]) != crc {
        return None;
    }
    let entries_len = bytes.len() - INDEX_MAGIC.len() - INDEX_FOOTER_BYTES;
    if !entries_len.is_multiple_of(INDEX_ENTRY_BYTES) {
        return None;
    }
    let mut entries_bytes = &bytes[INDEX_MAGIC.len()..INDEX_MAGIC.len() + entries_len];
    let mut entries = Vec::with_capacity(entries_len / INDEX_ENTRY_BYTES);
    while entries_bytes.has_remaining() {
        entries.push(IndexEntry::get(&mut entries_bytes));
    }
    let mut footer_bytes = &bytes[INDEX_MAGIC.len() + entries_len..];
    let footer = IndexFooter {
        covered_bytes: footer_bytes.get_u64(),
        last_offset: footer_bytes.get_i64(),
        max_timestamp: footer_bytes.get_i64(),
        max_timestamp_offset: footer_bytes.get_i64(),
        first_timestamp: footer_bytes.get_i64(),
    };
    (footer_bytes.get_u32() as usize == entries.len()).then_some((entries, footer))
}

/// Whether entries only grow.
pub fn ordered(entries: &[IndexEntry]) -> bool {
    entries.windows(2).all(|w| w[0].precedes(&w[1]))
}

pub enum SparseIndex {
    /// Every entry in memory: the active segment, a segment in memory, or
    /// a closed one whose index file could not be written or opened.
    Held(Vec<IndexEntry>),
    /// A closed segment's, read from its file as lookups need it.
    OnDisk(OnDiskIndex),
}

pub struct OnDiskIndex {
    /// Open for as long as the segment is, so that a removal of the file
    /// (a failed fsync takes away the indexes it covered) does not take
    /// the entries from this process, which still describe the segment.
    file: File,
    len: usize,
    /// Entries 0, [`SUMMARY_STRIDE`], 2 × [`SUMMARY_STRIDE`], …
    summary: Vec<IndexEntry>,
    last: IndexEntry,
}

impl Default for SparseIndex {
    fn default() -> Self {
        SparseIndex::Held(Vec::new())
    }
}

impl SparseIndex {
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

    pub fn last(&self) -> Option<IndexEntry> {
        match self {
            SparseIndex::Held(entries) => entries.last().copied(),
            SparseIndex::OnDisk(index) => Some(index.last),
        }
    }

    /// Adds an entry after the last. Only the active segment takes
    /// entries, and its index is held.
    pub fn push(&mut self, entry: IndexEntry) {
        match self {
            SparseIndex::Held(entries) => entries.push(entry),
            SparseIndex::OnDisk(_) => {
                // A missing entry only lengthens the walks of lookups past
                // it, so a broken invariant costs time, not answers.
                debug_assert!(false, "an entry for a closed segment's index");
            }
        }
    }

    /// Every entry (from the file, for a closed segment).
    pub fn entries(&self) -> io::Result<Cow<'_, [IndexEntry]>> {
        match self {
            SparseIndex::Held(entries) => Ok(Cow::Borrowed(entries)),
            SparseIndex::OnDisk(index) => index.read_entries(0, index.len).map(Cow::Owned),
        }
    }

    /// The position of the last entry for which `holds` is true, 0 when
    /// there is none. `holds` must be true for a prefix of the entries,
    /// as "offset at most", "position at most" and "timestamps before
    /// below" are.
    pub fn position_of_last(&self, holds: impl Fn(&IndexEntry) -> bool) -> io::Result<u64> {
        let position_in = |entries: &[IndexEntry]| {
            let at = entries.partition_point(&holds);
            at.checked_sub(1).and_then(|i| entries.get(i)).map_or(0, |e| e.position)
        };
        match self {
            SparseIndex::Held(entries) => Ok(position_in(entries)),
            SparseIndex::OnDisk(index) => {
                let Some(block) = index.summary.partition_point(&holds).checked_sub(1) else {
                    return Ok(0);
                };
                let first = block * SUMMARY_STRIDE;
                let count = (index.len - first).min(SUMMARY_STRIDE);
                if count == 1 {
                    return Ok(index.summary[block].position);
                }
                let entries = index.read_block(block, first, count)?;
                Ok(position_in(&entries))
            }
        }
    }

    /// Serves lookups from the index file at `path` from now on, holding
    /// only the summary. The file must hold exactly these entries (it was
    /// just written, or just read and checked).
    pub fn keep_on_disk(&mut self, path: &Path) -> io::Result<()> {
        let SparseIndex::Held(entries) = self else {
            return Ok(());
        };
        let Some(&last) = entries.last() else { return Ok(()) };
        let file = File::open(path)?;
        let summary = entries.iter().step_by(SUMMARY_STRIDE).copied().collect();
        *self = SparseIndex::OnDisk(OnDiskIndex {
            file,
            len: entries.len(),
            summary,
            last,
        });
        Ok(())
    }
}

impl OnDiskIndex {
    fn read_entries(&self, first: usize, count: usize) -> io::Result<Vec<IndexEntry>> {
        let mut bytes = vec![0u8; count * INDEX_ENTRY_BYTES];
        let position = (INDEX_MAGIC.len() + first * INDEX_ENTRY_BYTES) as u64;
        self.file.read_exact_at(&mut bytes, position)?;
        let mut bytes = &bytes[..];
        Ok((0..count).map(|_| IndexEntry::get(&mut bytes)).collect())
    }

    /// The entries from summary entry `block` up to the next, checked
    /// against the summary: the file was checked when it was read or
    /// written, and a file changed since must fail a read, not misplace it.
    fn read_block(&self, block: usize, first: usize, count: usize) -> io::Result<Vec<IndexEntry>> {
        let entries = self.read_entries(first, count)?;
        let fits_after = entries.first() == self.summary.get(block);
        let fits_before = match (entries.last(), self.summary.get(block + 1)) {
            (Some(last), Some(next)) => last.precedes(next),
            (Some(last), None) => *last == self.last,
            (None, _) => false,
        };
        if fits_after && fits_before && ordered(&entries) {
            Ok(entries)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a segment's index file no longer matches what was read of it",
            ))
        }
    }
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
                let by_position = |e: &IndexEntry| e.position <= target.max(0) as u64 * 400;
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
                    assert_eq!(found.0.unwrap(), found.1.unwrap(), "{count} entries, {what} {target}");
                }
            }
        }
    }

    #[test]
    fn a_file_changed_after_it_was_read_fails_lookups_instead_of_misleading_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_, on_disk) = both(3 * SUMMARY_STRIDE, dir.path());
        let path = dir.path().join("0.index");
        // Entry 200's position, overwritten with a larger one.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let at = (INDEX_MAGIC.len() + 200 * INDEX_ENTRY_BYTES + 8) as u64;
        file.write_all_at(&u64::MAX.to_be_bytes(), at).unwrap();
        let lookup = on_disk.position_of_last(|e| e.offset <= 2005);
        assert_eq!(lookup.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            on_disk.position_of_last(|e| e.offset <= 5).unwrap(),
            0,
            "other blocks still answer"
        );
        file.set_len(10).unwrap();
        assert!(on_disk.position_of_last(|e| e.offset <= 1005).is_err(), "a cut file");
    }

    #[test]
    fn a_file_round_trips_and_refuses_damage() {
        let entries = entries(500);
        let bytes = encode(&entries, &footer(&entries));
        assert_eq!(decode(&bytes), Some((entries.clone(), footer(&entries))));
        let mut scribbled = bytes.clone();
        scribbled[10] ^= 1;
        assert_eq!(decode(&scribbled), None, "CRC");
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None, "torn");
        assert_eq!(decode(b"MKI1"), None, "short");
        assert!(ordered(&entries));
        assert!(!ordered(&[entries[1], entries[0]]));
    }
}
