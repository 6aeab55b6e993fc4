//! Byte-level tests against a real broker on an ephemeral port: requests
//! built with the library's codec (and some built by hand, to be wrong).

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use minikafka::protocol::messages::api_versions::ApiVersionsRequest;
use minikafka::protocol::messages::list_offsets::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic};
use minikafka::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use minikafka::protocol::messages::offset_for_leader_epoch::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use minikafka::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::record_batch::{BatchHeader, Compression, batch_crc};
use minikafka::protocol::records::{Record, RecordBatchBuilder, decode_batches};
use minikafka::protocol::{ErrorCode, FetchedRecords};

fn batch(values: &[&str], timestamp: i64) -> Bytes {
    let mut builder = RecordBatchBuilder::new(timestamp);
    for (i, value) in values.iter().enumerate() {
        builder.push(Record {
            timestamp: timestamp + i as i64,
            key: Some(Bytes::from(format!("k-{value}"))),
            value: Some(Bytes::from(value.to_string())),
            ..Record::default()
        });
    }
    builder.build(Compression::None).unwrap()
}

fn produce(topic: &str, partitions: Vec<(i32, Option<Bytes>)>, acks: i16) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: partitions
                .into_iter()
                .map(|(index, records)| PartitionProduceData { index, records })
                .collect(),
        }],
        ..Default::default()
    })
}

/// (error code, base offset) of every partition in a produce response.
fn produce_results(response: Response) -> Vec<(i16, i64)> {
    let Response::Produce(response) = response else {
        panic!("not a produce response")
    };
    response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| (p.error_code, p.base_offset)))
        .collect()
}

async fn broker_with_topic(dir: &std::path::Path, topic: &str, partitions: i32) -> minikafka::BrokerHandle {
    let broker = start(config(dir, partitions)).await;
    broker.broker().get_or_create_topic(topic, partitions).unwrap();
    broker
}

// ---------------------------------------------------------------- ApiVersions

#[tokio::test]
async fn api_versions_lists_exactly_the_supported_table_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    for version in 0..=4 {
        let request = ApiVersionsRequest {
            client_software_name: "minikafka-test".into(),
            client_software_version: "1.0".into(),
        };
        let Response::ApiVersions(response) = client.call(Request::ApiVersions(request), version).await else {
            panic!()
        };
        assert_eq!(response.error_code, 0, "v{version}");
        let listed: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let table: Vec<(i16, i16, i16)> = minikafka::protocol::SUPPORTED_APIS
            .iter()
            .map(|s| (s.key as i16, s.min_version, s.max_version))
            .collect();
        assert_eq!(listed, table, "v{version}");
    }
}

/// KIP-511: a newer ApiVersions than we know is answered in v0 with
/// UNSUPPORTED_VERSION and our ranges, in a v0 response header.
#[tokio::test]
async fn api_versions_too_new_gets_a_v0_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    // ApiVersions v9, correlation id 77, a body we cannot know the layout of.
    let mut frame = vec![0, 18, 0, 9, 0, 0, 0, 77, 0, 1, b'x', 0, 0xde, 0xad];
    frame.splice(0..0, (frame.len() as i32).to_be_bytes());
    client.send_raw(&frame).await;
    let body = client.read_frame().await.unwrap();
    assert_eq!(
        &body[..4],
        &77i32.to_be_bytes(),
        "v0 header: the correlation id, nothing else"
    );
    let response = Response::decode(minikafka::protocol::ApiKey::ApiVersions, 0, &body.slice(4..)).unwrap();
    let Response::ApiVersions(response) = response else {
        panic!()
    };
    assert_eq!(response.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(response.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 4));
    // The connection lives on.
    let again = client
        .call(Request::ApiVersions(ApiVersionsRequest::default()), 0)
        .await;
    assert!(matches!(again, Response::ApiVersions(r) if r.error_code == 0));
}

#[tokio::test]
async fn api_versions_v3_refuses_invalid_software_names() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let request = ApiVersionsRequest {
        client_software_name: "bad name!".into(),
        client_software_version: "1".into(),
    };
    let Response::ApiVersions(response) = client.call(Request::ApiVersions(request), 3).await else {
        panic!()
    };
    assert_eq!(response.error_code, ErrorCode::InvalidRequest.code());
}

// ---------------------------------------------------------------- Metadata

fn topic_names(response: &Response) -> Vec<(String, i16)> {
    let Response::Metadata(response) = response else {
        panic!()
    };
    response
        .topics
        .iter()
        .map(|t| (t.name.clone().unwrap_or_default(), t.error_code))
        .collect()
}

