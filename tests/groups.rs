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

/// `minikafka groups describe` shows the committed offset, the log end and
/// the lag while a group is behind; list shows it; delete removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_groups_cli_lists_describes_with_lag_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 2)).await;
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "lag", 0..1_000).await;
    let store = [("enable.auto.offset.store", "false")];
    let consumed = consume_and_commit(group_consumer(&bootstrap, "behind", &store), "lag", 300).await;
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in consumed {
        let next = committed.entry(p).or_insert(0);
        *next = (*next).max(o + 1);
    }
    let ends: BTreeMap<i32, i64> = (0..2)
        .map(|p| {
            (
                p,
                broker
                    .broker()
                    .topic("lag")
                    .unwrap()
                    .partition(p)
                    .unwrap()
                    .log()
                    .next_offset(),
            )
        })
        .collect();

    let cli = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_minikafka"));
        command.args(["groups", "-b", &bootstrap]).args(args);
        command
    };
    let listed = cli(&["list"]).output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("behind\tEmpty\tconsumer"),
        "{listed:?}"
    );

    let described = cli(&["describe", "behind"]).output().await.unwrap();
    assert!(described.status.success());
    let text = String::from_utf8(described.stdout).unwrap();
    assert!(!committed.is_empty());
    for (partition, current) in &committed {
        let end = &ends[partition];
        let row = text
            .lines()
            .find(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["lag", &partition.to_string()])
            .unwrap_or_else(|| panic!("a row for partition {partition}:\n{text}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[2], current.to_string(), "{row}");
        assert_eq!(fields[3], end.to_string(), "{row}");
        assert_eq!(fields[4], (end - current).to_string(), "lag: {row}");
    }
    // Partitions the group never committed are not its business (as in Kafka's tool).
    for partition in ends.keys().filter(|p| !committed.contains_key(p)) {
        assert!(
            !text
                .lines()
                .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["lag", &partition.to_string()])
        );
    }

    assert!(cli(&["delete", "behind"]).status().await.unwrap().success());
    let listed = cli(&["list"]).output().await.unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("behind"));
    broker.shutdown().await;
}

// ------------------------------------------------------------------ by hand

mod by_hand {
    use super::*;
    use minikafka::protocol::ErrorCode;
    use minikafka::protocol::messages::groups::*;
    use minikafka::protocol::messages::offsets::*;

