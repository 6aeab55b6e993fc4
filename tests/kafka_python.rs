//! kafka-python (pure Python, its own protocol code; pinned by scripts/test.sh)
//! producing and consuming against the in-process broker.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use tokio::process::Command;

const MESSAGES: usize = 2_000;

async fn run_python(script: &str, args: &[String]) -> String {
    let output = tokio::time::timeout(
        DEADLINE * 2,
        Command::new(python())
            .arg(python_script(script))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the script finishes")
    .unwrap();
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn index_of(key: &[u8]) -> usize {
    std::str::from_utf8(key)
        .unwrap()
        .strip_prefix("key-")
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_and_consumes_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    let bootstrap = broker.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("python-{codec}");
        let args: Vec<String> = [
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--count",
            &MESSAGES.to_string(),
            "--compression",
            codec,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let report: Value = serde_json::from_str(&run_python("kp_produce.py", &args).await).unwrap();
        let delivered = report["delivered"].as_array().unwrap();
        assert_eq!(delivered.len(), MESSAGES);

        // Offsets reported back are dense per partition, and each names the
        // record the log holds there.
        let stored = stored_records_by_partition(&broker, &topic);
        let mut per_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (i, d) in delivered.iter().enumerate() {
            let (partition, offset) = (d[0].as_i64().unwrap(), d[1].as_i64().unwrap());
            per_partition.entry(partition).or_default().push(offset);
            let record = &stored[&(partition as i32)][offset as usize];
            assert_eq!(
                index_of(record.key.as_deref().unwrap()),
                i,
                "{topic}: delivery {i} names its record"
            );
            assert_eq!(record.value.as_deref(), Some(format!("value-{i}").as_bytes()));
            assert_eq!(
                record.headers,
                vec![("i".to_string(), Some(bytes::Bytes::from(i.to_string())))]
            );
        }
        for (partition, offsets) in per_partition {
            assert_eq!(
                offsets,
                (0..offsets.len() as i64).collect::<Vec<_>>(),
                "{topic}/{partition}"
            );
        }
        let codecs: Vec<i16> = (0..3)
            .flat_map(|p| stored_batches(&broker, &topic, p))
            .map(|b| i16::from_be_bytes([b[21], b[22]]) & 7)
            .collect();
        let expected = ["none", "gzip", "snappy", "lz4", "zstd"]
            .iter()
            .position(|c| *c == codec)
            .unwrap() as i16;
        // kafka-python leaves a batch uncompressed when compressing would not
        // make it smaller; every other batch carries the codec.
        assert!(
            codecs.contains(&expected),
            "{topic}: stored with codec {expected}: {codecs:?}"
        );
        assert!(codecs.iter().all(|c| *c == expected || *c == 0), "{topic}: {codecs:?}");

        // kafka-python reads it all back with assign(): same records.
        let args: Vec<String> = [
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--expect",
            &MESSAGES.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let consumed = run_python("kp_consume.py", &args).await;
        let mut seen = 0;
        for line in consumed.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let (partition, offset) = (
                record["partition"].as_i64().unwrap(),
                record["offset"].as_i64().unwrap(),
            );
            let stored = &stored[&(partition as i32)][offset as usize];
            assert_eq!(record["key"].as_str().map(str::as_bytes), stored.key.as_deref());
            assert_eq!(record["value"].as_str().map(str::as_bytes), stored.value.as_deref());
            assert_eq!(record["timestamp"].as_i64(), Some(stored.timestamp));
            seen += 1;
        }
        assert_eq!(seen, MESSAGES, "{topic}: kafka-python consumed everything");
    }
    broker.shutdown().await;
}
