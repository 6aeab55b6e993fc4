//! The built binary: flags, serving real clients, graceful shutdown on
//! SIGTERM and SIGINT, and a restart on the same data directory.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use minikafka::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use minikafka::protocol::messages::{Request, Response};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::process::Command;

async fn stop(mut broker: RunningBinary, signal: &str) {
    let pid = broker.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(DEADLINE, broker.child.wait())
        .await
        .expect("exits after the signal")
        .unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

async fn produce(addr: std::net::SocketAddr, topic: &str, count: usize) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("acks", "all")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let key = format!("key-{i}");
        let delivery = producer
            .send(FutureRecord::to(topic).key(&key).payload("v"), DEADLINE)
            .await;
        let delivery = delivery.map_err(|(e, _)| e).unwrap();
        deliveries.push((delivery.partition, delivery.offset));
    }
    deliveries
}

async fn identity(addr: std::net::SocketAddr, topic: &str) -> (String, uuid::Uuid) {
    let mut client = RawClient::connect(addr).await;
    let topics = Some(vec![MetadataRequestTopic {
        name: Some(topic.into()),
        ..Default::default()
    }]);
    let Response::Metadata(metadata) = client
        .call(
            Request::Metadata(MetadataRequest {
                topics,
                ..Default::default()
            }),
            12,
        )
        .await
    else {
        panic!()
    };
    (metadata.cluster_id.unwrap(), metadata.topics[0].topic_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_shuts_down_gracefully_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = spawn_broker(dir.path()).await;
    let first = produce(broker.addr, "binary", 30).await;
    let before = identity(broker.addr, "binary").await;
    stop(broker, "-TERM").await;

    let broker = spawn_broker(dir.path()).await;
    assert_eq!(
        identity(broker.addr, "binary").await,
        before,
        "cluster id and topic id survive"
    );
    let second = produce(broker.addr, "binary", 30).await;
    for partition in 0..3 {
        let before = first.iter().filter(|(p, _)| *p == partition).count() as i64;
        let mut offsets: Vec<i64> = second
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .collect();
        offsets.sort_unstable();
        let expected: Vec<i64> = (before..before + offsets.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: offsets continue after the restart"
        );
    }
    stop(broker, "-INT").await;
}

/// The broker keeps every segment's files open: it raises its soft limit
/// on open files to the hard one, as a 1024 soft limit is common.
#[tokio::test]
async fn the_broker_raises_its_open_file_limit_to_the_hard_one() {
    let ours = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = ours
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(u64::MAX);
    // A soft limit below the hard one, and enough to start the broker.
    let soft = (hard / 2).min(256);
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:"))
        .args(["--", env!("CARGO_BIN_EXE_minikafka")])
        .env("RUST_LOG", "minikafka=info");
    let broker = spawn_broker_as(command, dir.path(), &[]).await;
    let pid = broker.child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_ne!(open_files[0], soft.to_string(), "{open_files:?}");
    assert_eq!(open_files[0], open_files[1], "soft as high as hard: {open_files:?}");
    stop(broker, "-TERM").await;
}

#[tokio::test]
async fn help_documents_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args(["broker", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--advertised-listener",
        "--data-dir",
        "--in-memory",
        "--num-partitions",
        "--auto-create-topics",
        "--node-id",
        "--socket-request-max-bytes",
        "--message-max-bytes",
        "--group-initial-rebalance-delay-ms",
        "--group-min-session-timeout-ms",
        "--group-max-session-timeout-ms",
        "--segment-bytes",
        "--log-roll-ms",
        "--fetch-max-bytes",
        "--max-connections",
        "--max-connections-per-ip",
        "--connections-max-idle-ms",
        "--queued-max-request-bytes",
        "--retention-ms",
        "--retention-bytes",
        "--log-retention-check-interval-ms",
        "--fsync",
        "--flush-messages",
        "--flush-ms",
        "--num-recovery-threads-per-data-dir",
        "--log-level",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}

/// Every record of `topic` in the running broker, by partition, as
/// (offset, value), read with an rdkafka consumer that checks CRCs, up to
/// each partition's high watermark.
async fn read_everything(addr: std::net::SocketAddr, topic: &str, partitions: i32) -> Vec<Vec<(i64, String)>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("group.id", "unused-with-assign")
        .set("check.crcs", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut assignment = rdkafka::TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(&topic, p, DEADLINE).unwrap();
            ends.push(high);
            assignment
                .add_partition_offset(&topic, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut read: Vec<Vec<(i64, String)>> = vec![Vec::new(); partitions as usize];
        let done = |read: &Vec<Vec<(i64, String)>>| {
            read.iter()
                .zip(&ends)
                .all(|(r, end)| r.last().map_or(0, |(o, _)| o + 1) >= *end)
        };
        let deadline = std::time::Instant::now() + DEADLINE;
        while !done(&read) {
            assert!(std::time::Instant::now() < deadline, "read up to {ends:?}");
            match consumer.poll(std::time::Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                    read[m.partition() as usize].push((m.offset(), value));
                }
                Some(Err(e)) => panic!("consuming after a crash: {e}"),
                None => {}
            }
        }
        read
    })
    .await
    .unwrap()
}

