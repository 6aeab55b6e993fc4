//! A disk whose fsync fails. `tests/native/fail_fsync.c`, loaded into the
//! broker binary with LD_PRELOAD, makes fsync and fdatasync of one
//! partition's files fail with EIO while a switch file exists. Under
//! `--fsync always`, librdkafka, kcat and kafka-python then get
//! KAFKA_STORAGE_ERROR for that partition, from then on until a restart,
//! while the other partitions go on; after the restart everything that was
//! acknowledged is there, and the partition takes writes again.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const TOPIC: &str = "disk";

/// A data directory whose partition 0 of [`TOPIC`] fails every fsync
/// while [`FailingDisk::fail`] is in force.
struct FailingDisk {
    /// Holds everything below, until the test ends.
    _dir: tempfile::TempDir,
    data: PathBuf,
    shim: PathBuf,
    switch: PathBuf,
}

impl FailingDisk {
    /// Builds the shim, with `$CC` or `cc`.
    fn new() -> FailingDisk {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("libfail_fsync.so");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/native/fail_fsync.c");
        let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = std::process::Command::new(&compiler)
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&shim)
            .arg(&source)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|e| panic!("running {compiler} to build the fsync shim: {e}"));
        assert!(status.success(), "building the fsync shim with {compiler}");
        FailingDisk {
            data: dir.path().join("data"),
            switch: dir.path().join("fail-fsync-now"),
            shim,
            _dir: dir,
        }
    }

    /// The broker binary on this disk, with the shim loaded.
    async fn broker(&self, extra: &[&str]) -> RunningBinary {
        let partition_dir = format!("/{TOPIC}-0/");
        let env = [
            ("LD_PRELOAD", self.shim.to_str().unwrap()),
            ("FAIL_FSYNC_WHILE", self.switch.to_str().unwrap()),
            ("FAIL_FSYNC_UNDER", &partition_dir),
        ];
        spawn_broker_with_env(&self.data, extra, &env).await
    }

    fn fail(&self) {
        std::fs::write(&self.switch, b"").unwrap();
    }

    fn recover(&self) {
        std::fs::remove_file(&self.switch).unwrap();
    }
}

/// A producer that reports the broker's first answer: no retries.
fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.send.max.retries", "0")
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

/// Sends `value` to `partition`; its offset, or the error it got.
async fn send(producer: &FutureProducer, partition: i32, value: &str) -> Result<i64, RDKafkaErrorCode> {
    let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(value);
    match producer.send(record, DEADLINE).await {
        Ok(delivery) => Ok(delivery.offset),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("sending {value}: {e}"),
    }
}

