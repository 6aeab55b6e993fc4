//! The bundled producer against the in-process broker: every record once,
//! in order, byte-identical; the same partitions as librdkafka's fnv1a;
//! retries through a broker restart; timeouts; compression read by rdkafka;
//! and the `minikafka produce` CLI.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use minikafka::producer::{Acks, Compression, ProduceError, Producer, ProducerConfig, ProducerRecord};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn config(bootstrap: &str) -> ProducerConfig {
    ProducerConfig {
        bootstrap_servers: bootstrap.into(),
        ..ProducerConfig::default()
    }
}

fn record(topic: &str, i: usize) -> ProducerRecord {
    ProducerRecord {
        topic: topic.into(),
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}"))),
        headers: vec![("i".into(), Some(Bytes::from(i.to_string()))), ("null".into(), None)],
        ..ProducerRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_in_send_order_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 6)).await;
    let producer = Producer::new(config(&broker.bootstrap())).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..100_000 {
        deliveries.push(producer.send(record("ours", i)).await);
    }
    let mut acked: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let meta = delivery.await.unwrap();
        acked.entry(meta.partition).or_default().push((meta.offset, i));
    }
    producer.close().await;
    assert_eq!(acked.len(), 6, "keys spread over every partition");
    let stored = stored_records_by_partition(&broker, "ours");
    let mut seen = BTreeSet::new();
    for (partition, records) in &stored {
        let acked = &acked[partition];
        assert_eq!(records.len(), acked.len(), "partition {partition}");
        for (record, (offset, i)) in records.iter().zip(acked) {
            assert_eq!(record.offset, *offset, "the acknowledged offset holds the record");
            assert_eq!(record.key.as_deref(), Some(format!("key-{i}").as_bytes()));
            assert_eq!(record.value.as_deref(), Some(format!("value-{i}").as_bytes()));
            assert_eq!(
                record.headers,
                vec![("i".into(), Some(Bytes::from(i.to_string()))), ("null".into(), None)]
            );
            assert!(seen.insert(*i));
        }
        let order: Vec<usize> = acked.iter().map(|(_, i)| *i).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: send order"
        );
    }
    assert_eq!(seen.len(), 100_000);
    broker.shutdown().await;
}

/// For 1,000 keys our fnv1a partitioner and librdkafka's `partitioner=fnv1a`
/// put each key on the same partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_where_librdkafka_fnv1a_puts_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 7)).await;
    let ours = Producer::new(config(&broker.bootstrap())).await.unwrap();
    let theirs: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("partitioner", "fnv1a")
        .create()
        .unwrap();
    for i in 0..1_000 {
        let key = format!("customer-{i}-{}", i * 7919);
        let mine = ours
            .send(ProducerRecord::new("agree", Some(key.clone()), "ours"))
            .await
            .await
            .unwrap();
        let rd = theirs
            .send(FutureRecord::to("agree").key(&key).payload("theirs"), DEADLINE)
            .await
            .unwrap();
        assert_eq!(mine.partition, rd.partition, "key {key:?}");
    }
    ours.close().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_read_back_by_rdkafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 1)).await;
    for (name, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("ours-{name}");
        let producer = Producer::new(ProducerConfig {
            compression,
            ..config(&broker.bootstrap())
        })
        .await
        .unwrap();
        let mut deliveries = Vec::new();
        for i in 0..2_000 {
            deliveries.push(producer.send(record(&topic, i)).await);
        }
        for d in deliveries {
            d.await.unwrap();
        }
        producer.close().await;
        let codecs: BTreeSet<i16> = stored_batches(&broker, &topic, 0)
            .iter()
            .map(|b| i16::from_be_bytes([b[21], b[22]]) & 7)
            .collect();
        assert_eq!(codecs, BTreeSet::from([compression as i16]), "{topic}");

        let consumer = consumer_from_beginning(&broker.bootstrap(), &topic, 1);
        let values = tokio::task::spawn_blocking(move || {
            let mut values = Vec::new();
            let deadline = std::time::Instant::now() + DEADLINE;
            while values.len() < 2_000 && std::time::Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    values.push(message.unwrap().payload().unwrap().to_vec());
                }
            }
            values
        })
        .await
        .unwrap();
        let expected: Vec<Vec<u8>> = (0..2_000).map(|i| format!("value-{i}").into_bytes()).collect();
        assert_eq!(values, expected, "{topic}: rdkafka reads our {name} batches");
    }
    broker.shutdown().await;
}

