//! DeleteRecords (key 21), versions 0-2, flexible from 2: move a partition's
//! log start offset forward.

use crate::message;

message! {
    pub struct DeleteRecordsRequest {
        topics: Vec<DeleteRecordsTopic> => 0..,
        timeout_ms: i32 => 0..,
    }
}

message! {
    pub struct DeleteRecordsTopic {
        name: String => 0..,
        partitions: Vec<DeleteRecordsPartition> => 0..,
    }
}

message! {
    pub struct DeleteRecordsPartition {
        partition_index: i32 => 0..,
        /// Records before this offset go; -1 means the high watermark.
        offset: i64 => 0..,
    }
}

message! {
    pub struct DeleteRecordsResponse {
        throttle_time_ms: i32 => 0..,
        topics: Vec<DeleteRecordsTopicResult> => 0..,
    }
}

message! {
    pub struct DeleteRecordsTopicResult {
        name: String => 0..,
        partitions: Vec<DeleteRecordsPartitionResult> => 0..,
    }
}

message! {
    pub struct DeleteRecordsPartitionResult {
        partition_index: i32 => 0..,
        low_watermark: i64 => 0..,
        error_code: i16 => 0..,
    }
}
