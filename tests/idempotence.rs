//! Idempotent producers: exactly once per partition, in order, through
//! connection cuts; replays acknowledged with their original offsets, also
//! after a restart; sequence and epoch errors by hand.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;
use minikafka::protocol::ErrorCode;
use minikafka::protocol::messages::init_producer_id::InitProducerIdRequest;
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::record_batch::{Compression, batch_crc};
use minikafka::protocol::records::{Record, RecordBatchBuilder};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const MESSAGES: usize = 100_000;

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("cutting proxy seed: {seed}");
    seed
}

/// Checks that every partition holds each of `count` keyed messages exactly
/// once, in send order (keys are key-<i>).
fn assert_exactly_once_in_order(broker: &minikafka::BrokerHandle, topic: &str, count: usize) {
    let mut seen = BTreeSet::new();
    for (partition, records) in stored_records_by_partition(broker, topic) {
        let indexes: Vec<usize> = records
            .iter()
            .map(|r| {
                std::str::from_utf8(r.key.as_deref().unwrap()).unwrap()[4..]
                    .parse()
                    .unwrap()
            })
            .collect();
        for i in &indexes {
            assert!(seen.insert(*i), "{topic}/{partition}: message {i} stored twice");
        }
        assert!(
            indexes.windows(2).all(|w| w[0] < w[1]),
            "{topic}/{partition}: in send order"
        );
    }
    assert_eq!(seen.len(), count, "{topic}: every message stored");
}

async fn broker_behind_cutting_proxy(dir: &std::path::Path) -> (minikafka::BrokerHandle, CuttingProxy) {
    let mut proxy = CuttingProxy::bind().await;
    let mut config = config(dir, 3);
    config.advertised_listener = Some(proxy.addr.to_string());
    let broker = start(config).await;
    proxy.forward_to(broker.local_addr(), seed(), 200..4000, 20);
    (broker, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_idempotent_producer_survives_connection_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, proxy) = broker_behind_cutting_proxy(dir.path()).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", proxy.addr.to_string())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "500")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let key = format!("key-{i}");
        pending.push(
            producer
                .send_result(FutureRecord::to("cut").key(&key).payload("v"))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for delivery in pending {
        let delivery = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        per_partition
            .entry(delivery.partition)
            .or_default()
            .push(delivery.offset);
    }
    assert!(proxy.cuts.load(Ordering::SeqCst) > 0, "the proxy cut connections");
    for (partition, offsets) in per_partition {
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {partition}: acked in order"
        );
    }
    assert_exactly_once_in_order(&broker, "cut", MESSAGES);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_idempotent_producer_survives_connection_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, proxy) = broker_behind_cutting_proxy(dir.path()).await;
    let output = tokio::process::Command::new(python())
        .arg(python_script("kp_produce.py"))
        .args([
            "--bootstrap",
            &proxy.addr.to_string(),
            "--topic",
            "cut-python",
            "--idempotence",
            "--timeout-s",
            "240",
        ])
        .args(["--count", &MESSAGES.to_string()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let report = json_stdout(&output, "kp_produce");
    assert_eq!(report["delivered"].as_array().unwrap().len(), MESSAGES);
    assert!(proxy.cuts.load(Ordering::SeqCst) > 0, "the proxy cut connections");
    assert_exactly_once_in_order(&broker, "cut-python", MESSAGES);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_with_idempotence() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut child = tokio::process::Command::new(kcat())
        .env_remove("LD_LIBRARY_PATH")
        .args([
            "-b",
            &broker.bootstrap(),
            "-P",
            "-t",
            "kcat-idempotent",
            "-X",
            "enable.idempotence=true",
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        let lines: String = (0..500).map(|i| format!("line-{i}\n")).collect();
        stdin.write_all(lines.as_bytes()).await.unwrap();
    }
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("failed"), "kcat: {stderr}");
    let batches = stored_batches(&broker, "kcat-idempotent", 0);
    assert!(
        batches
            .iter()
            .all(|b| i64::from_be_bytes(b[43..51].try_into().unwrap()) >= 0),
        "batches carry a producer id"
    );
    let values: Vec<Bytes> = stored_records(&broker, "kcat-idempotent", 0)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(
        values,
        (0..500).map(|i| Bytes::from(format!("line-{i}"))).collect::<Vec<_>>()
    );
    broker.shutdown().await;
}

// ------------------------------------------------------------------ by hand

async fn init_producer_id(
    client: &mut RawClient,
    version: i16,
    producer_id: i64,
    producer_epoch: i16,
) -> (i16, i64, i16) {
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id,
        producer_epoch,
    });
    let Response::InitProducerId(r) = client.call(request, version).await else {
        panic!()
    };
    (r.error_code, r.producer_id, r.producer_epoch)
}

fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    idempotent_batch_at(1, producer_id, epoch, base_sequence, values)
}

/// As [`idempotent_batch`], with the records' timestamp.
fn idempotent_batch_at(timestamp: i64, producer_id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new(timestamp);
    for v in values {
        builder.push(Record {
            value: Some(Bytes::from(v.to_string())),
            ..Record::default()
        });
    }
    let mut batch = builder.build(Compression::None).unwrap().to_vec();
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = batch_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(batch)
}

fn produce_frame(topic: &str, batch: Bytes, correlation_id: i32) -> Vec<u8> {
    let request = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch),
            }],
        }],
        ..Default::default()
    });
    RawClient::frame(&request, 9, correlation_id)
}

/// (error code, base offset) of the single partition answered in `body`.
async fn send_produce(client: &mut RawClient, frame: &[u8]) -> (i16, i64) {
    client.send_raw(frame).await;
    let body = client.read_frame().await.unwrap();
    let (_, body) = minikafka::protocol::ResponseHeader::parse(&body, true).unwrap();
    let Response::Produce(r) = Response::decode(minikafka::protocol::ApiKey::Produce, 9, &body).unwrap() else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn producer_ids_are_unique_epochs_bump_and_both_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let (code, first, epoch) = init_producer_id(&mut client, 0, -1, -1).await;
    assert_eq!((code, epoch), (0, 0));
    let (_, second, _) = init_producer_id(&mut client, 4, -1, -1).await;
    assert_ne!(first, second);
    // v3+: the current id and epoch bump the epoch; an older epoch is fenced.
    assert_eq!(init_producer_id(&mut client, 3, second, 0).await, (0, second, 1));
    assert_eq!(
        init_producer_id(&mut client, 4, second, 0).await.0,
        ErrorCode::ProducerFenced.code()
    );
    assert_eq!(
        init_producer_id(&mut client, 3, second, 0).await.0,
        ErrorCode::InvalidProducerEpoch.code()
    );
    // An id without an epoch is not a pair Kafka accepts.
    assert_eq!(
        init_producer_id(&mut client, 4, second, -1).await.0,
        ErrorCode::InvalidRequest.code()
    );
    // Transactions are refused.
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: Some("tx".into()),
        transaction_timeout_ms: 1000,
        ..Default::default()
    });
    let Response::InitProducerId(r) = client.call(request, 4).await else {
        panic!()
    };
    assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
    broker.shutdown().await;

    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let (_, third, _) = init_producer_id(&mut client, 4, -1, -1).await;
    assert!(
        third > second && third > first,
        "ids are never handed out twice: {first} {second} {third}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_replayed_request_gets_its_original_offsets_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("replayed", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let (_, pid, epoch) = init_producer_id(&mut client, 4, -1, -1).await;
    let first = produce_frame("replayed", idempotent_batch(pid, epoch, 0, &["a", "b"]), 100);
    let second = produce_frame("replayed", idempotent_batch(pid, epoch, 2, &["c"]), 101);
    assert_eq!(send_produce(&mut client, &first).await, (0, 0));
    assert_eq!(send_produce(&mut client, &second).await, (0, 2));
    assert_eq!(
        send_produce(&mut client, &first).await,
        (0, 0),
        "replay: the original offset"
    );
    assert_eq!(send_produce(&mut client, &second).await, (0, 2));
    let log_end = |b: &minikafka::BrokerHandle| {
        b.broker()
            .topic("replayed")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .next_offset()
    };
    assert_eq!(log_end(&broker), 3, "nothing appended twice");
    broker.shutdown().await;

    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        send_produce(&mut client, &first).await,
        (0, 0),
        "the same answer after a restart"
    );
    assert_eq!(send_produce(&mut client, &second).await, (0, 2));
    assert_eq!(log_end(&broker), 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn gaps_and_stale_epochs_are_refused_and_others_still_write() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("strict", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let (_, pid, _) = init_producer_id(&mut client, 4, -1, -1).await;
    assert_eq!(
        send_produce(
            &mut client,
            &produce_frame("strict", idempotent_batch(pid, 0, 0, &["a"]), 1)
        )
        .await,
        (0, 0)
    );
    let gap = send_produce(
        &mut client,
        &produce_frame("strict", idempotent_batch(pid, 0, 5, &["b"]), 2),
    )
    .await;
    assert_eq!(gap.0, ErrorCode::OutOfOrderSequenceNumber.code());
    // A bumped epoch starts again at sequence 0; the old epoch is then stale.
    assert_eq!(init_producer_id(&mut client, 4, pid, 0).await, (0, pid, 1));
    assert_eq!(
        send_produce(
            &mut client,
            &produce_frame("strict", idempotent_batch(pid, 1, 0, &["c"]), 3)
        )
        .await,
        (0, 1)
    );
    let stale = send_produce(
        &mut client,
        &produce_frame("strict", idempotent_batch(pid, 0, 1, &["d"]), 4),
    )
    .await;
    assert_eq!(stale.0, ErrorCode::InvalidProducerEpoch.code());
    // Another producer, and a plain one, write on.
    let (_, other, _) = init_producer_id(&mut client, 4, -1, -1).await;
    assert_eq!(
        send_produce(
            &mut client,
            &produce_frame("strict", idempotent_batch(other, 0, 7, &["e"]), 5)
        )
        .await,
        (0, 2)
    );
    assert_eq!(
        send_produce(
            &mut client,
            &produce_frame("strict", idempotent_batch(-1, -1, -1, &["f"]), 6)
        )
        .await,
        (0, 3)
    );
    broker.shutdown().await;
}

/// producer.id.expiration.ms: a partition forgets a producer whose last
/// batch is older than that, and only that one; the forgotten producer's
/// next batch is taken whatever its sequence, as a new producer's.
#[tokio::test]
async fn producers_idle_for_the_expiration_time_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        producer_id_expiration_ms: 60_000,
        producer_id_expiration_check_interval: std::time::Duration::from_millis(50),
        ..config(dir.path(), 1)
    })
    .await;
    broker.broker().get_or_create_topic("expiring", 1).unwrap();
    let now = now_ms();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let idle = idempotent_batch_at(now - 120_000, 7, 0, 0, &["a", "b"]);
    let recent = idempotent_batch_at(now, 8, 0, 0, &["c"]);
    assert_eq!(
        send_produce(&mut client, &produce_frame("expiring", idle, 1)).await,
        (0, 0)
    );
    assert_eq!(
        send_produce(&mut client, &produce_frame("expiring", recent, 2)).await,
        (0, 2)
    );
    let epochs = |producer_id| {
        broker.broker().topic("expiring").unwrap().partitions[0]
            .log()
            .producers()
            .epoch_of(producer_id)
    };
    eventually("the idle producer is forgotten", || epochs(7).is_none().then_some(())).await;
    assert_eq!(epochs(8), Some(0), "the recent one is kept");
    // Sequence 5 follows nothing, and is taken: producer 7 starts afresh.
    let after = idempotent_batch_at(now, 7, 0, 5, &["d"]);
    assert_eq!(
        send_produce(&mut client, &produce_frame("expiring", after, 3)).await,
        (0, 3)
    );
    // Producer 8 is still checked: a gap is refused.
    let gap = idempotent_batch_at(now, 8, 0, 5, &["e"]);
    let (code, _) = send_produce(&mut client, &produce_frame("expiring", gap, 4)).await;
    assert_eq!(code, ErrorCode::OutOfOrderSequenceNumber.code());
    broker.shutdown().await;
}

