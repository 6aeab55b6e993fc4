//! ListOffsets: offsets by position (earliest, latest) or by time.

use crate::broker::{Broker, LEADER_EPOCH, Partition};
use crate::protocol::ErrorCode;
use crate::protocol::messages::list_offsets::{
    EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP, LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, ListOffsetsPartition,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResponse, MAX_TIMESTAMP,
};
use crate::protocol::records::decode_batch;

pub fn handle(broker: &Broker, version: i16, request: &ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|asked_topic| {
            let topic = broker.topic(&asked_topic.name);
            let partitions = asked_topic
                .partitions
                .iter()
                .map(
                    |asked| match topic.as_deref().and_then(|t| t.partition(asked.partition_index)) {
                        None => failed(asked.partition_index, ErrorCode::UnknownTopicOrPartition),
                        Some(_) if asked.current_leader_epoch > LEADER_EPOCH => {
                            failed(asked.partition_index, ErrorCode::UnknownLeaderEpoch)
                        }
                        Some(partition) => list(partition, version, asked),
                    },
                )
                .collect();
            ListOffsetsTopicResponse {
                name: asked_topic.name.clone(),
                partitions,
            }
        })
        .collect();
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}

fn failed(partition_index: i32, code: ErrorCode) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition_index,
        error_code: code.code(),
        ..Default::default()
    }
}

fn found(partition_index: i32, timestamp: i64, offset: i64) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse {
        partition_index,
        error_code: ErrorCode::None.code(),
        old_style_offsets: if offset >= 0 { vec![offset] } else { Vec::new() },
        timestamp,
        offset,
        leader_epoch: if offset >= 0 { LEADER_EPOCH } else { -1 },
    }
}

fn list(partition: &Partition, version: i16, asked: &ListOffsetsPartition) -> ListOffsetsPartitionResponse {
    let index = asked.partition_index;
    let log = partition.log();
    // With no transactions, read_committed's last stable offset equals the
    // high watermark, so the isolation level changes nothing here.
    match asked.timestamp {
        LATEST_TIMESTAMP => found(index, -1, log.next_offset()),
        EARLIEST_TIMESTAMP => found(index, -1, log.log_start_offset()),
        EARLIEST_LOCAL_TIMESTAMP if version >= 8 => found(index, -1, log.log_start_offset()),
        // No tiered storage: nothing is tiered, and Kafka answers -1.
        LATEST_TIERED_TIMESTAMP if version >= 9 => found(index, -1, -1),
        // Records before the log start (DeleteRecords can put it inside a
        // batch) are gone for clients: never an answer.
        MAX_TIMESTAMP if version >= 7 => {
            let (batch, start) = (log.batch_with_max_timestamp(), log.log_start_offset());
            drop(log);
            let records = match records_of(index, batch) {
                Ok(Some(records)) => records,
                Ok(None) => return found(index, -1, -1),
                Err(response) => return response,
            };
            let best = records
                .iter()
                .filter(|r| r.offset >= start)
                .fold(None::<(i64, i64)>, |best, r| match best {
                    Some((ts, _)) if ts >= r.timestamp => best,
                    _ => Some((r.timestamp, r.offset)),
                });
            best.map_or_else(|| found(index, -1, -1), |(ts, offset)| found(index, ts, offset))
        }
        target if target >= 0 => {
            drop(log);
            let mut from = 0;
            loop {
                let (batch, start) = {
                    let log = partition.log();
                    (log.batch_at_timestamp(target, from), log.log_start_offset())
                };
                let records = match records_of(index, batch) {
                    Ok(Some(records)) => records,
                    Ok(None) => return found(index, -1, -1),
                    Err(response) => return response,
                };
                if let Some(r) = records.iter().find(|r| r.offset >= start && r.timestamp >= target) {
                    return found(index, r.timestamp, r.offset);
                }
                // Every match in this batch was before the log start.
                from = records.last().map_or(i64::MAX, |r| r.offset + 1);
            }
        }
        _ => failed(index, ErrorCode::InvalidRequest),
    }
}

/// The records of one stored batch: the only place the broker reads
/// individual records, and only for a timestamp lookup. An error is the
/// partition's answer.
fn records_of(
    index: i32,
    batch: std::io::Result<Option<bytes::Bytes>>,
) -> Result<Option<Vec<crate::protocol::records::Record>>, ListOffsetsPartitionResponse> {
    let batch = match batch {
        Ok(Some(batch)) => batch,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::error!(partition = index, error = %e, "reading the log failed");
            return Err(failed(index, ErrorCode::KafkaStorageError));
        }
    };
    match decode_batch(&batch) {
        Ok(records) => Ok(Some(records)),
        Err(e) => {
            tracing::error!(partition = index, error = %e, "a stored batch does not decode");
            Err(failed(index, ErrorCode::CorruptMessage))
        }
    }
}
