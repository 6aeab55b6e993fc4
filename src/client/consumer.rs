//! A consumer of assigned partitions (no group): resolves its start
//! offsets with ListOffsets, then fetches with long polling.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ClientError, Cluster};
use crate::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
use crate::protocol::messages::list_offsets::{
    EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use crate::protocol::messages::{Request, Response};
use crate::protocol::records::{Record, decode_batches};
use crate::protocol::{ErrorCode, FetchedRecords};

/// Where consumption starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Beginning,
    End,
    /// An absolute offset.
    Offset(i64),
    /// This many records before the end (clamped to the beginning).
    FromEnd(i64),
}

impl std::str::FromStr for StartOffset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beginning" => Ok(StartOffset::Beginning),
            "end" => Ok(StartOffset::End),
            n => match n.parse::<i64>() {
                Ok(n) if n < 0 => Ok(StartOffset::FromEnd(-n)),
                Ok(n) => Ok(StartOffset::Offset(n)),
                Err(_) => Err(format!("{s:?} is not beginning, end, N or -N")),
            },
        }
    }
}

/// How long a fetch may wait at the end of the log.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;

/// A record with the partition it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub record: Record,
}

pub struct Consumer {
    cluster: Cluster,
    topic: String,
    /// Next offset to read, per partition.
    positions: BTreeMap<i32, i64>,
    /// Last known high watermark, per partition.
    high_watermarks: BTreeMap<i32, i64>,
}

impl Consumer {
    /// Consumes `partitions` of `topic` (all when `None`) from `start`.
    pub async fn new(
        mut cluster: Cluster,
        topic: &str,
        partitions: Option<Vec<i32>>,
        start: StartOffset,
    ) -> Result<Consumer, ClientError> {
        cluster.refresh(&[topic], false).await?;
        let info = cluster.topic(topic).cloned().ok_or_else(|| ClientError::Topic {
            topic: topic.to_string(),
            reason: cluster
                .topic_error(topic)
                .map_or_else(|| "not in metadata".to_string(), |c| c.to_string()),
        })?;
        let partitions = partitions.unwrap_or_else(|| (0..info.leaders.len() as i32).collect());
        let mut consumer = Consumer {
            cluster,
            topic: topic.to_string(),
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
        };
        for partition in partitions {
            if partition < 0 || partition as usize >= info.leaders.len() {
                return Err(ClientError::Topic {
                    topic: topic.into(),
                    reason: format!("no partition {partition}"),
                });
            }
            let earliest = consumer.list_offset(partition, EARLIEST_TIMESTAMP).await?;
            let latest = consumer.list_offset(partition, LATEST_TIMESTAMP).await?;
            let position = match start {
                StartOffset::Beginning => earliest,
                StartOffset::End => latest,
                StartOffset::Offset(n) => n.clamp(earliest, latest),
                StartOffset::FromEnd(n) => (latest - n).max(earliest),
            };
            consumer.positions.insert(partition, position);
            consumer.high_watermarks.insert(partition, latest);
        }
        Ok(consumer)
    }

    fn leader(&self, partition: i32) -> Result<i32, ClientError> {
        self.cluster
            .topic(&self.topic)
            .and_then(|t| t.leaders.get(partition as usize).copied())
            .ok_or_else(|| ClientError::Topic {
                topic: self.topic.clone(),
                reason: format!("no leader for {partition}"),
            })
    }

    async fn list_offset(&mut self, partition: i32, timestamp: i64) -> Result<i64, ClientError> {
        let leader = self.leader(partition)?;
        let request = Request::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: self.topic.clone(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: partition,
                    timestamp,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        let Response::ListOffsets(response) = self.cluster.broker(leader).await?.call(request).await? else {
            unreachable!("call answers with the request's api")
        };
        let answer = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Topic {
                topic: self.topic.clone(),
                reason: "empty ListOffsets answer".into(),
            })?;
        if answer.error_code != 0 {
            return Err(ClientError::broker(answer.error_code));
        }
        Ok(answer.answered_offset())
    }

    /// Whether every partition has been read up to its high watermark.
    pub fn at_end(&self) -> bool {
        self.positions
            .iter()
            .all(|(p, position)| self.high_watermarks.get(p).is_some_and(|hw| position >= hw))
    }

    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// One fetch round: returns the records that arrived (possibly none
    /// after waiting up to the fetch's max wait).
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<FetchPartition>> = BTreeMap::new();
        for (&partition, &position) in &self.positions {
            by_leader
                .entry(self.leader(partition)?)
                .or_default()
                .push(FetchPartition {
                    partition,
                    fetch_offset: position,
                    partition_max_bytes: PARTITION_MAX_BYTES,
                    ..Default::default()
                });
        }
        let topic_id = self.cluster.topic(&self.topic).map(|t| t.id).unwrap_or_default();
        let mut consumed = Vec::new();
        for (leader, partitions) in by_leader {
            let request = Request::Fetch(FetchRequest {
                max_wait_ms: FETCH_MAX_WAIT_MS,
                min_bytes: 1,
                max_bytes: FETCH_MAX_BYTES,
                topics: vec![FetchTopic {
                    topic: self.topic.clone(),
                    topic_id,
                    partitions,
                }],
                ..Default::default()
            });
            let response = match self.cluster.broker(leader).await?.call(request).await {
                Ok(Response::Fetch(response)) => response,
                Ok(_) => unreachable!("call answers with the request's api"),
                Err(e) => {
                    self.cluster.disconnect(leader);
                    return Err(e);
                }
            };
            if response.error_code != 0 {
                return Err(ClientError::broker(response.error_code));
            }
            for data in response.responses.into_iter().flat_map(|t| t.partitions) {
                let partition = data.partition_index;
                match ErrorCode::from_code(data.error_code) {
                    ErrorCode::None => {}
                    ErrorCode::OffsetOutOfRange => {
                        // Reset as auto.offset.reset=earliest would.
                        let earliest = self.list_offset(partition, EARLIEST_TIMESTAMP).await?;
                        self.positions.insert(partition, earliest);
                        continue;
                    }
                    code if code.is_retriable() => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        self.cluster.refresh(&[&self.topic.clone()], false).await?;
                        continue;
                    }
                    _ => return Err(ClientError::broker(data.error_code)),
                }
                self.high_watermarks.insert(partition, data.high_watermark);
                let Some(position) = self.positions.get_mut(&partition) else {
                    continue;
                };
                let records = decode_batches(
                    data.records
                        .as_ref()
                        .and_then(FetchedRecords::bytes)
                        .map_or(&[][..], |b| &b[..]),
                )
                .map_err(|e| ClientError::Topic {
                    topic: self.topic.clone(),
                    reason: e.to_string(),
                })?;
                for record in records {
                    // A fetch starts at the batch holding the position; skip
                    // the records before it.
                    if record.offset < *position {
                        continue;
                    }
                    *position = record.offset + 1;
                    consumed.push(ConsumedRecord { partition, record });
                }
            }
        }
        Ok(consumed)
    }
}
