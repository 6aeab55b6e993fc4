//! Consumer groups with real clients: committed offsets resume where they
//! were left (also after a broker restart), partitions are shared without
//! overlap, a member killed without leaving is replaced within its session
//! timeout, and kcat's balanced consumer works.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use minikafka::protocol::messages::group_admin::DescribeGroupsRequest;
use minikafka::protocol::messages::{Request, Response};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const MESSAGES: usize = 10_000;

async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in range {
        let key = format!("key-{i}");
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload("v"))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().unwrap()
}

/// Consumes exactly `count` messages (or fewer by the deadline), commits
/// them synchronously and closes; returns (partition, offset) of each.
async fn consume_and_commit(consumer: BaseConsumer, topic: &str, count: usize) -> Vec<(i32, i64)> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        consumer.subscribe(&[&topic]).unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while seen.len() < count && std::time::Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                seen.push((message.partition(), message.offset()));
                // Stop exactly at `count`: store only what was consumed.
                consumer.store_offset_from_message(&message).unwrap();
            }
        }
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        seen
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_resumes_at_the_committed_offset_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    produce(&broker.bootstrap(), "resume", 0..MESSAGES).await;
    let store = [("enable.auto.offset.store", "false")];

    let first = consume_and_commit(group_consumer(&broker.bootstrap(), "g", &store), "resume", MESSAGES / 2).await;
    assert_eq!(first.len(), MESSAGES / 2);
    let second = consume_and_commit(group_consumer(&broker.bootstrap(), "g", &store), "resume", MESSAGES / 4).await;
    broker.shutdown().await;

    let broker = start(config(dir.path(), 3)).await;
    let third = consume_and_commit(group_consumer(&broker.bootstrap(), "g", &store), "resume", MESSAGES / 4).await;
    let all: Vec<(i32, i64)> = first.iter().chain(&second).chain(&third).copied().collect();
    let unique: BTreeSet<(i32, i64)> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "nothing consumed twice: each consumer resumed at the commit"
    );
    assert_eq!(unique.len(), MESSAGES, "and nothing skipped");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_resumes_at_the_committed_offset_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    produce(&broker.bootstrap(), "py-resume", 0..MESSAGES).await;
    let consume = |bootstrap: String, count: usize| async move {
        let output = Command::new(python())
            .arg(python_script("kp_consume.py"))
            .args([
                "--bootstrap",
                &bootstrap,
                "--topic",
                "py-resume",
                "--group",
                "py",
                "--expect",
                &count.to_string(),
            ])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["partition"].as_i64().unwrap() as i32, v["offset"].as_i64().unwrap())
            })
            .collect::<Vec<_>>()
    };
    let first = consume(broker.bootstrap(), MESSAGES / 2).await;
    broker.shutdown().await;
    let broker = start(config(dir.path(), 3)).await;
    let second = consume(broker.bootstrap(), MESSAGES / 2).await;
    let unique: BTreeSet<(i32, i64)> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        unique.len(),
        MESSAGES,
        "resumed exactly at the commit: nothing twice, nothing skipped"
    );
    broker.shutdown().await;
}

/// Members as DescribeGroups reports them: id -> partitions of `topic`.
async fn assignments(
    broker: &minikafka::BrokerHandle,
    group: &str,
    topic: &str,
) -> (String, BTreeMap<String, Vec<i32>>) {
    let mut client = RawClient::connect(broker.local_addr()).await;
    let request = DescribeGroupsRequest {
        groups: vec![group.into()],
        ..Default::default()
    };
    let Response::DescribeGroups(response) = client.call(Request::DescribeGroups(request), 5).await else {
        panic!()
    };
    let described = &response.groups[0];
    let members = described
        .members
        .iter()
        .map(|m| (m.member_id.clone(), partitions_in(&m.member_assignment, topic)))
        .collect();
    (described.group_state.clone(), members)
}

minikafka::message! {
    struct Assignment {
        topics: Vec<AssignedTopic> => 0..,
    }
}

minikafka::message! {
    struct AssignedTopic {
        topic: String => 0..,
        partitions: Vec<i32> => 0..,
    }
}

/// Reads a ConsumerProtocolAssignment (version, topics, user data).
fn partitions_in(assignment: &Bytes, topic: &str) -> Vec<i32> {
    if assignment.len() < 2 {
        return Vec::new();
    }
    let (parsed, _) = minikafka::protocol::decode_request_body::<Assignment>(&assignment.slice(2..), 0, false).unwrap();
    parsed
        .topics
        .into_iter()
        .filter(|t| t.topic == topic)
        .flat_map(|t| t.partitions)
        .collect()
}

