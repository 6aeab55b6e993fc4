//! kcat (Debian's, on librdkafka 2.0.2: old, non-flexible versions and the
//! feature checks of librdkafka before 2.11) against the in-process broker.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const LINES: usize = 1_000;

async fn kcat_output(args: &[&str], stdin: Option<String>) -> String {
    // cargo points LD_LIBRARY_PATH at the librdkafka that rdkafka-sys built;
    // kcat must run on its own (Debian's 2.0.2), old versions and all.
    let mut child = Command::new(kcat())
        .env_remove("LD_LIBRARY_PATH")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
    }
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("kcat finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kcat {args:?} failed: {stderr}");
    assert!(!stderr.contains("Delivery failed"), "kcat {args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Lines that compress even one at a time: librdkafka sends a batch
/// uncompressed when compressing would not make it smaller, and how kcat's
/// lines fall into batches depends on timing (a loaded machine once gave a
/// first batch of a few short lines, sent as codec 0).
fn lines(prefix: &str) -> Vec<String> {
    let padding = "-".repeat(200);
    (0..LINES).map(|i| format!("{prefix}-{i}{padding}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    broker.broker().get_or_create_topic("listed", 3).unwrap();
    let bootstrap = broker.bootstrap();
    let listing = kcat_output(&["-b", &bootstrap, "-L"], None).await;
    assert!(
        listing.contains(&format!("broker 0 at {bootstrap} (controller)")),
        "{listing}"
    );
    assert!(listing.contains("topic \"listed\" with 3 partitions:"), "{listing}");
    for partition in 0..3 {
        assert!(
            listing.contains(&format!("partition {partition}, leader 0, replicas: 0, isrs: 0")),
            "{listing}"
        );
    }
    broker.shutdown().await;
}

/// kcat -P with no compression, gzip and snappy (librdkafka 2.0.2 only
/// enables the latter two when Produce v0 is advertised); then kcat -C
/// reads every topic back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_and_consumes_plain_gzip_and_snappy() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    for codec in ["none", "gzip", "snappy"] {
        let topic = format!("kcat-{codec}");
        let sent = lines(codec);
        kcat_output(
            &["-b", &bootstrap, "-P", "-t", &topic, "-z", codec],
            Some(sent.join("\n") + "\n"),
        )
        .await;

        let stored: Vec<String> = stored_records(&broker, &topic, 0)
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(stored, sent, "{topic}: the log holds every line, in order");
        let codecs: Vec<i16> = stored_batches(&broker, &topic, 0)
            .iter()
            .map(|b| i16::from_be_bytes([b[21], b[22]]) & 7)
            .collect();
        let expected = match codec {
            "gzip" => 1,
            "snappy" => 2,
            _ => 0,
        };
        assert!(
            codecs.iter().all(|c| *c == expected),
            "{topic}: batches carry codec {expected}: {codecs:?}"
        );

        let consumed = kcat_output(
            &["-b", &bootstrap, "-C", "-t", &topic, "-o", "beginning", "-e", "-q"],
            None,
        )
        .await;
        assert_eq!(
            consumed.lines().collect::<Vec<_>>(),
            sent,
            "{topic}: kcat -C reads back every line"
        );
    }
    broker.shutdown().await;
}
