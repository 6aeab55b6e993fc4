//! A machine that loses power. `tests/native/power_cut.c`, loaded into the
//! broker binary with LD_PRELOAD, records what each fsync makes durable.
//! After the broker is killed, the test puts the data directory back as a
//! power cut may leave it, every file as of its last fsync and every
//! directory's entries as of theirs, and starts a broker on it.
//!
//! - Under `--fsync always`, everything acknowledged is there: a topic
//!   kafka-python created, the records librdkafka and kafka-python were
//!   told were written, at their offsets, and the offsets both committed,
//!   with a producer still sending when the power went (and half of what
//!   was not synced reaching the disk, a torn tail); a second cut after
//!   the restart loses nothing either.
//! - Under the default policy the page cache is all an acknowledgement
//!   promises, as in Kafka: the records since the last segment roll are
//!   lost, and the broker starts on what was synced, its offsets dense.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::process::Command;

const TOPIC: &str = "cut";
const PARTITIONS: i32 = 3;

/// A data directory on a disk that can lose power.
struct PowerCutDisk {
    /// Holds everything below, until the test ends.
    _dir: tempfile::TempDir,
    data: PathBuf,
    shim: PathBuf,
    /// Where the shim keeps what each fsync made durable.
    state: PathBuf,
}

impl PowerCutDisk {
    /// Builds the shim.
    fn new() -> PowerCutDisk {
        let dir = tempfile::tempdir().unwrap();
        let shim = build_shim("power_cut", dir.path());
        let state = dir.path().join("durable");
        std::fs::create_dir(&state).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        PowerCutDisk {
            data,
            shim,
            state,
            _dir: dir,
        }
    }

    /// The broker binary on this disk, with the shim loaded.
    async fn broker(&self, extra: &[&str]) -> RunningBinary {
        let under = format!("{}/", self.data.display());
        let env = [
            ("LD_PRELOAD", self.shim.to_str().unwrap()),
            ("POWER_CUT_UNDER", under.as_str()),
            ("POWER_CUT_STATE", self.state.to_str().unwrap()),
        ];
        spawn_broker_with_env(&self.data, extra, &env).await
    }

    /// Kills `broker` and leaves the data directory as the power cut may:
    /// only what was fsynced, and with `torn`, half of what was appended
    /// to a file since its last fsync too (write-back that stopped part
    /// way). What is left then counts as durable, for the next cut.
    async fn cut_power(&self, mut broker: RunningBinary, torn: bool) {
        broker.child.kill().await.unwrap();
        let root = key_of(&self.data);
        self.put_back(&self.data, &root, torn);
        self.record_as_durable(&self.data);
    }

    /// Makes `dir` hold what the directory `key` held at its last fsync
    /// (nothing, if it had none), each file as of its own last fsync.
    fn put_back(&self, dir: &Path, key: &str, torn: bool) {
        let durable: HashMap<String, (char, String)> = self.listing(key);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let kept = durable.get(&name).is_some_and(|(_, k)| *k == key_of(&path));
            if !kept {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
        for (name, (kind, entry_key)) in &durable {
            let path = dir.join(name);
            if *kind == 'd' {
                if !path.exists() {
                    std::fs::create_dir(&path).unwrap();
                }
                self.put_back(&path, entry_key, torn);
                continue;
            }
            let mut contents = self.contents(entry_key);
            let now = std::fs::read(&path).unwrap_or_default();
            if torn && now.len() > contents.len() && now.starts_with(&contents) {
                let unsynced = now.len() - contents.len();
                contents.extend_from_slice(&now[contents.len()..contents.len() + unsynced / 2]);
            }
            std::fs::write(&path, contents).unwrap();
        }
    }

    /// Records everything under `dir` as the shim would after an fsync of
    /// each file and directory.
    fn record_as_durable(&self, dir: &Path) {
        let mut listing = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let key = key_of(&path);
            let kind = if path.is_dir() { 'd' } else { 'f' };
            if path.is_dir() {
                self.record_as_durable(&path);
            } else {
                std::fs::write(self.state.join(format!("file-{key}")), std::fs::read(&path).unwrap()).unwrap();
            }
            let name = path.file_name().unwrap().to_str().unwrap();
            listing.push_str(&format!("{kind}\t{key}\t{name}\n"));
        }
        std::fs::write(self.state.join(format!("dir-{}", key_of(dir))), listing).unwrap();
    }