#[tokio::test]
async fn metadata_null_empty_and_named_topic_lists() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "existing", 2).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let all = vec![("existing".to_string(), 0)];

    let v0_empty = client
        .call(
            Request::Metadata(MetadataRequest {
                topics: Some(vec![]),
                ..Default::default()
            }),
            0,
        )
        .await;
    assert_eq!(topic_names(&v0_empty), all, "v0: empty means all");
    for version in [1, 4, 9, 12] {
        let none = client
            .call(
                Request::Metadata(MetadataRequest {
                    topics: Some(vec![]),
                    ..Default::default()
                }),
                version,
            )
            .await;
        assert_eq!(topic_names(&none), vec![], "v{version}: empty means none");
        let null = client
            .call(
                Request::Metadata(MetadataRequest {
                    topics: None,
                    ..Default::default()
                }),
                version,
            )
            .await;
        assert_eq!(topic_names(&null), all, "v{version}: null means all");
    }

    let Response::Metadata(v12) = client.call(Request::Metadata(MetadataRequest::default()), 12).await else {
        panic!()
    };
    let addr = broker.local_addr();
    assert_eq!(v12.brokers.len(), 1);
    assert_eq!(
        (
            v12.brokers[0].node_id,
            v12.brokers[0].host.as_str(),
            v12.brokers[0].port
        ),
        (0, "127.0.0.1", i32::from(addr.port()))
    );
    assert_eq!(v12.controller_id, 0);
    assert_eq!(v12.cluster_id.as_deref(), Some(broker.broker().cluster_id()));
    let topic = &v12.topics[0];
    assert_eq!(topic.topic_id, broker.broker().topic("existing").unwrap().id);
    assert!(!topic.topic_id.is_nil());
    for (i, p) in topic.partitions.iter().enumerate() {
        assert_eq!((p.partition_index, p.leader_id, p.leader_epoch), (i as i32, 0, 0));
        assert_eq!(
            (p.replica_nodes.as_slice(), p.isr_nodes.as_slice()),
            (&[0][..], &[0][..])
        );
    }
}

fn named(names: &[&str]) -> Option<Vec<MetadataRequestTopic>> {
    Some(
        names
            .iter()
            .map(|n| MetadataRequestTopic {
                name: Some(n.to_string()),
                ..Default::default()
            })
            .collect(),
    )
}

#[tokio::test]
async fn metadata_auto_creates_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 3)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;

    let request = MetadataRequest {
        topics: named(&["no-create"]),
        allow_auto_topic_creation: false,
        ..Default::default()
    };
    let response = client.call(Request::Metadata(request), 9).await;
    assert_eq!(
        topic_names(&response),
        vec![("no-create".into(), ErrorCode::UnknownTopicOrPartition.code())]
    );
    assert!(broker.broker().topic("no-create").is_none());

    let request = MetadataRequest {
        topics: named(&["created"]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let Response::Metadata(response) = client.call(Request::Metadata(request), 9).await else {
        panic!()
    };
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 3, "--num-partitions");

    // Before v4 there is no flag: auto-creation is implied.
    let response = client
        .call(
            Request::Metadata(MetadataRequest {
                topics: named(&["created-v1"]),
                ..Default::default()
            }),
            1,
        )
        .await;
    assert_eq!(topic_names(&response), vec![("created-v1".into(), 0)]);

    let bad = client
        .call(
            Request::Metadata(MetadataRequest {
                topics: named(&["bad/name", ".."]),
                ..Default::default()
            }),
            9,
        )
        .await;
    let invalid = ErrorCode::InvalidTopicException.code();
    assert_eq!(
        topic_names(&bad),
        vec![("bad/name".into(), invalid), ("..".into(), invalid)]
    );
}

#[tokio::test]
async fn metadata_auto_create_can_be_disabled_on_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        auto_create_topics: false,
        ..config(dir.path(), 1)
    })
    .await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let request = MetadataRequest {
        topics: named(&["wanted"]),
        allow_auto_topic_creation: true,
        ..Default::default()
    };
    let response = client.call(Request::Metadata(request), 12).await;
    assert_eq!(
        topic_names(&response),
        vec![("wanted".into(), ErrorCode::UnknownTopicOrPartition.code())]
    );
}

