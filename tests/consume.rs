//! The consume path with real clients: what rdkafka produced comes back,
//! identical, through rdkafka, kcat, kafka-python and `minikafka consume`;
//! a tailing consumer is woken by new data; out-of-range positions reset as
//! the client's auto.offset.reset says; and restarts change nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use minikafka::protocol::records::Record;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::process::Command;

const MESSAGES: usize = 100_000;

async fn produce(bootstrap: &str, topic: &str, count: usize, codec: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "i",
            value: Some(i.to_string().as_bytes()),
        });
        let record = FutureRecord::to(topic).key(&key).payload(&value).headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

fn rdkafka_consumer(bootstrap: &str, reset: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-with-assign")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap()
}

/// Polls until `count` messages arrived (or the deadline), as records.
async fn rdkafka_read(consumer: BaseConsumer, count: usize) -> BTreeMap<i32, Vec<Record>> {
    tokio::task::spawn_blocking(move || {
        let mut consumed: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        let mut total = 0;
        let deadline = std::time::Instant::now() + DEADLINE;
        while total < count && std::time::Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(Bytes::copy_from_slice)))
                        .collect()
                })
                .unwrap_or_default();
            consumed.entry(message.partition()).or_default().push(Record {
                offset: message.offset(),
                timestamp: message.timestamp().to_millis().unwrap(),
                key: message.key().map(Bytes::copy_from_slice),
                value: message.payload().map(Bytes::copy_from_slice),
                headers,
            });
            total += 1;
        }
        consumed
    })
    .await
    .unwrap()
}

fn assign(consumer: &BaseConsumer, topic: &str, partitions: i32, offset: Offset) {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, offset).unwrap();
    }
    consumer.assign(&assignment).unwrap();
}

async fn output_of(command: &mut Command) -> String {
    let output = tokio::time::timeout(DEADLINE * 2, command.stderr(Stdio::piped()).kill_on_drop(true).output())
        .await
        .expect("finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One line per record: partition, offset, timestamp, key, value, headers.
fn line_of(partition: i32, r: &Record) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default()
    };
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
    format!(
        "{partition} {} {} {} {} {}",
        r.offset,
        r.timestamp,
        text(&r.key),
        text(&r.value),
        headers.join(",")
    )
}

/// rdkafka, kcat, `minikafka consume` and kafka-python each read `topic`
/// from the beginning and get exactly `stored`; `after` is called with
/// each client's name once it has.
async fn every_client_reads_back(
    broker: &minikafka::server::BrokerHandle,
    topic: &str,
    stored: &BTreeMap<i32, Vec<Record>>,
    mut after: impl FnMut(&str, &minikafka::server::BrokerHandle),
) {
    let bootstrap = broker.bootstrap();
    let count: usize = stored.values().map(Vec::len).sum();
    let partitions = stored.len() as i32;
    let mut expected: Vec<String> = stored
        .iter()
        .flat_map(|(p, records)| records.iter().map(|r| line_of(*p, r)))
        .collect();
    expected.sort();

    // rdkafka, assigned, from the beginning.
    let consumer = rdkafka_consumer(&bootstrap, "earliest");
    assign(&consumer, topic, partitions, Offset::Beginning);
    assert_eq!(&rdkafka_read(consumer, count).await, stored, "rdkafka");
    after("rdkafka", broker);

    // kcat -C (librdkafka 2.0.2), one line per record in the same shape.
    let kcat_lines = output_of(Command::new(kcat()).env_remove("LD_LIBRARY_PATH").args([
        "-b",
        &bootstrap,
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%p %o %T %k %s %h\\n",
    ]))
    .await;
    let mut got: Vec<String> = kcat_lines.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, expected, "kcat -C");
    after("kcat", broker);

    // minikafka consume, same format.
    let ours = output_of(Command::new(env!("CARGO_BIN_EXE_minikafka")).args([
        "consume",
        "-b",
        &bootstrap,
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-f",
        "%p %o %T %k %s %h\\n",
    ]))
    .await;
    let mut got: Vec<String> = ours.lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, expected, "minikafka consume");
    after("minikafka consume", broker);

    // kafka-python, assigned, from the beginning.
    let python_lines = output_of(Command::new(python()).arg(python_script("kp_consume.py")).args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        topic,
        "--expect",
        &count.to_string(),
        "--timeout-s",
        "120",
    ]))
    .await;
    let mut got: Vec<String> = python_lines
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let headers: Vec<String> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| format!("{}={}", h[0].as_str().unwrap(), h[1].as_str().unwrap_or_default()))
                .collect();
            format!(
                "{} {} {} {} {} {}",
                v["partition"],
                v["offset"],
                v["timestamp"],
                v["key"].as_str().unwrap_or_default(),
                v["value"].as_str().unwrap_or_default(),
                headers.join(",")
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected, "kafka-python");
    after("kafka-python", broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_reads_back_what_rdkafka_produced() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "readback", MESSAGES, "lz4").await;
    let stored = stored_records_by_partition(&broker, "readback");
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), MESSAGES);
    every_client_reads_back(&broker, "readback", &stored, |_, _| {}).await;
    broker.shutdown().await;
}

