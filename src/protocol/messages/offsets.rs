//! Committed offsets: OffsetCommit (8, v0-9, flexible 8+) and OffsetFetch
//! (9, v0-9, flexible 6+; v8+ several groups per request).

use crate::message;

message! {
    pub struct OffsetCommitRequest {
        group_id: String => 0..,
        /// -1 (with an empty member id) for a commit outside any generation.
        generation_id_or_member_epoch: i32 = -1 => 1..,
        member_id: String => 1..,
        group_instance_id: Option<String> => 7..,
        retention_time_ms: i64 = -1 => 2..=4,
        topics: Vec<OffsetCommitRequestTopic> => 0..,
    }
}

message! {
    pub struct OffsetCommitRequestTopic {
        name: String => 0..,
        partitions: Vec<OffsetCommitRequestPartition> => 0..,
    }
}

message! {
    pub struct OffsetCommitRequestPartition {
        partition_index: i32 => 0..,
        committed_offset: i64 => 0..,
        committed_leader_epoch: i32 = -1 => 6..,
        commit_timestamp: i64 = -1 => 1..=1,
        committed_metadata: Option<String> => 0..,
    }
}

message! {
    pub struct OffsetCommitResponse {
        throttle_time_ms: i32 => 3..,
        topics: Vec<OffsetCommitResponseTopic> => 0..,
    }
}

message! {
    pub struct OffsetCommitResponseTopic {
        name: String => 0..,
        partitions: Vec<OffsetCommitResponsePartition> => 0..,
    }
}

message! {
    pub struct OffsetCommitResponsePartition {
        partition_index: i32 => 0..,
        error_code: i16 => 0..,
    }
}

message! {
    pub struct OffsetFetchRequest {
        group_id: String => 0..=7,
        /// Null (v2+) asks for every committed partition.
        topics: Option<Vec<OffsetFetchRequestTopic>> => 0..=7,
        groups: Vec<OffsetFetchRequestGroup> => 8..,
        require_stable: bool => 7..,
    }
}

message! {
    pub struct OffsetFetchRequestTopic {
        name: String => 0..,
        partition_indexes: Vec<i32> => 0..,
    }
}

message! {
    pub struct OffsetFetchRequestGroup {
        group_id: String => 8..,
        member_id: Option<String> => 9..,
        member_epoch: i32 = -1 => 9..,
        topics: Option<Vec<OffsetFetchRequestTopic>> => 8..,
    }
}

message! {
    pub struct OffsetFetchResponse {
        throttle_time_ms: i32 => 3..,
        topics: Vec<OffsetFetchResponseTopic> => 0..=7,
        error_code: i16 => 2..=7,
        groups: Vec<OffsetFetchResponseGroup> => 8..,
    }
}

message! {
    pub struct OffsetFetchResponseTopic {
        name: String => 0..,
        partitions: Vec<OffsetFetchResponsePartition> => 0..,
    }
}

message! {
    pub struct OffsetFetchResponsePartition {
        partition_index: i32 => 0..,
        committed_offset: i64 => 0..,
        committed_leader_epoch: i32 = -1 => 5..,
        metadata: Option<String> => 0..,
        error_code: i16 => 0..,
    }
}

message! {
    pub struct OffsetFetchResponseGroup {
        group_id: String => 8..,
        topics: Vec<OffsetFetchResponseTopic> => 8..,
        error_code: i16 => 8..,
    }
}