#[tokio::test]
async fn metadata_by_topic_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "by-id", 1).await;
    let id = broker.broker().topic("by-id").unwrap().id;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let topics = vec![
        MetadataRequestTopic {
            topic_id: id,
            name: None,
        },
        MetadataRequestTopic {
            topic_id: uuid::Uuid::from_u128(42),
            name: None,
        },
    ];
    let Response::Metadata(response) = client
        .call(
            Request::Metadata(MetadataRequest {
                topics: Some(topics),
                ..Default::default()
            }),
            12,
        )
        .await
    else {
        panic!()
    };
    assert_eq!(response.topics[0].name.as_deref(), Some("by-id"));
    assert_eq!(response.topics[1].error_code, ErrorCode::UnknownTopicId.code());
    assert_eq!(response.topics[1].name, None);
}

// ---------------------------------------------------------------- Produce

#[tokio::test]
async fn produce_errors_are_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "mixed", 3).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let good = batch(&["a", "b"], 1_000);
    let mut corrupt = good.to_vec();
    *corrupt.last_mut().unwrap() ^= 1;
    let request = produce(
        "mixed",
        vec![
            (0, Some(good.clone())),
            (1, Some(Bytes::from(corrupt))),
            (2, Some(good.clone())),
            (7, Some(good.clone())),
        ],
        -1,
    );
    let results = produce_results(client.call(request, 9).await);
    assert_eq!(
        results,
        vec![
            (0, 0),
            (ErrorCode::CorruptMessage.code(), -1),
            (0, 0),
            (ErrorCode::UnknownTopicOrPartition.code(), -1)
        ]
    );
    assert_eq!(
        stored_batches(&broker, "mixed", 1).len(),
        0,
        "the corrupt batch is not stored"
    );
    // The same connection keeps working, and offsets continue.
    let results = produce_results(client.call(produce("mixed", vec![(0, Some(good))], 1), 3).await);
    assert_eq!(results, vec![(0, 2)]);
}

#[tokio::test]
async fn produce_refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "refusals", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let good = batch(&["x"], 1);

    let acks2 = produce_results(
        client
            .call(produce("refusals", vec![(0, Some(good.clone()))], 2), 9)
            .await,
    );
    assert_eq!(acks2, vec![(ErrorCode::InvalidRequiredAcks.code(), -1)]);

    let old = produce_results(
        client
            .call(produce("refusals", vec![(0, Some(good.clone()))], 1), 2)
            .await,
    );
    assert_eq!(old, vec![(ErrorCode::UnsupportedVersion.code(), -1)]);

    let mut transactional = good.to_vec();
    transactional[22] |= 0x10;
    let crc = batch_crc(&transactional);
    transactional[17..21].copy_from_slice(&crc.to_be_bytes());
    let Response::Produce(response) = client
        .call(produce("refusals", vec![(0, Some(Bytes::from(transactional)))], 1), 9)
        .await
    else {
        panic!()
    };
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, ErrorCode::InvalidRecord.code());
    assert!(partition.error_message.as_deref().unwrap().contains("transactional"));

    let missing = produce_results(client.call(produce("refusals", vec![(0, None)], 1), 9).await);
    assert_eq!(missing, vec![(ErrorCode::InvalidRecord.code(), -1)]);

    let unknown = produce_results(client.call(produce("nope", vec![(0, Some(good))], 1), 9).await);
    assert_eq!(unknown, vec![(ErrorCode::UnknownTopicOrPartition.code(), -1)]);
    assert_eq!(
        broker
            .broker()
            .topic("refusals")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .next_offset(),
        0
    );
}

#[tokio::test]
async fn produce_batches_over_message_max_bytes_are_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        message_max_bytes: 200,
        ..config(dir.path(), 1)
    })
    .await;
    broker.broker().get_or_create_topic("small", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let small = batch(&["fits"], 1);
    assert!(small.len() <= 200);
    let big_value = "x".repeat(300);
    let big = batch(&[big_value.as_str()], 1);
    let results = produce_results(client.call(produce("small", vec![(0, Some(big))], 1), 9).await);
    assert_eq!(results, vec![(ErrorCode::MessageTooLarge.code(), -1)]);
    let results = produce_results(client.call(produce("small", vec![(0, Some(small))], 1), 9).await);
    assert_eq!(results, vec![(0, 0)]);
}

