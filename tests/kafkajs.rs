//! KafkaJS, a pure-JavaScript client with its own protocol code, against
//! the broker: `tests/node/kjs_roundtrip.js` creates a topic, sends plain
//! and gzip batches with an idempotent producer, reads them back as a
//! consumer group that commits, and administers the group.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use minikafka::protocol::messages::group_admin::DescribeGroupsRequest;
use minikafka::protocol::messages::{Request, Response};
use serde_json::json;
use tokio::process::Command;

const PER_BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_produces_consumes_in_a_group_and_administers_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let topic = "kafkajs";
    let output = Command::new(node())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/kjs_roundtrip.js"))
        .args([&broker.bootstrap(), topic, &PER_BATCH.to_string()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE * 2, output)
        .await
        .expect("KafkaJS finishes")
        .unwrap();
    let report = json_stdout(&output, "kjs_roundtrip.js");

    assert_eq!(report["created"], json!(true));
    let sent = report["sent"].as_array().unwrap();
    assert!(
        sent.iter().all(|s| s[1] == json!(0)),
        "every partition accepted: {sent:?}"
    );

    // What KafkaJS read is what the broker stored, record for record.
    let consumed: Vec<(i32, i64, String, String, String)> = report["consumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |i: usize| r[i].as_str().unwrap().to_string();
            (
                r[0].as_i64().unwrap() as i32,
                r[1].as_i64().unwrap(),
                text(2),
                text(3),
                text(4),
            )
        })
        .collect();
    let stored: Vec<(i32, i64, String, String, String)> = stored_records_by_partition(&broker, topic)
        .into_iter()
        .flat_map(|(partition, records)| {
            records.into_iter().map(move |r| {
                let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                let header = r.headers.into_iter().find(|(k, _)| k == "i").unwrap().1;
                (partition, r.offset, text(r.key), text(r.value), text(header))
            })
        })
        .collect();
    assert_eq!(consumed, stored);
    let mut keys: Vec<_> = consumed
        .iter()
        .map(|(_, _, k, v, i)| (k.clone(), v.clone(), i.clone()))
        .collect();
    keys.sort();
    let mut expected: Vec<_> = ["none", "gzip"]
        .iter()
        .flat_map(|name| {
            (0..PER_BATCH).map(move |i| (format!("{name}-{i}"), format!("value-{name}-{i}"), i.to_string()))
        })
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "each record once, with its value and header");

    // Its gzip batches are stored as it sent them, compressed.
    let codecs: Vec<i16> = (0..3)
        .flat_map(|p| stored_batches(&broker, topic, p))
        .map(|batch| i16::from_be_bytes([batch[21], batch[22]]) & 0x7)
        .collect();
    assert!(
        codecs.contains(&1) && codecs.contains(&0),
        "plain and gzip batches: {codecs:?}"
    );

    // The group committed every partition's end, and is described as a
    // member saw it, then empty.
    let mut ends: BTreeMap<i64, i64> = BTreeMap::new();
    for (partition, offset, ..) in &consumed {
        ends.insert(*partition as i64, offset + 1);
    }
    let committed: BTreeMap<i64, i64> = report["committed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_i64().unwrap(), c[1].as_i64().unwrap()))
        .collect();
    assert_eq!(committed, ends);
    assert_eq!(report["described_running"], json!(["Stable", "consumer", 1]));
    assert_eq!(report["described_after"], json!(["Empty", 0]));
    assert_eq!(report["deleted"], json!([["kafkajs-group", 0]]));
    let mut client = RawClient::connect(broker.local_addr()).await;
    let describe = DescribeGroupsRequest {
        groups: vec!["kafkajs-group".into()],
        ..Default::default()
    };
    let Response::DescribeGroups(described) = client.call(Request::DescribeGroups(describe), 5).await else {
        panic!()
    };
    assert_eq!(described.groups[0].group_state, "Dead", "deleted with its offsets");
    broker.shutdown().await;
}