/// The broker stops in the middle of a stream and comes back on the same
/// port and data: every send is acknowledged after retries, every
/// acknowledged record is in the log once, and per-partition order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 3)).await;
    let addr = broker.local_addr();
    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        retry_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        ..config(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..5_000 {
        deliveries.push(producer.send(record("restart", i)).await);
    }
    // Stop it while records are still arriving, then bring it back.
    broker.shutdown().await;
    for i in 5_000..10_000 {
        deliveries.push(producer.send(record("restart", i)).await);
    }
    let mut config = common::config(dir.path(), 3);
    config.listeners = vec![addr.to_string()];
    let broker = start(config).await;
    let mut acked = 0;
    for delivery in deliveries {
        match delivery.await {
            Ok(_) => acked += 1,
            Err(ProduceError::Timeout(..)) => {}
            Err(e) => panic!("only timeouts may fail, got {e}"),
        }
    }
    producer.close().await;
    assert_eq!(acked, 10_000, "all retried to success within the delivery timeout");
    let mut seen = BTreeSet::new();
    for (partition, records) in stored_records_by_partition(&broker, "restart") {
        let order: Vec<usize> = records
            .iter()
            .map(|r| {
                std::str::from_utf8(r.key.as_deref().unwrap()).unwrap()[4..]
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: in order, no duplicates"
        );
        seen.extend(order);
    }
    assert_eq!(seen.len(), 10_000);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_broker_that_never_answers_times_out() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket); // accept, read nothing, answer nothing
        }
    });
    let config = ProducerConfig {
        request_timeout: Duration::from_millis(300),
        ..config(&addr.to_string())
    };
    let result = tokio::time::timeout(DEADLINE, Producer::new(config))
        .await
        .expect("gives up by itself");
    assert!(
        matches!(result, Err(minikafka::client::ClientError::NoBroker(ref e)) if e.contains("no response")),
        "{:?}",
        result.err()
    );
}