    fn join(group: &str, member: &str, instance: Option<&str>) -> Request {
        Request::JoinGroup(JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            member_id: member.into(),
            group_instance_id: instance.map(Into::into),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff"),
            }],
            reason: None,
        })
    }

    async fn joined(client: &mut RawClient, request: Request, version: i16) -> JoinGroupResponse {
        let Response::JoinGroup(r) = client.call(request, version).await else {
            panic!()
        };
        r
    }

    fn sync(group: &str, generation: i32, member: &str, assignments: Vec<(&str, &[u8])>) -> Request {
        Request::SyncGroup(SyncGroupRequest {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            assignments: assignments
                .into_iter()
                .map(|(m, a)| SyncGroupRequestAssignment {
                    member_id: m.into(),
                    assignment: Bytes::copy_from_slice(a),
                })
                .collect(),
            ..Default::default()
        })
    }

    fn commit(group: &str, generation: i32, member: &str, offset: i64) -> Request {
        Request::OffsetCommit(OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: generation,
            member_id: member.into(),
            topics: vec![OffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_metadata: Some("kept as given".into()),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        })
    }

    /// What `group` has committed for partitions 0 and 1 of "t" (OffsetFetch v7).
    async fn committed_to_t(client: &mut RawClient, group: &str) -> Vec<OffsetFetchResponsePartition> {
        let fetch = Request::OffsetFetch(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: "t".into(),
                partition_indexes: vec![0, 1],
            }]),
            ..Default::default()
        });
        let Response::OffsetFetch(mut f) = client.call(fetch, 7).await else {
            panic!()
        };
        f.topics.remove(0).partitions
    }

    async fn commit_code(client: &mut RawClient, request: Request) -> i16 {
        let Response::OffsetCommit(r) = client.call(request, 8).await else {
            panic!()
        };
        r.topics[0].partitions[0].error_code
    }

    /// The join round trip, the generation checks and the stored metadata,
    /// error code by error code.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_sync_heartbeat_commit_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        broker.broker().get_or_create_topic("t", 1).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;

        // v4+: first a member id, then the real join.
        let first = joined(&mut client, join("g", "", None), 9).await;
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        assert!(!first.member_id.is_empty());
        let unknown = joined(&mut client, join("g", "made-up", None), 9).await;
        assert_eq!(unknown.error_code, ErrorCode::UnknownMemberId.code());
        let me = joined(&mut client, join("g", &first.member_id, None), 9).await;
        assert_eq!(
            (me.error_code, me.generation_id, me.leader.as_str()),
            (0, 1, first.member_id.as_str())
        );
        assert_eq!(me.members.len(), 1, "the leader gets everyone's metadata");
        let id = me.member_id.clone();

        let Response::SyncGroup(s) = client.call(sync("g", 0, &id, vec![]), 5).await else {
            panic!()
        };
        assert_eq!(s.error_code, ErrorCode::IllegalGeneration.code());
        let Response::SyncGroup(s) = client.call(sync("g", 1, &id, vec![]), 5).await else {
            panic!()
        };
        assert_eq!(s.error_code, 0);
        assert_eq!(
            &s.assignment[..],
            &[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            "left out: a valid empty assignment"
        );

        let heartbeat = |generation: i32, member: &str| {
            Request::Heartbeat(HeartbeatRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
            })
        };
        let Response::Heartbeat(h) = client.call(heartbeat(1, &id), 4).await else {
            panic!()
        };
        assert_eq!(h.error_code, 0);
        let Response::Heartbeat(h) = client.call(heartbeat(7, &id), 4).await else {
            panic!()
        };
        assert_eq!(h.error_code, ErrorCode::IllegalGeneration.code());
        let Response::Heartbeat(h) = client.call(heartbeat(1, "stranger"), 4).await else {
            panic!()
        };
        assert_eq!(h.error_code, ErrorCode::UnknownMemberId.code());

        assert_eq!(commit_code(&mut client, commit("g", 1, &id, 42)).await, 0);
        assert_eq!(
            commit_code(&mut client, commit("g", 2, &id, 43)).await,
            ErrorCode::IllegalGeneration.code()
        );
        assert_eq!(
            commit_code(&mut client, commit("g", 1, "stranger", 43)).await,
            ErrorCode::UnknownMemberId.code()
        );
        // Outside any generation, into a group nobody is in: allowed.
        assert_eq!(commit_code(&mut client, commit("loner", -1, "", 7)).await, 0);

        let p = committed_to_t(&mut client, "g").await;
        assert_eq!(
            (p[0].committed_offset, p[0].metadata.as_deref()),
            (42, Some("kept as given"))
        );
        assert_eq!(
            (p[1].committed_offset, p[1].metadata.as_deref()),
            (-1, Some("")),
            "nothing committed there"
        );

        // A second member makes the group rebalance: the first hears of it.
        let second = joined(&mut client, join("g", "", None), 9).await;
        let mut other = RawClient::connect(broker.local_addr()).await;
        let pending = tokio::spawn(async move { joined(&mut other, join("g", &second.member_id, None), 9).await });
        let id2 = id.clone();
        let mut rebalance_seen = false;
        for _ in 0..100 {
            let Response::Heartbeat(h) = client.call(heartbeat(1, &id2), 4).await else {
                panic!()
            };
            if h.error_code == ErrorCode::RebalanceInProgress.code() {
                rebalance_seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rebalance_seen, "heartbeats answer REBALANCE_IN_PROGRESS");
        let rejoined = joined(&mut client, join("g", &id, None), 9).await;
        let theirs = pending.await.unwrap();
        assert_eq!((rejoined.generation_id, theirs.generation_id), (2, 2));
        assert_eq!(rejoined.leader, theirs.leader);
        broker.shutdown().await;
    }

    /// A static member that comes back gets a new member id; the old one is fenced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn static_members_fence_their_old_ids() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let first = joined(&mut client, join("s", "", Some("instance-1")), 5).await;
        assert_eq!(first.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
        let Response::SyncGroup(s) = client
            .call(sync("s", first.generation_id, &first.member_id, vec![]), 3)
            .await
        else {
            panic!()
        };
        assert_eq!(s.error_code, 0);
        let again = joined(&mut client, join("s", "", Some("instance-1")), 5).await;
        assert_eq!(again.error_code, 0);
        assert_ne!(again.member_id, first.member_id);
        let Response::Heartbeat(h) = client
            .call(
                Request::Heartbeat(HeartbeatRequest {
                    group_id: "s".into(),
                    generation_id: first.generation_id,
                    member_id: first.member_id.clone(),
                    group_instance_id: Some("instance-1".into()),
                }),
                3,
            )
            .await
        else {
            panic!()
        };
        assert_eq!(h.error_code, ErrorCode::FencedInstanceId.code());
        broker.shutdown().await;
    }

    /// A static member that comes back under a new id is recorded at once,
    /// as Kafka stores the group then: after a restart in the middle of the
    /// rebalance that follows, the new id is the member and the old one is
    /// still fenced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_static_member_that_took_over_before_a_restart_stays_fenced_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let addr = broker.local_addr();
        let mut client = RawClient::connect(addr).await;
        let first = joined(&mut client, join("s", "", Some("instance-1")), 5).await;
        let Response::SyncGroup(s) = client
            .call(sync("s", first.generation_id, &first.member_id, vec![]), 3)
            .await
        else {
            panic!()
        };
        assert_eq!(s.error_code, 0);
        // The leader comes back: a rebalance, which the restart cuts short.
        let again = joined(&mut client, join("s", "", Some("instance-1")), 5).await;
        assert_eq!(again.generation_id, first.generation_id + 1);
        broker.shutdown().await;

        let mut restarted = config(dir.path(), 1);
        restarted.listeners = vec![addr.to_string()];
        let broker = start(restarted).await;
        let mut client = RawClient::connect(addr).await;
        let (state, members) = assignments(&broker, "s", "t").await;
        assert_eq!(
            (state.as_str(), members.keys().collect::<Vec<_>>()),
            ("Stable", vec![&again.member_id])
        );
        let heartbeat = |member: &str, generation: i32| {
            Request::Heartbeat(HeartbeatRequest {
                group_id: "s".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: Some("instance-1".into()),
            })
        };
        let Response::Heartbeat(h) = client.call(heartbeat(&first.member_id, first.generation_id), 3).await else {
            panic!()
        };
        assert_eq!(
            h.error_code,
            ErrorCode::FencedInstanceId.code(),
            "the old id stays fenced"
        );
        // The generation the record holds is the one before the rebalance.
        let Response::Heartbeat(h) = client.call(heartbeat(&again.member_id, first.generation_id), 3).await else {
            panic!()
        };
        assert_eq!(h.error_code, 0);
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_groups_needs_an_empty_group() {
        use minikafka::protocol::messages::group_admin::DeleteGroupsRequest;
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let first = joined(&mut client, join("busy", "", Some("i")), 5).await;
        assert_eq!(first.error_code, 0);
        let delete = |name: &str| {
            Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: vec![name.into()],
            })
        };
        let Response::DeleteGroups(d) = client.call(delete("busy"), 2).await else {
            panic!()
        };
        assert_eq!(d.results[0].error_code, ErrorCode::NonEmptyGroup.code());
        let Response::DeleteGroups(d) = client.call(delete("never-was"), 2).await else {
            panic!()
        };
        assert_eq!(d.results[0].error_code, ErrorCode::GroupIdNotFound.code());
        broker.shutdown().await;
    }

    /// Kafka's offset cleanup removes an Empty group with nothing committed;
    /// one holding an id from MEMBER_ID_REQUIRED stays until the id
    /// expires, so the consumer's second JoinGroup still gets in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_group_waits_for_the_ids_it_handed_out() {
        use minikafka::protocol::messages::group_admin::ListGroupsRequest;
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let first = joined(&mut client, join("between-joins", "", None), 9).await;
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        broker.broker().expire_offsets(now_ms());
        let Response::ListGroups(listed) = client.call(Request::ListGroups(ListGroupsRequest::default()), 4).await
        else {
            panic!()
        };
        let listed: Vec<_> = listed
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g.group_state.as_str()))
            .collect();
        assert_eq!(listed, [("between-joins", "Empty")]);
        let second = joined(&mut client, join("between-joins", &first.member_id, None), 9).await;
        assert_eq!((second.error_code, second.generation_id), (0, 1));
        broker.shutdown().await;
    }

    fn offset_delete(group: &str, topics: &[&str]) -> Request {
        use minikafka::protocol::messages::group_admin::{
            OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        Request::OffsetDelete(OffsetDeleteRequest {
            group_id: group.into(),
            topics: topics
                .iter()
                .map(|topic| OffsetDeleteRequestTopic {
                    name: topic.to_string(),
                    partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
                })
                .collect(),
        })
    }

    /// OffsetDelete of a group nobody knows is GROUP_ID_NOT_FOUND at the
    /// top level, with no topics; a group known only by its committed
    /// offsets (no coordinator entry, as after a restart) is found, and
    /// loses the commit it was asked to delete.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offset_delete_finds_a_group_by_its_offsets_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        broker.broker().get_or_create_topic("t", 2).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;
        let Response::OffsetDelete(unknown) = client.call(offset_delete("never-was", &["t"]), 0).await else {
            panic!()
        };
        assert_eq!(
            (unknown.error_code, unknown.topics.len()),
            (ErrorCode::GroupIdNotFound.code(), 0)
        );

        assert_eq!(commit_code(&mut client, commit("by-offsets", -1, "", 7)).await, 0);
        broker.shutdown().await;
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        assert_eq!(committed_to_t(&mut client, "by-offsets").await[0].committed_offset, 7);
        let Response::OffsetDelete(found) = client.call(offset_delete("by-offsets", &["t"]), 0).await else {
            panic!()
        };
        assert_eq!(found.error_code, 0);
        assert_eq!(found.topics[0].partitions[0].error_code, 0);
        assert_eq!(committed_to_t(&mut client, "by-offsets").await[0].committed_offset, -1);
        broker.shutdown().await;
    }

    /// A broker on `dir` whose expiry runs only when a test calls it.
    fn expiry_by_hand(dir: &std::path::Path) -> minikafka::BrokerConfig {
        minikafka::BrokerConfig {
            offsets_retention_check_interval: Duration::from_secs(3600),
            ..config(dir, 1)
        }
    }

    /// Commits of a group nobody has joined are still the standalone
    /// group's after a restart (a group that has been joined is kept in
    /// the log, as Kafka keeps group metadata), and still go one by one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_restart_commits_outside_any_group_still_expire_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let expiry_by_hand = || expiry_by_hand(dir.path());
        let broker = start(expiry_by_hand()).await;
        broker.broker().get_or_create_topic("t", 2).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;
        let commit_to = |partition: i32, offset: i64| {
            let Request::OffsetCommit(mut request) = commit("before", -1, "", offset) else {
                unreachable!()
            };
            request.topics[0].partitions[0].partition_index = partition;
            Request::OffsetCommit(request)
        };
        assert_eq!(commit_code(&mut client, commit_to(0, 10)).await, 0);
        let first_answered = now_ms();
        until_the_clock_passes(first_answered);
        assert_eq!(commit_code(&mut client, commit_to(1, 11)).await, 0);
        broker.shutdown().await;

        let broker = start(expiry_by_hand()).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let retention_ms = broker.broker().config().offsets_retention_ms;
        let offsets = async |client: &mut RawClient| -> Vec<i64> {
            committed_to_t(client, "before")
                .await
                .iter()
                .map(|p| p.committed_offset)
                .collect()
        };
        // A group nobody joined, before the restart or since: each commit
        // goes once it is old enough, counted from the commit.
        broker.broker().expire_offsets(first_answered + retention_ms);
        assert_eq!(offsets(&mut client).await, [-1, 11]);
        broker.broker().expire_offsets(now_ms() + retention_ms);
        assert_eq!(offsets(&mut client).await, [-1, -1]);
        broker.shutdown().await;
    }

    /// Joins `group` as its only member, and syncs: its generation and id.
    async fn sole_member(client: &mut RawClient, group: &str) -> (i32, String) {
        let first = joined(client, join(group, "", None), 9).await;
        let me = joined(client, join(group, &first.member_id, None), 9).await;
        assert_eq!(me.error_code, 0);
        let Response::SyncGroup(s) = client
            .call(sync(group, me.generation_id, &me.member_id, vec![]), 5)
            .await
        else {
            panic!()
        };
        assert_eq!(s.error_code, 0);
        (me.generation_id, me.member_id)
    }

    /// The group's state and protocol type, as DescribeGroups v5 says.
    async fn described(client: &mut RawClient, group: &str) -> (String, String) {
        let describe = DescribeGroupsRequest {
            groups: vec![group.into()],
            ..Default::default()
        };
        let Response::DescribeGroups(mut d) = client.call(Request::DescribeGroups(describe), 5).await else {
            panic!()
        };
        let g = d.groups.remove(0);
        (g.group_state, g.protocol_type)
    }

    /// A consumer group that emptied before a restart is kept as it was:
    /// Empty, of protocol type consumer, its generation going on from where
    /// it was, and its commits expiring counted from when it emptied, as
    /// Kafka counts them from its group metadata.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_emptied_before_a_restart_counts_from_then() {
        let dir = tempfile::tempdir().unwrap();
        let expiry_by_hand = || expiry_by_hand(dir.path());
        let broker = start(expiry_by_hand()).await;
        broker.broker().get_or_create_topic("t", 2).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;
        let (generation, member) = sole_member(&mut client, "emptied").await;
        assert_eq!(
            commit_code(&mut client, commit("emptied", generation, &member, 10)).await,
            0
        );
        let leave = |group: &str, member: &str| {
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: group.into(),
                member_id: member.into(),
                ..Default::default()
            })
        };
        // Another group, to rejoin after the restart.
        let (again_generation, again_member) = sole_member(&mut client, "again").await;
        let Response::LeaveGroup(left) = client.call(leave("again", &again_member), 2).await else {
            panic!()
        };
        assert_eq!(left.error_code, 0);
        let emptied_after = now_ms();
        let Response::LeaveGroup(left) = client.call(leave("emptied", &member), 2).await else {
            panic!()
        };
        assert_eq!(left.error_code, 0);
        let emptied_by = now_ms();
        until_the_clock_passes(emptied_by);
        broker.shutdown().await;

        let broker = start(expiry_by_hand()).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        assert_eq!(
            described(&mut client, "emptied").await,
            ("Empty".into(), "consumer".into())
        );
        // The next generation follows the one before the restart (before
        // an expiry run removes the group, which holds no commits).
        let (next, _) = sole_member(&mut client, "again").await;
        assert!(next > again_generation + 1, "{next} after {again_generation}");
        let retention_ms = broker.broker().config().offsets_retention_ms;
        broker.broker().expire_offsets(emptied_after + retention_ms - 1);
        assert_eq!(committed_to_t(&mut client, "emptied").await[0].committed_offset, 10);
        // Counted from this start it would stay a while longer.
        broker.broker().expire_offsets(emptied_by + retention_ms);
        assert_eq!(committed_to_t(&mut client, "emptied").await[0].committed_offset, -1);
        broker.shutdown().await;
    }

    /// The bytes of the committed-offsets log's segments under `data`.
    fn offsets_log_bytes(data: &std::path::Path) -> u64 {
        std::fs::read_dir(data.join("group-offsets"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .map(|path| std::fs::metadata(path).unwrap().len())
            .sum()
    }

    /// A group that rebalances again and again and never commits grows
    /// the committed-offsets log with its records alone (each holds the
    /// member's 16 KiB assignment here). The coordinator's timer task
    /// rewrites the log once it passes the 1 MiB threshold, as a commit's
    /// write would, so 2.4 MB of records leave it under 1.5 MB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_records_alone_do_not_grow_the_offsets_log_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let assignment = vec![7u8; 16 * 1024];
        let first = joined(&mut client, join("churn", "", None), 9).await;
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        let member = first.member_id;
        let mut generations = Vec::new();
        for _ in 0..150 {
            // The leader's rejoin rebalances a Stable group: a new
            // generation, whose SyncGroup writes the group's record.
            let me = joined(&mut client, join("churn", &member, None), 9).await;
            assert_eq!((me.error_code, &me.member_id), (0, &member));
            let Response::SyncGroup(synced) = client
                .call(
                    sync("churn", me.generation_id, &member, vec![(&member, &assignment)]),
                    5,
                )
                .await
            else {
                panic!()
            };
            assert_eq!(synced.error_code, 0);
            assert_eq!(synced.assignment.len(), assignment.len());
            generations.push(me.generation_id);
        }
        assert_eq!(generations, (1..=150).collect::<Vec<_>>());
        eventually("the offsets log is rewritten", || {
            (offsets_log_bytes(dir.path()) < 1_500_000).then_some(())
        })
        .await;
        // The rewrite kept the group's record: its generation follows on
        // after a restart.
        broker.shutdown().await;
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let again = joined(&mut client, join("churn", &member, None), 9).await;
        assert_eq!(again.generation_id, 151);
    }

    /// A group whose member was there when the broker stopped has it back
    /// after the restart, as Kafka loads its group metadata: Stable, with
    /// its assignment, heartbeating and committing under its generation,
    /// and not to be deleted. Once the member's session runs out without a
    /// word, the group empties, and its commits' retention counts from then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_with_members_at_a_restart_keeps_them_until_their_sessions_end() {
        use minikafka::protocol::messages::group_admin::DeleteGroupsRequest;
        // ConsumerProtocolAssignment v0: partitions 0 and 1 of "t".
        const BOTH: &[u8] = b"\0\0\0\0\0\x01\0\x01t\0\0\0\x02\0\0\0\0\0\0\0\x01\xff\xff\xff\xff";
        let dir = tempfile::tempdir().unwrap();
        let expiry_by_hand = || expiry_by_hand(dir.path());
        let broker = start(expiry_by_hand()).await;
        broker.broker().get_or_create_topic("t", 2).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;
        // Subscribed to "t" (ConsumerProtocolSubscription v0).
        let subscribed_to_t = |member: &str| {
            let Request::JoinGroup(mut request) = join("alive", member, None) else {
                unreachable!()
            };
            request.protocols[0].metadata = Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t\xff\xff\xff\xff");
            Request::JoinGroup(request)
        };
        let first = joined(&mut client, subscribed_to_t(""), 9).await;
        let me = joined(&mut client, subscribed_to_t(&first.member_id), 9).await;
        let (generation, member) = (me.generation_id, me.member_id);
        let Response::SyncGroup(synced) = client
            .call(sync("alive", generation, &member, vec![(&member, BOTH)]), 5)
            .await
        else {
            panic!()
        };
        assert_eq!(synced.error_code, 0);
        assert_eq!(
            commit_code(&mut client, commit("alive", generation, &member, 20)).await,
            0
        );
        broker.shutdown().await;

        let broker = start(expiry_by_hand()).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        assert_eq!(
            assignments(&broker, "alive", "t").await,
            ("Stable".into(), BTreeMap::from([(member.clone(), vec![0, 1])]))
        );
        let before_last_word = now_ms();
        let heartbeat = Request::Heartbeat(HeartbeatRequest {
            group_id: "alive".into(),
            generation_id: generation,
            member_id: member.clone(),
            group_instance_id: None,
        });
        let Response::Heartbeat(h) = client.call(heartbeat, 4).await else {
            panic!()
        };
        assert_eq!(h.error_code, 0, "the member heartbeats on");
        assert_eq!(
            commit_code(&mut client, commit("alive", generation, &member, 21)).await,
            0
        );
        let delete = Request::DeleteGroups(DeleteGroupsRequest {
            groups_names: vec!["alive".into()],
        });
        let Response::DeleteGroups(d) = client.call(delete, 2).await else {
            panic!()
        };
        assert_eq!(d.results[0].error_code, ErrorCode::NonEmptyGroup.code());
        let retention_ms = broker.broker().config().offsets_retention_ms;
        broker.broker().expire_offsets(now_ms() + retention_ms);
        assert_eq!(
            committed_to_t(&mut client, "alive").await[0].committed_offset,
            21,
            "the restored member is subscribed to t"
        );

        // Silent from here: `join` asks for a 10 s session.
        let deadline = std::time::Instant::now() + DEADLINE;
        while described(&mut client, "alive").await.0 != "Empty" {
            assert!(std::time::Instant::now() < deadline, "the member's session runs out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let emptied_by = now_ms();
        broker
            .broker()
            .expire_offsets(before_last_word + 10_000 + retention_ms - 1);
        assert_eq!(committed_to_t(&mut client, "alive").await[0].committed_offset, 21);
        broker.broker().expire_offsets(emptied_by + retention_ms);
        assert_eq!(committed_to_t(&mut client, "alive").await[0].committed_offset, -1);
        broker.shutdown().await;
    }

    /// A restored group of two members, one of which never comes back:
    /// once its session runs out, the other is told to rejoin, and the
    /// group goes on with it alone under the next generation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restored_member_that_does_not_come_back_leaves_the_rest_to_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        // Long enough to gather both joins on a loaded machine.
        let gathering = minikafka::BrokerConfig {
            groups: minikafka::broker::coordinator::GroupConfig {
                initial_rebalance_delay: Duration::from_secs(2),
                ..Default::default()
            },
            ..config(dir.path(), 1)
        };
        let broker = start(gathering).await;
        let (mut a, mut b) = (
            RawClient::connect(broker.local_addr()).await,
            RawClient::connect(broker.local_addr()).await,
        );
        // v3 joins need no MEMBER_ID_REQUIRED round trip; the initial
        // rebalance delay gathers both.
        let (joined_a, joined_b) = tokio::join!(
            joined(&mut a, join("pair", "", None), 3),
            joined(&mut b, join("pair", "", None), 3)
        );
        let generation = joined_a.generation_id;
        assert_eq!((generation, joined_b.generation_id), (1, 1));
        let (leader, follower) = if joined_a.leader == joined_a.member_id {
            ((&mut a, &joined_a), (&mut b, &joined_b))
        } else {
            ((&mut b, &joined_b), (&mut a, &joined_a))
        };
        let (leader_client, leader_joined) = leader;
        let (follower_client, follower_joined) = follower;
        let everyone = vec![
            (leader_joined.member_id.as_str(), &b"leader's"[..]),
            (follower_joined.member_id.as_str(), &b"follower's"[..]),
        ];
        let sync_leader = leader_client.call(sync("pair", generation, &leader_joined.member_id, everyone), 3);
        let sync_follower = follower_client.call(sync("pair", generation, &follower_joined.member_id, vec![]), 3);
        let (Response::SyncGroup(l), Response::SyncGroup(f)) = tokio::join!(sync_leader, sync_follower) else {
            panic!()
        };
        assert_eq!(
            (&l.assignment[..], &f.assignment[..]),
            (&b"leader's"[..], &b"follower's"[..])
        );
        let (survivor, silent) = (follower_joined.member_id.clone(), leader_joined.member_id.clone());
        broker.shutdown().await;

        let restarted = std::time::Instant::now();
        let broker = start(config(dir.path(), 1)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        // The state and the members' ids, as DescribeGroups says.
        let members_of_pair = async |client: &mut RawClient| {
            let describe = DescribeGroupsRequest {
                groups: vec!["pair".into()],
                ..Default::default()
            };
            let Response::DescribeGroups(mut d) = client.call(Request::DescribeGroups(describe), 5).await else {
                panic!()
            };
            let g = d.groups.remove(0);
            let mut ids: Vec<String> = g.members.into_iter().map(|m| m.member_id).collect();
            ids.sort();
            (g.group_state, ids)
        };
        let mut both = vec![silent.clone(), survivor.clone()];
        both.sort();
        assert_eq!(members_of_pair(&mut client).await, ("Stable".to_string(), both));
        // Only the follower heartbeats; the leader's 10 s session runs out.
        let heartbeat = Request::Heartbeat(HeartbeatRequest {
            group_id: "pair".into(),
            generation_id: generation,
            member_id: survivor.clone(),
            group_instance_id: None,
        });
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let Response::Heartbeat(h) = client.call(heartbeat.clone(), 3).await else {
                panic!()
            };
            if h.error_code == ErrorCode::RebalanceInProgress.code() {
                break;
            }
            assert_eq!(h.error_code, 0);
            assert!(
                std::time::Instant::now() < deadline,
                "the silent member's session runs out"
            );
            // A heartbeat interval, not a synchronisation.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Sessions count from the start: not a rebalance for another cause.
        assert!(
            restarted.elapsed() >= Duration::from_secs(9),
            "{:?}",
            restarted.elapsed()
        );
        let again = joined(&mut client, join("pair", &survivor, None), 3).await;
        assert_eq!(
            (again.error_code, again.generation_id, again.leader.as_str()),
            (0, generation + 1, survivor.as_str())
        );
        assert_eq!(again.members.len(), 1, "the silent member is gone");
        let Response::SyncGroup(s) = client
            .call(
                sync("pair", again.generation_id, &survivor, vec![(&survivor, b"all")]),
                3,
            )
            .await
        else {
            panic!()
        };
        assert_eq!(&s.assignment[..], b"all");
        assert_eq!(
            members_of_pair(&mut client).await,
            ("Stable".to_string(), vec![survivor])
        );
        let Response::Heartbeat(h) = client
            .call(
                Request::Heartbeat(HeartbeatRequest {
                    group_id: "pair".into(),
                    generation_id: generation,
                    member_id: silent,
                    group_instance_id: None,
                }),
                3,
            )
            .await
        else {
            panic!()
        };
        assert_eq!(h.error_code, ErrorCode::UnknownMemberId.code());
        broker.shutdown().await;
    }

    /// OffsetDelete of partition 0 of each of `topics`: each topic's error.
    async fn offset_delete_codes(client: &mut RawClient, group: &str, topics: &[&str]) -> Vec<(String, i16)> {
        let Response::OffsetDelete(deleted) = client.call(offset_delete(group, topics), 0).await else {
            panic!()
        };
        deleted
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions[0].error_code))
            .collect()
    }

    /// During a rebalance OffsetDelete goes by the subscriptions of the
    /// previous generation, as Kafka's: a member subscribed to "read" has
    /// committed to "read" and "left"; while a second member's join
    /// (subscribed to "left") holds the group in PreparingRebalance, "read"
    /// keeps its commit and "left" loses its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offset_delete_during_a_rebalance_goes_by_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        for topic in ["read", "left"] {
            broker.broker().get_or_create_topic(topic, 1).unwrap();
        }
        /// A join subscribed to one topic of four letters.
        fn join_as(instance: &str, topic: &str) -> Request {
            let Request::JoinGroup(mut request) = join("rebalancing", "", Some(instance)) else {
                unreachable!()
            };
            // ConsumerProtocolSubscription v0: [topic], null user data.
            let mut metadata = b"\0\0\0\0\0\x01\0\x04".to_vec();
            metadata.extend_from_slice(topic.as_bytes());
            metadata.extend_from_slice(b"\xff\xff\xff\xff");
            request.protocols[0].metadata = Bytes::from(metadata);
            Request::JoinGroup(request)
        }
        let mut first = RawClient::connect(broker.local_addr()).await;
        let joined_first = joined(&mut first, join_as("first", "read"), 5).await;
        assert_eq!(joined_first.error_code, 0);
        let (generation, member) = (joined_first.generation_id, joined_first.member_id.clone());
        let Response::SyncGroup(synced) = first.call(sync("rebalancing", generation, &member, vec![]), 3).await else {
            panic!()
        };
        assert_eq!(synced.error_code, 0);
        let commit = Request::OffsetCommit(OffsetCommitRequest {
            group_id: "rebalancing".into(),
            generation_id_or_member_epoch: generation,
            member_id: member.clone(),
            topics: ["read", "left"]
                .map(|topic| OffsetCommitRequestTopic {
                    name: topic.into(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: 0,
                        committed_offset: 1,
                        ..Default::default()
                    }],
                })
                .into(),
            ..Default::default()
        });
        let Response::OffsetCommit(committed) = first.call(commit, 8).await else {
            panic!()
        };
        assert!(committed.topics.iter().all(|t| t.partitions[0].error_code == 0));

        // The second join waits for the first member to rejoin, which it
        // does not: the group stays in PreparingRebalance meanwhile.
        let addr = broker.local_addr();
        let second = tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            client.call(join_as("second", "left"), 5).await
        });
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let describe = Request::DescribeGroups(DescribeGroupsRequest {
                groups: vec!["rebalancing".into()],
                ..Default::default()
            });
            let Response::DescribeGroups(described) = first.call(describe, 5).await else {
                panic!()
            };
            if described.groups[0].group_state == "PreparingRebalance" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the group starts rebalancing");
            tokio::task::yield_now().await;
        }
        assert_eq!(
            offset_delete_codes(&mut first, "rebalancing", &["read", "left"]).await,
            [
                ("read".to_string(), ErrorCode::GroupSubscribedToTopic.code()),
                ("left".to_string(), 0)
            ]
        );
        second.abort();
        broker.shutdown().await;
    }

    /// OffsetDelete as Kafka answers it: a consumer group keeps the offsets
    /// of topics its members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC) and
    /// loses the others; a non-empty group of another protocol type is
    /// refused whole (NON_EMPTY_GROUP).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offset_delete_keeps_subscribed_topics_and_refuses_other_live_groups() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 1)).await;
        let bootstrap = broker.bootstrap();
        let member = member_reading_one_of_two_topics(&broker, "readers").await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        assert_eq!(
            offset_delete_codes(&mut client, "readers", &["read", "left"]).await,
            [
                ("read".to_string(), ErrorCode::GroupSubscribedToTopic.code()),
                ("left".to_string(), 0)
            ]
        );
        let committed = async |topic| committed_offset(&bootstrap, "readers", topic).await;
        assert_eq!(
            (committed("read").await, committed("left").await),
            (rdkafka::Offset::Offset(1), rdkafka::Offset::Invalid)
        );
        drop(member);

        // A member of another protocol type: the group is not empty.
        let join = Request::JoinGroup(JoinGroupRequest {
            group_id: "workers".into(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "connect".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "default".into(),
                metadata: Bytes::from_static(b"opaque"),
            }],
            ..Default::default()
        });
        let Response::JoinGroup(joined) = client.call(join, 3).await else {
            panic!()
        };
        assert_eq!(joined.error_code, 0);
        let Response::OffsetDelete(refused) = client.call(offset_delete("workers", &["left"]), 0).await else {
            panic!()
        };
        assert_eq!(
            (refused.error_code, refused.topics.len()),
            (ErrorCode::NonEmptyGroup.code(), 0)
        );
        broker.shutdown().await;
    }

    /// OffsetCommit v2-v4's `retention_time_ms`: a commit with one expires
    /// that long after it was made, even beside commits of the same group
    /// that stay (Kafka's `expireTimestamp`); -1 leaves a commit to the
    /// group's retention (7 days here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_with_its_own_retention_expires_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let broker = start(config(dir.path(), 2)).await;
        broker.broker().get_or_create_topic("t", 2).unwrap();
        let mut client = RawClient::connect(broker.local_addr()).await;
        let committed_at = now_ms();
        for (partition, retention_time_ms) in [(0, 60_000), (1, -1)] {
            let Request::OffsetCommit(mut request) = commit("own", -1, "", 10 + partition as i64) else {
                unreachable!()
            };
            request.retention_time_ms = retention_time_ms;
            request.topics[0].partitions[0].partition_index = partition;
            // The field is in v2-v4 only.
            let Response::OffsetCommit(r) = client.call(Request::OffsetCommit(request), 4).await else {
                panic!()
            };
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        // The expiry time is kept in the log: it holds after a restart.
        broker.shutdown().await;
        let broker = start(config(dir.path(), 2)).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let mut committed = async || {
            let p = committed_to_t(&mut client, "own").await;
            (p[0].committed_offset, p[1].committed_offset)
        };
        broker.broker().expire_offsets(committed_at + 30_000);
        assert_eq!(committed().await, (10, 11), "neither is due");
        broker.broker().expire_offsets(committed_at + 61_000);
        assert_eq!(
            committed().await,
            (-1, 11),
            "only the commit with its own retention went"
        );
    }
}

