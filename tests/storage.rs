//! Segments, retention and DeleteRecords through the broker: old segments
//! go, the log start offset advances (and survives restarts), consumers
//! from the beginning start there, fetches below it are out of range.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use minikafka::protocol::ErrorCode;
use minikafka::protocol::messages::delete_records::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic};
use minikafka::protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::record_batch::Compression;
use minikafka::protocol::records::{Record, RecordBatchBuilder};
use rdkafka::Message;

fn batch(i: usize) -> Bytes {
    // Timestamps of now: retention.ms (7 days) must not be what deletes them.
    let now = now_ms();
    let mut builder = RecordBatchBuilder::new(now);
    for j in 0..10 {
        builder.push(Record {
            value: Some(Bytes::from(format!("value-{i}-{j}-{}", "x".repeat(50)))),
            ..Record::default()
        });
    }
    builder.build(Compression::None).unwrap()
}

async fn produce_batches(client: &mut RawClient, topic: &str, count: usize) {
    for i in 0..count {
        let request = Request::Produce(ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                name: topic.into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(batch(i)),
                }],
            }],
            ..Default::default()
        });
        let Response::Produce(r) = client.call(request, 9).await else {
            panic!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

fn log_state(broker: &minikafka::BrokerHandle, topic: &str) -> (i64, i64, usize) {
    let topic = broker.broker().topic(topic).unwrap();
    let log = topic.partition(0).unwrap().log();
    (log.log_start_offset(), log.next_offset(), log.segment_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bytes_drops_old_segments_and_consumers_start_at_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let one_batch = batch(0).len() as u64;
    let broker = start(minikafka::BrokerConfig {
        segment_bytes: one_batch * 4,
        retention_bytes: (one_batch * 8) as i64,
        retention_check_interval: Duration::from_millis(50),
        ..config(dir.path(), 1)
    })
    .await;
    broker.broker().get_or_create_topic("retained", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    produce_batches(&mut client, "retained", 40).await;
    // Retention runs every 50 ms; wait until the log is back under its limit.
    let (start, end, _) = eventually("retention to catch up", || {
        Some(log_state(&broker, "retained")).filter(|(_, _, segments)| *segments <= 4)
    })
    .await;
    assert_eq!(end, 400);
    assert!(
        start >= 240,
        "the start offset moved past the deleted segments: {start}"
    );
    assert_eq!(
        start % 10,
        0,
        "whole segments go, so the start is a batch boundary: {start}"
    );
    let kept = broker
        .broker()
        .topic("retained")
        .unwrap()
        .partition(0)
        .unwrap()
        .log()
        .size_bytes();
    assert!(kept >= one_batch * 8, "at least retention.bytes is kept: {kept}");

    let consumer = consumer_from_beginning(&broker.bootstrap(), "retained", 1);
    let first = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                return m.offset();
            }
        }
        -1
    })
    .await
    .unwrap();
    let (start_now, _, _) = log_state(&broker, "retained");
    assert_eq!(
        first, start_now,
        "a consumer from the beginning starts at the log start offset"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn delete_records_moves_the_start_and_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("trimmed", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    produce_batches(&mut client, "trimmed", 3).await;
    let delete = |offset: i64| {
        Request::DeleteRecords(DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: "trimmed".into(),
                partitions: vec![DeleteRecordsPartition {
                    partition_index: 0,
                    offset,
                }],
            }],
            timeout_ms: 1000,
        })
    };
    let Response::DeleteRecords(r) = client.call(delete(15), 2).await else {
        panic!()
    };
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark
        ),
        (0, 15)
    );
    let Response::DeleteRecords(r) = client.call(delete(99), 1).await else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, ErrorCode::OffsetOutOfRange.code());

    let fetch = |offset: i64| Request::Fetch(fetch_request("trimmed", offset, 0, 0, 1 << 20));
    let Response::Fetch(f) = client.call(fetch(3), 11).await else {
        panic!()
    };
    assert_eq!(
        f.responses[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    let Response::Fetch(f) = client.call(fetch(15), 11).await else {
        panic!()
    };
    assert_eq!(
        (
            f.responses[0].partitions[0].error_code,
            f.responses[0].partitions[0].log_start_offset
        ),
        (0, 15)
    );
    // A lookup by time skips the deleted records of the batch holding the
    // new start (10-19).
    {
        let request = Request::ListOffsets(ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: "trimmed".into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    timestamp: 0,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        let Response::ListOffsets(r) = client.call(request, 7).await else {
            panic!()
        };
        let answer = &r.topics[0].partitions[0];
        assert_eq!((answer.error_code, answer.offset), (0, 15));
    }
    broker.shutdown().await;

    let broker = start(config(dir.path(), 1)).await;
    assert_eq!(
        log_state(&broker, "trimmed").0,
        15,
        "the log start offset is checkpointed"
    );
    broker.shutdown().await;
}

/// retention.ms (here a topic config) deletes segments whose newest record
/// is older than the limit, the active one too (the log rolls first, as
/// Kafka's does), so a partition that stopped receiving records ages out.
#[tokio::test]
async fn retention_ms_drops_segments_older_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        retention_check_interval: Duration::from_millis(50),
        ..config(dir.path(), 1)
    })
    .await;
    // Two one-record batches per segment.
    let configs = std::collections::BTreeMap::from([
        ("retention.ms".to_string(), "60000".to_string()),
        ("segment.bytes".to_string(), "160".to_string()),
    ]);
    broker.broker().create_topic("aged", 1, configs, false).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    // Records from 1970: far older than a minute.
    for i in 0..6 {
        let mut builder = RecordBatchBuilder::new(1_000 + i);
        builder.push(Record {
            value: Some(Bytes::from_static(b"old")),
            ..Record::default()
        });
        let request = Request::Produce(ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                name: "aged".into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(builder.build(Compression::None).unwrap()),
                }],
            }],
            ..Default::default()
        });
        client.call(request, 9).await;
    }
    assert!(log_state(&broker, "aged").1 == 6);
    let (start, end, segments) = eventually("retention.ms to run", || {
        Some(log_state(&broker, "aged")).filter(|(s, _, _)| *s > 0)
    })
    .await;
    assert_eq!((start, end), (6, 6), "every record aged out");
    assert_eq!(segments, 1, "a new, empty active segment");
    broker.shutdown().await;
}

