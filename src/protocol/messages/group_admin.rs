//! Looking at and removing groups: ListGroups (16, v0-5, flexible 3+),
//! DescribeGroups (15, v0-5, flexible 5+), DeleteGroups (42, v0-2,
//! flexible 2+), OffsetDelete (47, v0, not flexible).

use bytes::Bytes;

use crate::message;

message! {
    pub struct ListGroupsRequest {
        states_filter: Vec<String> => 4..,
        types_filter: Vec<String> => 5..,
    }
}

message! {
    pub struct ListGroupsResponse {
        throttle_time_ms: i32 => 1..,
        error_code: i16 => 0..,
        groups: Vec<ListedGroup> => 0..,
    }
}

message! {
    pub struct ListedGroup {
        group_id: String => 0..,
        protocol_type: String => 0..,
        group_state: String => 4..,
        group_type: String => 5..,
    }
}

message! {
    pub struct DescribeGroupsRequest {
        groups: Vec<String> => 0..,
        include_authorized_operations: bool => 3..,
    }
}

message! {
    pub struct DescribeGroupsResponse {
        throttle_time_ms: i32 => 1..,
        groups: Vec<DescribedGroup> => 0..,
    }
}

message! {
    pub struct DescribedGroup {
        error_code: i16 => 0..,
        group_id: String => 0..,
        group_state: String => 0..,
        protocol_type: String => 0..,
        /// The selected protocol (assignor) once the group is stable.
        protocol_data: String => 0..,
        members: Vec<DescribedGroupMember> => 0..,
        authorized_operations: i32 = i32::MIN => 3..,
    }
}

message! {
    pub struct DescribedGroupMember {
        member_id: String => 0..,
        group_instance_id: Option<String> => 4..,
        client_id: String => 0..,
        client_host: String => 0..,
        member_metadata: Bytes => 0..,
        member_assignment: Bytes => 0..,
    }
}

message! {
    pub struct DeleteGroupsRequest {
        groups_names: Vec<String> => 0..,
    }
}

message! {
    pub struct DeleteGroupsResponse {
        throttle_time_ms: i32 => 0..,
        results: Vec<DeletableGroupResult> => 0..,
    }
}

message! {
    pub struct DeletableGroupResult {
        group_id: String => 0..,
        error_code: i16 => 0..,
    }
}

message! {
    pub struct OffsetDeleteRequest {
        group_id: String => 0..,
        topics: Vec<OffsetDeleteRequestTopic> => 0..,
    }
}

message! {
    pub struct OffsetDeleteRequestTopic {
        name: String => 0..,
        partitions: Vec<OffsetDeleteRequestPartition> => 0..,
    }
}

message! {
    pub struct OffsetDeleteRequestPartition {
        partition_index: i32 => 0..,
    }
}

message! {
    pub struct OffsetDeleteResponse {
        error_code: i16 => 0..,
        throttle_time_ms: i32 => 0..,
        topics: Vec<OffsetDeleteResponseTopic> => 0..,
    }
}

message! {
    pub struct OffsetDeleteResponseTopic {
        name: String => 0..,
        partitions: Vec<OffsetDeleteResponsePartition> => 0..,
    }
}

message! {
    pub struct OffsetDeleteResponsePartition {
        partition_index: i32 => 0..,
        error_code: i16 => 0..,
    }
}