/// A JoinGroup parked in a long rebalance does not hold up a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_join_does_not_block_shutdown() {
    use minikafka::protocol::messages::groups::{JoinGroupRequest, JoinGroupRequestProtocol};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let join = |instance: &str| {
        Request::JoinGroup(JoinGroupRequest {
            group_id: "slow".into(),
            session_timeout_ms: 60_000,
            rebalance_timeout_ms: 300_000,
            group_instance_id: Some(instance.into()),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: Bytes::new(),
            }],
            ..Default::default()
        })
    };
    let mut first = RawClient::connect(broker.local_addr()).await;
    let Response::JoinGroup(joined) = first.call(join("a"), 5).await else {
        panic!()
    };
    assert_eq!(joined.error_code, 0);
    // The second member waits for the first to rejoin, for up to 300 s.
    let mut second = RawClient::connect(broker.local_addr()).await;
    let parked = tokio::spawn(async move { second.call(join("b"), 5).await });
    let start = std::time::Instant::now();
    while assignments(&broker, "slow", "t").await.0 != "PreparingRebalance" {
        assert!(start.elapsed() < DEADLINE, "the second join never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!parked.is_finished(), "the second join waits for the first member");
    tokio::time::timeout(DEADLINE, broker.shutdown())
        .await
        .expect("shutdown does not wait for the rebalance");
    let Response::JoinGroup(answer) = parked.await.unwrap() else {
        panic!()
    };
    assert_eq!(answer.error_code, minikafka::protocol::ErrorCode::NotCoordinator.code());
}

/// The offset group `group` has committed for partition 0 of `topic`, read
/// with OffsetFetch by a consumer that does not join.
async fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> rdkafka::Offset {
    committed_offsets(bootstrap, group, topic, &[0]).await[0]
}

/// The offsets `group` has committed for `partitions` of `topic`, read
/// with OffsetFetch by a consumer that does not join.
async fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: &[i32]) -> Vec<rdkafka::Offset> {
    let (bootstrap, group, topic) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    let partitions = partitions.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut asked = rdkafka::TopicPartitionList::new();
        for &p in &partitions {
            asked.add_partition(&topic, p);
        }
        let read = consumer.committed_offsets(asked, DEADLINE).unwrap();
        partitions
            .iter()
            .map(|&p| read.find_partition(&topic, p).unwrap().offset())
            .collect()
    })
    .await
    .unwrap()
}