/// acks=0 gets no response at all; the next request's response is the next
/// thing on the wire, and responses keep request order when pipelined.
#[tokio::test]
async fn acks_zero_sends_nothing_and_pipelined_responses_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "pipelined", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut frames = Vec::new();
    frames.extend(RawClient::frame(
        &produce("pipelined", vec![(0, Some(batch(&["silent"], 1)))], 0),
        9,
        1,
    ));
    for correlation_id in 2..=20 {
        frames.extend(RawClient::frame(
            &produce("pipelined", vec![(0, Some(batch(&["v"], 1)))], 1),
            9,
            correlation_id,
        ));
    }
    client.send_raw(&frames).await;
    for expected in 2..=20 {
        let body = client.read_frame().await.unwrap();
        assert_eq!(i32::from_be_bytes([body[0], body[1], body[2], body[3]]), expected);
    }
    assert_eq!(
        broker
            .broker()
            .topic("pipelined")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .next_offset(),
        20
    );
}

// ---------------------------------------------------------------- Bad frames

/// Sends `bytes` and checks the broker closes the connection without an
/// answer (with `then_eof`, the client closes its sending side afterwards,
/// as a client that goes away mid-frame does), while serving others.
async fn assert_closed_and_broker_alive(broker: &minikafka::BrokerHandle, bytes: &[u8], what: &str, then_eof: bool) {
    let mut bad = RawClient::connect(broker.local_addr()).await;
    bad.send_raw(bytes).await;
    if then_eof {
        bad.shutdown_write().await;
    }
    assert!(
        bad.is_closed_by_broker().await,
        "{what}: connection closed without an answer"
    );
    let mut good = RawClient::connect(broker.local_addr()).await;
    let response = good.call(Request::ApiVersions(ApiVersionsRequest::default()), 0).await;
    assert!(
        matches!(response, Response::ApiVersions(r) if r.error_code == 0),
        "{what}: others still served"
    );
}

#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        socket_request_max_bytes: 1024,
        ..config(dir.path(), 1)
    })
    .await;
    let frame = |body: &[u8]| {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // Over socket.request.max.bytes by one: refused from the size alone.
    assert_closed_and_broker_alive(&broker, &1025i32.to_be_bytes(), "oversize", false).await;
    assert_closed_and_broker_alive(&broker, &(-5i32).to_be_bytes(), "negative size", false).await;
    assert_closed_and_broker_alive(&broker, &frame(&[0, 3]), "header cut short", false).await;
    assert_closed_and_broker_alive(
        &broker,
        &frame(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        "unknown api key",
        false,
    )
    .await;
    assert_closed_and_broker_alive(
        &broker,
        &frame(&[0, 29, 0, 1, 0, 0, 0, 1, 0, 0]),
        "DescribeAcls, not served",
        false,
    )
    .await;
    assert_closed_and_broker_alive(&broker, &frame(&[0, 3, 0, 13, 0, 0, 0, 1, 0, 0]), "Metadata v13", false).await;
    assert_closed_and_broker_alive(
        &broker,
        &frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
        "huge array count",
        false,
    )
    .await;
    assert_closed_and_broker_alive(
        &broker,
        &frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0xc3, 0x28]),
        "invalid UTF-8",
        false,
    )
    .await;
    let garbage: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert_closed_and_broker_alive(&broker, &frame(&garbage), "garbage", false).await;
    // Half a frame, then the client goes away: nothing to answer, nothing breaks.
    assert_closed_and_broker_alive(&broker, &[0, 0, 0, 50, 0, 3], "truncated", true).await;
}

// ---------------------------------------------------------------- Fetch

