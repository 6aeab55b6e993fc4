//! The codec against real clients' bytes, and against itself.
//!
//! `tests/fixtures/requests/` holds request frames captured from kcat
//! (librdkafka 2.0.2), rdkafka (librdkafka 2.12) and kafka-python 3.0.12,
//! one per client, API and version they used. Each must decode, and encode
//! back to the same bytes. Regenerate them with
//! `cargo test --test codec -- --ignored capture_client_fixtures`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use common::*;
use minikafka::protocol::header::RequestPrefix;
use minikafka::protocol::messages::api_versions::*;
use minikafka::protocol::messages::configs::*;
use minikafka::protocol::messages::fetch::*;
use minikafka::protocol::messages::find_coordinator::*;
use minikafka::protocol::messages::group_admin::*;
use minikafka::protocol::messages::groups::*;
use minikafka::protocol::messages::init_producer_id::*;
use minikafka::protocol::messages::list_offsets::*;
use minikafka::protocol::messages::metadata::*;
use minikafka::protocol::messages::offset_for_leader_epoch::*;
use minikafka::protocol::messages::offsets::*;
use minikafka::protocol::messages::produce::*;
use minikafka::protocol::messages::topic_admin::*;
use minikafka::protocol::messages::{Request, Response};
use minikafka::protocol::{ApiKey, RequestHeader, SUPPORTED_APIS};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

#[test]
fn golden_requests_from_real_clients_round_trip() {
    let mut seen = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let frame = Bytes::from(std::fs::read(&path).unwrap());
        let prefix = RequestPrefix::parse(&frame).unwrap();
        let key = ApiKey::from_i16(prefix.api_key).unwrap_or_else(|| panic!("{name}: an API we serve"));
        let flexible = key.spec().is_flexible(prefix.api_version);
        let (header, body) = RequestHeader::parse(&frame, flexible).unwrap();
        let (request, trailing) = Request::decode_lenient(key, prefix.api_version, &body)
            .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
        let mut again = BytesMut::new();
        header.encode(&mut again, flexible);
        request.encode(prefix.api_version, &mut again);
        assert_eq!(
            &again[..],
            &frame[..frame.len() - trailing],
            "{name}: re-encodes to the client's bytes"
        );
        seen.insert((key as i16, prefix.api_version));
    }
    // The fixtures cover what the clients use most.
    for (key, version) in [
        (18, 3),
        (18, 4),
        (3, 4),
        (3, 12),
        (0, 7),
        (0, 9),
        (0, 10),
        (1, 11),
        (1, 16),
        (2, 2),
        (22, 4),
        (10, 2),
        (10, 6),
        (11, 5),
        (11, 7),
        (14, 3),
        (14, 5),
        (12, 3),
        (13, 1),
        (13, 5),
        (8, 7),
        (8, 9),
        (9, 7),
        (9, 8),
    ] {
        assert!(seen.contains(&(key, version)), "a fixture for api {key} v{version}");
    }
}