fn kcat_group_member(bootstrap: &str, group: &str, topic: &str, strategy: &str) -> tokio::process::Child {
    Command::new(kcat())
        .env_remove("LD_LIBRARY_PATH")
        .args(["-b", bootstrap, "-G", group, topic, "-q", "-u", "-f", "%p %o\\n"])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "auto.commit.interval.ms=200",
        ])
        .args(["-X", &format!("partition.assignment.strategy={strategy}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Collects "partition offset" lines from a kcat member into a shared set.
fn collect(child: &mut tokio::process::Child, seen: std::sync::Arc<std::sync::Mutex<BTreeSet<(i32, i64)>>>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut parts = line.split_whitespace();
            if let (Some(p), Some(o)) = (parts.next(), parts.next()) {
                seen.lock().unwrap().insert((p.parse().unwrap(), o.parse().unwrap()));
            }
        }
    });
}

/// Three kcat (librdkafka 2.0.2) group members share six partitions without
/// overlap; one is killed without leaving, and within its session timeout
/// the other two own everything and consume what comes next.
async fn share_and_take_over(strategy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 6)).await;
    let bootstrap = broker.bootstrap();
    let topic = format!("shared-{}", strategy.replace(',', "-"));
    produce(&bootstrap, &topic, 0..3_000).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut members: Vec<_> = (0..3)
        .map(|_| kcat_group_member(&bootstrap, "sharing", &topic, strategy))
        .collect();
    for member in &mut members {
        collect(member, seen.clone());
    }
    let settled = |want: usize| {
        let broker = &broker;
        let topic = topic.clone();
        async move {
            let start = std::time::Instant::now();
            loop {
                let (state, members) = assignments(broker, "sharing", &topic).await;
                let owned: Vec<i32> = members.values().flatten().copied().collect();
                let distinct: BTreeSet<i32> = owned.iter().copied().collect();
                if state == "Stable" && members.len() == want && owned.len() == 6 && distinct.len() == 6 {
                    return members;
                }
                assert!(
                    start.elapsed() < DEADLINE,
                    "group never settled on {want} members: {state} {members:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let three = settled(3).await;
    assert!(
        three.values().all(|p| p.len() == 2),
        "six partitions over three members: {three:?}"
    );
    eventually("the first 3,000 consumed", || {
        (seen.lock().unwrap().len() >= 3_000).then_some(())
    })
    .await;

    // SIGKILL: no LeaveGroup; the group notices through the session timeout.
    members[0].start_kill().unwrap();
    let _ = members[0].wait().await;
    let two = settled(2).await;
    assert_eq!(two.values().map(Vec::len).sum::<usize>(), 6);

    produce(&bootstrap, &topic, 3_000..6_000).await;
    eventually("everything consumed by the survivors", || {
        (seen.lock().unwrap().len() >= 6_000).then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let stored: BTreeSet<(i32, i64)> = stored_records_by_partition(&broker, &topic)
        .into_iter()
        .flat_map(|(p, records)| records.into_iter().map(move |r| (p, r.offset)))
        .collect();
    assert_eq!(seen, stored, "every message consumed at least once, none skipped");
    drop(members);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_and_take_over_from_a_dead_one() {
    share_and_take_over("range,roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_take_over_from_a_dead_one() {
    share_and_take_over("cooperative-sticky").await;
}

/// rdkafka consumers in one group own disjoint partitions that cover the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_members_own_disjoint_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 6)).await;
    produce(&broker.bootstrap(), "split", 0..600).await;
    let bootstrap = broker.bootstrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let consumer = group_consumer(&bootstrap, "split-group", &[]);
            tokio::task::spawn_blocking(move || {
                consumer.subscribe(&["split"]).unwrap();
                let mut seen = BTreeSet::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(8);
                while std::time::Instant::now() < deadline {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        seen.insert((m.partition(), m.offset()));
                    }
                }
                let assigned: BTreeSet<i32> = consumer
                    .assignment()
                    .unwrap()
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                (assigned, seen)
            })
        })
        .collect();
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    let mut consumed = BTreeSet::new();
    for handle in handles {
        let (assigned, seen) = handle.await.unwrap();
        for p in assigned {
            *owners.entry(p).or_default() += 1;
        }
        consumed.extend(seen);
    }
    assert_eq!(
        owners.keys().copied().collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>(),
        "every partition owned"
    );
    assert!(owners.values().all(|n| *n == 1), "by exactly one member: {owners:?}");
    assert_eq!(consumed.len(), 600);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_balanced_consumer_reads_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    produce(&broker.bootstrap(), "balanced", 0..1_000).await;
    let output = tokio::time::timeout(
        DEADLINE,
        Command::new(kcat())
            .env_remove("LD_LIBRARY_PATH")
            .args([
                "-b",
                &broker.bootstrap(),
                "-G",
                "kcat-group",
                "balanced",
                "-e",
                "-q",
                "-f",
                "%k\\n",
            ])
            .args(["-X", "auto.offset.reset=earliest"])
            .output(),
    )
    .await
    .expect("kcat -G -e exits at the end")
    .unwrap();
    assert!(output.status.success());
    let keys: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(keys, (0..1_000).map(|i| format!("key-{i}")).collect());
    broker.shutdown().await;
}
