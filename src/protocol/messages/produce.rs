//! Produce (key 0), versions 0-11, flexible from 9.

use bytes::Bytes;

use crate::message;

message! {
    pub struct ProduceRequest {
        transactional_id: Option<String> => 3..,
        /// 0: no response at all; 1 and -1: answer once the batch is in the log.
        acks: i16 => 0..,
        timeout_ms: i32 => 0..,
        topic_data: Vec<TopicProduceData> => 0..,
    }
}

message! {
    pub struct TopicProduceData {
        name: String => 0..,
        partition_data: Vec<PartitionProduceData> => 0..,
    }
}

message! {
    pub struct PartitionProduceData {
        index: i32 => 0..,
        /// The record batch bytes, a view of the request frame (never copied).
        records: Option<Bytes> => 0..,
    }
}

message! {
    pub struct ProduceResponse {
        responses: Vec<TopicProduceResponse> => 0..,
        throttle_time_ms: i32 => 1..,
        node_endpoints: Vec<NodeEndpoint> => 10..; tag 0,
    }
}

message! {
    pub struct TopicProduceResponse {
        name: String => 0..,
        partition_responses: Vec<PartitionProduceResponse> => 0..,
    }
}

message! {
    pub struct PartitionProduceResponse {
        index: i32 => 0..,
        error_code: i16 => 0..,
        base_offset: i64 => 0..,
        log_append_time_ms: i64 = -1 => 2..,
        log_start_offset: i64 = -1 => 5..,
        record_errors: Vec<BatchIndexAndErrorMessage> => 8..,
        error_message: Option<String> => 8..,
        current_leader: LeaderIdAndEpoch => 10..; tag 0,
    }
}

message! {
    pub struct BatchIndexAndErrorMessage {
        batch_index: i32 => 8..,
        batch_index_error_message: Option<String> => 8..,
    }
}

message! {
    pub struct LeaderIdAndEpoch {
        leader_id: i32 = -1 => 10..,
        leader_epoch: i32 = -1 => 10..,
    }
}

message! {
    pub struct NodeEndpoint {
        node_id: i32 => 10..,
        host: String => 10..,
        port: i32 => 10..,
        rack: Option<String> => 10..,
    }
}
