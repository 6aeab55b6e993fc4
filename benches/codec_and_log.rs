//! The broker's produce path, piece by piece, beside a memcpy of the same
//! bytes measured in the same run (the figure to read is the ratio):
//! decoding a Produce request that carries a 1 MiB batch, validating that
//! batch, encoding the response, and appending batches to a log on disk;
//! and the bundled producer building a batch.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::protocol::messages::produce::*;
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::record_batch::{BatchHeader, Compression, validate_produced_batch};
use minikafka::protocol::records::{Record, RecordBatchBuilder};
use minikafka::protocol::{ApiKey, RequestHeader};
use minikafka::storage::PartitionLog;

/// A batch of about `bytes` bytes of 1 KiB records.
fn batch_of(bytes: usize) -> Bytes {
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    let value = Bytes::from(vec![b'x'; 1024]);
    while builder.len() * 1040 < bytes {
        builder.push(Record {
            value: Some(value.clone()),
            ..Record::default()
        });
    }
    builder.build(Compression::None).unwrap()
}

fn produce_frame(batch: &Bytes) -> Bytes {
    let request = Request::Produce(ProduceRequest {
        acks: 1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: "bench".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch.clone()),
            }],
        }],
        ..Default::default()
    });
    let mut frame = BytesMut::new();
    RequestHeader {
        api_key: 0,
        api_version: 9,
        correlation_id: 1,
        client_id: Some("bench".into()),
    }
    .encode(&mut frame, true);
    request.encode(9, &mut frame);
    frame.freeze()
}

/// The bundled producer's side: a 1 MiB batch of 10 KiB records built
/// from records, beside copying their values once into a buffer.
fn client_batch(c: &mut Criterion) {
    let value = Bytes::from(vec![b'x'; 10 * 1024]);
    let records = 100;
    let mut group = c.benchmark_group("client_batch_100x10KiB");
    group.throughput(Throughput::Bytes((records * value.len()) as u64));
    group.bench_function("memcpy_baseline", |b| {
        let mut buf = Vec::with_capacity(records * value.len());
        b.iter(|| {
            buf.clear();
            for _ in 0..records {
                buf.extend_from_slice(&value);
            }
            black_box(&buf);
        })
    });
    let push_all = |builder: &mut RecordBatchBuilder| {
        for _ in 0..records {
            builder.push(Record {
                value: Some(value.clone()),
                ..Record::default()
            });
        }
    };
    group.bench_function("build_fresh", |b| {
        b.iter(|| {
            let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
            push_all(&mut builder);
            black_box(builder.build(Compression::None).unwrap())
        })
    });
    group.bench_function("build_reusing_the_last_buffer", |b| {
        let mut spare = BytesMut::new();
        b.iter(|| {
            let mut builder = RecordBatchBuilder::reusing(1_700_000_000_000, std::mem::take(&mut spare), 1 << 20);
            push_all(&mut builder);
            let batch = black_box(builder.build(Compression::None).unwrap());
            spare = batch.try_into_mut().unwrap();
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    client_batch(c);
    let batch = batch_of(1 << 20);
    let frame = produce_frame(&batch);

    let mut group = c.benchmark_group("produce_path_1MiB");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("memcpy_baseline", |b| {
        let mut target = vec![0u8; frame.len()];
        b.iter(|| {
            target.copy_from_slice(black_box(&frame));
            black_box(&target);
        })
    });
    group.bench_function("decode_request", |b| {
        b.iter(|| {
            let (_, body) = RequestHeader::parse(black_box(&frame), true).unwrap();
            black_box(Request::decode(ApiKey::Produce, 9, &body).unwrap())
        })
    });
    group.bench_function("validate_batch_crc32c", |b| {
        b.iter(|| black_box(validate_produced_batch(Some(black_box(&batch)), 9, usize::MAX).unwrap()))
    });
    group.finish();

    let response = Response::Produce(ProduceResponse {
        responses: vec![TopicProduceResponse {
            name: "bench".into(),
            partition_responses: vec![PartitionProduceResponse {
                index: 0,
                base_offset: 42,
                ..Default::default()
            }],
        }],
        ..Default::default()
    });
    c.bench_function("encode_produce_response", |b| {
        let mut buf = BytesMut::with_capacity(256);
        b.iter(|| {
            buf.clear();
            black_box(&response).encode(9, &mut buf);
            black_box(&buf);
        })
    });

    let header = BatchHeader::parse(&batch).unwrap();
    let mut group = c.benchmark_group("log_append_1MiB");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    // Both sides write into files that are deleted and started afresh every
    // 256 MiB, so both measure writing into the page cache; letting files
    // pile up would measure the disk's writeback instead, for whichever side
    // happened to reach the dirty-page limit.
    let dir = tempfile::tempdir().unwrap();
    const FILE_BYTES_MAX: u64 = 256 << 20;
    group.bench_function("plain_file_write_baseline", |b| {
        use std::io::Write;
        let path = dir.path().join("plain");
        let mut file = std::fs::File::create(&path).unwrap();
        let mut written = 0u64;
        b.iter(|| {
            if written > FILE_BYTES_MAX {
                file = std::fs::File::create(&path).unwrap();
                written = 0;
            }
            file.write_all(black_box(&batch)).unwrap();
            written += batch.len() as u64;
        })
    });
    group.bench_function("partition_log_append", |b| {
        let log_dir = dir.path().join("log");
        let mut log = PartitionLog::open(&log_dir).unwrap();
        b.iter(|| {
            if log.size_bytes() > FILE_BYTES_MAX {
                drop(std::mem::replace(&mut log, PartitionLog::in_memory()));
                std::fs::remove_dir_all(&log_dir).unwrap();
                log = PartitionLog::open(&log_dir).unwrap();
            }
            black_box(log.append(black_box(&batch), &header, 0).unwrap());
        })
    });
    group.finish();
}

criterion_group! {
    name = produce_path;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(produce_path);
