//! ListOffsets (key 2), versions 0-10, flexible from 6.

use crate::message;

/// Special timestamps a client may ask for.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// v7+ (KIP-734): the record with the largest timestamp.
pub const MAX_TIMESTAMP: i64 = -3;
/// v8+ (KIP-405): the earliest offset still on local storage.
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// v9+ (KIP-1005): the last offset in tiered storage.
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

message! {
    pub struct ListOffsetsRequest {
        replica_id: i32 => 0..,
        isolation_level: i8 => 2..,
        topics: Vec<ListOffsetsTopic> => 0..,
        timeout_ms: i32 => 10..,
    }
}

message! {
    pub struct ListOffsetsTopic {
        name: String => 0..,
        partitions: Vec<ListOffsetsPartition> => 0..,
    }
}

message! {
    pub struct ListOffsetsPartition {
        partition_index: i32 => 0..,
        current_leader_epoch: i32 = -1 => 4..,
        timestamp: i64 => 0..,
        max_num_offsets: i32 = 1 => 0..=0,
    }
}

message! {
    pub struct ListOffsetsResponse {
        throttle_time_ms: i32 => 2..,
        topics: Vec<ListOffsetsTopicResponse> => 0..,
    }
}

message! {
    pub struct ListOffsetsTopicResponse {
        name: String => 0..,
        partitions: Vec<ListOffsetsPartitionResponse> => 0..,
    }
}

message! {
    pub struct ListOffsetsPartitionResponse {
        partition_index: i32 => 0..,
        error_code: i16 => 0..,
        old_style_offsets: Vec<i64> => 0..=0,
        timestamp: i64 = -1 => 1..,
        offset: i64 = -1 => 1..,
        leader_epoch: i32 = -1 => 4..,
    }
}

impl ListOffsetsPartitionResponse {
    /// The offset answered, whichever version's field carries it (v0 puts
    /// it in `old_style_offsets`).
    pub fn answered_offset(&self) -> i64 {
        self.old_style_offsets
            .first()
            .copied()
            .filter(|_| self.offset < 0)
            .unwrap_or(self.offset)
    }
}
