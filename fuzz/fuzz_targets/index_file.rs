//! A segment index file as a start reads it: whole (the active segment's)
//! and by its summary (a closed segment's), then lookups and a read of
//! every entry through the summary. The first byte's top two bits choose
//! the file: entries and a footer taken from the input and encoded as the
//! broker writes them; the input with its CRCs made right (a crafted file,
//! to reach the checks behind the CRCs); or the input as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minikafka::storage::index::{self, IndexEntry, IndexFooter, SparseIndex};

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    if let Some(part) = bytes.get(at..at + 8) {
        word.copy_from_slice(part);
    }
    i64::from_be_bytes(word)
}

fn encoded(input: &[u8]) -> Vec<u8> {
    let (footer, entries) = input.split_at(input.len().min(40));
    let footer = IndexFooter {
        covered_bytes: i64_at(footer, 0) as u64,
        last_offset: i64_at(footer, 8),
        max_timestamp: i64_at(footer, 16),
        max_timestamp_offset: i64_at(footer, 24),
        first_timestamp: i64_at(footer, 32),
    };
    let entries: Vec<IndexEntry> = entries
        .chunks_exact(24)
        .map(|e| IndexEntry {
            offset: i64_at(e, 0),
            position: i64_at(e, 8) as u64,
            max_timestamp_before: i64_at(e, 16),
        })
        .collect();
    index::encode(&entries, &footer)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let bytes = match selector >> 6 {
        0 => encoded(input),
        1 => {
            let mut bytes = input.to_vec();
            index::reseal(&mut bytes);
            bytes
        }
        _ => input.to_vec(),
    };
    let _ = index::decode(&bytes);
    let path = std::env::temp_dir().join(format!("minikafka-fuzz-index-{}", std::process::id()));
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    if let Ok(Some(opened)) = SparseIndex::open(&path) {
        let index = opened.index;
        for target in [i64::MIN, -1, 0, 1, 4096, 1 << 40, i64::MAX] {
            let _ = index.position_of_last(|e| e.offset <= target);
            let _ = index.position_of_last(|e| e.position <= target as u64);
            let _ = index.position_of_last(|e| e.max_timestamp_before < target);
        }
        let _ = index.entries();
    }
});