fn samples() -> Vec<(Request, Response)> {
    let uuid = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
    let records = Some(Bytes::from_static(b"\x00\x01 not really a batch"));
    vec![
        (
            Request::ApiVersions(ApiVersionsRequest {
                client_software_name: "client".into(),
                client_software_version: "1.2.3".into(),
            }),
            Response::ApiVersions(ApiVersionsResponse {
                error_code: 0,
                api_keys: vec![ApiVersion {
                    api_key: 0,
                    min_version: 0,
                    max_version: 11,
                }],
                throttle_time_ms: 5,
                supported_features: vec![SupportedFeatureKey {
                    name: "f".into(),
                    min_version: 0,
                    max_version: 1,
                }],
                finalized_features_epoch: 3,
                finalized_features: vec![FinalizedFeatureKey {
                    name: "f".into(),
                    max_version_level: 1,
                    min_version_level: 1,
                }],
                zk_migration_ready: true,
            }),
        ),
        (
            Request::Metadata(MetadataRequest {
                topics: Some(vec![MetadataRequestTopic {
                    topic_id: uuid,
                    name: Some("t".into()),
                }]),
                allow_auto_topic_creation: false,
                include_cluster_authorized_operations: true,
                include_topic_authorized_operations: true,
            }),
            Response::Metadata(MetadataResponse {
                throttle_time_ms: 1,
                brokers: vec![MetadataResponseBroker {
                    node_id: 0,
                    host: "h".into(),
                    port: 9092,
                    rack: Some("r".into()),
                }],
                cluster_id: Some("c".into()),
                controller_id: 0,
                topics: vec![MetadataResponseTopic {
                    error_code: 0,
                    name: Some("t".into()),
                    topic_id: uuid,
                    is_internal: true,
                    partitions: vec![MetadataResponsePartition {
                        error_code: 0,
                        partition_index: 1,
                        leader_id: 0,
                        leader_epoch: 4,
                        replica_nodes: vec![0],
                        isr_nodes: vec![0],
                        offline_replicas: vec![2],
                    }],
                    topic_authorized_operations: 8,
                }],
                cluster_authorized_operations: 9,
            }),
        ),
        (
            Request::Produce(ProduceRequest {
                transactional_id: Some("tx".into()),
                acks: -1,
                timeout_ms: 100,
                topic_data: vec![TopicProduceData {
                    name: "t".into(),
                    partition_data: vec![PartitionProduceData {
                        index: 2,
                        records: records.clone(),
                    }],
                }],
            }),
            Response::Produce(ProduceResponse {
                responses: vec![TopicProduceResponse {
                    name: "t".into(),
                    partition_responses: vec![PartitionProduceResponse {
                        index: 2,
                        error_code: 0,
                        base_offset: 10,
                        log_append_time_ms: 11,
                        log_start_offset: 1,
                        record_errors: vec![BatchIndexAndErrorMessage {
                            batch_index: 0,
                            batch_index_error_message: Some("e".into()),
                        }],
                        error_message: Some("m".into()),
                        current_leader: minikafka::protocol::messages::produce::LeaderIdAndEpoch {
                            leader_id: 0,
                            leader_epoch: 1,
                        },
                    }],
                }],
                throttle_time_ms: 2,
                node_endpoints: vec![minikafka::protocol::messages::produce::NodeEndpoint {
                    node_id: 0,
                    host: "h".into(),
                    port: 1,
                    rack: None,
                }],
            }),
        ),
        (
            Request::Fetch(FetchRequest {
                cluster_id: Some("c".into()),
                replica_id: -1,
                replica_state: ReplicaState {
                    replica_id: 3,
                    replica_epoch: 4,
                },
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 1000,
                isolation_level: 1,
                session_id: 0,
                session_epoch: -1,
                topics: vec![FetchTopic {
                    topic: "t".into(),
                    topic_id: uuid,
                    partitions: vec![FetchPartition {
                        partition: 0,
                        current_leader_epoch: 0,
                        fetch_offset: 7,
                        last_fetched_epoch: 0,
                        log_start_offset: 0,
                        partition_max_bytes: 100,
                        replica_directory_id: uuid,
                    }],
                }],
                forgotten_topics_data: vec![ForgottenTopic {
                    topic: "f".into(),
                    topic_id: uuid,
                    partitions: vec![1],
                }],
                rack_id: "rack".into(),
            }),
            Response::Fetch(FetchResponse {
                throttle_time_ms: 0,
                error_code: 0,
                session_id: 0,
                responses: vec![FetchableTopicResponse {
                    topic: "t".into(),
                    topic_id: uuid,
                    partitions: vec![PartitionData {
                        partition_index: 0,
                        error_code: 0,
                        high_watermark: 9,
                        last_stable_offset: 9,
                        log_start_offset: 0,
                        diverging_epoch: minikafka::protocol::messages::fetch::EpochEndOffset {
                            epoch: 1,
                            end_offset: 2,
                        },
                        current_leader: minikafka::protocol::messages::fetch::LeaderIdAndEpoch {
                            leader_id: 0,
                            leader_epoch: 0,
                        },
                        snapshot_id: SnapshotId {
                            end_offset: 1,
                            epoch: 1,
                        },
                        aborted_transactions: Some(vec![AbortedTransaction {
                            producer_id: 1,
                            first_offset: 2,
                        }]),
                        preferred_read_replica: -1,
                        records: records.map(Into::into),
                    }],
                }],
                node_endpoints: vec![],
            }),
        ),
        (
            Request::FindCoordinator(FindCoordinatorRequest {
                key: "g".into(),
                key_type: 0,
                coordinator_keys: vec!["g".into(), "h".into()],
            }),
            Response::FindCoordinator(FindCoordinatorResponse {
                throttle_time_ms: 0,
                error_code: 0,
                error_message: Some("m".into()),
                node_id: 0,
                host: "h".into(),
                port: 9092,
                coordinators: vec![Coordinator {
                    key: "g".into(),
                    node_id: 0,
                    host: "h".into(),
                    port: 9092,
                    error_code: 0,
                    error_message: None,
                }],
            }),
        ),
        (
            Request::JoinGroup(JoinGroupRequest {
                group_id: "g".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                protocol_type: "consumer".into(),
                protocols: vec![JoinGroupRequestProtocol {
                    name: "range".into(),
                    metadata: Bytes::from_static(b"md"),
                }],
                reason: Some("r".into()),
            }),
            Response::JoinGroup(JoinGroupResponse {
                throttle_time_ms: 0,
                error_code: 0,
                generation_id: 3,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                leader: "m".into(),
                skip_assignment: true,
                member_id: "m".into(),
                members: vec![JoinGroupResponseMember {
                    member_id: "m".into(),
                    group_instance_id: Some("i".into()),
                    metadata: Bytes::from_static(b"md"),
                }],
            }),
        ),
        (
            Request::SyncGroup(SyncGroupRequest {
                group_id: "g".into(),
                generation_id: 3,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments: vec![SyncGroupRequestAssignment {
                    member_id: "m".into(),
                    assignment: Bytes::from_static(b"a"),
                }],
            }),
            Response::SyncGroup(SyncGroupResponse {
                throttle_time_ms: 0,
                error_code: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: Bytes::from_static(b"a"),
            }),
        ),
        (
            Request::Heartbeat(HeartbeatRequest {
                group_id: "g".into(),
                generation_id: 3,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
            }),
            Response::Heartbeat(HeartbeatResponse {
                throttle_time_ms: 1,
                error_code: 27,
            }),
        ),
        (
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: "g".into(),
                member_id: "m".into(),
                members: vec![MemberIdentity {
                    member_id: "m".into(),
                    group_instance_id: Some("i".into()),
                    reason: Some("r".into()),
                }],
            }),
            Response::LeaveGroup(LeaveGroupResponse {
                throttle_time_ms: 0,
                error_code: 0,
                members: vec![MemberResponse {
                    member_id: "m".into(),
                    group_instance_id: None,
                    error_code: 25,
                }],
            }),
        ),
        (
            Request::OffsetCommit(OffsetCommitRequest {
                group_id: "g".into(),
                generation_id_or_member_epoch: 3,
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                retention_time_ms: 1000,
                topics: vec![OffsetCommitRequestTopic {
                    name: "t".into(),
                    partitions: vec![OffsetCommitRequestPartition {
                        partition_index: 1,
                        committed_offset: 42,
                        committed_leader_epoch: 0,
                        commit_timestamp: 5,
                        committed_metadata: Some("md".into()),
                    }],
                }],
            }),
            Response::OffsetCommit(OffsetCommitResponse {
                throttle_time_ms: 0,
                topics: vec![OffsetCommitResponseTopic {
                    name: "t".into(),
                    partitions: vec![OffsetCommitResponsePartition {
                        partition_index: 1,
                        error_code: 0,
                    }],
                }],
            }),
        ),
        (
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: "g".into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: "t".into(),
                    partition_indexes: vec![0, 1],
                }]),
                groups: vec![OffsetFetchRequestGroup {
                    group_id: "g".into(),
                    member_id: Some("m".into()),
                    member_epoch: 2,
                    topics: None,
                }],
                require_stable: true,
            }),
            Response::OffsetFetch(OffsetFetchResponse {
                throttle_time_ms: 0,
                topics: vec![OffsetFetchResponseTopic {
                    name: "t".into(),
                    partitions: vec![OffsetFetchResponsePartition {
                        partition_index: 0,
                        committed_offset: 42,
                        committed_leader_epoch: 0,
                        metadata: Some("md".into()),
                        error_code: 0,
                    }],
                }],
                error_code: 0,
                groups: vec![OffsetFetchResponseGroup {
                    group_id: "g".into(),
                    topics: vec![],
                    error_code: 0,
                }],
            }),
        ),
        (
            Request::ListGroups(ListGroupsRequest {
                states_filter: vec!["Stable".into()],
                types_filter: vec!["classic".into()],
            }),
            Response::ListGroups(ListGroupsResponse {
                throttle_time_ms: 0,
                error_code: 0,
                groups: vec![ListedGroup {
                    group_id: "g".into(),
                    protocol_type: "consumer".into(),
                    group_state: "Stable".into(),
                    group_type: "classic".into(),
                }],
            }),
        ),
        (
            Request::DescribeGroups(DescribeGroupsRequest {
                groups: vec!["g".into()],
                include_authorized_operations: true,
            }),
            Response::DescribeGroups(DescribeGroupsResponse {
                throttle_time_ms: 0,
                groups: vec![DescribedGroup {
                    error_code: 0,
                    group_id: "g".into(),
                    group_state: "Stable".into(),
                    protocol_type: "consumer".into(),
                    protocol_data: "range".into(),
                    members: vec![DescribedGroupMember {
                        member_id: "m".into(),
                        group_instance_id: Some("i".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        member_metadata: Bytes::from_static(b"md"),
                        member_assignment: Bytes::from_static(b"a"),
                    }],
                    authorized_operations: 0,
                }],
            }),
        ),
        (
            Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: vec!["g".into()],
            }),
            Response::DeleteGroups(DeleteGroupsResponse {
                throttle_time_ms: 0,
                results: vec![DeletableGroupResult {
                    group_id: "g".into(),
                    error_code: 69,
                }],
            }),
        ),
        (
            Request::OffsetDelete(OffsetDeleteRequest {
                group_id: "g".into(),
                topics: vec![OffsetDeleteRequestTopic {
                    name: "t".into(),
                    partitions: vec![OffsetDeleteRequestPartition { partition_index: 0 }],
                }],
            }),
            Response::OffsetDelete(OffsetDeleteResponse {
                error_code: 0,
                throttle_time_ms: 0,
                topics: vec![OffsetDeleteResponseTopic {
                    name: "t".into(),
                    partitions: vec![OffsetDeleteResponsePartition {
                        partition_index: 0,
                        error_code: 86,
                    }],
                }],
            }),
        ),
        (
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "t".into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![CreatableReplicaAssignment {
                        partition_index: 0,
                        broker_ids: vec![0],
                    }],
                    configs: vec![CreatableTopicConfig {
                        name: "retention.ms".into(),
                        value: Some("1".into()),
                    }],
                }],
                timeout_ms: 1000,
                validate_only: true,
            }),
            Response::CreateTopics(CreateTopicsResponse {
                throttle_time_ms: 0,
                topics: vec![CreatableTopicResult {
                    name: "t".into(),
                    topic_id: uuid,
                    error_code: 0,
                    error_message: Some("m".into()),
                    topic_config_error_code: 40,
                    num_partitions: 1,
                    replication_factor: 1,
                    configs: Some(vec![CreatableTopicConfigs {
                        name: "retention.ms".into(),
                        value: Some("1".into()),
                        read_only: false,
                        config_source: 1,
                        is_sensitive: false,
                    }]),
                }],
            }),
        ),
        (
            Request::DeleteTopics(DeleteTopicsRequest {
                topics: vec![DeleteTopicState {
                    name: None,
                    topic_id: uuid,
                }],
                topic_names: vec!["t".into()],
                timeout_ms: 1000,
            }),
            Response::DeleteTopics(DeleteTopicsResponse {
                throttle_time_ms: 0,
                responses: vec![DeletableTopicResult {
                    name: Some("t".into()),
                    topic_id: uuid,
                    error_code: 3,
                    error_message: Some("m".into()),
                }],
            }),
        ),
        (
            Request::CreatePartitions(CreatePartitionsRequest {
                topics: vec![CreatePartitionsTopic {
                    name: "t".into(),
                    count: 3,
                    assignments: Some(vec![CreatePartitionsAssignment { broker_ids: vec![0] }]),
                }],
                timeout_ms: 1000,
                validate_only: false,
            }),
            Response::CreatePartitions(CreatePartitionsResponse {
                throttle_time_ms: 0,
                results: vec![CreatePartitionsTopicResult {
                    name: "t".into(),
                    error_code: 37,
                    error_message: Some("m".into()),
                }],
            }),
        ),
        (
            Request::DescribeCluster(DescribeClusterRequest {
                include_cluster_authorized_operations: true,
                endpoint_type: 1,
            }),
            Response::DescribeCluster(DescribeClusterResponse {
                throttle_time_ms: 0,
                error_code: 0,
                error_message: None,
                endpoint_type: 1,
                cluster_id: "c".into(),
                controller_id: 0,
                brokers: vec![DescribeClusterBroker {
                    broker_id: 0,
                    host: "h".into(),
                    port: 9092,
                    rack: None,
                }],
                cluster_authorized_operations: 0,
            }),
        ),
        (
            Request::DescribeConfigs(DescribeConfigsRequest {
                resources: vec![DescribeConfigsResource {
                    resource_type: 2,
                    resource_name: "t".into(),
                    configuration_keys: Some(vec!["retention.ms".into()]),
                }],
                include_synonyms: true,
                include_documentation: true,
            }),
            Response::DescribeConfigs(DescribeConfigsResponse {
                throttle_time_ms: 0,
                results: vec![DescribeConfigsResult {
                    error_code: 0,
                    error_message: None,
                    resource_type: 2,
                    resource_name: "t".into(),
                    configs: vec![DescribeConfigsResourceResult {
                        name: "retention.ms".into(),
                        value: Some("1".into()),
                        read_only: false,
                        is_default: true,
                        config_source: 5,
                        is_sensitive: false,
                        synonyms: vec![DescribeConfigsSynonym {
                            name: "log.retention.ms".into(),
                            value: None,
                            source: 5,
                        }],
                        config_type: 5,
                        documentation: Some("d".into()),
                    }],
                }],
            }),
        ),
        (
            Request::AlterConfigs(AlterConfigsRequest {
                resources: vec![AlterConfigsResource {
                    resource_type: 2,
                    resource_name: "t".into(),
                    configs: vec![AlterableConfig {
                        name: "retention.ms".into(),
                        value: Some("1".into()),
                    }],
                }],
                validate_only: true,
            }),
            Response::AlterConfigs(AlterConfigsResponse {
                throttle_time_ms: 0,
                responses: vec![AlterConfigsResourceResponse {
                    error_code: 40,
                    error_message: Some("m".into()),
                    resource_type: 2,
                    resource_name: "t".into(),
                }],
            }),
        ),
        (
            Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
                resources: vec![IncrementalAlterConfigsResource {
                    resource_type: 2,
                    resource_name: "t".into(),
                    configs: vec![IncrementalAlterableConfig {
                        name: "cleanup.policy".into(),
                        config_operation: 2,
                        value: Some("delete".into()),
                    }],
                }],
                validate_only: false,
            }),
            Response::IncrementalAlterConfigs(IncrementalAlterConfigsResponse {
                throttle_time_ms: 0,
                responses: vec![AlterConfigsResourceResponse {
                    error_code: 0,
                    error_message: None,
                    resource_type: 2,
                    resource_name: "t".into(),
                }],
            }),
        ),
        (
            Request::DescribeTopicPartitions(
                minikafka::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsRequest {
                    topics: vec![minikafka::protocol::messages::describe_topic_partitions::TopicRequest { name: "t".into() }],
                    response_partition_limit: 10,
                    cursor: minikafka::protocol::primitives::Nullable(Some(
                        minikafka::protocol::messages::describe_topic_partitions::Cursor { topic_name: "t".into(), partition_index: 1 },
                    )),
                },
            ),
            Response::DescribeTopicPartitions(
                minikafka::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsResponse {
                    throttle_time_ms: 0,
                    topics: vec![minikafka::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsResponseTopic {
                        error_code: 0,
                        name: Some("t".into()),
                        topic_id: uuid,
                        is_internal: false,
                        partitions: vec![
                            minikafka::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsResponsePartition {
                                error_code: 0,
                                partition_index: 1,
                                leader_id: 0,
                                leader_epoch: 0,
                                replica_nodes: vec![0],
                                isr_nodes: vec![0],
                                eligible_leader_replicas: None,
                                last_known_elr: Some(vec![]),
                                offline_replicas: vec![],
                            },
                        ],
                        topic_authorized_operations: 0,
                    }],
                    next_cursor: minikafka::protocol::primitives::Nullable(None),
                },
            ),
        ),
        (
            Request::DeleteRecords(minikafka::protocol::messages::delete_records::DeleteRecordsRequest {
                topics: vec![minikafka::protocol::messages::delete_records::DeleteRecordsTopic {
                    name: "t".into(),
                    partitions: vec![minikafka::protocol::messages::delete_records::DeleteRecordsPartition {
                        partition_index: 0,
                        offset: 5,
                    }],
                }],
                timeout_ms: 1000,
            }),
            Response::DeleteRecords(minikafka::protocol::messages::delete_records::DeleteRecordsResponse {
                throttle_time_ms: 0,
                topics: vec![minikafka::protocol::messages::delete_records::DeleteRecordsTopicResult {
                    name: "t".into(),
                    partitions: vec![minikafka::protocol::messages::delete_records::DeleteRecordsPartitionResult {
                        partition_index: 0,
                        low_watermark: 5,
                        error_code: 0,
                    }],
                }],
            }),
        ),
        (
            Request::InitProducerId(InitProducerIdRequest {
                transactional_id: Some("tx".into()),
                transaction_timeout_ms: 60_000,
                producer_id: 12,
                producer_epoch: 3,
            }),
            Response::InitProducerId(InitProducerIdResponse {
                throttle_time_ms: 1,
                error_code: 0,
                producer_id: 12,
                producer_epoch: 4,
            }),
        ),
        (
            Request::ListOffsets(ListOffsetsRequest {
                replica_id: -1,
                isolation_level: 1,
                topics: vec![ListOffsetsTopic {
                    name: "t".into(),
                    partitions: vec![ListOffsetsPartition {
                        partition_index: 0,
                        current_leader_epoch: 0,
                        timestamp: -2,
                        max_num_offsets: 1,
                    }],
                }],
                timeout_ms: 10,
            }),
            Response::ListOffsets(ListOffsetsResponse {
                throttle_time_ms: 0,
                topics: vec![ListOffsetsTopicResponse {
                    name: "t".into(),
                    partitions: vec![ListOffsetsPartitionResponse {
                        partition_index: 0,
                        error_code: 0,
                        old_style_offsets: vec![3],
                        timestamp: 4,
                        offset: 3,
                        leader_epoch: 0,
                    }],
                }],
            }),
        ),
        (
            Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
                replica_id: -1,
                topics: vec![OffsetForLeaderTopic {
                    topic: "t".into(),
                    partitions: vec![OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch: 0,
                        leader_epoch: 0,
                    }],
                }],
            }),
            Response::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse {
                throttle_time_ms: 0,
                topics: vec![OffsetForLeaderTopicResult {
                    topic: "t".into(),
                    partitions: vec![minikafka::protocol::messages::offset_for_leader_epoch::EpochEndOffset {
                        error_code: 0,
                        partition: 0,
                        leader_epoch: 0,
                        end_offset: 9,
                    }],
                }],
            }),
        ),
    ]
}