/// Polls until `group` has nothing committed for partition 0 of `topic`.
async fn until_expired(bootstrap: &str, group: &str, topic: &str) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while committed_offset(bootstrap, group, topic).await != rdkafka::Offset::Invalid {
        assert!(std::time::Instant::now() < deadline, "{group}'s offsets expire");
        // A pause between polls, not a synchronisation: each poll makes a client.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Topics "read" and "left" in `broker`, and a Stable rdkafka member of
/// `group` subscribed to "read", which has committed offset 1 of "read" and
/// offset 5 of "left" (partition 0 each).
async fn member_reading_one_of_two_topics(broker: &minikafka::BrokerHandle, group: &str) -> BaseConsumer {
    for topic in ["read", "left"] {
        broker.broker().get_or_create_topic(topic, 1).unwrap();
    }
    let (bootstrap, group) = (broker.bootstrap(), group.to_string());
    tokio::task::spawn_blocking(move || subscribe_to_read_and_commit_both(&bootstrap, &group))
        .await
        .unwrap()
}

fn subscribe_to_read_and_commit_both(bootstrap: &str, group: &str) -> BaseConsumer {
    use rdkafka::{Offset, TopicPartitionList};
    let member = group_consumer(bootstrap, group, &[]);
    member.subscribe(&["read"]).unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while member.assignment().unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the member is assigned");
        member.poll(Duration::from_millis(50));
    }
    let mut positions = TopicPartitionList::new();
    positions.add_partition_offset("read", 0, Offset::Offset(1)).unwrap();
    positions.add_partition_offset("left", 0, Offset::Offset(5)).unwrap();
    member.commit(&positions, CommitMode::Sync).unwrap();
    member
}

