//! What idle consumers cost: the broker binary's CPU time (user + system,
//! from /proc) over a quiet period, with no clients and then with 50
//! consumers long-polling at the end of the log, measured in the same run.
//!
//! `cargo bench --bench idle_long_polls`

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::BufMut;
use minikafka::protocol::RequestHeader;
use minikafka::protocol::messages::Request;
use minikafka::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONSUMERS: usize = 50;
const QUIET: Duration = Duration::from_secs(5);

/// utime + stime of a process, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn fetch_frame(correlation_id: i32) -> Vec<u8> {
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 500,
        min_bytes: 1,
        topics: vec![FetchTopic {
            topic: "idle".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut body = Vec::new();
    RequestHeader {
        api_key: 1,
        api_version: 11,
        correlation_id,
        client_id: None,
    }
    .encode(&mut body, false);
    request.encode(11, &mut body);
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = support::spawn_broker(dir.path()).await;
    let pid = child.id().unwrap();

    // Create the (empty) topic through Metadata, as a client would.
    let cluster = minikafka::client::Cluster::connect(&addr, "bench", Duration::from_secs(10)).await;
    let mut cluster = cluster.unwrap();
    cluster.refresh(&["idle"], true).await.unwrap();

    let before = cpu_ticks(pid);
    tokio::time::sleep(QUIET).await;
    let no_clients = cpu_ticks(pid) - before;

    let mut pollers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        pollers.push(tokio::spawn(async move {
            let mut correlation_id = 0;
            loop {
                correlation_id += 1;
                stream.write_all(&fetch_frame(correlation_id)).await.unwrap();
                let size = stream.read_i32().await.unwrap();
                let mut body = vec![0; size as usize];
                stream.read_exact(&mut body).await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // all parked
    let before = cpu_ticks(pid);
    tokio::time::sleep(QUIET).await;
    let with_consumers = cpu_ticks(pid) - before;
    for poller in pollers {
        poller.abort();
    }

    let ms = |ticks: u64| ticks * 10;
    println!("broker CPU over {QUIET:?} quiet (user+sys, 10 ms ticks)");
    println!("  no clients:                       {:>5} ms", ms(no_clients));
    println!(
        "  {CONSUMERS} consumers long-polling (500 ms): {:>5} ms",
        ms(with_consumers)
    );
    println!(
        "  = {:.2}% of one core; {} fetches answered per second",
        ms(with_consumers) as f64 / QUIET.as_millis() as f64 * 100.0,
        CONSUMERS * 2
    );
    child.kill().await.unwrap();
}
