//! End-to-end throughput with librdkafka on loopback, against the broker
//! started in-process (release build, log in a temporary directory):
//! produce N x 100 B records to a 3-partition topic with acks=1, then
//! consume them all from the beginning. Prints records/s and MB/s for both
//! phases of the same run, and their ratio.
//!
//! `cargo bench --bench rdkafka_throughput` (N = 1,000,000; set
//! MINIKAFKA_BENCH_RECORDS to change it).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const RECORD_BYTES: usize = 100;
const PARTITIONS: i32 = 3;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing:
    // only the former should spend a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records: usize = std::env::var("MINIKAFKA_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = runtime.block_on(minikafka::start(minikafka::BrokerConfig {
        num_partitions: PARTITIONS,
        ..minikafka::BrokerConfig::ephemeral(Some(dir.path().to_path_buf()))
    }));
    let broker = broker.unwrap();
    let bootstrap = broker.bootstrap();
    let payload = vec![b'x'; RECORD_BYTES];
    let megabytes = (records * RECORD_BYTES) as f64 / 1e6;

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .unwrap();
    let started = Instant::now();
    for i in 0..records {
        let partition = (i % PARTITIONS as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to("throughput")
            .payload(&payload)
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let produce_secs = started.elapsed().as_secs_f64();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "unused-with-assign")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset("throughput", partition, Offset::Beginning)
            .unwrap();
    }
    let started = Instant::now();
    consumer.assign(&assignment).unwrap();
    let mut consumed = 0;
    while consumed < records {
        if let Some(message) = consumer.poll(Duration::from_secs(10)) {
            message.unwrap();
            consumed += 1;
        }
    }
    let consume_secs = started.elapsed().as_secs_f64();

    println!("rdkafka end to end, {records} x {RECORD_BYTES} B, {PARTITIONS} partitions, acks=1, log on disk");
    println!(
        "  produce: {:>10.0} records/s {:>8.1} MB/s",
        records as f64 / produce_secs,
        megabytes / produce_secs
    );
    println!(
        "  consume: {:>10.0} records/s {:>8.1} MB/s",
        records as f64 / consume_secs,
        megabytes / consume_secs
    );
    println!("  consume/produce throughput ratio: {:.2}", produce_secs / consume_secs);
    runtime.block_on(broker.shutdown());
}