/// As Kafka (GroupMetadata.removeExpiredOffsets): a consumer group with
/// members keeps the commits of the topics they subscribe to however old,
/// and loses a commit of any other topic once it is older than
/// offsets.retention.minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_loses_old_commits_of_topics_it_does_not_subscribe_to() {
    use rdkafka::Offset;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let committed_at = now_ms();
    let member = member_reading_one_of_two_topics(&broker, "switched").await;
    let committed = async |topic| committed_offset(&bootstrap, "switched", topic).await;
    let retention_ms = broker.broker().config().offsets_retention_ms;
    broker.broker().expire_offsets(committed_at + retention_ms / 2);
    assert_eq!(
        (committed("read").await, committed("left").await),
        (Offset::Offset(1), Offset::Offset(5)),
        "neither is old enough"
    );
    broker.broker().expire_offsets(now_ms() + retention_ms + 1_000);
    assert_eq!(
        (committed("read").await, committed("left").await),
        (Offset::Offset(1), Offset::Invalid),
        "only the commit of the topic no member reads went"
    );
    // The group itself stays, with its member.
    let (state, _) = assignments(&broker, "switched", "read").await;
    assert_eq!(state, "Stable");
    drop(member);
    broker.shutdown().await;
}

/// The same with a kafka-python member: its subscription metadata is read
/// as well as librdkafka's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_python_group_loses_old_commits_of_topics_it_does_not_subscribe_to() {
    use rdkafka::Offset;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    for topic in ["read", "left"] {
        broker.broker().get_or_create_topic(topic, 1).unwrap();
    }
    let member = PyMember::ready(&bootstrap, "py-switched", "read", &["read:0:1", "left:0:5"]).await;
    let committed = async |topic| committed_offset(&bootstrap, "py-switched", topic).await;
    assert_eq!(
        (committed("read").await, committed("left").await),
        (Offset::Offset(1), Offset::Offset(5))
    );
    let retention_ms = broker.broker().config().offsets_retention_ms;
    broker.broker().expire_offsets(now_ms() + retention_ms + 1_000);
    assert_eq!(
        (committed("read").await, committed("left").await),
        (Offset::Offset(1), Offset::Invalid),
        "only the commit of the topic no member reads went"
    );
    member.leave().await;
    broker.shutdown().await;
}