/// The broker remembers the epoch it handed each producer id for
/// producer.id.expiration.ms, not for ever. Once that memory is gone, a
/// producer asking with an epoch that no partition holds gets a new id (the
/// answer Kafka gives every idempotent producer), while one whose epoch a
/// partition holds is still resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_epochs_are_forgotten_after_the_expiration_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        producer_id_expiration_ms: 60_000,
        ..config(dir.path(), 1)
    })
    .await;
    broker.broker().get_or_create_topic("resumed", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut bumped = Vec::new();
    for _ in 0..2 {
        let (code, id, epoch) = init_producer_id(&mut client, 4, -1, -1).await;
        assert_eq!((code, epoch), (0, 0));
        assert_eq!(
            init_producer_id(&mut client, 4, id, 0).await,
            (0, id, 1),
            "bumped while remembered"
        );
        bumped.push(id);
    }
    let (silent, writer) = (bumped[0], bumped[1]);
    // The writer's epoch 1 reaches a partition, stamped a minute ahead so
    // that the partition still holds it at the expiry below.
    let now = now_ms();
    let batch = idempotent_batch_at(now + 61_000, writer, 1, 0, &["a"]);
    assert_eq!(
        send_produce(&mut client, &produce_frame("resumed", batch, 1)).await,
        (0, 0)
    );
    assert_eq!(broker.broker().issued_producer_ids_held(), 2);

    broker.broker().expire_producers(now + 61_000);
    assert_eq!(broker.broker().issued_producer_ids_held(), 0);
    let (code, again, epoch) = init_producer_id(&mut client, 4, silent, 1).await;
    assert_eq!((code, epoch), (0, 0));
    assert_ne!(again, silent, "epoch 1 was never written, so the id is not resumed");
    assert_eq!(
        init_producer_id(&mut client, 4, writer, 1).await,
        (0, writer, 2),
        "a partition holds epoch 1: resumed"
    );
    broker.shutdown().await;
}
