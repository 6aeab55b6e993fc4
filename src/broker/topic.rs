//! Topics and partitions as the broker serves them: each partition's log
//! behind its own lock, so appends to different partitions never wait on
//! each other.

use std::sync::{Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use super::shared_fsync::SharedFsync;
use crate::storage::PartitionLog;

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    /// Configs set on the topic (overrides of the defaults), by name.
    pub configs: std::sync::RwLock<std::collections::BTreeMap<String, String>>,
    /// Shared with the topic's next version when partitions are added.
    pub partitions: Vec<std::sync::Arc<Partition>>,
}

pub struct Partition {
    pub index: i32,
    log: Mutex<PartitionLog>,
    /// Producers that need durability wait here, sharing fsyncs.
    durable: SharedFsync,
}

impl Partition {
    pub fn new(index: i32, log: PartitionLog) -> Self {
        let durable = SharedFsync::new(log.next_offset());
        Partition {
            index,
            log: Mutex::new(log),
            durable,
        }
    }

    /// Waits until every record before `offset` is fsynced, syncing if no
    /// one else has, outside the log's lock.
    pub async fn make_durable(&self, offset: i64) -> std::io::Result<()> {
        self.durable
            .wait_for(
                offset,
                || self.log().sync_handle(),
                |end| self.log().mark_sync_failed(end),
            )
            .await
    }

    /// How many fsyncs producers waiting for durability have caused.
    pub fn durable_syncs(&self) -> u64 {
        self.durable.syncs()
    }

    /// The partition's log. Held only for synchronous work, never across an
    /// await; a panic while holding it cannot leave the log half-updated
    /// (appends update memory only after the write succeeded), so a poisoned
    /// lock is still usable.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Topic {
    /// A config set on this topic, if any.
    pub fn config(&self, name: &str) -> Option<String> {
        self.configs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Sets when every partition's active segment rolls (`segment.bytes`
    /// and `segment.ms` in force).
    pub fn set_segment_limits(&self, bytes: u64, ms: i64) {
        for partition in &self.partitions {
            let mut log = partition.log();
            log.set_segment_bytes(bytes);
            log.set_segment_ms(ms);
        }
    }

    pub fn partition(&self, index: i32) -> Option<&Partition> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .map(|p| &**p)
    }
}

/// Kafka's topic name rules (`org.apache.kafka.common.internals.Topic`):
/// 1 to 249 characters from `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be \"{name}\""));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters; the maximum is 249", name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name contains {bad:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-2").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        for bad in ["", ".", "..", "with space", "slash/", "ünicode"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