/// A broker that stops answering after the producer connected: the send
/// fails with a timeout once the delivery timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_fails_sends_with_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let mut config_ = common::config(dir.path(), 1);
    config_.advertised_listener = Some(proxy_addr.to_string());
    let broker = start(config_).await;
    let target = broker.local_addr();
    let stalled = Arc::new(AtomicBool::new(false));
    let stall = stalled.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let stall = stall.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
                let mut up = [0u8; 65536];
                let mut down = [0u8; 65536];
                loop {
                    tokio::select! {
                        n = client.read(&mut up) => match n {
                            Ok(n) if n > 0 => {
                                // Once stalled, requests go nowhere.
                                if !stall.load(Ordering::SeqCst) && server.write_all(&up[..n]).await.is_err() { return }
                            }
                            _ => return,
                        },
                        n = server.read(&mut down) => match n {
                            Ok(n) if n > 0 => if client.write_all(&down[..n]).await.is_err() { return },
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    let producer = Producer::new(ProducerConfig {
        request_timeout: Duration::from_millis(300),
        delivery_timeout: Duration::from_millis(1500),
        ..config(&proxy_addr.to_string())
    })
    .await
    .unwrap();
    producer.send(record("stall", 0)).await.await.unwrap();
    stalled.store(true, Ordering::SeqCst);
    let result = tokio::time::timeout(DEADLINE, producer.send(record("stall", 1)).await)
        .await
        .expect("fails by itself");
    assert!(matches!(result, Err(ProduceError::Timeout(..))), "{result:?}");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_produce_cli_sends_arguments_and_stdin_lines() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 1)).await;
    let bin = env!("CARGO_BIN_EXE_minikafka");
    let output = tokio::process::Command::new(bin)
        .args([
            "produce",
            "-b",
            &broker.bootstrap(),
            "-t",
            "cli",
            "-k",
            "k",
            "-H",
            "h=v",
            "-v",
            "one",
            "two",
        ])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("delivered record 0 to cli/0 at offset 0"), "{stdout}");
    assert!(stdout.contains("delivered record 1 to cli/0 at offset 1"), "{stdout}");

    let mut child = tokio::process::Command::new(bin)
        .args(["produce", "-b", &broker.bootstrap(), "-t", "cli", "-K", ":"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a:1\nb:2\nno-key\n")
        .await
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        "3 delivered, 0 failed"
    );
    let stored: Vec<(Option<Bytes>, Option<Bytes>, usize)> = stored_records(&broker, "cli", 0)
        .into_iter()
        .map(|r| (r.key, r.value, r.headers.len()))
        .collect();
    let b = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
    assert_eq!(
        stored,
        vec![
            (b("k"), b("one"), 1),
            (b("k"), b("two"), 1),
            (b("a"), b("1"), 0),
            (b("b"), b("2"), 0),
            (None, b("no-key"), 0)
        ]
    );

    // Nothing delivered (an invalid topic name): a non-zero exit.
    let output = tokio::process::Command::new(bin)
        .args([
            "produce",
            "-b",
            &broker.bootstrap(),
            "-t",
            "bad/name",
            "--delivery-timeout-ms",
            "2000",
            "x",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    broker.shutdown().await;
}

/// Keyless records stick to a partition per batch and move on, so over many
/// batches every partition gets some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_spread_over_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 4)).await;
    let producer = Producer::new(ProducerConfig {
        batch_size: 1024,
        ..config(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut partitions = BTreeSet::new();
    let mut deliveries = Vec::new();
    for i in 0..2_000 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("keyless", None::<Bytes>, format!("v{i}")))
                .await,
        );
    }
    for d in deliveries {
        partitions.insert(d.await.unwrap().partition);
    }
    producer.close().await;
    assert_eq!(partitions, BTreeSet::from([0, 1, 2, 3]));
    broker.shutdown().await;
}

/// buffer.memory bounds what waits unacknowledged: with a batch lingering
/// and the room used up, the next send waits until the batch is answered,
/// then goes through; and a stream of records many times the bound all
/// arrive, in order, byte-identical (the buffers of acknowledged batches
/// are reused for new ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_wait_for_buffer_memory_and_every_record_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(common::config(dir.path(), 2)).await;
    let value = |i: usize| Bytes::from(format!("{i:08}").repeat(1280));
    let sized = |i: usize, partition: i32| ProducerRecord {
        topic: "bounded".into(),
        partition: Some(partition),
        value: Some(value(i)),
        ..ProducerRecord::default()
    };

    // Six 10 KiB records fit in 64 KiB; a seventh does not while their
    // batch lingers.
    let producer = Producer::new(ProducerConfig {
        buffer_memory: 64 * 1024,
        batch_size: 1024 * 1024,
        linger: Duration::from_secs(60),
        ..config(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut first = Vec::new();
    for i in 0..6 {
        first.push(producer.send(sized(i, 0)).await);
    }
    let mut seventh = Box::pin(producer.send(sized(6, 0)));
    tokio::select! {
        biased;
        _ = &mut seventh => panic!("the seventh send found room that six lingering records hold"),
        () = std::future::ready(()) => {}
    }
    producer.flush().await;
    for delivery in first {
        delivery.await.unwrap();
    }
    let seventh = seventh.await;
    producer.flush().await;
    assert_eq!(seventh.await.unwrap().offset, 6);
    producer.close().await;

    // 2,000 records (20 MiB) through 256 KiB of room.
    let producer = Producer::new(ProducerConfig {
        buffer_memory: 256 * 1024,
        batch_size: 64 * 1024,
        ..config(&broker.bootstrap())
    })
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..2_000 {
        deliveries.push(producer.send(sized(i, 1)).await);
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.await.unwrap().offset, i as i64);
    }
    producer.close().await;
    let stored = stored_records(&broker, "bounded", 1);
    assert_eq!(stored.len(), 2_000);
    for (i, record) in stored.iter().enumerate() {
        assert_eq!(record.value.as_ref(), Some(&value(i)), "record {i}");
    }
    assert_eq!(stored_records(&broker, "bounded", 0).len(), 7);
    broker.shutdown().await;
}
