//! A disk that fails. `tests/native/failing_disk.c`, loaded into the broker
//! binary with LD_PRELOAD, makes fsync and fdatasync of one directory's
//! files fail with EIO while one switch file exists, and makes the disk
//! full there (half of a write lands, then ENOSPC) while another does.
//!
//! - A failed fsync of a partition under `--fsync always`: librdkafka, kcat
//!   and kafka-python get KAFKA_STORAGE_ERROR for that partition, from then
//!   on until a restart, while the other partitions go on; after the restart
//!   everything that was acknowledged is there.
//! - A full partition: the same clients are refused while it is full, and
//!   take writes again at the next offset once there is room; nothing torn
//!   is left in the log. If the torn part cannot be cut off either, the
//!   partition refuses appends until a restart cuts it.
//! - A full offsets log: a rebalance that cannot be recorded answers
//!   SyncGroup NOT_COORDINATOR, and the group forms once there is room.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
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

/// A data directory whose partition 0 of [`TOPIC`] (or another directory
/// in it) fails every fsync while [`FailingDisk::fail`] is in force, and
/// is full while [`FailingDisk::fill`] is.
struct FailingDisk {
    /// Holds everything below, until the test ends.
    _dir: tempfile::TempDir,
    data: PathBuf,
    shim: PathBuf,
    /// The part of a path that marks the failing directory.
    under: String,
    fsync_switch: PathBuf,
    full_switch: PathBuf,
    cut_switch: PathBuf,
}

impl FailingDisk {
    /// Partition 0 of [`TOPIC`] fails.
    fn new() -> FailingDisk {
        FailingDisk::under(&format!("/{TOPIC}-0/"))
    }

    /// The directories whose paths contain `under` fail. Builds the shim.
    fn under(under: &str) -> FailingDisk {
        let dir = tempfile::tempdir().unwrap();
        let shim = build_shim("failing_disk", dir.path());
        FailingDisk {
            data: dir.path().join("data"),
            fsync_switch: dir.path().join("fail-fsync-now"),
            full_switch: dir.path().join("full-now"),
            cut_switch: dir.path().join("fail-cuts-now"),
            under: under.to_string(),
            shim,
            _dir: dir,
        }
    }

    /// The broker binary on this disk, with the shim loaded.
    async fn broker(&self, extra: &[&str]) -> RunningBinary {
        let env = [
            ("LD_PRELOAD", self.shim.to_str().unwrap()),
            ("FAILING_DISK_FSYNC_WHILE", self.fsync_switch.to_str().unwrap()),
            ("FAILING_DISK_FULL_WHILE", self.full_switch.to_str().unwrap()),
            ("FAILING_DISK_CUT_WHILE", self.cut_switch.to_str().unwrap()),
            ("FAILING_DISK_UNDER", &self.under),
        ];
        spawn_broker_with_env(&self.data, extra, &env).await
    }

    fn fail(&self) {
        std::fs::write(&self.fsync_switch, b"").unwrap();
    }

    fn recover(&self) {
        std::fs::remove_file(&self.fsync_switch).unwrap();
    }

    fn fill(&self) {
        std::fs::write(&self.full_switch, b"").unwrap();
    }

    fn make_room(&self) {
        std::fs::remove_file(&self.full_switch).unwrap();
    }

    /// The length of partition 0's first segment file.
    fn first_segment_bytes(&self) -> u64 {
        let segment = self.data.join(format!("{TOPIC}-0/00000000000000000000.log"));
        std::fs::metadata(segment).unwrap().len()
    }

    /// Cutting a file short (ftruncate) fails with EIO.
    fn fail_cuts(&self) {
        std::fs::write(&self.cut_switch, b"").unwrap();
    }

