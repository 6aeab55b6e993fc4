//! Group commit under `--fsync always`: producers that each wait for an
//! acks=all answer before sending again, writing to one partition of an
//! in-process broker on disk. With one producer every request costs an
//! fsync; with eight, one fsync should cover the batches of several
//! requests. Prints requests and fsyncs per second for 1 and 8 producers,
//! measured in the same run, and the requests answered per fsync.
//!
//! `cargo bench --bench group_commit`

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use minikafka::protocol::messages::Request;
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use minikafka::protocol::record_batch::Compression;
use minikafka::protocol::records::{Record, RecordBatchBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUN: Duration = Duration::from_secs(3);

fn produce_frame(correlation_id: i32) -> bytes::BytesMut {
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    builder.push(Record {
        value: Some(Bytes::from(vec![b'x'; 1000])),
        ..Record::default()
    });
    Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "durable".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(builder.build(Compression::None).unwrap()),
            }],
        }],
        ..Default::default()
    })
    .encode_frame(9, correlation_id, "bench")
}

/// Requests answered and fsyncs run with `producers` waiting producers.
async fn run(producers: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = minikafka::BrokerConfig {
        fsync_always: true,
        ..minikafka::BrokerConfig::ephemeral(Some(dir.path().to_path_buf()))
    };
    let broker = minikafka::start(config).await.unwrap();
    broker.broker().get_or_create_topic("durable", 1).unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (addr, answered) = (broker.local_addr(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut correlation_id = 0;
            while Instant::now() < deadline {
                correlation_id += 1;
                stream.write_all(&produce_frame(correlation_id)).await.unwrap();
                let size = stream.read_i32().await.unwrap();
                let mut body = vec![0; size as usize];
                stream.read_exact(&mut body).await.unwrap();
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let topic = broker.broker().topic("durable").unwrap();
    let syncs = topic.partition(0).unwrap().durable_syncs();
    broker.shutdown().await;
    (answered.load(Ordering::Relaxed), syncs)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("--fsync always, acks=all, one 1 KiB record per request, one partition, {RUN:?} each");
    println!("producers  requests/s  fsyncs/s  requests per fsync");
    for producers in [1, 8] {
        let (requests, syncs) = run(producers).await;
        let secs = RUN.as_secs_f64();
        println!(
            "{producers:>9}  {:>10.0}  {:>8.0}  {:>18.2}",
            requests as f64 / secs,
            syncs as f64 / secs,
            requests as f64 / syncs.max(1) as f64
        );
    }
}