/// `value-{i}-{j}-…` as `batch(i)` writes it: record `j` of batch `i`.
fn expected_value(offset: i64) -> String {
    format!("value-{}-{}-{}", offset / 10, offset % 10, "x".repeat(50))
}

/// A closed segment keeps one index entry in 128 in memory and reads the
/// rest from its index file. Segments of 1,000 batches have about 170
/// entries, so reads need the file's blocks: librdkafka from the
/// beginning, then, after a restart that loads the index files, kafka-python
/// from an offset in the middle of a closed segment, each get every record
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_closed_segments_through_their_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let broker_config = || minikafka::BrokerConfig {
        segment_bytes: batch(0).len() as u64 * 1000,
        ..config(dir.path(), 1)
    };
    let broker = start(broker_config()).await;
    broker.broker().get_or_create_topic("indexed", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    produce_batches(&mut client, "indexed", 2500).await;
    let (_, end, segments) = log_state(&broker, "indexed");
    assert_eq!((end, segments), (25_000, 3));

    let consumer = consumer_from_beginning(&broker.bootstrap(), "indexed", 1);
    let read = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + DEADLINE;
        let mut read = Vec::new();
        while read.len() < 25_000 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                read.push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
        }
        read
    })
    .await
    .unwrap();
    assert_eq!(read.len(), 25_000, "librdkafka read every record");
    for (at, (offset, value)) in read.iter().enumerate() {
        assert_eq!(
            (*offset, value.as_str()),
            (at as i64, expected_value(at as i64).as_str())
        );
    }
    broker.shutdown().await;

    let broker = start(broker_config()).await;
    // Fewer than a third of the entries (one per 4 KiB or more): the active
    // segment's and the closed segments' summaries.
    let (held, bytes) = {
        let topic = broker.broker().topic("indexed").unwrap();
        let log = topic.partition(0).unwrap().log();
        (log.index_entries_held(), log.size_bytes())
    };
    assert!(
        held * 3 < bytes as usize / 4096,
        "{held} entries held for {bytes} bytes"
    );
    let from = 12_345;
    let output = tokio::process::Command::new(python())
        .arg(python_script("kp_consume.py"))
        .args(["--bootstrap", &broker.bootstrap(), "--topic", "indexed"])
        .args(["--seek", &from.to_string(), "--expect", &(end - from).to_string()])
        .output();
    let output = tokio::time::timeout(DEADLINE * 2, output)
        .await
        .expect("finishes")
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines.len() as i64,
        end - from,
        "kafka-python read every record from {from}"
    );
    for (at, line) in lines.iter().enumerate() {
        let offset = from + at as i64;
        assert_eq!(line["offset"], offset);
        assert_eq!(line["value"], expected_value(offset).as_str());
    }
    broker.shutdown().await;
}