    /// The entries the directory `key` had at its last fsync, by name.
    fn listing(&self, key: &str) -> HashMap<String, (char, String)> {
        let Ok(text) = std::fs::read_to_string(self.state.join(format!("dir-{key}"))) else {
            return HashMap::new();
        };
        text.lines()
            .map(|line| {
                let mut fields = line.splitn(3, '\t');
                let kind = fields.next().unwrap().chars().next().unwrap();
                let entry_key = fields.next().unwrap().to_string();
                (fields.next().unwrap().to_string(), (kind, entry_key))
            })
            .collect()
    }

    /// The file `key`'s contents at its last fsync; empty if it had none.
    fn contents(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.state.join(format!("file-{key}"))).unwrap_or_default()
    }
}

/// The shim's name for a file: inode number and birth time.
fn key_of(path: &Path) -> String {
    let metadata = std::fs::symlink_metadata(path).unwrap();
    let born = metadata
        .created()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}-{}", metadata.ino(), born.as_secs(), born.subsec_nanos())
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Acknowledged records: (partition, offset) → value.
type Acknowledged = BTreeMap<(i32, i64), String>;

/// librdkafka sends `count` records, `{prefix}{i}` padded to about 200
/// bytes, round the partitions, all in flight at once; those acknowledged.
async fn send_with_rdkafka(producer: &FutureProducer, prefix: &str, count: usize) -> Acknowledged {
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..count {
        let value = format!("{prefix}{i}-{}", "x".repeat(200));
        let partition = (i % PARTITIONS as usize) as i32;
        let producer = producer.clone();
        sends.spawn(async move {
            let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
            let delivery = producer.send(record, DEADLINE).await.unwrap();
            ((delivery.partition, delivery.offset), value)
        });
    }
    sends.join_all().await.into_iter().collect()
}

/// librdkafka sends 300 records in five rounds, one after the other, so
/// that each partition gets batches of about 5 KiB and rolls its first
/// segment at 16 KiB; those acknowledged.
async fn send_in_rounds(producer: &FutureProducer) -> Acknowledged {
    let mut acknowledged = Acknowledged::new();
    for round in 0..5 {
        acknowledged.extend(send_with_rdkafka(producer, &format!("rdkafka-{round}-"), 60).await);
    }
    acknowledged
}

/// kafka-python sends `count` records, `kafka-python-{i}`; those
/// acknowledged.
async fn send_with_kafka_python(bootstrap: &str, count: usize) -> Acknowledged {
    let output = Command::new(python())
        .arg(python_script("kp_produce.py"))
        .args([
            "--bootstrap",
            bootstrap,
            "--topic",
            TOPIC,
            "--count",
            &count.to_string(),
        ])
        .args(["--value-prefix", "kafka-python-", "--acks", "all"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let delivered = json_stdout(&output, "kp_produce.py")["delivered"].clone();
    let delivered: Vec<(i32, i64)> = serde_json::from_value(delivered).unwrap();
    assert_eq!(delivered.len(), count, "kafka-python delivered everything");
    delivered
        .into_iter()
        .enumerate()
        .map(|(i, at)| (at, format!("kafka-python-{i}")))
        .collect()
}

/// Every record of [`TOPIC`], from each partition's start to its end.
async fn everything_in(bootstrap: &str) -> Acknowledged {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer = consumer_from_beginning(&bootstrap, TOPIC, PARTITIONS);
        let mut ends = BTreeMap::new();
        for partition in 0..PARTITIONS {
            let (start, end) = consumer.fetch_watermarks(TOPIC, partition, DEADLINE).unwrap();
            assert_eq!(start, 0, "partition {partition} starts at 0");
            ends.insert(partition, end);
        }
        let mut read = Acknowledged::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while read.len() < ends.values().sum::<i64>() as usize {
            assert!(
                std::time::Instant::now() < deadline,
                "read up to {ends:?}: {}",
                read.len()
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                read.insert((message.partition(), message.offset()), value);
            }
        }
        read
    })
    .await
    .unwrap()
}

