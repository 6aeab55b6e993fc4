//! Produce: validate each partition's batch and append it verbatim.
//!
//! Each partition succeeds or fails on its own; one bad batch never costs
//! the others in the same request.

use crate::broker::{Broker, LEADER_EPOCH, topic_config};
use crate::protocol::ErrorCode;
use crate::protocol::messages::produce::{
    PartitionProduceData, PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};
use crate::protocol::record_batch::validate_produced_batch;
use crate::storage::producer_state::SequenceCheck;

/// First version whose record sets are record batches v2.
const FIRST_SERVED_VERSION: i16 = 3;

/// What a Produce request leads to.
pub enum ProduceOutcome {
    Respond(ProduceResponse),
    /// acks=0 and all went well: the client expects no answer.
    Silent,
    /// acks=0 and something failed: the client reads no response, so, as
    /// Kafka does, the connection is closed to make it notice (it then
    /// refreshes its metadata and reconnects).
    Close(String),
}

pub async fn handle(broker: &Broker, version: i16, request: &ProduceRequest) -> ProduceOutcome {
    let refusal = if version < FIRST_SERVED_VERSION {
        // Advertised only so that librdkafka < 2.11 enables compression
        // (it checks for Produce v0); Kafka 4.0 does the same.
        Some((
            ErrorCode::UnsupportedVersion,
            "produce v0-v2 (message format v0/v1) is not supported; use v3+".to_string(),
        ))
    } else if !(-1..=1).contains(&request.acks) {
        Some((
            ErrorCode::InvalidRequiredAcks,
            format!("acks must be -1, 0 or 1, not {}", request.acks),
        ))
    } else if request.transactional_id.is_some() {
        Some((
            ErrorCode::InvalidRecord,
            "transactional producers are not supported yet".to_string(),
        ))
    } else {
        None
    };
    // Partitions that reached `--flush-messages` with this request, by
    // topic and place in its answer.
    let mut flush_due = Vec::new();
    let mut responses: Vec<TopicProduceResponse> = request
        .topic_data
        .iter()
        .enumerate()
        .map(|(t, topic)| TopicProduceResponse {
            name: topic.name.clone(),
            partition_responses: topic
                .partition_data
                .iter()
                .enumerate()
                .map(|(p, data)| match &refusal {
                    Some((code, message)) => failed(data.index, *code, message.clone()),
                    None => {
                        let mut due = false;
                        let response = append(broker, version, &topic.name, data, &mut due);
                        if due {
                            flush_due.push((t, p));
                        }
                        response
                    }
                })
                .collect(),
        })
        .collect();
    broker.appended.notify_waiters();
    if request.acks != 0 && broker.config().fsync_always {
        make_durable(broker, &mut responses, |_, _| true).await;
    } else if !flush_due.is_empty() {
        // Kafka flushes in the append that reaches flush.messages, whatever
        // the acks, and answers after it.
        make_durable(broker, &mut responses, |t, p| flush_due.contains(&(t, p))).await;
    }
    if request.acks != 0 {
        return ProduceOutcome::Respond(ProduceResponse {
            responses,
            ..Default::default()
        });
    }
    let failure = responses.iter().find_map(|t| {
        t.partition_responses
            .iter()
            .find(|p| p.error_code != ErrorCode::None.code())
            .map(|p| {
                format!(
                    "acks=0 produce to {}/{} failed: {}",
                    t.name,
                    p.index,
                    ErrorCode::from_code(p.error_code)
                )
            })
    });
    failure.map_or(ProduceOutcome::Silent, ProduceOutcome::Close)
}

/// With `--fsync always`, or for the partitions that reached
/// `--flush-messages` (`chosen`, by topic and partition place in the
/// answer): holds each successful partition's answer until its batch is on
/// disk. An fsync that fails turns the answer into KAFKA_STORAGE_ERROR: the
/// producer retries rather than believing it.
async fn make_durable(broker: &Broker, responses: &mut [TopicProduceResponse], chosen: impl Fn(usize, usize) -> bool) {
    for (t, topic_response) in responses.iter_mut().enumerate() {
        let Some(topic) = broker.topic(&topic_response.name) else {
            continue;
        };
        for (p, response) in topic_response.partition_responses.iter_mut().enumerate() {
            if response.error_code != ErrorCode::None.code() || !chosen(t, p) {
                continue;
            }
            let Some(partition) = topic.partition(response.index) else {
                continue;
            };
            if let Err(e) = partition.make_durable(response.base_offset + 1).await {
                tracing::error!(topic = %topic.name, partition = response.index, error = %e, "fsync failed");
                *response = failed(
                    response.index,
                    ErrorCode::KafkaStorageError,
                    "the broker could not make the batch durable".to_string(),
                );
            }
        }
    }
}

