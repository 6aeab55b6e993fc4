//! What survives a restart: offsets, the cluster id, topic ids; and a torn
//! tail from a crash is cut off, not served.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use bytes::Bytes;
use common::*;
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::record_batch::Compression;
use minikafka::protocol::records::{Record, RecordBatchBuilder};

fn one_record_batch(value: &str) -> Bytes {
    let mut builder = RecordBatchBuilder::new(1);
    builder.push(Record {
        value: Some(Bytes::from(value.to_string())),
        ..Record::default()
    });
    builder.build(Compression::None).unwrap()
}

/// The file of partition 0's active segment.
fn active_segment(broker: &minikafka::BrokerHandle, topic: &str) -> std::path::PathBuf {
    let topic = broker.broker().topic(topic).unwrap();
    topic.partition(0).unwrap().log().path().unwrap().to_path_buf()
}

async fn produce_one(client: &mut RawClient, topic: &str, partition: i32, value: &str) -> i64 {
    let request = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(one_record_batch(value)),
            }],
        }],
        ..Default::default()
    });
    let Response::Produce(response) = client.call(request, 11).await else {
        panic!()
    };
    let result = &response.responses[0].partition_responses[0];
    assert_eq!(result.error_code, 0);
    result.base_offset
}

#[tokio::test]
async fn offsets_cluster_id_and_topic_ids_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 2)).await;
    let (cluster_id, topic_id) = {
        let topic = broker.broker().get_or_create_topic("durable", 2).unwrap();
        (broker.broker().cluster_id().to_string(), topic.id)
    };
    let mut client = RawClient::connect(broker.local_addr()).await;
    for i in 0..5 {
        assert_eq!(produce_one(&mut client, "durable", 1, &format!("before-{i}")).await, i);
    }
    broker.shutdown().await;

    let broker = start(config(dir.path(), 2)).await;
    assert_eq!(broker.broker().cluster_id(), cluster_id);
    let topic = broker.broker().topic("durable").expect("the topic is still there");
    assert_eq!((topic.id, topic.partitions.len()), (topic_id, 2));
    let mut client = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        produce_one(&mut client, "durable", 1, "after").await,
        5,
        "offsets continue"
    );
    assert_eq!(produce_one(&mut client, "durable", 0, "first").await, 0);
    let values: Vec<Bytes> = stored_records(&broker, "durable", 1)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values.len(), 6);
    assert_eq!(values[5], Bytes::from_static(b"after"));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("torn", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    for i in 0..3 {
        produce_one(&mut client, "torn", 0, &format!("v{i}")).await;
    }
    let segment = active_segment(&broker, "torn");
    broker.shutdown().await;

    // A crash in the middle of a write: half a batch at the end of the file.
    let half = &one_record_batch("never acknowledged")[..40];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(half)
        .unwrap();

    let broker = start(config(dir.path(), 1)).await;
    let values: Vec<Bytes> = stored_records(&broker, "torn", 0)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(values, ["v0", "v1", "v2"].map(|v| Bytes::from_static(v.as_bytes())));
    let mut client = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        produce_one(&mut client, "torn", 0, "v3").await,
        3,
        "appends continue after the cut"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn in_memory_brokers_write_nothing() {
    let broker = start(minikafka::BrokerConfig::ephemeral(None)).await;
    broker.broker().get_or_create_topic("ephemeral", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    assert_eq!(produce_one(&mut client, "ephemeral", 0, "x").await, 0);
    assert_eq!(produce_one(&mut client, "ephemeral", 0, "y").await, 1);
    assert!(
        broker
            .broker()
            .topic("ephemeral")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .path()
            .is_none()
    );
    assert_eq!(stored_records(&broker, "ephemeral", 0).len(), 2);
    broker.shutdown().await;
}

/// Scribbled bytes at the end of the active segment, after a clean
/// shutdown: the next start scans that segment anyway, cuts the batch whose
/// CRC fails, reports it, and serves everything before it to a consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scribbled_last_bytes_are_cut_and_everything_before_is_served() {
    use rdkafka::ClientConfig;
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("scribbled", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    for i in 0..10 {
        produce_one(&mut client, "scribbled", 0, &format!("v{i}")).await;
    }
    let segment = active_segment(&broker, "scribbled");
    broker.shutdown().await;

    let length = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"scribble", length - 8).unwrap();
    drop(file);

    let broker = start(config(dir.path(), 1)).await;
    let recovery = broker
        .broker()
        .topic("scribbled")
        .unwrap()
        .partition(0)
        .unwrap()
        .log()
        .recovery();
    assert!(recovery.clean, "the shutdown was clean");
    assert_eq!(
        recovery.bytes_cut,
        one_record_batch("v9").len() as u64,
        "the last batch went"
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "unused-with-assign")
        .set("check.crcs", "true")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset("scribbled", 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let values = tokio::task::spawn_blocking(move || {
        let mut values = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while values.len() < 9 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(std::time::Duration::from_millis(100)) {
                values.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
        }
        values
    })
    .await
    .unwrap();
    let expected: Vec<String> = (0..9).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
    let mut client = RawClient::connect(broker.local_addr()).await;
    assert_eq!(produce_one(&mut client, "scribbled", 0, "v9 again").await, 9);
    broker.shutdown().await;
}