/// Commits offset `offset` of every partition of `topic` for `group` with
/// librdkafka, from outside the group.
async fn commit_with_rdkafka(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&bootstrap, &group);
        let mut offsets = rdkafka::TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            offsets
                .add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset))
                .unwrap();
        }
        consumer.commit(&offsets, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
}

/// Commits `offset` of partition 1 for `group` with kafka-python.
async fn commit_with_kafka_python(bootstrap: &str, group: &str, offset: i64) {
    let output = Command::new(python())
        .arg(python_script("kp_commit.py"))
        .args(["--bootstrap", bootstrap, "--group", group])
        .args(["--commit", &format!("{TOPIC}:1:{offset}")])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(json_stdout(&output, "kp_commit.py")["committed"], true);
}

/// `group`'s committed offsets of `topic`, by partition, from OffsetFetch.
async fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&bootstrap, &group);
        let mut asked = rdkafka::TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            asked.add_partition(&topic, partition);
        }
        let found = consumer.committed_offsets(asked, DEADLINE).unwrap();
        found
            .elements()
            .iter()
            .filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0).map(|o| (e.partition(), o)))
            .collect()
    })
    .await
    .unwrap()
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Every record in `acknowledged` is in `stored`, at its offset.
fn assert_kept(acknowledged: &Acknowledged, stored: &Acknowledged) {
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(at, value)| stored.get(at) != Some(value))
        .map(|(at, _)| at)
        .collect();
    assert!(lost.is_empty(), "{} acknowledged records lost: {lost:?}", lost.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_always_everything_acknowledged_survives_a_power_cut() {
    let disk = PowerCutDisk::new();
    // Small segments, so that rolls, their flushes and index files are in
    // what the cut leaves.
    let broker = disk.broker(&["--fsync", "always", "--segment-bytes", "16384"]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(
        kp_admin(&bootstrap, &["create", TOPIC, &PARTITIONS.to_string()]).await["error"],
        serde_json::Value::Null
    );
    let producer = producer(&bootstrap);
    let mut acknowledged = send_in_rounds(&producer).await;
    acknowledged.extend(send_with_kafka_python(&bootstrap, 60).await);
    commit_with_rdkafka(&bootstrap, "cut-rdkafka", TOPIC, 7).await;
    commit_with_kafka_python(&bootstrap, "cut-kafka-python", 11).await;
    // Deletions are acknowledged too: a topic and a group that stay gone.
    commit_with_kafka_python(&bootstrap, "cut-deleted-group", 3).await;
    assert_eq!(
        kp_admin(&bootstrap, &["delete-groups", "cut-deleted-group"]).await["results"]["cut-deleted-group"],
        "OK"
    );
    assert_eq!(
        kp_admin(&bootstrap, &["create", "deleted", "3"]).await["error"],
        serde_json::Value::Null
    );
    // Its commits go with it, in the last write to the offsets log before
    // the cut: no later fsync of that log covers them.
    commit_with_rdkafka(&bootstrap, "cut-rdkafka", "deleted", 5).await;
    assert_eq!(
        kp_admin(&bootstrap, &["delete", "deleted"]).await["error"],
        serde_json::Value::Null
    );

    // The power goes while librdkafka is sending: what it was told was
    // written must be there, whatever else was in flight.
    let late = Arc::new(Mutex::new(Acknowledged::new()));
    let mut sending = tokio::task::JoinSet::new();
    // Four senders, each with one record in flight.
    for sender in 0..4 {
        let (producer, late) = (producer.clone(), late.clone());
        sending.spawn(async move {
            for i in 0.. {
                let value = format!("late-{sender}-{i}");
                let partition = i % PARTITIONS;
                let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(&value);
                if let Ok(delivery) = producer.send(record, Duration::from_secs(2)).await {
                    late.lock()
                        .unwrap()
                        .insert((delivery.partition, delivery.offset), value);
                }
            }
        });
    }
    eventually("the late producer has been answered", || {
        (late.lock().unwrap().len() >= 30).then_some(())
    })
    .await;
    disk.cut_power(broker, true).await;
    sending.abort_all();
    let late = late.lock().unwrap().clone();
    acknowledged.extend(late);
    drop(producer);

    // The next start, on the shim again, for a second cut below.
    let broker = disk.broker(&["--fsync", "always", "--segment-bytes", "16384"]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(
        kp_admin(&bootstrap, &["describe", TOPIC]).await["partitions"],
        serde_json::json!([0, 1, 2]),
        "the topic kafka-python created is there"
    );
    assert_eq!(
        kp_admin(&bootstrap, &["list"]).await["topics"],
        serde_json::json!([TOPIC]),
        "the deleted topic stays deleted"
    );
    let stored = everything_in(&bootstrap).await;
    assert_kept(&acknowledged, &stored);
    assert_eq!(committed(&bootstrap, "cut-deleted-group", TOPIC).await, BTreeMap::new());
    assert_eq!(
        committed(&bootstrap, "cut-rdkafka", "deleted").await,
        BTreeMap::new(),
        "the deleted topic's commits stay deleted"
    );
    assert_eq!(
        committed(&bootstrap, "cut-rdkafka", TOPIC).await,
        BTreeMap::from([(0, 7), (1, 7), (2, 7)])
    );
    assert_eq!(
        committed(&bootstrap, "cut-kafka-python", TOPIC).await,
        BTreeMap::from([(1, 11)])
    );
    // And the log goes on from its end.
    let ends: BTreeMap<i32, i64> = stored.keys().fold(BTreeMap::new(), |mut ends, (p, o)| {
        ends.insert(*p, o + 1);
        ends
    });
    let producer = self::producer(&bootstrap);
    let after = send_with_rdkafka(&producer, "after-", 3).await;
    let at: Vec<_> = after.keys().copied().collect();
    assert_eq!(at, vec![(0, ends[&0]), (1, ends[&1]), (2, ends[&2])]);
    acknowledged.extend(after);

    // A second cut, after what the recovery of the first removed and wrote:
    // a group deleted in the last write to the offsets log stays deleted.
    assert_eq!(
        kp_admin(&bootstrap, &["delete-groups", "cut-kafka-python"]).await["results"]["cut-kafka-python"],
        "OK"
    );
    drop(producer);
    disk.cut_power(broker, false).await;
    let broker = spawn_broker(&disk.data).await;
    let bootstrap = broker.addr.to_string();
    assert_kept(&acknowledged, &everything_in(&bootstrap).await);
    assert_eq!(committed(&bootstrap, "cut-kafka-python", TOPIC).await, BTreeMap::new());
    assert_eq!(
        committed(&bootstrap, "cut-rdkafka", TOPIC).await,
        BTreeMap::from([(0, 7), (1, 7), (2, 7)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_default_policy_a_power_cut_loses_what_was_not_synced() {
    let disk = PowerCutDisk::new();
    let broker = disk.broker(&["--segment-bytes", "16384"]).await;
    let bootstrap = broker.addr.to_string();
    assert_eq!(
        kp_admin(&bootstrap, &["create", TOPIC, &PARTITIONS.to_string()]).await["error"],
        serde_json::Value::Null
    );
    let producer = producer(&bootstrap);
    let acknowledged = send_in_rounds(&producer).await;
    drop(producer);
    // A rolled segment is fsynced in the background, and its index written
    // after that: once each partition has one, its first segment is synced.
    eventually("every partition's first segment is flushed", || {
        (0..PARTITIONS)
            .all(|p| {
                disk.data
                    .join(format!("{TOPIC}-{p}/00000000000000000000.index"))
                    .exists()
            })
            .then_some(())
    })
    .await;
    disk.cut_power(broker, false).await;

    let broker = spawn_broker(&disk.data).await;
    let bootstrap = broker.addr.to_string();
    let stored = everything_in(&bootstrap).await;
    // What is left is what the rolls synced: a prefix of each partition.
    assert!(
        stored.len() < acknowledged.len(),
        "the active segments' records were never synced: {} of {} kept",
        stored.len(),
        acknowledged.len()
    );
    for partition in 0..PARTITIONS {
        assert!(
            stored.keys().any(|(p, _)| *p == partition),
            "partition {partition}'s roll synced the segment it closed"
        );
    }
    let kept: Acknowledged = acknowledged
        .iter()
        .filter(|(at, _)| stored.contains_key(at))
        .map(|(at, v)| (*at, v.clone()))
        .collect();
    assert_eq!(stored, kept, "what is left is what was acknowledged there");
}