/// Every message at every served version: encode, decode (strictly: no
/// byte left over), encode again; the bytes must not change.
#[test]
fn every_message_round_trips_at_every_version() {
    let samples = samples();
    for spec in SUPPORTED_APIS {
        let (request, response) = samples
            .iter()
            .find(|(r, _)| r.api_key() == spec.key)
            .unwrap_or_else(|| panic!("a sample for {:?}", spec.key));
        for version in spec.min_version..=spec.max_version {
            let mut bytes = BytesMut::new();
            request.encode(version, &mut bytes);
            let decoded = Request::decode(spec.key, version, &bytes.clone().freeze())
                .unwrap_or_else(|e| panic!("{:?} v{version} request: {e}", spec.key));
            let mut again = BytesMut::new();
            decoded.encode(version, &mut again);
            assert_eq!(bytes, again, "{:?} v{version} request", spec.key);

            let mut bytes = BytesMut::new();
            response.encode(version, &mut bytes);
            let decoded = Response::decode(spec.key, version, &bytes.clone().freeze())
                .unwrap_or_else(|e| panic!("{:?} v{version} response: {e}", spec.key));
            let mut again = BytesMut::new();
            decoded.encode(version, &mut again);
            assert_eq!(bytes, again, "{:?} v{version} response", spec.key);
        }
    }
}