/// Uncompressed, the backlog is large enough that fetches from the start
/// are answered with slices of the segment files (sendfile): every client
/// still gets every record, and most of the bytes each one read left the
/// broker that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_reads_back_records_sent_straight_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 2)).await;
    produce(&broker.bootstrap(), "sliced", MESSAGES, "none").await;
    let stored = stored_records_by_partition(&broker, "sliced");
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), MESSAGES);
    let stored_bytes: usize = (0..2)
        .flat_map(|p| stored_batches(&broker, "sliced", p))
        .map(|b| b.len())
        .sum();
    assert!(
        stored_bytes > 2 << 20,
        "{stored_bytes} bytes: too few for large fetches"
    );
    let mut before = broker.broker().file_bytes_sent();
    every_client_reads_back(&broker, "sliced", &stored, |client, broker| {
        let sent = broker.broker().file_bytes_sent();
        assert!(
            (sent - before) as usize > stored_bytes / 2,
            "{client}: {} of {stored_bytes} bytes sent from the files",
            sent - before
        );
        before = sent;
    })
    .await;
    broker.shutdown().await;
}

/// 64 partitions of 60 KiB each: every answer is small enough to be read
/// into memory, but a response over all of them would hold 3.8 MB. One
/// response reads at most `RESPONSE_COPY_BYTES_MAX` (and one answer) into
/// memory and sends the rest from the files; every client still reads back
/// every record, and some of each one's bytes left by sendfile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_over_many_small_partitions_reads_little_into_memory() {
    use minikafka::broker::RESPONSE_COPY_BYTES_MAX;
    use minikafka::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
    use minikafka::protocol::messages::{Request, Response};
    const PARTITIONS: i32 = 64;
    const PER_PARTITION: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), PARTITIONS)).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for partition in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let key = format!("key-{partition}-{i}");
            let value = format!("{key}-{}", "v".repeat(1000));
            let headers = OwnedHeaders::new().insert(Header {
                key: "i",
                value: Some(i.to_string().as_bytes()),
            });
            let record = FutureRecord::to("many-small")
                .partition(partition)
                .key(&key)
                .payload(&value)
                .headers(headers);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
    }
    for delivery in pending {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    let stored = stored_records_by_partition(&broker, "many-small");
    assert_eq!(
        stored.values().map(Vec::len).sum::<usize>(),
        PARTITIONS as usize * PER_PARTITION
    );
    let sizes: Vec<usize> = (0..PARTITIONS)
        .map(|p| stored_batches(&broker, "many-small", p).iter().map(|b| b.len()).sum())
        .collect();
    let total: usize = sizes.iter().sum();
    let largest = *sizes.iter().max().unwrap();
    assert!(largest < minikafka::storage::segment::FILE_SLICE_BYTES_MIN, "{largest}");
    assert!(total > 3 * RESPONSE_COPY_BYTES_MAX, "{total}");

    // One Fetch over every partition, by hand.
    let request = FetchRequest {
        max_bytes: 64 << 20,
        topics: vec![FetchTopic {
            topic: "many-small".into(),
            partitions: (0..PARTITIONS)
                .map(|partition| FetchPartition {
                    partition,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..fetch_request("many-small", 0, 0, 1, 1 << 20)
    };
    let before = broker.broker().file_bytes_sent() as usize;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let Response::Fetch(response) = client.call(Request::Fetch(request), 11).await else {
        panic!("a Fetch response")
    };
    let answered: Vec<usize> = response.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    assert_eq!(answered, sizes, "every partition answered whole");
    // The broker counts a slice once its sendfile returns, which may be
    // after this client has read the answer.
    let bound = total - RESPONSE_COPY_BYTES_MAX - largest;
    eventually("most bytes sent from the files", || {
        let from_files = broker.broker().file_bytes_sent() as usize - before;
        (from_files >= bound).then_some(())
    })
    .await;

    let mut before = broker.broker().file_bytes_sent();
    every_client_reads_back(&broker, "many-small", &stored, |client, broker| {
        let sent = broker.broker().file_bytes_sent();
        assert!(sent > before, "{client}: nothing sent from the files");
        before = sent;
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailing_consumer_gets_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "tail", 10, "none").await;
    let consumer = rdkafka_consumer(&bootstrap, "earliest");
    assign(&consumer, "tail", 1, Offset::End);
    let reader = tokio::spawn(rdkafka_read(consumer, 1));
    // The consumer only sees what is produced after it reached the end, so
    // keep producing one message at a time until it has one.
    let mut sent = 0;
    while !reader.is_finished() && sent < 200 {
        produce(&bootstrap, "tail", 1, "none").await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumed = reader.await.unwrap();
    let records = &consumed[&0];
    assert_eq!(records.len(), 1);
    assert!(
        records[0].offset >= 10,
        "a new message, not an old one: {:?}",
        records[0]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_positions_follow_auto_offset_reset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "reset", 5, "none").await;

    let earliest = rdkafka_consumer(&bootstrap, "earliest");
    assign(&earliest, "reset", 1, Offset::Offset(1_000));
    let consumed = rdkafka_read(earliest, 5).await;
    assert_eq!(
        consumed[&0].iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );

    let latest = rdkafka_consumer(&bootstrap, "latest");
    assign(&latest, "reset", 1, Offset::Offset(1_000));
    let reader = tokio::spawn(rdkafka_read(latest, 1));
    let mut sent = 0;
    while !reader.is_finished() && sent < 200 {
        produce(&bootstrap, "reset", 1, "none").await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumed = reader.await.unwrap();
    assert!(
        consumed[&0][0].offset >= 5,
        "latest: reset to the end, not the beginning"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_consumers_read_the_same_data_at_the_same_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    produce(&broker.bootstrap(), "restarted", 3_000, "zstd").await;
    let consumer = rdkafka_consumer(&broker.bootstrap(), "earliest");
    assign(&consumer, "restarted", 3, Offset::Beginning);
    let before = rdkafka_read(consumer, 3_000).await;
    broker.shutdown().await;

    let broker = start(config(dir.path(), 3)).await;
    let consumer = rdkafka_consumer(&broker.bootstrap(), "earliest");
    assign(&consumer, "restarted", 3, Offset::Beginning);
    let after = rdkafka_read(consumer, 3_000).await;
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 3_000);
    assert_eq!(before, after);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_out_of_range_positions_follow_auto_offset_reset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "python-reset", 5, "none").await;
    let consume = |reset: &'static str, expect: usize| {
        let bootstrap = bootstrap.clone();
        async move {
            let mut command = Command::new(python());
            command.arg(python_script("kp_consume.py")).args([
                "--bootstrap",
                &bootstrap,
                "--topic",
                "python-reset",
                "--seek",
                "1000",
                "--reset",
                reset,
                "--expect",
                &expect.to_string(),
            ]);
            let lines = output_of(&mut command).await;
            lines
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["offset"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        consume("earliest", 5).await,
        vec![0, 1, 2, 3, 4],
        "earliest: from the start"
    );

    // latest: the consumer waits at the end; only what comes after it arrives.
    let waiting = tokio::spawn(consume("latest", 1));
    let mut sent = 0;
    while !waiting.is_finished() && sent < 300 {
        produce(&bootstrap, "python-reset", 1, "none").await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offsets = waiting.await.unwrap();
    assert!(offsets[0] >= 5, "latest: reset to the end, got {offsets:?}");
    broker.shutdown().await;
}
