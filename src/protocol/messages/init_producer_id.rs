//! InitProducerId (key 22), versions 0-5, flexible from 2.

use crate::message;

message! {
    pub struct InitProducerIdRequest {
        /// Null for idempotent producers; transactions are not served yet.
        transactional_id: Option<String> => 0..,
        transaction_timeout_ms: i32 => 0..,
        /// v3+ (KIP-360): the id and epoch a producer already has, so the
        /// broker can bump the epoch instead of handing out a new id.
        producer_id: i64 = -1 => 3..,
        producer_epoch: i16 = -1 => 3..,
    }
}

message! {
    pub struct InitProducerIdResponse {
        throttle_time_ms: i32 => 0..,
        error_code: i16 => 0..,
        producer_id: i64 = -1 => 0..,
        producer_epoch: i16 => 0..,
    }
}
