//! FindCoordinator (key 10), versions 0-6, flexible from 3. v4+ asks for
//! several keys at once.

use crate::message;

message! {
    pub struct FindCoordinatorRequest {
        key: String => 0..=3,
        /// 0: consumer group, 1: transactional id.
        key_type: i8 => 1..,
        coordinator_keys: Vec<String> => 4..,
    }
}

message! {
    pub struct FindCoordinatorResponse {
        throttle_time_ms: i32 => 1..,
        error_code: i16 => 0..=3,
        error_message: Option<String> => 1..=3,
        node_id: i32 => 0..=3,
        host: String => 0..=3,
        port: i32 => 0..=3,
        coordinators: Vec<Coordinator> => 4..,
    }
}

message! {
    pub struct Coordinator {
        key: String => 4..,
        node_id: i32 => 4..,
        host: String => 4..,
        port: i32 => 4..,
        error_code: i16 => 4..,
        error_message: Option<String> => 4..,
    }
}