fn failed(index: i32, code: ErrorCode, message: String) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code.code(),
        base_offset: -1,
        error_message: Some(message),
        ..Default::default()
    }
}

/// Appends one partition's batch; sets `flush_due` when the append brought
/// the partition to `--flush-messages` (read under the append's lock, so a
/// sync elsewhere cannot reset the count without covering this batch).
fn append(
    broker: &Broker,
    version: i16,
    topic_name: &str,
    data: &PartitionProduceData,
    flush_due: &mut bool,
) -> PartitionProduceResponse {
    let Some(topic) = broker.topic(topic_name) else {
        return failed(
            data.index,
            ErrorCode::UnknownTopicOrPartition,
            format!("unknown topic {topic_name}"),
        );
    };
    let Some(partition) = topic.partition(data.index) else {
        return failed(
            data.index,
            ErrorCode::UnknownTopicOrPartition,
            format!("{topic_name} has no partition {}", data.index),
        );
    };
    let max_bytes = broker
        .topic_number(&topic, "max.message.bytes")
        .map_or(broker.config().message_max_bytes, |b| b.max(0) as usize);
    let header = match validate_produced_batch(data.records.as_ref(), version, max_bytes) {
        Ok(header) => header,
        Err(e) => {
            tracing::debug!(topic = topic_name, partition = data.index, error = %e, "refused a batch");
            return failed(data.index, e.error_code(), e.to_string());
        }
    };
    if header.is_transactional() {
        return failed(
            data.index,
            ErrorCode::InvalidRecord,
            "transactional batches are not supported yet".to_string(),
        );
    }
    let records = data.records.as_ref().expect("validated batches are present");
    // LogAppendTime topics: the broker's clock becomes the batch's time, the
    // one case where the stored batch differs from what was sent (the CRC
    // covers the timestamp, so it is computed again), as in Kafka.
    let log_append_time = topic_config::find("message.timestamp.type")
        .is_some_and(|def| broker.topic_config_value(&topic, def).trim() == "LogAppendTime");
    let (stamped, append_time) = if log_append_time {
        let now = super::wall_clock_ms();
        (Some(stamp_log_append_time(records, now)), now)
    } else {
        (None, -1)
    };
    let records = stamped.as_ref().unwrap_or(records);
    let header = crate::protocol::record_batch::BatchHeader::parse(records).expect("validated");
    let mut log = partition.log();
    if header.producer_id >= 0 {
        match log.producers().check(&header) {
            Ok(SequenceCheck::Append) => {}
            // A retry of a batch already in the log: acknowledged again with
            // its offsets, not appended twice.
            Ok(SequenceCheck::Duplicate(original)) => {
                return PartitionProduceResponse {
                    index: data.index,
                    error_code: ErrorCode::None.code(),
                    base_offset: original.base_offset,
                    log_append_time_ms: append_time,
                    log_start_offset: log.log_start_offset(),
                    ..Default::default()
                };
            }
            Err(e) => {
                tracing::debug!(topic = topic_name, partition = data.index, error = %e, "refused a batch");
                return failed(data.index, e.error_code(), e.to_string());
            }
        }
    }
    match log.append(records, &header, LEADER_EPOCH) {
        Ok(appended) => {
            *flush_due = broker
                .config()
                .flush_messages
                .is_some_and(|n| log.unflushed_messages() >= n);
            PartitionProduceResponse {
                index: data.index,
                error_code: ErrorCode::None.code(),
                base_offset: appended.base_offset,
                log_append_time_ms: append_time,
                log_start_offset: log.log_start_offset(),
                ..Default::default()
            }
        }
        Err(e) => {
            tracing::error!(topic = topic_name, partition = data.index, error = %e, "append failed");
            failed(
                data.index,
                ErrorCode::KafkaStorageError,
                "the broker could not write the batch".to_string(),
            )
        }
    }
}

/// A copy of `batch` marked LogAppendTime with `now` as its max timestamp.
fn stamp_log_append_time(batch: &bytes::Bytes, now: i64) -> bytes::Bytes {
    let mut stamped = bytes::BytesMut::from(&batch[..]);
    let attributes = i16::from_be_bytes([stamped[21], stamped[22]]) | 0x08;
    stamped[21..23].copy_from_slice(&attributes.to_be_bytes());
    stamped[35..43].copy_from_slice(&now.to_be_bytes());
    let crc = crate::protocol::record_batch::batch_crc(&stamped);
    stamped[17..21].copy_from_slice(&crc.to_be_bytes());
    stamped.freeze()
}