/// A small deterministic generator for kill moments: the seed is printed,
/// and MINIKAFKA_CRASH_SEED replays a run.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// SIGKILL at random moments, 20 times in a row, while three acks=all
/// producers stream into a broker with `--fsync always` and small segments
/// (so kills land around rolls too). After every restart, read through the
/// restarted broker with CRCs checked: every record acknowledged so far is
/// there exactly once, at the offset it was acknowledged with, offsets have
/// no gaps, nothing else is half there (every batch read whole and valid),
/// and the next round's producers prove it takes writes. (A killed process
/// still leaves its writes in the page cache, so this checks the broker's
/// own recovery, not the disk's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    const ROUNDS: usize = 20;
    const PRODUCERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "always", "--segment-bytes", "4096"];
    let mut seed: u64 = std::env::var("MINIKAFKA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("MINIKAFKA_CRASH_SEED={seed}");
    let mut acked: Vec<(i32, i64, String)> = Vec::new();
    let mut broker = spawn_broker_with(dir.path(), &flags).await;
    for round in 0..ROUNDS {
        let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut producing = tokio::task::JoinSet::new();
        for p in 0..PRODUCERS {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", broker.addr.to_string())
                .set("acks", "all")
                .set("linger.ms", "1")
                .set("message.timeout.ms", "1000")
                .create()
                .unwrap();
            let delivered = delivered.clone();
            // Up to 32 records in flight per producer, without end, until aborted.
            producing.spawn(async move {
                let mut in_flight = tokio::task::JoinSet::new();
                for i in 0u64.. {
                    if in_flight.len() >= 32 {
                        in_flight.join_next().await;
                    }
                    let (producer, delivered) = (producer.clone(), delivered.clone());
                    in_flight.spawn(async move {
                        let value = format!("round-{round}-producer-{p}-record-{i}");
                        let record = FutureRecord::to("crash").key(&value).payload(&value);
                        if let Ok(delivery) = producer.send(record, DEADLINE).await {
                            delivered
                                .lock()
                                .unwrap()
                                .push((delivery.partition, delivery.offset, value));
                        }
                    });
                }
            });
        }
        // A random moment: after 20 to 400 acknowledgements this round.
        let threshold = 20 + (next_random(&mut seed) % 380) as usize;
        eventually("some acknowledgements", || {
            (delivered.lock().unwrap().len() >= threshold).then_some(())
        })
        .await;
        broker.child.start_kill().unwrap();
        broker.child.wait().await.unwrap();
        // Nothing can be acknowledged by a dead broker: what is delivered
        // now is final, and the sends still waiting are dropped.
        producing.abort_all();
        while producing.join_next().await.is_some() {}
        acked.extend(delivered.lock().unwrap().drain(..));

        broker = spawn_broker_with(dir.path(), &flags).await;
        let stored = read_everything(broker.addr, "crash", 3).await;
        for (partition, records) in stored.iter().enumerate() {
            let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(
                offsets, expected,
                "round {round}, partition {partition}: no gaps or repeats"
            );
        }
        for (partition, offset, value) in &acked {
            let records = &stored[*partition as usize];
            assert_eq!(
                records.get(*offset as usize).map(|(_, v)| v),
                Some(value),
                "round {round}: acknowledged {value} at {partition}/{offset}"
            );
            let copies = records.iter().filter(|(_, v)| v == value).count();
            assert_eq!(copies, 1, "round {round}: {value} is stored once");
        }
    }
    assert!(acked.len() >= ROUNDS * 20, "{} acknowledged", acked.len());
    stop(broker, "-TERM").await;
}