/// Sends `count` records one at a time with rdkafka, each after the last
/// was answered, and returns the partition's fsync count after each answer.
async fn fsyncs_after_each_answer(broker: &minikafka::BrokerHandle, topic: &str, acks: &str, count: usize) -> Vec<u64> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    broker.broker().get_or_create_topic(topic, 1).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.local_addr().to_string())
        .set("acks", acks)
        .create()
        .unwrap();
    let mut fsyncs = Vec::new();
    for i in 0..count {
        let delivery = producer
            .send(FutureRecord::<(), _>::to(topic).payload(&format!("v{i}")), DEADLINE)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(delivery.offset, i as i64);
        let topic = broker.broker().topic(topic).unwrap();
        fsyncs.push(topic.partition(0).unwrap().durable_syncs());
    }
    fsyncs
}

/// `--fsync always`: every answer to acks=all waits for an fsync that
/// covers its batch (one per produce here, as each waits for the last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fsync_always_each_answer_follows_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        fsync_always: true,
        ..config(dir.path(), 1)
    })
    .await;
    assert_eq!(
        fsyncs_after_each_answer(&broker, "synced", "all", 4).await,
        [1, 2, 3, 4]
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    assert_eq!(
        fsyncs_after_each_answer(&broker, "unsynced", "all", 2).await,
        [0, 0],
        "the default answers from the page cache"
    );
}

/// `--flush-messages 2` (Kafka's `log.flush.interval.messages`): the
/// produce that brings a partition to two unsynced records is answered
/// after an fsync, whatever the acks. `--flush-ms`: a quiet partition with
/// unsynced records is fsynced within the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flush_policies_fsync_by_count_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        flush_messages: Some(2),
        ..config(dir.path(), 1)
    })
    .await;
    assert_eq!(
        fsyncs_after_each_answer(&broker, "by-count", "1", 6).await,
        [0, 1, 1, 2, 2, 3]
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        flush_ms: Some(50),
        ..config(dir.path(), 1)
    })
    .await;
    fsyncs_after_each_answer(&broker, "by-time", "1", 1).await;
    let partition_state = || {
        let topic = broker.broker().topic("by-time").unwrap();
        let partition = topic.partition(0).unwrap();
        let unflushed = partition.log().unflushed_messages();
        (partition.durable_syncs(), unflushed)
    };
    eventually("the flusher to fsync", || Some(partition_state()).filter(|s| s.0 > 0)).await;
    assert_eq!(partition_state().1, 0, "nothing left unsynced");
}

/// Commits one offset at a time with rdkafka, from outside any group, each
/// after the last was answered; the committed-offsets log's fsync count
/// after each answer.
async fn offsets_fsyncs_after_each_commit(broker: &minikafka::BrokerHandle, count: i64) -> Vec<u64> {
    broker.broker().get_or_create_topic("committed", 1).unwrap();
    let bootstrap = broker.local_addr().to_string();
    let server = broker.broker().clone();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "flush-policy")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        (1..=count)
            .map(|offset| {
                let mut offsets = rdkafka::TopicPartitionList::new();
                offsets
                    .add_partition_offset("committed", 0, rdkafka::Offset::Offset(offset))
                    .unwrap();
                consumer.commit(&offsets, CommitMode::Sync).unwrap();
                server.offsets_durable_syncs()
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The committed-offsets log follows the flush policy, as Kafka's flush
/// configs cover `__consumer_offsets`: under `--fsync always` each commit
/// is answered after an fsync, by default none is, `--flush-messages 2`
/// fsyncs at every second record, and `--flush-ms` fsyncs a quiet log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_follow_the_flush_policy() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        fsync_always: true,
        ..config(dir.path(), 1)
    })
    .await;
    assert_eq!(offsets_fsyncs_after_each_commit(&broker, 3).await, [1, 2, 3]);
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    assert_eq!(offsets_fsyncs_after_each_commit(&broker, 2).await, [0, 0]);
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        flush_messages: Some(2),
        ..config(dir.path(), 1)
    })
    .await;
    assert_eq!(offsets_fsyncs_after_each_commit(&broker, 4).await, [0, 1, 1, 2]);
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        flush_ms: Some(50),
        ..config(dir.path(), 1)
    })
    .await;
    // The flusher may already have run by the time the count is read.
    offsets_fsyncs_after_each_commit(&broker, 1).await;
    eventually("the flusher to fsync the committed offsets", || {
        (broker.broker().offsets_durable_syncs() > 0).then_some(())
    })
    .await;
}
