//! OffsetForLeaderEpoch (key 23), versions 0-4, flexible from 4.

use crate::message;

message! {
    pub struct OffsetForLeaderEpochRequest {
        replica_id: i32 = -2 => 3..,
        topics: Vec<OffsetForLeaderTopic> => 0..,
    }
}

message! {
    pub struct OffsetForLeaderTopic {
        topic: String => 0..,
        partitions: Vec<OffsetForLeaderPartition> => 0..,
    }
}

message! {
    pub struct OffsetForLeaderPartition {
        partition: i32 => 0..,
        current_leader_epoch: i32 = -1 => 2..,
        leader_epoch: i32 => 0..,
    }
}

message! {
    pub struct OffsetForLeaderEpochResponse {
        throttle_time_ms: i32 => 2..,
        topics: Vec<OffsetForLeaderTopicResult> => 0..,
    }
}

message! {
    pub struct OffsetForLeaderTopicResult {
        topic: String => 0..,
        partitions: Vec<EpochEndOffset> => 0..,
    }
}

message! {
    pub struct EpochEndOffset {
        error_code: i16 => 0..,
        partition: i32 => 0..,
        leader_epoch: i32 = -1 => 1..,
        end_offset: i64 = -1 => 0..,
    }
}