/// A kafka-python member of a group (`tests/python/kp_group_member.py`).
struct PyMember {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PyMember {
    /// Once it is assigned and has made `commits` (TOPIC:PARTITION:OFFSET).
    async fn ready(bootstrap: &str, group: &str, subscribe: &str, commits: &[&str]) -> PyMember {
        PyMember::ready_with(bootstrap, group, subscribe, commits, &[]).await
    }

    /// [`PyMember::ready`], with more of the script's options.
    async fn ready_with(bootstrap: &str, group: &str, subscribe: &str, commits: &[&str], options: &[&str]) -> PyMember {
        let mut child = Command::new(python())
            .arg(python_script("kp_group_member.py"))
            .args(["--bootstrap", bootstrap, "--group", group, "--subscribe", subscribe])
            .args(commits.iter().flat_map(|c| ["--commit", c]))
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut member = PyMember {
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        };
        assert_eq!(member.next_line().await.as_deref(), Some(r#"{"ready": true}"#));
        member
    }

    async fn next_line(&mut self) -> Option<String> {
        tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
    }

    /// Commits `spec` (TOPIC:PARTITION:OFFSET) as the member: whether it
    /// was taken, or kafka-python's error.
    async fn commit(&mut self, spec: &str) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("commit {spec}\n").as_bytes()).await.unwrap();
        let line = self.next_line().await.unwrap();
        match line.as_str() {
            r#"{"committed": true}"# => Ok(()),
            _ => Err(line),
        }
    }

    /// Leaves the group, and exits.
    async fn leave(mut self) {
        use tokio::io::AsyncWriteExt;
        self.child.stdin.take().unwrap().write_all(b"leave\n").await.unwrap();
        assert_eq!(self.next_line().await.as_deref(), Some(r#"{"left": true}"#));
        assert!(self.child.wait().await.unwrap().success());
    }
}

/// Waits for the wall clock to pass `ms`, so that the next commit is
/// stamped later than one answered by then.
fn until_the_clock_passes(ms: i64) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while now_ms() <= ms {
        assert!(std::time::Instant::now() < deadline, "the clock moves");
        std::hint::spin_loop();
    }
}

/// Commits made outside any group (Kafka's standalone group: no member
/// ever joined it) expire one by one, each `offsets.retention.minutes`
/// after it was made, as Kafka's removeExpiredOffsets has it for a group
/// without a protocol type. Partition 0 is committed first, then
/// partition 1, by rdkafka and by kafka-python; expiry runs at chosen times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_outside_any_group_expire_one_by_one() {
    use rdkafka::{Offset, TopicPartitionList};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        // Expiry runs when the test runs it.
        offsets_retention_check_interval: Duration::from_secs(3600),
        ..config(dir.path(), 1)
    })
    .await;
    let bootstrap = broker.bootstrap();
    let topic = "one-by-one";
    broker.broker().get_or_create_topic(topic, 2).unwrap();
    let commit = async |group: &str, by_python: bool, partition: i32, offset: i64| {
        if by_python {
            let out = Command::new(python())
                .arg(python_script("kp_commit.py"))
                .args(["--bootstrap", &bootstrap, "--group", group])
                .args(["--commit", &format!("{topic}:{partition}:{offset}")])
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"committed": true}"#);
        } else {
            let (bootstrap, group) = (bootstrap.clone(), group.to_string());
            tokio::task::spawn_blocking(move || {
                let alone: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", &group)
                    .create()
                    .unwrap();
                let mut positions = TopicPartitionList::new();
                positions
                    .add_partition_offset(topic, partition, Offset::Offset(offset))
                    .unwrap();
                alone.commit(&positions, CommitMode::Sync).unwrap();
            })
            .await
            .unwrap();
        }
    };
    let retention_ms = broker.broker().config().offsets_retention_ms;
    for (group, by_python) in [("rdkafka-alone", false), ("kafka-python-alone", true)] {
        commit(group, by_python, 0, 3).await;
        let first_answered = now_ms();
        until_the_clock_passes(first_answered);
        commit(group, by_python, 1, 4).await;
        assert_eq!(
            committed_offsets(&bootstrap, group, topic, &[0, 1]).await,
            [Offset::Offset(3), Offset::Offset(4)]
        );
        // Old enough for the first commit, not for the second.
        broker.broker().expire_offsets(first_answered + retention_ms);
        assert_eq!(
            committed_offsets(&bootstrap, group, topic, &[0, 1]).await,
            [Offset::Invalid, Offset::Offset(4)],
            "{group}"
        );
        broker.broker().expire_offsets(now_ms() + retention_ms);
        assert_eq!(
            committed_offsets(&bootstrap, group, topic, &[0, 1]).await,
            [Offset::Invalid, Offset::Invalid],
            "{group}"
        );
    }
    broker.shutdown().await;
}

