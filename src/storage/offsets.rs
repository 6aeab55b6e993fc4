//! Committed consumer group offsets, durable in an internal log.
//!
//! Kafka keeps them in its `__consumer_offsets` topic; here they go to a
//! partition log of their own (`group-offsets/` in the data directory, not
//! a topic clients can see), one record per committed partition: the key
//! names group, topic and partition, the value holds offset, leader epoch,
//! metadata and commit time, and a null value deletes. On start the log is
//! read back in order, so the last word on each key wins. It inherits the
//! log's CRC-checked recovery.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::StorageError;
use super::log::PartitionLog;
use crate::message;
use crate::protocol::record_batch::{BatchHeader, Compression};
use crate::protocol::records::{Record, RecordBatchBuilder, decode_batch};
use crate::protocol::{decode_body, encode_body};

/// Directory of the offsets log inside the data directory.
pub const OFFSETS_DIR: &str = "group-offsets";
/// Version of the key and value layouts below.
const FORMAT_VERSION: i16 = 0;

message! {
    struct OffsetKey {
        group: String => 0..,
        topic: String => 0..,
        partition: i32 => 0..,
    }
}

message! {
    struct OffsetValue {
        offset: i64 => 0..,
        leader_epoch: i32 => 0..,
        metadata: Option<String> => 0..,
        commit_timestamp: i64 => 0..,
    }
}

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

pub type TopicPartition = (String, i32);

pub struct OffsetStore {
    log: PartitionLog,
    committed: HashMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
}

fn encode<T: crate::protocol::Wire>(value: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    buf.extend_from_slice(&encode_body(value, FORMAT_VERSION, false));
    buf.freeze()
}

fn decode<T: crate::protocol::Wire>(bytes: &Bytes) -> Option<T> {
    (bytes.len() >= 2 && bytes[..2] == FORMAT_VERSION.to_be_bytes())
        .then(|| decode_body(&bytes.slice(2..), FORMAT_VERSION, false).ok())
        .flatten()
}

impl OffsetStore {
    pub fn in_memory() -> Self {
        OffsetStore {
            log: PartitionLog::in_memory(),
            committed: HashMap::new(),
        }
    }

    /// Opens the offsets log under `root` and replays it.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let dir = root.join(OFFSETS_DIR);
        let log = PartitionLog::open(&dir)?;
        let mut store = OffsetStore {
            log,
            committed: HashMap::new(),
        };
        let batches = store.log.batches().map_err(|e| StorageError::io(&dir, e))?;
        for batch in batches {
            let records = decode_batch(&batch).map_err(|e| StorageError::invalid(&dir, e.to_string()))?;
            for record in records {
                let Some(key) = record.key.as_ref().and_then(decode::<OffsetKey>) else {
                    tracing::warn!(offset = record.offset, "skipping an unreadable committed-offset record");
                    continue;
                };
                let tp = (key.topic, key.partition);
                let value = match &record.value {
                    None => None,
                    Some(bytes) => match decode::<OffsetValue>(bytes) {
                        Some(value) => Some(value),
                        None => {
                            // Not a deletion: an unreadable value is skipped,
                            // leaving the previous commit in place.
                            tracing::warn!(offset = record.offset, "skipping an unreadable committed-offset value");
                            continue;
                        }
                    },
                };
                match value {
                    Some(v) => {
                        let committed = CommittedOffset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp: v.commit_timestamp,
                        };
                        store.committed.entry(key.group).or_default().insert(tp, committed);
                    }
                    None => {
                        if let Some(group) = store.committed.get_mut(&key.group) {
                            group.remove(&tp);
                        }
                    }
                }
            }
        }
        store.committed.retain(|_, offsets| !offsets.is_empty());
        Ok(store)
    }

    /// Records commits (a `None` deletes), durably in the log first.
    pub fn write(
        &mut self,
        group: &str,
        entries: Vec<(TopicPartition, Option<CommittedOffset>)>,
    ) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = entries
            .iter()
            .filter_map(|(_, c)| c.as_ref().map(|c| c.commit_timestamp))
            .max()
            .unwrap_or(0);
        let mut builder = RecordBatchBuilder::new(now);
        for ((topic, partition), committed) in &entries {
            let key = OffsetKey {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            let value = committed.as_ref().map(|c| {
                encode(&OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp: c.commit_timestamp,
                })
            });
            builder.push(Record {
                key: Some(encode(&key)),
                value,
                ..Record::default()
            });
        }
        let batch = builder.build(Compression::None)?;
        let header = BatchHeader::parse(&batch).expect("a batch just built has a header");
        self.log.append(&batch, &header, 0)?;
        let offsets = self.committed.entry(group.to_string()).or_default();
        for (tp, committed) in entries {
            match committed {
                Some(c) => {
                    offsets.insert(tp, c);
                }
                None => {
                    offsets.remove(&tp);
                }
            }
        }
        if offsets.is_empty() {
            self.committed.remove(group);
        }
        Ok(())
    }

    /// Deletes every group's committed offsets for `topic` (when the topic
    /// is deleted, as Kafka does). Returns how many went.
    pub fn delete_topic(&mut self, topic: &str) -> std::io::Result<usize> {
        let doomed: Vec<(String, Vec<TopicPartition>)> = self
            .committed
            .iter()
            .map(|(group, offsets)| {
                let partitions = offsets.keys().filter(|(t, _)| t == topic).cloned().collect();
                (group.clone(), partitions)
            })
            .filter(|(_, partitions): &(String, Vec<TopicPartition>)| !partitions.is_empty())
            .collect();
        let mut deleted = 0;
        for (group, partitions) in doomed {
            deleted += partitions.len();
            self.write(&group, partitions.into_iter().map(|tp| (tp, None)).collect())?;
        }
        Ok(deleted)
    }

    pub fn group(&self, group: &str) -> Option<&BTreeMap<TopicPartition, CommittedOffset>> {
        self.committed.get(group)
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.committed.keys()
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.log.sync()
    }

    /// Syncs and closes the log cleanly (on shutdown).
    pub fn close(&mut self) -> Result<(), StorageError> {
        self.log.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Option<CommittedOffset> {
        Some(CommittedOffset {
            offset,
            leader_epoch: 0,
            metadata: Some(format!("m{offset}")),
            commit_timestamp: 7,
        })
    }

    #[test]
    fn commits_and_deletes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        store
            .write("g", vec![(("t".into(), 0), at(5)), (("t".into(), 1), at(9))])
            .unwrap();
        store.write("g", vec![(("t".into(), 0), at(6))]).unwrap();
        store.write("h", vec![(("u".into(), 0), at(1))]).unwrap();
        store.write("h", vec![(("u".into(), 0), None)]).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        let g = store.group("g").unwrap();
        assert_eq!(g[&("t".to_string(), 0)].offset, 6);
        assert_eq!(g[&("t".to_string(), 1)].metadata.as_deref(), Some("m9"));
        assert!(store.group("h").is_none());
    }
}
