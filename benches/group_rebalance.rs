//! How long a group of 100 members joining at once takes to become stable:
//! every member sends JoinGroup (v9: the MEMBER_ID_REQUIRED round trip
//! included) and SyncGroup over its own connection; the clock stops when the
//! last member has its assignment. The initial rebalance delay
//! (group.initial.rebalance.delay.ms, 100 ms here) is part of the figure and
//! printed beside it.
//!
//! `cargo bench --bench group_rebalance`

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use minikafka::client::BrokerConnection;
use minikafka::protocol::messages::groups::{
    JoinGroupRequest, JoinGroupRequestProtocol, SyncGroupRequest, SyncGroupRequestAssignment,
};
use minikafka::protocol::messages::{Request, Response};

const MEMBERS: usize = 100;
const ROUNDS: usize = 5;

async fn member(addr: String, group: String) -> Duration {
    let started = Instant::now();
    let mut connection = BrokerConnection::connect(&addr, "bench", Duration::from_secs(30))
        .await
        .unwrap();
    let join = |member_id: String| {
        Request::JoinGroup(JoinGroupRequest {
            group_id: group.clone(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            member_id,
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff"),
            }],
            ..Default::default()
        })
    };
    let Response::JoinGroup(first) = connection.call(join(String::new())).await.unwrap() else {
        panic!()
    };
    let Response::JoinGroup(joined) = connection.call(join(first.member_id)).await.unwrap() else {
        panic!()
    };
    assert_eq!(joined.error_code, 0);
    let assignments = joined
        .members
        .iter()
        .map(|m| SyncGroupRequestAssignment {
            member_id: m.member_id.clone(),
            assignment: Bytes::new(),
        })
        .collect();
    let sync = Request::SyncGroup(SyncGroupRequest {
        group_id: group.clone(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        assignments,
        ..Default::default()
    });
    let Response::SyncGroup(synced) = connection.call(sync).await.unwrap() else {
        panic!()
    };
    assert_eq!(synced.error_code, 0);
    started.elapsed()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let broker = minikafka::start(minikafka::BrokerConfig::ephemeral(None))
            .await
            .unwrap();
        let mut totals = Vec::new();
        for round in 0..ROUNDS {
            let group = format!("bench-{round}");
            let started = Instant::now();
            let members: Vec<_> = (0..MEMBERS)
                .map(|_| tokio::spawn(member(broker.bootstrap(), group.clone())))
                .collect();
            for m in members {
                m.await.unwrap();
            }
            totals.push(started.elapsed());
        }
        totals.sort();
        println!("{MEMBERS} members joining one group at once, {ROUNDS} rounds (in-process broker, loopback)");
        println!(
            "  until every member has its assignment: median {:?}, min {:?}, max {:?}",
            totals[ROUNDS / 2],
            totals[0],
            totals[ROUNDS - 1]
        );
        println!("  of which group.initial.rebalance.delay.ms: 100 ms");
        broker.shutdown().await;
    });
}
