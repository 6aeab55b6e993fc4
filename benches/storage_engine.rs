//! The storage engine at scale: one partition log of 10 million small
//! records (a million 10-record batches) in 100 segments, on disk.
//!
//! - a fetch of 64 KiB at a random offset beside the same fetch near the
//!   tail: with the sparse index both are a binary search and a short walk,
//!   so the ratio should stay near 1;
//! - opening the log after a clean shutdown (only the active segment is
//!   read) beside opening it after a crash (every segment is read, CRCs
//!   checked): the figure to quote is the first, in absolute terms;
//! - the index held in memory (closed segments keep a summary of theirs),
//!   printed after the log is written and after it is opened;
//! - the appends that roll a segment beside the others, printed: 768 MiB
//!   in 1 MiB batches into 256 MiB segments. The closed segment's fsync
//!   runs in the background, so a roll should cost about what an append
//!   does, not the time to write a segment back to disk.
//!
//! `cargo bench --bench storage_engine`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use minikafka::protocol::record_batch::{BatchHeader, Compression};
use minikafka::protocol::records::{Record, RecordBatchBuilder};
use minikafka::storage::PartitionLog;

const BATCHES: usize = 1_000_000;
const RECORDS_PER_BATCH: usize = 10;
const SEGMENTS: u64 = 100;
const FETCH_BYTES: usize = 64 * 1024;

fn small_batch() -> Bytes {
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    for i in 0..RECORDS_PER_BATCH {
        builder.push(Record {
            value: Some(Bytes::from(format!("value-{i:04}"))),
            ..Record::default()
        });
    }
    builder.build(Compression::None).unwrap()
}

/// Writes the log once and closes it cleanly.
fn build_log(dir: &std::path::Path) -> (i64, usize) {
    let batch = small_batch();
    let header = BatchHeader::parse(&batch).unwrap();
    let mut log = PartitionLog::open(dir).unwrap();
    log.set_segment_bytes((batch.len() * BATCHES) as u64 / SEGMENTS + 1);
    let started = Instant::now();
    for _ in 0..BATCHES {
        log.append(&batch, &header, 0).unwrap();
    }
    eprintln!(
        "built {} records in {} segments ({} MB) in {:.1} s; index in memory: {} entries, {} KiB",
        log.next_offset(),
        log.segment_count(),
        log.size_bytes() / 1_000_000,
        started.elapsed().as_secs_f64(),
        log.index_entries_held(),
        log.index_bytes_held() / 1024
    );
    let end = log.next_offset();
    let segments = log.segment_count();
    log.close().unwrap();
    (end, segments)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (end, _) = build_log(dir.path());
    let mut log = PartitionLog::open(dir.path()).unwrap();
    eprintln!(
        "index in memory after a clean open: {} entries, {} KiB",
        log.index_entries_held(),
        log.index_bytes_held() / 1024
    );
    // Far enough from the end that a tail fetch fills FETCH_BYTES too.
    let tail = end - (FETCH_BYTES / small_batch().len() * RECORDS_PER_BATCH) as i64 * 2;

    let mut group = c.benchmark_group("fetch_64KiB");
    group.bench_function("near_the_tail", |b| {
        b.iter(|| black_box(log.read_from(black_box(tail), FETCH_BYTES, true).unwrap()))
    });
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    group.bench_function("at_a_random_offset", |b| {
        b.iter(|| {
            let offset = (random() % tail as u64) as i64;
            black_box(log.read_from(offset, FETCH_BYTES, true).unwrap())
        })
    });
    // The floor for the random case: the same bytes read from a random
    // place of a segment file, with no lookup at all.
    let segments: Vec<std::fs::File> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::File::open(e.path()).unwrap())
        .collect();
    let segment_bytes = segments[0].metadata().unwrap().len() - FETCH_BYTES as u64;
    group.bench_function("baseline_pread_at_a_random_place", |b| {
        let mut buf = vec![0u8; FETCH_BYTES];
        b.iter(|| {
            let r = random();
            let file = &segments[(r % segments.len() as u64) as usize];
            std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, (r >> 8) % segment_bytes).unwrap();
            black_box(&buf);
        })
    });
    group.finish();

    // A consumer at the tail asks for little: one small read.
    c.benchmark_group("fetch_4KiB").bench_function("near_the_tail", |b| {
        b.iter(|| black_box(log.read_from(black_box(tail), 4096, true).unwrap()))
    });

    // What the Fetch handler does for a large answer: read it, or find the
    // file slice that the connection will send (sendfile) without reading.
    let mut group = c.benchmark_group("fetch_1MiB_at_a_random_offset");
    group.bench_function("read_into_memory", |b| {
        b.iter(|| {
            let offset = (random() % tail as u64) as i64;
            black_box(log.read_from(offset, 1 << 20, true).unwrap())
        })
    });
    group.bench_function("file_slice", |b| {
        b.iter(|| {
            let offset = (random() % tail as u64) as i64;
            black_box(
                log.slice_from(offset, 1 << 20, true, minikafka::storage::segment::FILE_SLICE_BYTES_MIN)
                    .unwrap(),
            )
        })
    });
    group.finish();

    log.close().unwrap();
    drop(log);
    let mut group = c.benchmark_group("open_10M_records");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("after_a_clean_shutdown", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let mut log = PartitionLog::open(dir.path()).unwrap();
                total += started.elapsed();
                assert!(log.recovery().clean && log.recovery().segments_scanned == 0);
                assert_eq!(log.next_offset(), end);
                log.close().unwrap();
            }
            total
        })
    });
    // Opened and dropped without a close: from now on it looks crashed.
    drop(PartitionLog::open(dir.path()).unwrap());
    group.bench_function("after_a_crash", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let log = PartitionLog::open(dir.path()).unwrap();
                total += started.elapsed();
                assert!(!log.recovery().clean);
                assert_eq!(log.next_offset(), end);
                // Dropped without close: the next open is after a crash too.
            }
            total
        })
    });
    group.finish();
}

/// Prints the slowest appends that rolled a segment, beside the median
/// append: what a producer waits for at a roll.
fn roll_stall(_: &mut Criterion) {
    const SEGMENT_BYTES: u64 = 256 << 20;
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    for _ in 0..100 {
        builder.push(Record {
            value: Some(Bytes::from(vec![7u8; 10 * 1024])),
            ..Record::default()
        });
    }
    let batch = builder.build(Compression::None).unwrap();
    let header = BatchHeader::parse(&batch).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path()).unwrap();
    log.set_segment_bytes(SEGMENT_BYTES);
    let (mut rolls, mut others) = (Vec::new(), Vec::new());
    for _ in 0..3 * SEGMENT_BYTES / batch.len() as u64 {
        let segments = log.segment_count();
        let started = Instant::now();
        log.append(&batch, &header, 0).unwrap();
        let took = started.elapsed();
        if log.segment_count() > segments {
            &mut rolls
        } else {
            &mut others
        }
        .push(took);
    }
    others.sort_unstable();
    let median = others[others.len() / 2];
    let slowest = others[others.len() - 1];
    let ratios: Vec<String> = rolls
        .iter()
        .map(|r| format!("{:.1}", r.as_secs_f64() / median.as_secs_f64()))
        .collect();
    eprintln!(
        "appends of 1 MiB into 256 MiB segments: median {median:?}, slowest without a roll {slowest:?}; \
         the {} that rolled: {rolls:?}, {} x the median",
        rolls.len(),
        ratios.join(", ")
    );
    log.close().unwrap();
}

criterion_group! {
    name = storage_engine;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = roll_stall, benches
}
criterion_main!(storage_engine);
