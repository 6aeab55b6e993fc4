//! librdkafka (through the rdkafka crate) against the in-process broker:
//! producing with every acks setting and codec, and consuming it back.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const MESSAGES: usize = 10_000;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn producer(bootstrap: &str, acks: &str, codec: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

/// Sends `count` keyed messages and returns each delivery's (partition, offset).
async fn send_all(producer: &FutureProducer, topic: &str, count: usize) -> Vec<(i32, i64)> {
    let mut deliveries = Vec::with_capacity(count);
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
        let delivery = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        deliveries.push((delivery.partition, delivery.offset));
    }
    deliveries
}

/// Produces with one acks setting and every codec, then checks the log:
/// offsets dense per partition, every message present once in send order,
/// and each stored batch byte-identical to what the client sent.
async fn produce_with_acks(acks: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = CaptureProxy::bind().await;
    let mut config = config(dir.path(), 3);
    config.advertised_listener = Some(proxy.addr.to_string());
    let broker = start(config).await;
    proxy.forward_to(broker.local_addr());

    for codec in CODECS {
        let topic = format!("produce-acks{acks}-{codec}");
        let producer = producer(&proxy.addr.to_string(), acks, codec);
        let deliveries = send_all(&producer, &topic, MESSAGES).await;

        if acks != "0" {
            let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            for (partition, offset) in &deliveries {
                per_partition.entry(*partition).or_default().push(*offset);
            }
            assert_eq!(per_partition.len(), 3, "{topic}: keys spread over all partitions");
            for (partition, mut offsets) in per_partition {
                offsets.sort_unstable();
                let expected: Vec<i64> = (0..offsets.len() as i64).collect();
                assert_eq!(offsets, expected, "{topic}/{partition}: offsets are exactly 0..n-1");
            }
        }
        // acks=0 gets no answer, so wait until the broker has everything.
        eventually("every message in the log", || {
            (log_end_total(&broker, &topic) == MESSAGES as i64).then_some(())
        })
        .await;

        let stored = stored_records_by_partition(&broker, &topic);
        let mut seen = BTreeSet::new();
        for (partition, records) in &stored {
            let indexes: Vec<usize> = records
                .iter()
                .map(|r| {
                    let key = std::str::from_utf8(r.key.as_deref().unwrap()).unwrap();
                    let i: usize = key.strip_prefix("key-").unwrap().parse().unwrap();
                    assert_eq!(r.value.as_deref(), Some(format!("value-{i}").as_bytes()));
                    assert_eq!(
                        r.headers,
                        vec![("i".to_string(), Some(bytes::Bytes::from(i.to_string())))]
                    );
                    assert!(seen.insert(i), "{topic}: message {i} stored twice");
                    i
                })
                .collect();
            assert!(
                indexes.windows(2).all(|w| w[0] < w[1]),
                "{topic}/{partition}: stored in send order"
            );
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(
                offsets,
                (0..records.len() as i64).collect::<Vec<_>>(),
                "{topic}/{partition}: dense offsets"
            );
        }
        assert_eq!(seen.len(), MESSAGES, "{topic}: every message stored");

        // The codec asked for is the codec stored. (librdkafka enables lz4
        // only when the broker advertises FindCoordinator: see
        // protocol-notes/produce.md.)
        let stored_codecs: Vec<i16> = (0..3)
            .flat_map(|p| stored_batches(&broker, &topic, p))
            .map(|b| i16::from_be_bytes([b[21], b[22]]) & 7)
            .collect();
        let expected = match codec {
            "gzip" => 1,
            "snappy" => 2,
            "lz4" => 3,
            "zstd" => 4,
            _ => 0,
        };
        // librdkafka sends a batch uncompressed when compressing would not
        // make it smaller (a small last batch, say); the rest carry the codec.
        assert!(stored_codecs.contains(&expected), "{topic}: codecs {stored_codecs:?}");
        assert!(
            stored_codecs.iter().all(|c| *c == expected || *c == 0),
            "{topic}: codecs {stored_codecs:?}"
        );

        let sent = proxy.produced_batches();
        for partition in 0..3 {
            let sent = &sent[&(topic.clone(), partition)];
            assert_stored_verbatim(sent, &stored_batches(&broker, &topic, partition));
        }
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_with_acks_all_every_codec() {
    produce_with_acks("all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_with_acks_1_every_codec() {
    produce_with_acks("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_produces_with_acks_0_every_codec() {
    produce_with_acks("0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_auto_creates_topics_with_num_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 5)).await;
    let producer = producer(&broker.bootstrap(), "all", "none");
    let deliveries = send_all(&producer, "auto-created", 200).await;
    let topic = broker.broker().topic("auto-created").expect("created on first use");
    assert_eq!(topic.partitions.len(), 5);
    let partitions: BTreeSet<i32> = deliveries.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions, (0..5).collect());
    broker.shutdown().await;
}

/// An rdkafka consumer with manual assignment reads back everything an
/// rdkafka producer wrote, compressed or not: same keys, values, headers,
/// timestamps and per-partition order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_consumer_reads_back_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    for codec in CODECS {
        let topic = format!("consume-{codec}");
        let producer = producer(&broker.bootstrap(), "all", codec);
        send_all(&producer, &topic, MESSAGES).await;
        let stored = stored_records_by_partition(&broker, &topic);

        let consumer = consumer_from_beginning(&broker.bootstrap(), &topic, 3);
        let consumed = tokio::task::spawn_blocking(move || {
            let mut consumed: BTreeMap<i32, Vec<minikafka::protocol::records::Record>> = BTreeMap::new();
            let mut total = 0;
            let deadline = std::time::Instant::now() + DEADLINE;
            while total < MESSAGES && std::time::Instant::now() < deadline {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message.unwrap();
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(bytes::Bytes::copy_from_slice)))
                            .collect()
                    })
                    .unwrap_or_default();
                consumed
                    .entry(message.partition())
                    .or_default()
                    .push(minikafka::protocol::records::Record {
                        offset: message.offset(),
                        timestamp: message.timestamp().to_millis().unwrap(),
                        key: message.key().map(bytes::Bytes::copy_from_slice),
                        value: message.payload().map(bytes::Bytes::copy_from_slice),
                        headers,
                    });
                total += 1;
            }
            consumed
        })
        .await
        .unwrap();
        assert_eq!(consumed, stored, "{topic}: consumed exactly what is stored");
        assert_eq!(consumed.values().map(Vec::len).sum::<usize>(), MESSAGES);
    }
    broker.shutdown().await;
}

/// librdkafka 2.12 asks Metadata v12 for all topics with three stray bytes
/// after the (null) topic array; Kafka ignores them, so must we.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_lists_all_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 2)).await;
    broker.broker().get_or_create_topic("listed-a", 2).unwrap();
    broker.broker().get_or_create_topic("listed-b", 4).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let metadata = tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, DEADLINE).unwrap())
        .await
        .unwrap();
    let topics: BTreeMap<String, usize> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    assert_eq!(topics, BTreeMap::from([("listed-a".into(), 2), ("listed-b".into(), 4)]));
    assert_eq!(metadata.brokers().len(), 1);
    assert_eq!(metadata.brokers()[0].port() as u16, broker.local_addr().port());
    broker.shutdown().await;
}