/// Tagged fields at their defaults are not written (old librdkafka
/// mis-skips them), and are written when set.
#[test]
fn tagged_fields_are_written_only_when_not_default() {
    let plain = ApiVersionsResponse {
        api_keys: vec![],
        ..Default::default()
    };
    let mut bytes = BytesMut::new();
    Response::ApiVersions(plain).encode(3, &mut bytes);
    assert_eq!(
        &bytes[..],
        &[0, 0, 1, 0, 0, 0, 0, 0],
        "error, empty compact array, throttle, no tags"
    );
    let tagged = ApiVersionsResponse {
        finalized_features_epoch: 5,
        ..Default::default()
    };
    let mut bytes = BytesMut::new();
    Response::ApiVersions(tagged).encode(3, &mut bytes);
    assert_eq!(
        &bytes[7..],
        &[1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 5],
        "one tagged field: tag 1, 8 bytes"
    );
}

/// Unknown tagged fields in a request are skipped.
#[test]
fn unknown_tagged_fields_are_skipped() {
    // ApiVersions v3: two compact strings, then a tagged section holding tag 9.
    let body = Bytes::from_static(&[2, b'a', 2, b'1', 1, 9, 2, 0xaa, 0xbb]);
    let request = Request::decode(ApiKey::ApiVersions, 3, &body).unwrap();
    let Request::ApiVersions(request) = request else {
        panic!()
    };
    assert_eq!(
        (
            request.client_software_name.as_str(),
            request.client_software_version.as_str()
        ),
        ("a", "1")
    );
}