/// kafka-python sends one record to `partition`, without retries; its
/// stderr when it fails.
async fn kafka_python_error(bootstrap: &str, partition: i32) -> String {
    let output = Command::new(python())
        .arg(python_script("kp_produce.py"))
        .args(["--bootstrap", bootstrap, "--topic", TOPIC, "--count", "1"])
        .args(["--partition", &partition.to_string(), "--retries", "0"])
        .args(["--value-prefix", "kafka-python-", "--timeout-s", "20"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "kafka-python's send is refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// kcat sends one line to `partition`, without retries; its exit status
/// and stderr.
async fn kcat_produce(bootstrap: &str, partition: i32) -> (bool, String) {
    let mut child = Command::new(kcat())
        .env_remove("LD_LIBRARY_PATH")
        .args(["-P", "-b", bootstrap, "-t", TOPIC, "-p", &partition.to_string()])
        .args(["-X", "message.send.max.retries=0", "-X", "acks=all"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"kcat-line\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("kcat exits")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every value in `partition`, from its start to its end.
async fn values_in(bootstrap: &str, partition: i32) -> Vec<(i64, String)> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "failing-disk-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let (_, end) = consumer.fetch_watermarks(TOPIC, partition, DEADLINE).unwrap();
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(TOPIC, partition, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let mut values = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while values.last().is_none_or(|(offset, _)| offset + 1 < end) {
            assert!(std::time::Instant::now() < deadline, "read up to {end}: {values:?}");
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                values.push((message.offset(), value));
            }
        }
        values
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_answers_kafka_storage_error_until_a_restart() {
    let disk = FailingDisk::new();
    let broker = disk.broker(&["--fsync", "always"]).await;
    let bootstrap = broker.addr.to_string();
    let producer = producer(&bootstrap);

    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let value = format!("before-{i}");
        assert_eq!(send(&producer, 0, &value).await, Ok(i));
        acknowledged.push((i, value));
    }
    assert_eq!(send(&producer, 1, "other-0").await, Ok(0));

    disk.fail();
    assert_eq!(
        send(&producer, 0, "refused-0").await,
        Err(RDKafkaErrorCode::KafkaStorageError),
        "the fsync failed, so the write is not acknowledged"
    );
    assert_eq!(send(&producer, 1, "other-1").await, Ok(1), "other partitions go on");

    // The disk answers again, but a failed fsync may have lost pages the
    // next one would not report: the partition stays refused.
    disk.recover();
    assert_eq!(
        send(&producer, 0, "refused-1").await,
        Err(RDKafkaErrorCode::KafkaStorageError)
    );
    let kafka_python = kafka_python_error(&bootstrap, 0).await;
    assert!(
        kafka_python.contains("KafkaStorageError"),
        "kafka-python: {kafka_python}"
    );
    let (kcat_succeeded, kcat_stderr) = kcat_produce(&bootstrap, 0).await;
    assert!(
        !kcat_succeeded && kcat_stderr.contains("Disk error"),
        "kcat is refused: {kcat_stderr}"
    );
    assert_eq!(send(&producer, 1, "other-2").await, Ok(2));
    // Only the one fsync failed: the refusals after it did not try again.
    let logged = eventually("the failure is logged", || {
        Some(broker.logged("fsync failed")).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(logged.len(), 1, "the failure is logged once: {logged:?}");
    drop(producer);
    let mut broker = broker;
    broker.child.kill().await.unwrap();

    let broker = spawn_broker(&disk.data).await;
    let bootstrap = broker.addr.to_string();
    // The batch whose fsync failed reached the file, and recovery keeps it,
    // as the notes say (its producer was told it failed); the appends
    // refused after it never reached the log.
    let mut expected = acknowledged.clone();
    expected.push((5, "refused-0".to_string()));
    assert_eq!(values_in(&bootstrap, 0).await, expected);
    let producer = self::producer(&bootstrap);
    assert_eq!(send(&producer, 0, "after-restart").await, Ok(6));
    let others: Vec<_> = values_in(&bootstrap, 1).await.into_iter().map(|(_, v)| v).collect();
    assert_eq!(others, ["other-0", "other-1", "other-2"]);
}

/// Under the default policy nothing waits for an fsync, but a segment roll
/// fsyncs the segment it closes, in the background. When that fails, the
/// partition refuses appends from then on, as after any failed fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_after_a_segment_roll_refuses_later_appends() {
    let disk = FailingDisk::new();
    let mut broker = disk.broker(&["--segment-bytes", "2048"]).await;
    let bootstrap = broker.addr.to_string();
    let producer = producer(&bootstrap);
    // The topic's creation fsyncs too: it comes first.
    let mut acknowledged = vec![(0, "first".to_string())];
    assert_eq!(send(&producer, 0, "first").await, Ok(0));
    disk.fail();
    let padding = "x".repeat(400);
    let deadline = std::time::Instant::now() + DEADLINE;
    let refused = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "a roll's fsync fails: {acknowledged:?}"
        );
        let value = format!("{}-{padding}", acknowledged.len());
        match send(&producer, 0, &value).await {
            Ok(offset) => acknowledged.push((offset, value)),
            Err(code) => break code,
        }
    };
    assert_eq!(refused, RDKafkaErrorCode::KafkaStorageError);
    assert!(
        acknowledged.len() >= 5,
        "the first roll came after 2 KiB: {}",
        acknowledged.len()
    );
    assert_eq!(
        send(&producer, 0, "refused").await,
        Err(RDKafkaErrorCode::KafkaStorageError)
    );
    assert_eq!(send(&producer, 1, "other").await, Ok(0), "other partitions go on");
    let logged = eventually("the failure is logged", || {
        Some(broker.logged("fsync of a rolled segment failed")).filter(|l| !l.is_empty())
    })
    .await;
    // One line per rolled segment whose flush failed (several rolls can
    // queue before the flush thread reaches the first), and only there.
    assert!(!logged.is_empty());
    assert!(broker.logged("/disk-1/").is_empty(), "{:?}", broker.logged("/disk-1/"));
    drop(producer);
    broker.child.kill().await.unwrap();

    let broker = spawn_broker(&disk.data).await;
    let stored = values_in(&broker.addr.to_string(), 0).await;
    assert_eq!(
        stored, acknowledged,
        "what was acknowledged survives, and nothing refused"
    );
}
