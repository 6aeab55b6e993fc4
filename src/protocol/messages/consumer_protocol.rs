//! The consumer protocol embedded in group messages: what a consumer puts
//! in JoinGroup's metadata (its subscription) and what the leader puts in
//! SyncGroup's assignments. Each is a version (int16) followed by the body
//! at that version; none is flexible. The broker only reads them to answer
//! OffsetDelete, to expire offsets of topics a group no longer reads, and
//! for tools (`minikafka groups describe`).

use bytes::Bytes;

use crate::message;
use crate::protocol::{DecodeError, decode_request_body};

message! {
    pub struct ConsumerProtocolSubscription {
        topics: Vec<String> => 0..,
        user_data: Option<Bytes> => 0..,
        owned_partitions: Vec<TopicPartitions> => 1..,
        generation_id: i32 = -1 => 2..,
        rack_id: Option<String> => 3..,
    }
}

message! {
    pub struct ConsumerProtocolAssignment {
        assigned_partitions: Vec<TopicPartitions> => 0..,
        user_data: Option<Bytes> => 0..,
    }
}

message! {
    pub struct TopicPartitions {
        topic: String => 0..,
        partitions: Vec<i32> => 0..,
    }
}

/// Reads a versioned consumer protocol message. Newer versions than we know
/// are read as the newest we know, fields after it ignored, as Kafka's
/// consumers do for forward compatibility.
fn decode_versioned<T: crate::protocol::Wire>(bytes: &Bytes) -> Result<T, DecodeError> {
    if bytes.len() < 2 {
        return Err(DecodeError::Truncated);
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    decode_request_body(&bytes.slice(2..), version, false).map(|(value, _)| value)
}

pub fn decode_subscription(bytes: &Bytes) -> Result<ConsumerProtocolSubscription, DecodeError> {
    decode_versioned(bytes)
}

/// The topics of a subscription, read from the part every version shares
/// (v0's fields lead each later version), as Kafka's coordinator reads them:
/// whatever a newer client appends cannot make them unreadable.
pub fn decode_subscribed_topics(bytes: &Bytes) -> Result<Vec<String>, DecodeError> {
    if bytes.len() < 2 {
        return Err(DecodeError::Truncated);
    }
    decode_request_body::<ConsumerProtocolSubscription>(&bytes.slice(2..), 0, false).map(|(value, _)| value.topics)
}

pub fn decode_assignment(bytes: &Bytes) -> Result<ConsumerProtocolAssignment, DecodeError> {
    decode_versioned(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_assignment_the_coordinator_hands_out_is_valid() {
        let empty = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let assignment = decode_assignment(&empty).unwrap();
        assert!(assignment.assigned_partitions.is_empty());
        assert_eq!(assignment.user_data, None);
    }
}