/// Captures request frames from the real clients into the fixtures folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "regenerates tests/fixtures/requests; run by hand"]
async fn capture_client_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let out = fixtures_dir();
    std::fs::create_dir_all(&out).unwrap();
    for client in ["kcat", "rdkafka", "kafka-python"] {
        let mut proxy = CaptureProxy::bind().await;
        let mut config = config(&dir.path().join(client), 2);
        config.advertised_listener = Some(proxy.addr.to_string());
        let broker = start(config).await;
        proxy.forward_to(broker.local_addr());
        let bootstrap = proxy.addr.to_string();
        let topic = format!("fixtures-{client}");
        match client {
            "kcat" => {
                for args in [
                    vec!["-P", "-t", &topic, "-z", "gzip"],
                    vec!["-C", "-t", &topic, "-o", "beginning", "-e"],
                    vec!["-L"],
                    // The balanced consumer: FindCoordinator, the group
                    // protocol and committed offsets (librdkafka 2.0.2).
                    vec!["-G", "fixtures", &topic, "-e", "-X", "auto.offset.reset=earliest"],
                ] {
                    let mut child = std::process::Command::new(kcat())
                        .env_remove("LD_LIBRARY_PATH")
                        .arg("-b")
                        .arg(&bootstrap)
                        .args(&args)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(b"one\ntwo\n");
                    assert!(child.wait().unwrap().success());
                }
            }
            "rdkafka" => {
                use rdkafka::ClientConfig;
                use rdkafka::consumer::{BaseConsumer, Consumer};
                use rdkafka::producer::{FutureProducer, FutureRecord};
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("compression.codec", "zstd")
                    .set("enable.idempotence", "true")
                    .create()
                    .unwrap();
                producer
                    .send(FutureRecord::to(&topic).key("k").payload("v"), DEADLINE)
                    .await
                    .unwrap();
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", "fixtures")
                    .create()
                    .unwrap();
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning).unwrap();
                consumer.assign(&tpl).unwrap();
                let (bootstrap_for_group, topic_for_group) = (bootstrap.clone(), topic.clone());
                tokio::task::spawn_blocking(move || {
                    for _ in 0..20 {
                        let _ = consumer.poll(std::time::Duration::from_millis(50));
                    }
                    consumer.fetch_metadata(None, DEADLINE).unwrap();
                    // A subscribing member too: the group protocol at
                    // librdkafka 2.12's versions, and a commit.
                    let member: BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", &bootstrap_for_group)
                        .set("group.id", "fixtures-group")
                        .set("auto.offset.reset", "earliest")
                        .create()
                        .unwrap();
                    member.subscribe(&[&topic_for_group]).unwrap();
                    let deadline = std::time::Instant::now() + DEADLINE;
                    while std::time::Instant::now() < deadline {
                        if let Some(Ok(_)) = member.poll(std::time::Duration::from_millis(100)) {
                            break;
                        }
                    }
                    member
                        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
                        .unwrap();
                    drop(member);
                })
                .await
                .unwrap();
            }
            _ => {
                for (script, extra) in [
                    ("kp_produce.py", vec!["--count", "3"]),
                    ("kp_consume.py", vec!["--expect", "3"]),
                    ("kp_consume.py", vec!["--expect", "3", "--group", "fixtures"]),
                ] {
                    let status = std::process::Command::new(python())
                        .arg(python_script(script))
                        .args(["--bootstrap", &bootstrap, "--topic", &topic])
                        .args(extra)
                        .stdout(std::process::Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
            }
        }
        let mut kept = BTreeSet::new();
        for frame in proxy.request_frames() {
            let prefix = RequestPrefix::parse(&frame).unwrap();
            let Some(key) = ApiKey::from_i16(prefix.api_key) else {
                continue;
            };
            if kept.insert((prefix.api_key, prefix.api_version)) {
                let name = format!("{client}-{}-v{}.bin", key.name(), prefix.api_version);
                std::fs::write(out.join(name), &frame).unwrap();
            }
        }
        broker.shutdown().await;
    }
}
