//! OffsetForLeaderEpoch: where a leader epoch ends.
//!
//! One node never changes leader, so epoch 0 is the only epoch there has
//! been and it is still current: it ends at the log end offset. Clients ask
//! after a metadata refresh to check their position was not truncated away;
//! an answer below their position would make them reset, so the current
//! epoch always answers with the log end offset.

use crate::broker::{Broker, LEADER_EPOCH};
use crate::protocol::ErrorCode;
use crate::protocol::messages::offset_for_leader_epoch::{
    EpochEndOffset, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

pub fn handle(broker: &Broker, _version: i16, request: &OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|asked_topic| {
            let topic = broker.topic(&asked_topic.topic);
            let partitions = asked_topic
                .partitions
                .iter()
                .map(|asked| {
                    let mut answer = EpochEndOffset {
                        partition: asked.partition,
                        ..Default::default()
                    };
                    match topic.as_deref().and_then(|t| t.partition(asked.partition)) {
                        None => answer.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                        Some(_) if asked.current_leader_epoch > LEADER_EPOCH => {
                            answer.error_code = ErrorCode::UnknownLeaderEpoch.code();
                        }
                        Some(partition) if asked.leader_epoch == LEADER_EPOCH => {
                            answer.leader_epoch = LEADER_EPOCH;
                            answer.end_offset = partition.log().next_offset();
                        }
                        // An epoch this log never had: Kafka's "undefined"
                        // answer (epoch -1, offset -1), no error.
                        Some(_) => {}
                    }
                    answer
                })
                .collect();
            OffsetForLeaderTopicResult {
                topic: asked_topic.topic.clone(),
                partitions,
            }
        })
        .collect();
    OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}
