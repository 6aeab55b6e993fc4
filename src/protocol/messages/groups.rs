//! The classic consumer group protocol: JoinGroup (11, v0-9, flexible 6+),
//! Heartbeat (12, v0-4, flexible 4+), LeaveGroup (13, v0-5, flexible 4+),
//! SyncGroup (14, v0-5, flexible 4+).

use bytes::Bytes;

use crate::message;

message! {
    pub struct JoinGroupRequest {
        group_id: String => 0..,
        session_timeout_ms: i32 => 0..,
        /// v0 has none: the session timeout serves as both.
        rebalance_timeout_ms: i32 = -1 => 1..,
        /// Empty on a member's first join.
        member_id: String => 0..,
        /// KIP-345 static membership.
        group_instance_id: Option<String> => 5..,
        protocol_type: String => 0..,
        protocols: Vec<JoinGroupRequestProtocol> => 0..,
        reason: Option<String> => 8..,
    }
}

message! {
    pub struct JoinGroupRequestProtocol {
        name: String => 0..,
        metadata: Bytes => 0..,
    }
}

message! {
    pub struct JoinGroupResponse {
        throttle_time_ms: i32 => 2..,
        error_code: i16 => 0..,
        generation_id: i32 = -1 => 0..,
        protocol_type: Option<String> => 7..,
        protocol_name: Option<String> => 0..,
        leader: String => 0..,
        skip_assignment: bool => 9..,
        member_id: String => 0..,
        members: Vec<JoinGroupResponseMember> => 0..,
    }
}

message! {
    pub struct JoinGroupResponseMember {
        member_id: String => 0..,
        group_instance_id: Option<String> => 5..,
        metadata: Bytes => 0..,
    }
}

message! {
    pub struct SyncGroupRequest {
        group_id: String => 0..,
        generation_id: i32 => 0..,
        member_id: String => 0..,
        group_instance_id: Option<String> => 3..,
        protocol_type: Option<String> => 5..,
        protocol_name: Option<String> => 5..,
        /// Filled by the leader only.
        assignments: Vec<SyncGroupRequestAssignment> => 0..,
    }
}

message! {
    pub struct SyncGroupRequestAssignment {
        member_id: String => 0..,
        assignment: Bytes => 0..,
    }
}

message! {
    pub struct SyncGroupResponse {
        throttle_time_ms: i32 => 1..,
        error_code: i16 => 0..,
        protocol_type: Option<String> => 5..,
        protocol_name: Option<String> => 5..,
        assignment: Bytes => 0..,
    }
}

message! {
    pub struct HeartbeatRequest {
        group_id: String => 0..,
        generation_id: i32 => 0..,
        member_id: String => 0..,
        group_instance_id: Option<String> => 3..,
    }
}

message! {
    pub struct HeartbeatResponse {
        throttle_time_ms: i32 => 1..,
        error_code: i16 => 0..,
    }
}

message! {
    pub struct LeaveGroupRequest {
        group_id: String => 0..,
        member_id: String => 0..=2,
        /// v3+: several members leave at once.
        members: Vec<MemberIdentity> => 3..,
    }
}

message! {
    pub struct MemberIdentity {
        member_id: String => 3..,
        group_instance_id: Option<String> => 3..,
        reason: Option<String> => 5..,
    }
}

message! {
    pub struct LeaveGroupResponse {
        throttle_time_ms: i32 => 1..,
        error_code: i16 => 0..,
        members: Vec<MemberResponse> => 3..,
    }
}

message! {
    pub struct MemberResponse {
        member_id: String => 3..,
        group_instance_id: Option<String> => 3..,
        error_code: i16 => 3..,
    }
}