    fn allow_cuts(&self) {
        std::fs::remove_file(&self.cut_switch).unwrap();
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
    let output = kafka_python_send(bootstrap, partition).await;
    assert!(!output.status.success(), "kafka-python's send is refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// kafka-python sends one record, "kafka-python-0", to `partition`, without
/// retries.
async fn kafka_python_send(bootstrap: &str, partition: i32) -> std::process::Output {
    Command::new(python())
        .arg(python_script("kp_produce.py"))
        .args(["--bootstrap", bootstrap, "--topic", TOPIC, "--count", "1"])
        .args(["--partition", &partition.to_string(), "--retries", "0"])
        .args(["--value-prefix", "kafka-python-", "--timeout-s", "20"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
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

/// kafka-python and kcat, one record each, are refused with
/// KAFKA_STORAGE_ERROR for `partition`.
async fn kafka_python_and_kcat_are_refused(bootstrap: &str, partition: i32) {
    let kafka_python = kafka_python_error(bootstrap, partition).await;
    assert!(
        kafka_python.contains("KafkaStorageError"),
        "kafka-python: {kafka_python}"
    );
    let (kcat_succeeded, kcat_stderr) = kcat_produce(bootstrap, partition).await;
    assert!(
        !kcat_succeeded && kcat_stderr.contains("Disk error"),
        "kcat is refused: {kcat_stderr}"
    );
}

/// An OffsetCommit of offset 1 of partition 0 of [`TOPIC`] for `group`,
/// from outside any generation.
fn commit_from_outside(group: &str) -> minikafka::protocol::messages::Request {
    use minikafka::protocol::messages::offsets::*;
    minikafka::protocol::messages::Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: TOPIC.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 1,
                ..Default::default()
            }],
        }],
        ..Default::default()
    })
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
    kafka_python_and_kcat_are_refused(&bootstrap, 0).await;
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

/// Sends "before-0" to "before-2" to partition 0, which takes them at
/// offsets 0 to 2; those (offset, value) pairs.
async fn three_to_partition_0(producer: &FutureProducer) -> Vec<(i64, String)> {
    let mut sent = Vec::new();
    for i in 0..3 {
        let value = format!("before-{i}");
        assert_eq!(send(producer, 0, &value).await, Ok(i));
        sent.push((i, value));
    }
    sent
}

/// A full disk: half of an append's write lands, then the write fails. The
/// append is refused with KAFKA_STORAGE_ERROR and the torn half is cut off,
/// so once there is room the partition takes writes at the next offset, and
/// after a crash exactly what was acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_appends_until_there_is_room() {
    let disk = FailingDisk::new();
    let broker = disk.broker(&[]).await;
    let bootstrap = broker.addr.to_string();
    let producer = producer(&bootstrap);
    let mut expected = three_to_partition_0(&producer).await;
    assert_eq!(send(&producer, 1, "other-0").await, Ok(0));
    let segment_bytes = || disk.first_segment_bytes();
    let before_full = segment_bytes();

    disk.fill();
    assert_eq!(
        send(&producer, 0, "refused-0").await,
        Err(RDKafkaErrorCode::KafkaStorageError)
    );
    kafka_python_and_kcat_are_refused(&bootstrap, 0).await;
    assert_eq!(send(&producer, 1, "other-1").await, Ok(1), "other partitions go on");
    assert_eq!(segment_bytes(), before_full, "the torn halves were cut off");

    disk.make_room();
    assert_eq!(
        send(&producer, 0, "after-0").await,
        Ok(3),
        "the next offset: nothing of the refused appends stayed"
    );
    let sent = kafka_python_send(&bootstrap, 0).await;
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let (kcat_succeeded, kcat_stderr) = kcat_produce(&bootstrap, 0).await;
    assert!(kcat_succeeded, "{kcat_stderr}");
    for (offset, value) in [(3, "after-0"), (4, "kafka-python-0"), (5, "kcat-line")] {
        expected.push((offset, value.to_string()));
    }
    assert_eq!(values_in(&bootstrap, 0).await, expected);
    drop(producer);
    let mut broker = broker;
    broker.child.kill().await.unwrap();

    let broker = spawn_broker(&disk.data).await;
    assert_eq!(values_in(&broker.addr.to_string(), 0).await, expected);
}