fn fetched(response: Response) -> minikafka::protocol::messages::fetch::PartitionData {
    let Response::Fetch(response) = response else { panic!() };
    assert_eq!(response.error_code, 0);
    assert_eq!(response.session_id, 0, "no fetch sessions");
    response
        .responses
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

#[tokio::test]
async fn fetch_starts_at_the_batch_holding_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "fetched", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    for values in [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]] {
        client
            .call(produce("fetched", vec![(0, Some(batch(&values, 1)))], 1), 9)
            .await;
    }
    for version in [4, 11, 12] {
        let data = fetched(
            client
                .call(Request::Fetch(fetch_request("fetched", 4, 0, 0, 1 << 20)), version)
                .await,
        );
        assert_eq!(
            (data.error_code, data.high_watermark, data.last_stable_offset),
            (0, 9, 9)
        );
        assert_eq!(
            data.log_start_offset,
            if version >= 5 { 0 } else { -1 },
            "log start offset is v5+"
        );
        let records = decode_batches(data.records.as_ref().and_then(FetchedRecords::bytes).unwrap()).unwrap();
        assert_eq!(
            records.first().unwrap().offset,
            3,
            "v{version}: from the start of the batch holding offset 4"
        );
        let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(
            values,
            ["d", "e", "f", "g", "h", "i"].map(|v| Bytes::from_static(v.as_bytes())),
            "v{version}"
        );
    }
    // KIP-74: a limit smaller than the first batch still returns it whole.
    let data = fetched(
        client
            .call(Request::Fetch(fetch_request("fetched", 0, 0, 0, 1)), 11)
            .await,
    );
    let batches = data.records.as_ref().and_then(FetchedRecords::bytes).unwrap().clone();
    assert_eq!(
        BatchHeader::parse(&batches).unwrap().total_bytes(),
        batches.len(),
        "exactly one whole batch"
    );
    // At the end: empty, but present (librdkafka does not accept null).
    let data = fetched(
        client
            .call(Request::Fetch(fetch_request("fetched", 9, 0, 0, 1 << 20)), 11)
            .await,
    );
    assert_eq!(data.records, Some(FetchedRecords::default()));
    // Past the end: OFFSET_OUT_OF_RANGE.
    let data = fetched(
        client
            .call(Request::Fetch(fetch_request("fetched", 10, 0, 0, 1 << 20)), 11)
            .await,
    );
    assert_eq!(data.error_code, ErrorCode::OffsetOutOfRange.code());
    let data = fetched(
        client
            .call(Request::Fetch(fetch_request("missing", 0, 0, 0, 1 << 20)), 11)
            .await,
    );
    assert_eq!(data.error_code, ErrorCode::UnknownTopicOrPartition.code());
}

#[tokio::test]
async fn fetch_by_topic_id_from_v13() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "ids", 1).await;
    let id = broker.broker().topic("ids").unwrap().id;
    let mut client = RawClient::connect(broker.local_addr()).await;
    client
        .call(produce("ids", vec![(0, Some(batch(&["by-id"], 1)))], 1), 9)
        .await;
    let mut request = fetch_request("", 0, 0, 0, 1 << 20);
    request.topics[0].topic_id = id;
    let Response::Fetch(response) = client.call(Request::Fetch(request.clone()), 17).await else {
        panic!()
    };
    assert_eq!(response.responses[0].topic_id, id);
    let records = decode_batches(
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .and_then(FetchedRecords::bytes)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"by-id"[..]));
    request.topics[0].topic_id = uuid::Uuid::from_u128(7);
    let data = fetched(client.call(Request::Fetch(request), 13).await);
    assert_eq!(data.error_code, ErrorCode::UnknownTopicId.code());
}

/// A fetch waiting at the end wakes when something is appended, with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_until_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "tail", 1).await;
    let mut consumer = RawClient::connect(broker.local_addr()).await;
    let waiting = tokio::spawn(async move {
        fetched(
            consumer
                .call(Request::Fetch(fetch_request("tail", 0, 20_000, 1, 1 << 20)), 12)
                .await,
        )
    });
    // Produce only once the fetch is parked (no data yet, so it must wait).
    let mut producer = RawClient::connect(broker.local_addr()).await;
    eventually("the fetch to be sent", || (!waiting.is_finished()).then_some(())).await;
    producer
        .call(produce("tail", vec![(0, Some(batch(&["late"], 1)))], 1), 9)
        .await;
    let data = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("woken well before max_wait_ms")
        .unwrap();
    let records = decode_batches(data.records.as_ref().and_then(FetchedRecords::bytes).unwrap()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"late"[..]));
}

#[tokio::test]
async fn fetch_with_nothing_to_return_waits_max_wait_ms_then_answers_empty() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "quiet", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let data = fetched(
        client
            .call(Request::Fetch(fetch_request("quiet", 0, 50, 1, 1 << 20)), 11)
            .await,
    );
    assert_eq!((data.error_code, data.high_watermark), (0, 0));
    assert_eq!(data.records, Some(FetchedRecords::default()));
}

// ---------------------------------------------------------------- ListOffsets, OffsetForLeaderEpoch

fn list_offsets(topic: &str, timestamp: i64) -> Request {
    Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp,
                ..Default::default()
            }],
        }],
        ..Default::default()
    })
}

