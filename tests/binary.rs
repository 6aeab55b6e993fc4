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
        "--log-level",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}