/// A full disk that also fails the cut of the torn half: the segment then
/// ends in part of a batch the log cannot account for, so the partition
/// refuses appends, from librdkafka, kafka-python and kcat, even once there
/// is room, until a restart, whose recovery cuts the tear off. Everything
/// acknowledged is there after it, and appends go on at the next offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_append_that_cannot_be_cut_off_refuses_appends_until_a_restart() {
    let disk = FailingDisk::new();
    let broker = disk.broker(&[]).await;
    let bootstrap = broker.addr.to_string();
    let producer = producer(&bootstrap);
    let expected = three_to_partition_0(&producer).await;
    let segment_bytes = || disk.first_segment_bytes();
    let before_full = segment_bytes();

    disk.fill();
    disk.fail_cuts();
    assert_eq!(
        send(&producer, 0, "torn").await,
        Err(RDKafkaErrorCode::KafkaStorageError)
    );
    assert!(segment_bytes() > before_full, "half of the batch stayed");
    disk.make_room();
    disk.allow_cuts();
    assert_eq!(
        send(&producer, 0, "refused").await,
        Err(RDKafkaErrorCode::KafkaStorageError),
        "a log that ends in a tear takes nothing more"
    );
    kafka_python_and_kcat_are_refused(&bootstrap, 0).await;
    assert_eq!(send(&producer, 1, "other-0").await, Ok(0), "other partitions go on");
    let logged = eventually("the failed cut is logged", || {
        Some(broker.logged("could not cut a failed append off")).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(logged.len(), 1, "the failed cut is logged once: {logged:?}");
    drop(producer);
    let mut broker = broker;
    broker.child.kill().await.unwrap();

    let broker = spawn_broker(&disk.data).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(values_in(&bootstrap, 0).await, expected);
    assert_eq!(segment_bytes(), before_full, "recovery cut the tear off");
    assert_eq!(broker.logged("cutting it off").len(), 1, "the cut is reported");
    assert_eq!(send(&self::producer(&bootstrap), 0, "after-restart").await, Ok(3));
}

/// A full disk under the committed-offsets log: a rebalance whose group
/// record cannot be written is answered NOT_COORDINATOR in SyncGroup, as
/// Kafka answers when it cannot store the group, and the group rebalances.
/// Once there is room, a member's rejoin forms the group, and an rdkafka
/// consumer that met the same refusals is assigned and reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_that_cannot_be_recorded_is_answered_not_coordinator() {
    use minikafka::protocol::ErrorCode;
    use minikafka::protocol::messages::groups::*;
    use minikafka::protocol::messages::{Request, Response};
    let disk = FailingDisk::under("/group-offsets/");
    let broker = disk.broker(&[]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(send(&producer(&bootstrap), 0, "to-read").await, Ok(0));
    disk.fill();

    let mut client = RawClient::connect(broker.addr).await;
    let join = |member: &str| {
        Request::JoinGroup(JoinGroupRequest {
            group_id: "g".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            member_id: member.into(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: bytes::Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff"),
            }],
            ..Default::default()
        })
    };
    let sync = |generation: i32, member: &str| {
        Request::SyncGroup(SyncGroupRequest {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: vec![SyncGroupRequestAssignment {
                member_id: member.into(),
                assignment: bytes::Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff"),
            }],
            ..Default::default()
        })
    };
    // v3: no MEMBER_ID_REQUIRED round trip.
    let Response::JoinGroup(joined) = client.call(join(""), 3).await else {
        panic!()
    };
    assert_eq!(joined.error_code, 0);
    let Response::SyncGroup(synced) = client.call(sync(joined.generation_id, &joined.member_id), 3).await else {
        panic!()
    };
    assert_eq!(synced.error_code, ErrorCode::NotCoordinator.code());
    assert!(synced.assignment.is_empty());

    disk.make_room();
    let Response::JoinGroup(again) = client.call(join(&joined.member_id), 3).await else {
        panic!()
    };
    assert_eq!((again.error_code, again.generation_id), (0, joined.generation_id + 1));
    let Response::SyncGroup(synced) = client.call(sync(again.generation_id, &again.member_id), 3).await else {
        panic!()
    };
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"\0\0\0\0\0\0\xff\xff\xff\xff");

    // librdkafka meets the same refusal, and joins once there is room.
    disk.fill();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "rd")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let consumer = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + DEADLINE;
        let refused = |broker: &RunningBinary| {
            let failed = broker.logged("recording the group failed");
            failed.iter().filter(|line| line.contains("group=rd")).count()
        };
        while refused(&broker) < 2 {
            assert!(std::time::Instant::now() < deadline, "rdkafka's rebalances are refused");
            assert!(consumer.poll(Duration::from_millis(50)).is_none_or(|m| m.is_err()));
        }
        assert_eq!(consumer.assignment().unwrap().count(), 0);
        (consumer, broker)
    })
    .await
    .unwrap();
    disk.make_room();
    let value = tokio::task::spawn_blocking(move || {
        let (consumer, broker) = consumer;
        let deadline = std::time::Instant::now() + DEADLINE;
        let value = loop {
            assert!(std::time::Instant::now() < deadline, "rdkafka joins and reads");
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                break String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            }
        };
        // The consumer leaves the group while the broker is still there.
        drop(consumer);
        drop(broker);
        value
    })
    .await
    .unwrap();
    assert_eq!(value, "to-read");
}