async fn offset_for(client: &mut RawClient, topic: &str, timestamp: i64, version: i16) -> (i16, i64, i64) {
    let Response::ListOffsets(response) = client.call(list_offsets(topic, timestamp), version).await else {
        panic!()
    };
    let p = &response.topics[0].partitions[0];
    if version == 0 {
        return (p.error_code, -1, p.old_style_offsets.first().copied().unwrap_or(-1));
    }
    (p.error_code, p.timestamp, p.offset)
}

#[tokio::test]
async fn list_offsets_by_position_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "timed", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    // Records at t=1000,1001,1002 then 2000,2001,2002, then 1500 (out of order).
    client
        .call(produce("timed", vec![(0, Some(batch(&["a", "b", "c"], 1000)))], 1), 9)
        .await;
    client
        .call(produce("timed", vec![(0, Some(batch(&["d", "e", "f"], 2000)))], 1), 9)
        .await;
    client
        .call(produce("timed", vec![(0, Some(batch(&["g"], 1500)))], 1), 9)
        .await;
    for version in [1, 4, 7, 10] {
        assert_eq!(
            offset_for(&mut client, "timed", -2, version).await,
            (0, -1, 0),
            "earliest v{version}"
        );
        assert_eq!(
            offset_for(&mut client, "timed", -1, version).await,
            (0, -1, 7),
            "latest v{version}"
        );
        assert_eq!(
            offset_for(&mut client, "timed", 1001, version).await,
            (0, 1001, 1),
            "by time v{version}"
        );
        assert_eq!(
            offset_for(&mut client, "timed", 1003, version).await,
            (0, 2000, 3),
            "by time v{version}"
        );
        assert_eq!(
            offset_for(&mut client, "timed", 9999, version).await,
            (0, -1, -1),
            "after all v{version}"
        );
    }
    assert_eq!(
        offset_for(&mut client, "timed", -3, 7).await,
        (0, 2002, 5),
        "max timestamp"
    );
    assert_eq!(
        offset_for(&mut client, "timed", -1, 0).await,
        (0, -1, 7),
        "v0 old-style offsets"
    );
    assert_eq!(
        offset_for(&mut client, "missing", -1, 5).await.0,
        ErrorCode::UnknownTopicOrPartition.code()
    );
}

#[tokio::test]
async fn offset_for_leader_epoch_ends_the_only_epoch_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "epochs", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    client
        .call(produce("epochs", vec![(0, Some(batch(&["a", "b"], 1)))], 1), 9)
        .await;
    for version in 0..=4 {
        let ask = |leader_epoch, current_leader_epoch| {
            Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
                replica_id: -1,
                topics: vec![OffsetForLeaderTopic {
                    topic: "epochs".into(),
                    partitions: vec![OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch,
                        leader_epoch,
                    }],
                }],
            })
        };
        let Response::OffsetForLeaderEpoch(response) = client.call(ask(0, 0), version).await else {
            panic!()
        };
        let answer = &response.topics[0].partitions[0];
        assert_eq!((answer.error_code, answer.end_offset), (0, 2), "v{version}");
        if version >= 1 {
            assert_eq!(answer.leader_epoch, 0);
        }
        let Response::OffsetForLeaderEpoch(response) = client.call(ask(5, -1), version).await else {
            panic!()
        };
        assert_eq!(
            response.topics[0].partitions[0].end_offset, -1,
            "v{version}: an epoch that never was"
        );
        if version >= 2 {
            let Response::OffsetForLeaderEpoch(response) = client.call(ask(0, 3), version).await else {
                panic!()
            };
            assert_eq!(
                response.topics[0].partitions[0].error_code,
                ErrorCode::UnknownLeaderEpoch.code()
            );
        }
    }
}

/// acks=0 gets no answer, so a failure closes the connection (as Kafka
/// does) for the client to notice; a success keeps it open.
#[tokio::test]
async fn a_failed_acks_zero_produce_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_topic(dir.path(), "silent", 1).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    client
        .send_raw(&RawClient::frame(
            &produce("silent", vec![(0, Some(batch(&["ok"], 1)))], 0),
            9,
            1,
        ))
        .await;
    let alive = client
        .call(Request::ApiVersions(ApiVersionsRequest::default()), 0)
        .await;
    assert!(
        matches!(alive, Response::ApiVersions(_)),
        "a successful acks=0 produce keeps the connection"
    );
    client
        .send_raw(&RawClient::frame(
            &produce("no-such-topic", vec![(0, Some(batch(&["x"], 1)))], 0),
            9,
            9,
        ))
        .await;
    assert!(client.is_closed_by_broker().await, "a failed acks=0 produce closes it");
}