/// offsets.retention.minutes (KIP-211): a group's committed offsets go once
/// it has had no members, and no commit, for the retention time. A commit
/// outside any group expires so; a group with a member keeps its offsets
/// however old they are, until the member leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_expire_only_once_their_group_is_empty() {
    use rdkafka::{Offset, TopicPartitionList};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        offsets_retention_ms: 1_000,
        offsets_retention_check_interval: Duration::from_millis(50),
        ..config(dir.path(), 1)
    })
    .await;
    let bootstrap = broker.bootstrap();
    broker.broker().get_or_create_topic("kept-while-read", 1).unwrap();
    let topic = "kept-while-read";
    let commit = |consumer: &BaseConsumer| {
        let mut positions = TopicPartitionList::new();
        positions.add_partition_offset(topic, 0, Offset::Offset(1)).unwrap();
        consumer.commit(&positions, CommitMode::Sync).unwrap();
    };
    let member = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let member = group_consumer(&bootstrap, "live", &[]);
            member.subscribe(&[topic]).unwrap();
            let deadline = std::time::Instant::now() + DEADLINE;
            while member.assignment().unwrap().count() == 0 {
                assert!(std::time::Instant::now() < deadline, "the member is assigned");
                member.poll(Duration::from_millis(50));
            }
            commit(&member);
            let alone: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "alone")
                .create()
                .unwrap();
            commit(&alone);
            member
        })
        .await
        .unwrap()
    };
    assert_eq!(committed_offset(&bootstrap, "live", topic).await, Offset::Offset(1));
    until_expired(&bootstrap, "alone", topic).await;
    // Committed at the same time, older than the retention by now: kept
    // because the group has a member.
    assert_eq!(committed_offset(&bootstrap, "live", topic).await, Offset::Offset(1));
    tokio::task::spawn_blocking(move || member.unsubscribe()).await.unwrap();
    until_expired(&bootstrap, "live", topic).await;
    broker.shutdown().await;
}

/// As Kafka's offset cleanup: a group whose members all left without
/// committing is gone at the next run. ListGroups (kafka-python's and
/// librdkafka's) stops listing it, DescribeGroups says Dead, while a group
/// that committed stays, Empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_group_with_nothing_committed_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    broker.broker().get_or_create_topic("passing", 1).unwrap();
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            for (group, commits) in [("rd-passing", false), ("rd-kept", true)] {
                let member = group_consumer(&bootstrap, group, &[]);
                member.subscribe(&["passing"]).unwrap();
                let deadline = std::time::Instant::now() + DEADLINE;
                while member.assignment().unwrap().count() == 0 {
                    assert!(std::time::Instant::now() < deadline, "{group}'s member is assigned");
                    member.poll(Duration::from_millis(50));
                }
                if commits {
                    let mut positions = rdkafka::TopicPartitionList::new();
                    positions
                        .add_partition_offset("passing", 0, rdkafka::Offset::Offset(1))
                        .unwrap();
                    member.commit(&positions, CommitMode::Sync).unwrap();
                }
                // Dropping it closes it, which leaves the group.
            }
        })
        .await
        .unwrap();
    }
    PyMember::ready(&bootstrap, "py-passing", "passing", &[])
        .await
        .leave()
        .await;

    let listed_by_kafka_python = async || {
        let listed = kp_admin(&bootstrap, &["list-groups"]).await;
        let groups = listed["groups"].as_object().unwrap().clone();
        groups
            .into_iter()
            .map(|(group, state)| (group, state.as_str().unwrap().to_string()))
            .collect::<BTreeMap<String, String>>()
    };
    let empty = |groups: &[&str]| -> BTreeMap<String, String> {
        groups.iter().map(|g| (g.to_string(), "Empty".to_string())).collect()
    };
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let listed = listed_by_kafka_python().await;
        if listed == empty(&["py-passing", "rd-kept", "rd-passing"]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "every member left: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    broker.broker().expire_offsets(now_ms());
    assert_eq!(listed_by_kafka_python().await, empty(&["rd-kept"]));
    let listed_by_rdkafka = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let client = group_consumer(&bootstrap, "lister", &[]);
            let list = client.fetch_group_list(None, DEADLINE).unwrap();
            list.groups()
                .iter()
                .map(|g| (g.name().to_string(), g.state().to_string()))
                .collect::<BTreeMap<_, _>>()
        })
        .await
        .unwrap()
    };
    assert_eq!(listed_by_rdkafka, empty(&["rd-kept"]));
    let mut client = RawClient::connect(broker.local_addr()).await;
    let describe = DescribeGroupsRequest {
        groups: vec!["rd-passing".into(), "rd-kept".into()],
        ..Default::default()
    };
    let Response::DescribeGroups(described) = client.call(Request::DescribeGroups(describe), 5).await else {
        panic!()
    };
    let states: Vec<_> = described.groups.iter().map(|g| g.group_state.as_str()).collect();
    assert_eq!(states, ["Dead", "Empty"]);
    broker.shutdown().await;
}

