//! What connections cost the broker binary in memory, measured in one run:
//! - RSS idle, then with 10,000 connections open (each answered one
//!   ApiVersions), as bytes per connection;
//! - peak RSS while 50 clients each pipeline two Produce requests of
//!   100 MiB (socket.request.max.bytes) as fast as they can, under the
//!   default 256 MiB bound on request bytes. The batches exceed
//!   message.max.bytes, so nothing is stored: the memory is the requests'.
//!
//! `cargo bench --bench connections` (needs 10,000 file descriptors here
//! and as many in the broker: `ulimit -n` of 20,000 or more).

#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use minikafka::protocol::messages::Request;
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE_CONNECTIONS: usize = 10_000;
const PRODUCERS: usize = 50;
const REQUEST_BYTES: usize = 100 * 1024 * 1024 - 1024;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn call(stream: &mut TcpStream, frame: &[u8]) {
    stream.write_all(frame).await.unwrap();
    let size = stream.read_i32().await.unwrap();
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.unwrap();
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = support::spawn_broker(dir.path()).await;
    let pid = child.id().unwrap();
    let api_versions = Request::ApiVersions(Default::default()).encode_frame(3, 1, "bench");

    let idle_kib = status_kib(pid, "VmRSS:");
    let mut open = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        call(&mut stream, &api_versions).await;
        open.push(stream);
    }
    let connected_kib = status_kib(pid, "VmRSS:");
    println!("RSS idle:                         {:>8} KiB", idle_kib);
    println!(
        "RSS with {IDLE_CONNECTIONS} connections:       {:>8} KiB",
        connected_kib
    );
    println!(
        "per connection:                   {:>8} bytes",
        (connected_kib - idle_kib) * 1024 / IDLE_CONNECTIONS as u64
    );
    drop(open);

    let frame = Request::Produce(ProduceRequest {
        acks: 1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "big".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Bytes::from(vec![0u8; REQUEST_BYTES])),
            }],
        }],
        ..Default::default()
    })
    .encode_frame(9, 1, "bench")
    .freeze();
    let before_kib = status_kib(pid, "VmRSS:");
    let started = std::time::Instant::now();
    let mut producers = Vec::new();
    for _ in 0..PRODUCERS {
        let (addr, frame) = (addr.clone(), frame.clone());
        producers.push(tokio::spawn(async move {
            let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
            let writing = tokio::spawn(async move {
                writer.write_all(&frame).await.unwrap();
                writer.write_all(&frame).await.unwrap();
                writer
            });
            for _ in 0..2 {
                let size = reader.read_i32().await.unwrap();
                let mut body = vec![0; size as usize];
                reader.read_exact(&mut body).await.unwrap();
            }
            drop(writing.await.unwrap());
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let peak_kib = status_kib(pid, "VmHWM:");
    println!(
        "{PRODUCERS} producers x 2 pipelined {} MiB requests: {:.1} s, RSS before {} KiB, peak {} KiB (bound 262144 KiB)",
        REQUEST_BYTES >> 20,
        started.elapsed().as_secs_f64(),
        before_kib,
        peak_kib
    );
    child.kill().await.unwrap();
}
