//! Fetch: stored batches, verbatim, from the batch holding the fetch offset.
//!
//! Long polling: while fewer than `min_bytes` are available the request
//! waits for an append (or `max_wait_ms`, or shutdown); it never polls.
//! No fetch sessions (KIP-227): every response carries session id 0, which
//! tells clients to keep sending full fetch requests.

use std::time::Duration;

use tokio::time::Instant;

use crate::broker::{Broker, LEADER_EPOCH, Partition, Topic};
use crate::protocol::messages::fetch::{
    FetchPartition, FetchRequest, FetchResponse, FetchTopic, FetchableTopicResponse, PartitionData,
};
use crate::protocol::{ErrorCode, FetchedRecords};
use crate::storage::segment::FILE_SLICE_BYTES_MIN;

/// First version that names topics by id instead of by name.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

/// Record bytes one response may read into memory. Small answers are read
/// rather than sent with sendfile (cheaper below `FILE_SLICE_BYTES_MIN`),
/// but a response over many partitions would then hold up to
/// `fetch.max.bytes` (55 MiB by default) per connection; past this much,
/// the rest of the response goes out as file slices whatever their size.
pub const RESPONSE_COPY_BYTES_MAX: usize = 1 << 20;

pub async fn handle(broker: &Broker, version: i16, request: &FetchRequest) -> FetchResponse {
    if request.session_id != 0 {
        // We never hand out a session, so any id is one we do not know.
        return FetchResponse {
            error_code: ErrorCode::FetchSessionIdNotFound.code(),
            ..Default::default()
        };
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let mut shutdown = broker.shutdown_signal();
    loop {
        // Register for the wake-up before looking, so an append that lands
        // between the look and the wait is not missed.
        let appended = broker.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let (available, has_error) = probe(broker, version, request);
        if has_error || available >= request.min_bytes.max(0) as u64 || *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = &mut appended => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = Broker::stopped(&mut shutdown) => break,
        }
    }
    respond(broker, version, request)
}

/// A fetched partition, resolved: its topic and partition, or the error.
fn resolve<'t>(topic: Option<&'t Topic>, version: i16, asked: &FetchPartition) -> Result<&'t Partition, ErrorCode> {
    let Some(topic) = topic else {
        return Err(if version >= FIRST_TOPIC_ID_VERSION {
            ErrorCode::UnknownTopicId
        } else {
            ErrorCode::UnknownTopicOrPartition
        });
    };
    let partition = topic
        .partition(asked.partition)
        .ok_or(ErrorCode::UnknownTopicOrPartition)?;
    if asked.current_leader_epoch > LEADER_EPOCH {
        return Err(ErrorCode::UnknownLeaderEpoch);
    }
    Ok(partition)
}

fn find_topic(broker: &Broker, version: i16, asked: &FetchTopic) -> Option<std::sync::Arc<Topic>> {
    if version >= FIRST_TOPIC_ID_VERSION {
        broker.topic_by_id(asked.topic_id)
    } else {
        broker.topic(&asked.topic)
    }
}

/// Bytes available across the request, and whether any partition has an
/// error (which Kafka answers at once rather than waiting).
fn probe(broker: &Broker, version: i16, request: &FetchRequest) -> (u64, bool) {
    let mut available = 0u64;
    for asked_topic in &request.topics {
        let topic = find_topic(broker, version, asked_topic);
        for asked in &asked_topic.partitions {
            let Ok(partition) = resolve(topic.as_deref(), version, asked) else {
                return (available, true);
            };
            let log = partition.log();
            if asked.fetch_offset < log.log_start_offset() || asked.fetch_offset > log.next_offset() {
                return (available, true);
            }
            match log.bytes_from(asked.fetch_offset) {
                Ok(bytes) => available += bytes,
                // The read will fail too, and say so at once.
                Err(_) => return (available, true),
            }
        }
    }
    (available, false)
}

fn respond(broker: &Broker, version: i16, request: &FetchRequest) -> FetchResponse {
    let mut budget = if version >= 3 {
        (request.max_bytes.max(0) as usize).min(broker.config().fetch_max_bytes)
    } else {
        usize::MAX
    };
    // KIP-74: the first batch of the response comes whole even over the limits.
    let mut min_one = true;
    let mut copied = 0usize;
    let read_committed = request.isolation_level == 1;
    let responses = request
        .topics
        .iter()
        .map(|asked_topic| {
            let topic = find_topic(broker, version, asked_topic);
            let partitions = asked_topic
                .partitions
                .iter()
                .map(|asked| {
                    let mut data = match resolve(topic.as_deref(), version, asked) {
                        Ok(partition) => read(partition, asked, &mut budget, &mut min_one, &mut copied),
                        Err(code) => failed(asked.partition, code),
                    };
                    if read_committed {
                        // No transactions yet, so nothing was ever aborted.
                        data.aborted_transactions = Some(Vec::new());
                    }
                    data
                })
                .collect();
            FetchableTopicResponse {
                topic: asked_topic.topic.clone(),
                topic_id: asked_topic.topic_id,
                partitions,
            }
        })
        .collect();
    FetchResponse {
        responses,
        ..Default::default()
    }
}

fn failed(partition_index: i32, code: ErrorCode) -> PartitionData {
    PartitionData {
        partition_index,
        error_code: code.code(),
        high_watermark: -1,
        records: Some(FetchedRecords::default()),
        ..Default::default()
    }
}

/// One partition's answer, taking its bytes from `budget` and, if they were
/// read into memory, adding them to `copied`.
fn read(
    partition: &Partition,
    asked: &FetchPartition,
    budget: &mut usize,
    min_one: &mut bool,
    copied: &mut usize,
) -> PartitionData {
    let log = partition.log();
    let (log_start, end) = (log.log_start_offset(), log.next_offset());
    if asked.fetch_offset < log_start || asked.fetch_offset > end {
        return failed(asked.partition, ErrorCode::OffsetOutOfRange);
    }
    let limit = (asked.partition_max_bytes.max(0) as usize).min(*budget);
    let copy_below = if *copied < RESPONSE_COPY_BYTES_MAX {
        FILE_SLICE_BYTES_MIN
    } else {
        0
    };
    let records = match log.slice_from(asked.fetch_offset, limit, *min_one, copy_below) {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(partition = asked.partition, error = %e, "reading the log failed");
            return failed(asked.partition, ErrorCode::KafkaStorageError);
        }
    };
    if !records.is_empty() {
        *min_one = false;
        *budget = budget.saturating_sub(records.len());
    }
    if let FetchedRecords::Bytes(bytes) = &records {
        *copied += bytes.len();
    }
    PartitionData {
        partition_index: asked.partition,
        error_code: ErrorCode::None.code(),
        high_watermark: end,
        // No transactions yet: everything below the high watermark is stable.
        last_stable_offset: end,
        log_start_offset: log_start,
        records: Some(records),
        ..Default::default()
    }
}