/// A full disk under the committed-offsets log: a commit is answered
/// NOT_COORDINATOR, as Kafka's group coordinator answers a storage error,
/// which clients retry: librdkafka a few times before it reports the code
/// (it would not retry KAFKA_STORAGE_ERROR). kafka-python keeps trying (it
/// would with either code), and its commit lands once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_while_the_offsets_log_is_full_lands_once_there_is_room() {
    use minikafka::protocol::ErrorCode;
    use minikafka::protocol::messages::offsets::*;
    use minikafka::protocol::messages::{Request, Response};
    let disk = FailingDisk::under("/group-offsets/");
    let broker = disk.broker(&[]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(send(&producer(&bootstrap), 0, "to-commit").await, Ok(0));
    disk.fill();

    let mut client = RawClient::connect(broker.addr).await;
    let Response::OffsetCommit(answer) = client.call(commit_from_outside("by-hand"), 8).await else {
        panic!()
    };
    assert_eq!(
        answer.topics[0].partitions[0].error_code,
        ErrorCode::NotCoordinator.code()
    );

    // librdkafka retries the commit a few times, then reports the code.
    let rdkafka = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "rd")
                .create()
                .unwrap();
            let mut positions = rdkafka::TopicPartitionList::new();
            positions
                .add_partition_offset(TOPIC, 0, rdkafka::Offset::Offset(2))
                .unwrap();
            let refused = consumer.commit(&positions, rdkafka::consumer::CommitMode::Sync);
            assert!(
                matches!(
                    refused,
                    Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NotCoordinator))
                ),
                "{refused:?}"
            );
            (consumer, positions)
        })
        .await
        .unwrap()
    };
    let refusals = |broker: &RunningBinary, group: &str| {
        let failed = broker.logged("writing committed offsets failed");
        failed
            .iter()
            .filter(|line| line.contains(&format!("group={group}")))
            .count()
    };
    assert!(refusals(&broker, "rd") >= 2, "librdkafka tried again");

    let mut kafka_python = Command::new(python())
        .arg(python_script("kp_commit.py"))
        .args([
            "--bootstrap",
            &bootstrap,
            "--group",
            "py",
            "--commit",
            &format!("{TOPIC}:0:1"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while refusals(&broker, "py") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "kafka-python's commit is refused, and retried"
        );
        assert!(kafka_python.try_wait().unwrap().is_none(), "kafka-python gave up early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let committed = async |client: &mut RawClient, group: &str| -> i64 {
        let fetch = Request::OffsetFetch(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: TOPIC.into(),
                partition_indexes: vec![0],
            }]),
            ..Default::default()
        });
        let Response::OffsetFetch(fetched) = client.call(fetch, 7).await else {
            panic!()
        };
        fetched.topics[0].partitions[0].committed_offset
    };
    for group in ["by-hand", "rd", "py"] {
        assert_eq!(committed(&mut client, group).await, -1, "{group}: nothing landed");
    }
    disk.make_room();
    let output = tokio::time::timeout(DEADLINE, kafka_python.wait_with_output())
        .await
        .expect("kafka-python's commit lands")
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (consumer, positions) = rdkafka;
    tokio::task::spawn_blocking(move || consumer.commit(&positions, rdkafka::consumer::CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();

    for (group, offset) in [("py", 1), ("rd", 2), ("by-hand", -1)] {
        assert_eq!(committed(&mut client, group).await, offset, "{group}");
    }
    // The torn halves of the refused writes are not in the log either.
    drop(client);
    let mut broker = broker;
    broker.child.kill().await.unwrap();
    let broker = spawn_broker(&disk.data).await;
    let mut client = RawClient::connect(broker.addr).await;
    for (group, offset) in [("py", 1), ("rd", 2), ("by-hand", -1)] {
        assert_eq!(committed(&mut client, group).await, offset, "{group} after a restart");
    }
}

/// A full disk under the committed-offsets log: DeleteGroups and
/// OffsetDelete cannot write their tombstones, answer NOT_COORDINATOR as
/// Kafka's coordinator answers a storage error, and leave the group and
/// its commits as they were; once there is room they go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_deletions_that_cannot_be_written_leave_the_group_as_it_was() {
    use minikafka::protocol::messages::Response;
    let disk = FailingDisk::under("/group-offsets/");
    let broker = disk.broker(&[]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(send(&producer(&bootstrap), 0, "to-commit").await, Ok(0));
    let mut client = RawClient::connect(broker.addr).await;
    for group in ["whole", "partly"] {
        let Response::OffsetCommit(answer) = client.call(commit_from_outside(group), 8).await else {
            panic!()
        };
        assert_eq!(answer.topics[0].partitions[0].error_code, 0);
    }
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let partition = format!("{TOPIC}:0");

    disk.fill();
    assert_eq!(
        kp_admin(&bootstrap, &["delete-groups", "whole"]).await,
        json(r#"{"results": {"whole": "NotCoordinatorError"}}"#)
    );
    assert_eq!(
        kp_admin(&bootstrap, &["delete-group-offsets", "partly", &partition]).await,
        json(r#"{"error": "NotCoordinatorError", "partitions": {}}"#)
    );
    assert_eq!(
        kp_admin(&bootstrap, &["list-groups"]).await,
        json(r#"{"groups": {"partly": "Empty", "whole": "Empty"}}"#),
        "both groups are as they were"
    );

    disk.make_room();
    assert_eq!(
        kp_admin(&bootstrap, &["delete-groups", "whole"]).await,
        json(r#"{"results": {"whole": "OK"}}"#)
    );
    assert_eq!(
        kp_admin(&bootstrap, &["delete-group-offsets", "partly", &partition]).await,
        json(&format!(r#"{{"error": null, "partitions": {{"{partition}": null}}}}"#))
    );
    assert_eq!(kp_admin(&bootstrap, &["list-groups"]).await, json(r#"{"groups": {}}"#));
}

/// A topic auto-created while its partition's fsync fails: Metadata
/// answers KAFKA_STORAGE_ERROR for it (the creation fsyncs the partition's
/// files), and nothing is left half made. Once the disk answers again the
/// next Metadata creates it, and it takes and keeps writes, also across a
/// crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_auto_created_while_fsync_fails_is_created_once_the_disk_answers() {
    use minikafka::protocol::ErrorCode;
    use minikafka::protocol::messages::metadata::*;
    use minikafka::protocol::messages::{Request, Response};
    let disk = FailingDisk::new();
    // The harness auto-creates topics with 3 partitions.
    let broker = disk.broker(&[]).await;
    let mut client = RawClient::connect(broker.addr).await;
    let metadata = || {
        Request::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some(TOPIC.into()),
                ..Default::default()
            }]),
            ..Default::default()
        })
    };
    disk.fail();
    let Response::Metadata(refused) = client.call(metadata(), 12).await else {
        panic!()
    };
    assert_eq!(refused.topics[0].error_code, ErrorCode::KafkaStorageError.code());
    assert!(refused.topics[0].partitions.is_empty());

    disk.recover();
    let Response::Metadata(created) = client.call(metadata(), 12).await else {
        panic!()
    };
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].partitions.len(), 3);
    let bootstrap = broker.addr.to_string();
    let producer = producer(&bootstrap);
    assert_eq!(send(&producer, 0, "first").await, Ok(0));
    assert_eq!(send(&producer, 1, "other").await, Ok(0));
    drop(producer);
    let mut broker = broker;
    broker.child.kill().await.unwrap();

    let broker = spawn_broker(&disk.data).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(values_in(&bootstrap, 0).await, [(0, "first".to_string())]);
    assert_eq!(values_in(&bootstrap, 1).await, [(0, "other".to_string())]);
}
