//! Topic administration: CreateTopics (19, v0-7, flexible 5+), DeleteTopics
//! (20, v0-6, flexible 4+; v6 by id), CreatePartitions (37, v0-3, flexible
//! 2+), and DescribeCluster (60, v0-1, always flexible).

use uuid::Uuid;

use crate::message;

message! {
    pub struct CreateTopicsRequest {
        topics: Vec<CreatableTopic> => 0..,
        timeout_ms: i32 = 60_000 => 0..,
        validate_only: bool => 1..,
    }
}

message! {
    pub struct CreatableTopic {
        name: String => 0..,
        /// -1: the broker's default (v4+).
        num_partitions: i32 => 0..,
        /// -1: the broker's default (v4+).
        replication_factor: i16 => 0..,
        assignments: Vec<CreatableReplicaAssignment> => 0..,
        configs: Vec<CreatableTopicConfig> => 0..,
    }
}

message! {
    pub struct CreatableReplicaAssignment {
        partition_index: i32 => 0..,
        broker_ids: Vec<i32> => 0..,
    }
}

message! {
    pub struct CreatableTopicConfig {
        name: String => 0..,
        value: Option<String> => 0..,
    }
}

message! {
    pub struct CreateTopicsResponse {
        throttle_time_ms: i32 => 2..,
        topics: Vec<CreatableTopicResult> => 0..,
    }
}

message! {
    pub struct CreatableTopicResult {
        name: String => 0..,
        topic_id: Uuid => 7..,
        error_code: i16 => 0..,
        error_message: Option<String> => 1..,
        topic_config_error_code: i16 => 5..; tag 0,
        num_partitions: i32 = -1 => 5..,
        replication_factor: i16 = -1 => 5..,
        configs: Option<Vec<CreatableTopicConfigs>> => 5..,
    }
}

message! {
    pub struct CreatableTopicConfigs {
        name: String => 5..,
        value: Option<String> => 5..,
        read_only: bool => 5..,
        config_source: i8 = -1 => 5..,
        is_sensitive: bool => 5..,
    }
}

message! {
    pub struct DeleteTopicsRequest {
        topics: Vec<DeleteTopicState> => 6..,
        topic_names: Vec<String> => 0..=5,
        timeout_ms: i32 => 0..,
    }
}

message! {
    pub struct DeleteTopicState {
        name: Option<String> => 6..,
        topic_id: Uuid => 6..,
    }
}

message! {
    pub struct DeleteTopicsResponse {
        throttle_time_ms: i32 => 1..,
        responses: Vec<DeletableTopicResult> => 0..,
    }
}

message! {
    pub struct DeletableTopicResult {
        name: Option<String> => 0..,
        topic_id: Uuid => 6..,
        error_code: i16 => 0..,
        error_message: Option<String> => 5..,
    }
}

message! {
    pub struct CreatePartitionsRequest {
        topics: Vec<CreatePartitionsTopic> => 0..,
        timeout_ms: i32 => 0..,
        validate_only: bool => 0..,
    }
}

message! {
    pub struct CreatePartitionsTopic {
        name: String => 0..,
        /// The new total number of partitions.
        count: i32 => 0..,
        assignments: Option<Vec<CreatePartitionsAssignment>> => 0..,
    }
}

message! {
    pub struct CreatePartitionsAssignment {
        broker_ids: Vec<i32> => 0..,
    }
}

message! {
    pub struct CreatePartitionsResponse {
        throttle_time_ms: i32 => 0..,
        results: Vec<CreatePartitionsTopicResult> => 0..,
    }
}

message! {
    pub struct CreatePartitionsTopicResult {
        name: String => 0..,
        error_code: i16 => 0..,
        error_message: Option<String> => 0..,
    }
}

message! {
    pub struct DescribeClusterRequest {
        include_cluster_authorized_operations: bool => 0..,
        /// 1: brokers, 2: controllers.
        endpoint_type: i8 = 1 => 1..,
    }
}

message! {
    pub struct DescribeClusterResponse {
        throttle_time_ms: i32 => 0..,
        error_code: i16 => 0..,
        error_message: Option<String> => 0..,
        endpoint_type: i8 = 1 => 1..,
        cluster_id: String => 0..,
        controller_id: i32 = -1 => 0..,
        brokers: Vec<DescribeClusterBroker> => 0..,
        cluster_authorized_operations: i32 = i32::MIN => 0..,
    }
}

message! {
    pub struct DescribeClusterBroker {
        broker_id: i32 => 0..,
        host: String => 0..,
        port: i32 => 0..,
        rack: Option<String> => 0..,
    }
}