/// kafka-python's group administration (KafkaAdminClient): ListGroups with
/// state and type filters, DescribeGroups, OffsetDelete and DeleteGroups,
/// of a group known only by offsets committed before a restart and of a
/// live group with an rdkafka member; librdkafka's DeleteGroups too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_administers_groups_known_by_offsets_and_live_ones() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::{Offset, TopicPartitionList};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    for topic in ["a", "b"] {
        broker.broker().get_or_create_topic(topic, 1).unwrap();
    }
    let bootstrap = broker.bootstrap();
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let committer = group_consumer(&bootstrap, "offsets-only", &[]);
            let mut positions = TopicPartitionList::new();
            positions.add_partition_offset("a", 0, Offset::Offset(1)).unwrap();
            positions.add_partition_offset("b", 0, Offset::Offset(2)).unwrap();
            committer.commit(&positions, CommitMode::Sync).unwrap();
            // And a consumer group, whose member commits and leaves.
            let member = group_consumer(&bootstrap, "rd-group", &[]);
            member.subscribe(&["a"]).unwrap();
            let deadline = std::time::Instant::now() + DEADLINE;
            while member.assignment().unwrap().count() == 0 {
                assert!(std::time::Instant::now() < deadline, "the member is assigned");
                member.poll(Duration::from_millis(50));
            }
            member.commit(&positions, CommitMode::Sync).unwrap();
        })
        .await
        .unwrap();
    }
    broker.shutdown().await;
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let admin = async |args: &[&str]| kp_admin(&bootstrap, args).await;
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();

    assert_eq!(
        admin(&["list-groups"]).await,
        json(r#"{"groups": {"offsets-only": "Empty", "rd-group": "Empty"}}"#)
    );
    // As Kafka, which keeps group metadata: the consumer group is still
    // one, and a group nobody joined has no protocol type.
    assert_eq!(
        admin(&["describe-groups", "offsets-only", "rd-group", "never"]).await,
        json(
            r#"{"groups": {"offsets-only": {"state": "Empty", "protocol_type": ""},
                           "rd-group": {"state": "Empty", "protocol_type": "consumer"},
                           "never": {"state": "Dead", "protocol_type": ""}}}"#
        )
    );
    assert_eq!(
        admin(&["delete-group-offsets", "offsets-only", "a:0"]).await,
        json(r#"{"error": null, "partitions": {"a:0": null}}"#)
    );
    assert_eq!(committed_offset(&bootstrap, "offsets-only", "a").await, Offset::Invalid);
    assert_eq!(
        committed_offset(&bootstrap, "offsets-only", "b").await,
        Offset::Offset(2)
    );

    let member = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            // Past the kafka-python runs below, on a loaded machine too.
            let member = group_consumer(&bootstrap, "live", &[("session.timeout.ms", "30000")]);
            member.subscribe(&["a"]).unwrap();
            let deadline = std::time::Instant::now() + DEADLINE;
            while member.assignment().unwrap().count() == 0 {
                assert!(std::time::Instant::now() < deadline, "the member is assigned");
                member.poll(Duration::from_millis(50));
            }
            member
        })
        .await
        .unwrap()
    };
    assert_eq!(
        admin(&["list-groups", "Stable"]).await,
        json(r#"{"groups": {"live": "Stable"}}"#)
    );
    assert_eq!(
        admin(&["list-groups", "Empty,Stable", "classic"]).await,
        json(r#"{"groups": {"live": "Stable", "offsets-only": "Empty", "rd-group": "Empty"}}"#)
    );
    // kafka-python spells states as Kafka does; the broker ignores case.
    let mut client = RawClient::connect(broker.local_addr()).await;
    let list = minikafka::protocol::messages::group_admin::ListGroupsRequest {
        states_filter: vec!["sTABLE".into()],
        types_filter: vec!["CLASSIC".into()],
    };
    let Response::ListGroups(listed) = client.call(Request::ListGroups(list), 5).await else {
        panic!()
    };
    let listed: Vec<_> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(listed, ["live"], "filters ignore case");
    assert_eq!(
        admin(&["list-groups", "-", "consumer"]).await,
        json(r#"{"groups": {}}"#),
        "every group is classic"
    );
    assert_eq!(
        admin(&["delete-group-offsets", "live", "a:0", "b:0"]).await,
        json(r#"{"error": null, "partitions": {"a:0": "GroupSubscribedToTopicError", "b:0": null}}"#)
    );
    assert_eq!(
        admin(&["delete-group-offsets", "never", "a:0"]).await,
        json(r#"{"error": "GroupIdNotFoundError", "partitions": {}}"#)
    );
    assert_eq!(
        admin(&["delete-groups", "offsets-only", "live", "never"]).await,
        json(
            r#"{"results": {"offsets-only": "OK", "live": "NonEmptyGroupError",
                            "never": "GroupIdNotFoundError"}}"#
        )
    );
    assert_eq!(committed_offset(&bootstrap, "offsets-only", "b").await, Offset::Invalid);
    assert_eq!(
        admin(&["describe-groups", "offsets-only"]).await,
        json(r#"{"groups": {"offsets-only": {"state": "Dead", "protocol_type": ""}}}"#)
    );

    tokio::task::spawn_blocking(move || member.unsubscribe()).await.unwrap();
    let rdkafka_admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let deleted = rdkafka_admin
            .delete_groups(&["live"], &AdminOptions::new())
            .await
            .unwrap();
        match &deleted[..] {
            [Ok(group)] if group == "live" => break,
            // Unsubscribing leaves the group in the background.
            [Err((_, rdkafka::types::RDKafkaErrorCode::NonEmptyGroup))] => {
                assert!(std::time::Instant::now() < deadline, "the member leaves");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("rdkafka's DeleteGroups: {other:?}"),
        }
    }
    assert_eq!(
        admin(&["list-groups"]).await,
        json(r#"{"groups": {"rd-group": "Empty"}}"#)
    );
    broker.shutdown().await;
}

/// Counts the assignments an rdkafka consumer is given: one per rebalance
/// it takes part in.
struct CountingRebalances(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::ClientContext for CountingRebalances {}

impl rdkafka::consumer::ConsumerContext for CountingRebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// What the test asks of its rdkafka member, on the member's thread.
enum RdkafkaAsk {
    /// Commit the positions it has consumed to; answer whether it could.
    Commit(std::sync::mpsc::Sender<Result<(), String>>),
    Leave,
}

/// As Kafka loads a group's metadata at a coordinator move, a restarted
/// broker has its groups' members back: an rdkafka member and a
/// kafka-python member of one group carry on through a restart with their
/// ids and assignments, without a rebalance, and commit and consume as
/// before. (Not kcat: it exits once all brokers are down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_carry_on_through_a_broker_restart() {
    use rdkafka::Offset;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 6)).await;
    let bootstrap = broker.bootstrap();
    broker.broker().get_or_create_topic("carry-marks", 1).unwrap();
    produce(&bootstrap, "carry", 0..3_000).await;

    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    // A session that outlasts a restart on a loaded machine, as rdkafka's
    // default (45 s) does.
    let mut python =
        PyMember::ready_with(&bootstrap, "carry-on", "carry", &[], &["--session-timeout-ms", "30000"]).await;
    let rebalances = Arc::new(AtomicUsize::new(0));
    let (ask, asked) = std::sync::mpsc::channel::<RdkafkaAsk>();
    let rdkafka_member = {
        let (bootstrap, seen, rebalances) = (bootstrap.clone(), seen.clone(), rebalances.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer<CountingRebalances> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "carry-on")
                .set("client.id", "rdkafka-member")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "100")
                .create_with_context(CountingRebalances(rebalances))
                .unwrap();
            consumer.subscribe(&["carry"]).unwrap();
            loop {
                match asked.try_recv() {
                    Ok(RdkafkaAsk::Commit(answer)) => {
                        let committed = consumer.commit_consumer_state(CommitMode::Sync);
                        answer.send(committed.map_err(|e| e.to_string())).unwrap();
                    }
                    Ok(RdkafkaAsk::Leave) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                }
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    seen.lock().unwrap().insert((message.partition(), message.offset()));
                }
            }
        })
    };
    let settled = async |broker: &minikafka::BrokerHandle| {
        let start = std::time::Instant::now();
        loop {
            let (state, members) = assignments(broker, "carry-on", "carry").await;
            let owned: BTreeSet<i32> = members.values().flatten().copied().collect();
            if state == "Stable" && members.len() == 2 && owned.len() == 6 && members.values().all(|p| !p.is_empty()) {
                return members;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the group never settled: {state} {members:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let before = settled(&broker).await;
    let python_partitions = before
        .iter()
        .find(|(id, _)| id.starts_with("kafka-python"))
        .map(|(_, p)| p.clone())
        .expect("kafka-python is a member");
    // The rdkafka member's share (the kafka-python member reads its own
    // without telling).
    let rdkafka_stored = |broker: &minikafka::BrokerHandle| -> BTreeSet<(i32, i64)> {
        stored_records_by_partition(broker, "carry")
            .into_iter()
            .filter(|(p, _)| !python_partitions.contains(p))
            .flat_map(|(p, records)| records.into_iter().map(move |r| (p, r.offset)))
            .collect()
    };
    let wanted = rdkafka_stored(&broker);
    eventually("the rdkafka member reads its share", || {
        seen.lock().unwrap().is_superset(&wanted).then_some(())
    })
    .await;
    let assigned_before = rebalances.load(Ordering::SeqCst);
    assert!(assigned_before >= 1);

    let addr = broker.local_addr();
    broker.shutdown().await;
    let mut restarted = config(dir.path(), 6);
    restarted.listeners = vec![addr.to_string()];
    let broker = start(restarted).await;
    assert_eq!(
        assignments(&broker, "carry-on", "carry").await,
        ("Stable".to_string(), before.clone()),
        "the members and their assignments are back"
    );

    produce(&bootstrap, "carry", 3_000..6_000).await;
    let wanted = rdkafka_stored(&broker);
    eventually("the rdkafka member reads what came after the restart", || {
        seen.lock().unwrap().is_superset(&wanted).then_some(())
    })
    .await;
    // Each member commits as the member it was.
    let (answer, answered) = std::sync::mpsc::channel();
    ask.send(RdkafkaAsk::Commit(answer)).unwrap();
    let rdkafka_committed = tokio::task::spawn_blocking(move || answered.recv_timeout(DEADLINE).unwrap())
        .await
        .unwrap();
    assert_eq!(rdkafka_committed, Ok(()));
    assert_eq!(python.commit("carry-marks:0:7").await, Ok(()));
    assert_eq!(
        assignments(&broker, "carry-on", "carry").await,
        ("Stable".to_string(), before),
        "no member joined again"
    );
    assert_eq!(
        rebalances.load(Ordering::SeqCst),
        assigned_before,
        "rdkafka saw no rebalance"
    );
    assert_eq!(
        committed_offset(&bootstrap, "carry-on", "carry-marks").await,
        Offset::Offset(7)
    );
    let rdkafka_owned: Vec<i32> = assignments(&broker, "carry-on", "carry")
        .await
        .1
        .into_iter()
        .find(|(id, _)| id.starts_with("rdkafka-member"))
        .unwrap()
        .1;
    let ends: Vec<Offset> = rdkafka_owned
        .iter()
        .map(|&p| Offset::Offset(stored_records(&broker, "carry", p).len() as i64))
        .collect();
    assert_eq!(
        committed_offsets(&bootstrap, "carry-on", "carry", &rdkafka_owned).await,
        ends,
        "the rdkafka member committed the ends it read to after the restart"
    );

    ask.send(RdkafkaAsk::Leave).unwrap();
    tokio::task::spawn_blocking(move || rdkafka_member.join().unwrap())
        .await
        .unwrap();
    python.leave().await;
    broker.shutdown().await;
}
