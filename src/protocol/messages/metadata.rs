//! Metadata (key 3), versions 0-12, flexible from 9.

use uuid::Uuid;

use crate::message;

message! {
    pub struct MetadataRequest {
        /// v0: empty means all topics. v1+: null means all, empty means none.
        topics: Option<Vec<MetadataRequestTopic>> => 0..,
        allow_auto_topic_creation: bool = true => 4..,
        include_cluster_authorized_operations: bool => 8..=10,
        include_topic_authorized_operations: bool => 8..,
    }
}

message! {
    pub struct MetadataRequestTopic {
        topic_id: Uuid => 10..,
        /// Null (v10+) when the topic is asked for by id.
        name: Option<String> => 0..,
    }
}

message! {
    pub struct MetadataResponse {
        throttle_time_ms: i32 => 3..,
        brokers: Vec<MetadataResponseBroker> => 0..,
        cluster_id: Option<String> => 2..,
        controller_id: i32 = -1 => 1..,
        topics: Vec<MetadataResponseTopic> => 0..,
        cluster_authorized_operations: i32 = i32::MIN => 8..=10,
    }
}

message! {
    pub struct MetadataResponseBroker {
        node_id: i32 => 0..,
        host: String => 0..,
        port: i32 => 0..,
        rack: Option<String> => 1..,
    }
}

message! {
    pub struct MetadataResponseTopic {
        error_code: i16 => 0..,
        /// Null (v12+) only for a topic asked for by an unknown id.
        name: Option<String> => 0..,
        topic_id: Uuid => 10..,
        is_internal: bool => 1..,
        partitions: Vec<MetadataResponsePartition> => 0..,
        topic_authorized_operations: i32 = i32::MIN => 8..,
    }
}

message! {
    pub struct MetadataResponsePartition {
        error_code: i16 => 0..,
        partition_index: i32 => 0..,
        leader_id: i32 => 0..,
        leader_epoch: i32 = -1 => 7..,
        replica_nodes: Vec<i32> => 0..,
        isr_nodes: Vec<i32> => 0..,
        offline_replicas: Vec<i32> => 5..,
    }
}
