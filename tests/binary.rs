//! The built binary: flags, serving real clients, graceful shutdown on
//! SIGTERM and SIGINT, and a restart on the same data directory.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use minikafka::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use minikafka::protocol::messages::{Request, Response};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct RunningBinary {
    child: Child,
    addr: std::net::SocketAddr,
}

/// Starts `minikafka broker` on an ephemeral port and reads the bound
/// address from its "listening" log line.
async fn spawn_broker(data_dir: &Path) -> RunningBinary {
    spawn_broker_with(data_dir, &[]).await
}

async fn spawn_broker_with(data_dir: &Path, extra: &[&str]) -> RunningBinary {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--num-partitions",
            "3",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "minikafka=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("minikafka listening") {
                let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
                return addr.parse().unwrap();
            }
        }
        panic!("the broker exited before listening");
    })
    .await
    .expect("the broker starts listening");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    RunningBinary { child, addr }
}

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
        "--retention-ms",
        "--retention-bytes",
        "--log-retention-check-interval-ms",
        "--fsync",
        "--flush-messages",
        "--flush-ms",
        "--log-level",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}

/// SIGKILL while acks=all producers are mid-flight, with `--fsync always`
/// and small segments (so kills land around rolls too): after a restart
/// every acknowledged record is in the log exactly once, at the offset it
/// was acknowledged with, and the offsets have no gaps. (A killed process
/// still leaves its writes in the page cache, so this checks the broker's
/// own recovery, not the disk's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "always", "--segment-bytes", "4096"];
    let mut acked: Vec<(i32, i64, String)> = Vec::new();
    for round in 0..5 {
        let broker = spawn_broker_with(dir.path(), &flags).await;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.addr.to_string())
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "1000")
            .create()
            .unwrap();
        let delivered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // Up to 64 records in flight, without end, until aborted.
        let producing = {
            let delivered = delivered.clone();
            tokio::spawn(async move {
                let mut in_flight = tokio::task::JoinSet::new();
                for i in 0u64.. {
                    if in_flight.len() >= 64 {
                        in_flight.join_next().await;
                    }
                    let (producer, delivered) = (producer.clone(), delivered.clone());
                    in_flight.spawn(async move {
                        let value = format!("round-{round}-record-{i}");
                        let record = FutureRecord::to("crash").key(&value).payload(&value);
                        if let Ok(delivery) = producer.send(record, DEADLINE).await {
                            delivered
                                .lock()
                                .unwrap()
                                .push((delivery.partition, delivery.offset, value));
                        }
                    });
                }
            })
        };
        // Kill once some, but not all, records are acknowledged.
        let threshold = 100 + round * 300;
        eventually("some acknowledgements", || {
            (delivered.lock().unwrap().len() >= threshold).then_some(())
        })
        .await;
        let mut broker = broker;
        broker.child.start_kill().unwrap();
        broker.child.wait().await.unwrap();
        // Nothing can be acknowledged by a dead broker: what is delivered
        // now is final, and the sends still waiting are dropped.
        producing.abort();
        let delivered: Vec<_> = delivered.lock().unwrap().drain(..).collect();
        acked.extend(delivered);
    }
    assert!(
        acked.len() >= 100 + 400 + 700 + 1000 + 1300,
        "{} acknowledged",
        acked.len()
    );

    let handle = start(config(dir.path(), 3)).await;
    let stored = stored_records_by_partition(&handle, "crash");
    for (partition, records) in &stored {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        let first = offsets.first().copied().unwrap_or(0);
        assert_eq!(
            offsets,
            (first..first + offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition}: no gaps or repeats"
        );
    }
    for (partition, offset, value) in &acked {
        let record = stored[partition]
            .iter()
            .find(|r| r.offset == *offset)
            .unwrap_or_else(|| panic!("acknowledged {value} at {partition}/{offset} is missing"));
        assert_eq!(record.value.as_deref(), Some(value.as_bytes()), "{partition}/{offset}");
        let copies = stored[partition]
            .iter()
            .filter(|r| r.value.as_deref() == Some(value.as_bytes()))
            .count();
        assert_eq!(copies, 1, "{value} is stored once");
    }
    handle.shutdown().await;
}
