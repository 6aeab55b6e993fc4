//! DeleteRecords: moves partitions' log start offsets forward.

use super::Broker;
use crate::protocol::ErrorCode;
use crate::protocol::messages::delete_records::*;

pub fn handle(broker: &Broker, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .iter()
        .map(|asked| {
            let topic = broker.topic(&asked.name);
            let partitions = asked
                .partitions
                .iter()
                .map(|p| {
                    let result = |low_watermark: i64, code: ErrorCode| DeleteRecordsPartitionResult {
                        partition_index: p.partition_index,
                        low_watermark,
                        error_code: code.code(),
                    };
                    let Some(partition) = topic.as_deref().and_then(|t| t.partition(p.partition_index)) else {
                        return result(-1, ErrorCode::UnknownTopicOrPartition);
                    };
                    let mut log = partition.log();
                    // -1 means "up to the high watermark".
                    let offset = if p.offset == -1 { log.next_offset() } else { p.offset };
                    if offset < 0 || offset > log.next_offset() {
                        return result(-1, ErrorCode::OffsetOutOfRange);
                    }
                    match log.delete_records_before(offset) {
                        Ok(start) => result(start, ErrorCode::None),
                        Err(e) => {
                            tracing::error!(topic = %asked.name, partition = p.partition_index, error = %e, "DeleteRecords failed");
                            result(-1, ErrorCode::KafkaStorageError)
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult { name: asked.name.clone(), partitions }
        })
        .collect();
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}
