//! Committed consumer group offsets, durable in an internal log.
//!
//! Kafka keeps them in its `__consumer_offsets` topic; here they go to a
//! partition log of their own (`group-offsets/` in the data directory, not
//! a topic clients can see), one record per committed partition: the key
//! names group, topic and partition, the value holds offset, leader epoch,
//! metadata and commit time, and a null value deletes. On start the log is
//! read back in order from its start offset, so the last word on each key
//! wins. It inherits the log's CRC-checked recovery.
//!
//! Kafka compacts `__consumer_offsets`; this log is rewritten instead. Once
//! the commits appended since the last rewrite outgrow both
//! [`REWRITE_AFTER_BYTES_MIN`] and twice that rewrite, the live commits are
//! appended to a fresh segment, synced, and the log start moves to them,
//! which deletes every older segment. A crash before the start moves
//! leaves the old records in place, and replaying them and then the copy
//! gives the same state. So the log, its replay at start and the memory
//! that replay takes follow the live commits, not their history.
//!
//! The log also keeps one record per consumer group that has completed a
//! rebalance, as Kafka keeps its group metadata in `__consumer_offsets`:
//! its protocol type and generation, and its members with their
//! assignments, or when it last became empty. So after a restart the
//! members carry on, a group that emptied before it still counts its
//! offsets' retention from then, and commits of a group nobody ever
//! joined (Kafka's standalone group) still go one by one. A
//! log written before these records existed has no marker saying it keeps
//! them; its groups are given a record at the first open, as if they had
//! emptied then, which is what that start would have counted from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::StorageError;
use super::log::{PartitionLog, SyncHandle};
use crate::message;
use crate::protocol::record_batch::{BatchHeader, Compression};
use crate::protocol::records::{Record, RecordBatchBuilder, decode_batch};
use crate::protocol::{decode_body, encode_body};

/// Directory of the offsets log inside the data directory.
pub const OFFSETS_DIR: &str = "group-offsets";
/// Version of the key and value layouts below, written with each: 1 adds
/// the value's `expire_timestamp`. Records of earlier versions still read.
const FORMAT_VERSION: i16 = 1;
/// The least the log grows by before it is rewritten.
pub const REWRITE_AFTER_BYTES_MIN: u64 = 1 << 20;
/// Segment size of the offsets log: small, so that a rewrite deletes all
/// but the live commits. (Kafka's `offsets.topic.segment.bytes` is 100 MiB;
/// it compacts segments rather than deleting them.)
const SEGMENT_BYTES: u64 = 4 << 20;
/// Commits per batch when the live ones are written out, and how much of
/// the log a replay reads at a time.
const REWRITE_RECORDS_PER_BATCH: usize = 1000;
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The key layout of a group's record, in the place of the layout
/// version; Kafka's group metadata key is its version 2 as well.
const GROUP_KEY_KIND: i16 = 2;
/// The key layout of the record that says the log keeps group records.
const GROUPS_KEPT_KEY_KIND: i16 = 3;
// Offset keys begin with the layout version: it must stay below the kinds,
// or new commits would read as group records.
const _: () = assert!(FORMAT_VERSION < GROUP_KEY_KIND);

message! {
    struct GroupKey {
        group: String => 0..,
    }
}

/// The layout a group record's value is written in: 1 adds the selected
/// protocol, the leader and the members. Layout 0 values still read, with
/// no members.
const GROUP_VALUE_VERSION: i16 = 1;

message! {
    struct GroupValue {
        protocol_type: Option<String> => 0..,
        generation: i32 => 0..,
        /// When the group last became empty (wall clock ms); -1: it had
        /// members.
        empty_since: i64 => 0..,
        /// Its members' longest session timeout, when it had members.
        session_timeout_ms: i32 => 0..,
        protocol: Option<String> => 1..,
        leader: Option<String> => 1..,
        members: Vec<GroupMemberValue> => 1..,
    }
}

message! {
    struct GroupMemberValue {
        member_id: String => 0..,
        instance_id: Option<String> => 0..,
        client_id: String => 0..,
        client_host: String => 0..,
        session_timeout_ms: i32 => 0..,
        rebalance_timeout_ms: i32 => 0..,
        /// Its metadata for the selected protocol.
        subscription: Bytes => 0..,
        assignment: Bytes => 0..,
    }
}

/// What the log keeps of a consumer group between starts: Kafka's group
/// metadata, as the last completed rebalance (or the group's emptying)
/// left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptGroup {
    pub protocol_type: Option<String>,
    pub generation: i32,
    /// When it last became empty; `None`: it had members.
    pub empty_since_ms: Option<i64>,
    /// Its members' longest session timeout, when it had members.
    pub session_timeout_ms: i32,
    /// The selected protocol, while it has members.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Its members, in the order they joined. Empty in a record of layout
    /// 0, which did not keep them even when the group had some.
    pub members: Vec<KeptMember>,
}

/// One member of a [`KeptGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Its metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

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
        /// -1: none (the group's retention applies).
        expire_timestamp: i64 = -1 => 1..,
    }
}

/// One committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
    /// When this commit expires on its own (OffsetCommit v2-v4's
    /// `retention_time_ms`); `None`: with its group, as KIP-211 has it.
    pub expire_timestamp: Option<i64>,
}

pub type TopicPartition = (String, i32);

pub struct OffsetStore {
    log: PartitionLog,
    committed: HashMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    /// Log bytes right after the last rewrite (0 before the first).
    rewritten_bytes: u64,
    rewrite_after_bytes_min: u64,
    /// The replay skipped records it could not read (a newer layout,
    /// say). A rewrite copies only what was read, so it would lose them for
    /// good: the log is then never rewritten.
    skipped_records: bool,
    /// Each group's record (see the module documentation).
    kept_groups: HashMap<String, KeptGroup>,
    /// Whether the log holds the marker that it keeps group records.
    keeps_groups: bool,
}

fn encode<T: crate::protocol::Wire>(value: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    buf.extend_from_slice(&encode_body(value, FORMAT_VERSION, false));
    buf.freeze()
}

fn decode<T: crate::protocol::Wire>(bytes: &Bytes) -> Option<T> {
    let version = prefix(bytes)?;
    (0..=FORMAT_VERSION)
        .contains(&version)
        .then(|| decode_body(&bytes.slice(2..), version, false).ok())
        .flatten()
}

/// The layout version (or, for keys of 2 and up, the kind) a key or value
/// starts with.
fn prefix(bytes: &Bytes) -> Option<i16> {
    Some(i16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// `value` in `layout`, behind `prefix` (for a group record's key, its
/// kind; for its value, the layout).
fn encode_as<T: crate::protocol::Wire>(prefix: i16, layout: i16, value: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&prefix.to_be_bytes());
    buf.extend_from_slice(&encode_body(value, layout, false));
    buf.freeze()
}

/// A group record's key (or the marker's), in layout 0 behind its kind.
fn decode_as<T: crate::protocol::Wire>(expected: i16, bytes: &Bytes) -> Option<T> {
    (prefix(bytes)? == expected)
        .then(|| decode_body(&bytes.slice(2..), 0, false).ok())
        .flatten()
}

/// A group record's value, in the layout it starts with.
fn decode_group_value(bytes: &Bytes) -> Option<GroupValue> {
    let layout = prefix(bytes)?;
    (0..=GROUP_VALUE_VERSION)
        .contains(&layout)
        .then(|| decode_body(&bytes.slice(2..), layout, false).ok())
        .flatten()
}

/// The log record of a group (`None`: its deletion).
fn group_record(group: &str, kept: Option<&KeptGroup>) -> Record {
    let key = GroupKey {
        group: group.to_string(),
    };
    let value = kept.map(|k| {
        let members = k
            .members
            .iter()
            .map(|m| GroupMemberValue {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                subscription: m.subscription.clone(),
                assignment: m.assignment.clone(),
            })
            .collect();
        encode_as(
            GROUP_VALUE_VERSION,
            GROUP_VALUE_VERSION,
            &GroupValue {
                protocol_type: k.protocol_type.clone(),
                generation: k.generation,
                empty_since: k.empty_since_ms.unwrap_or(-1),
                session_timeout_ms: k.session_timeout_ms,
                protocol: k.protocol.clone(),
                leader: k.leader.clone(),
                members,
            },
        )
    });
    Record {
        key: Some(encode_as(GROUP_KEY_KIND, 0, &key)),
        value,
        ..Record::default()
    }
}

/// The record that says the log keeps group records.
fn groups_kept_record() -> Record {
    Record {
        key: Some(Bytes::copy_from_slice(&GROUPS_KEPT_KEY_KIND.to_be_bytes())),
        value: Some(Bytes::new()),
        ..Record::default()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The log record of one commit (`None`: its deletion).
fn offset_record(group: &str, (topic, partition): &TopicPartition, committed: Option<&CommittedOffset>) -> Record {
    let key = OffsetKey {
        group: group.to_string(),
        topic: topic.clone(),
        partition: *partition,
    };
    let value = committed.map(|c| {
        encode(&OffsetValue {
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            commit_timestamp: c.commit_timestamp,
            expire_timestamp: c.expire_timestamp.unwrap_or(-1),
        })
    });
    Record {
        key: Some(encode(&key)),
        value,
        ..Record::default()
    }
}

/// Appends `records` to the offsets log as one batch stamped `timestamp`.
fn append_records(log: &mut PartitionLog, records: Vec<Record>, timestamp: i64) -> std::io::Result<()> {
    let mut builder = RecordBatchBuilder::new(timestamp);
    for record in records {
        builder.push(record);
    }
    let batch = builder.build(Compression::None)?;
    let header = BatchHeader::parse(&batch).expect("a batch just built has a header");
    log.append(&batch, &header, 0)?;
    Ok(())
}

impl OffsetStore {
    pub fn in_memory() -> Self {
        OffsetStore::with_log(PartitionLog::in_memory())
    }

    fn with_log(mut log: PartitionLog) -> Self {
        log.set_segment_bytes(SEGMENT_BYTES);
        // Its rewrite syncs under the store's lock, which group requests
        // wait for: it must not queue behind partitions' large flushes.
        log.flush_rolls_in_place();
        OffsetStore {
            log,
            committed: HashMap::new(),
            rewritten_bytes: 0,
            rewrite_after_bytes_min: REWRITE_AFTER_BYTES_MIN,
            skipped_records: false,
            kept_groups: HashMap::new(),
            keeps_groups: false,
        }
    }

    /// Opens the offsets log under `root` and replays it; a log that has
    /// outgrown its commits is rewritten at once.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let dir = root.join(OFFSETS_DIR);
        let mut store = OffsetStore::with_log(PartitionLog::open(&dir)?);
        let replayed = store.replay().map_err(|e| StorageError::invalid(&dir, e))?;
        if !store.keeps_groups {
            store.start_keeping_groups().map_err(|e| StorageError::io(&dir, e))?;
        }
        // What a rewrite would leave, from the records' average size: a log
        // that is mostly live commits is not copied again at every start.
        let live: usize = store.committed.values().map(BTreeMap::len).sum::<usize>() + store.kept_groups.len() + 1;
        store.rewritten_bytes = (store.log.size_bytes() as u128 * live as u128 / replayed.max(1) as u128) as u64;
        if store.skipped_records {
            tracing::warn!(
                "the committed-offsets log holds records this version cannot read; it will not be rewritten"
            );
        }
        store.rewrite_if_due().map_err(|e| StorageError::io(&dir, e))?;
        // What the open wrote (the marker, an old log's group records) is
        // durable before anything else is answered, whatever the policy.
        if store.log.unflushed_messages() > 0 {
            store.log.sync().map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(store)
    }

    /// Reads the log from its start offset into `committed`, a window at a
    /// time. Returns how many records it read.
    fn replay(&mut self) -> Result<u64, String> {
        let mut replayed = 0u64;
        let mut offset = self.log.log_start_offset();
        while offset < self.log.next_offset() {
            let bytes = self
                .log
                .read_from(offset, REPLAY_READ_BYTES, true)
                .map_err(|e| e.to_string())?;
            let mut at = 0;
            let before = offset;
            while let Some(header) = bytes.get(at..).and_then(BatchHeader::parse) {
                let end = at + header.total_bytes();
                let batch = bytes.get(at..end).ok_or("a batch cut short in the offsets log")?;
                for record in decode_batch(batch).map_err(|e| e.to_string())? {
                    // The first batch may begin before the log start.
                    if record.offset >= offset {
                        replayed += 1;
                        self.apply(record);
                    }
                }
                offset = offset.max(header.last_offset().saturating_add(1));
                at = end;
            }
            if offset == before {
                return Err(format!("the offsets log does not continue at offset {offset}"));
            }
        }
        self.committed.retain(|_, offsets| !offsets.is_empty());
        Ok(replayed)
    }

    /// Writes the marker that the log keeps group records, after a record
    /// for each group with commits: until now nothing said what those
    /// groups were, so they count as emptied now, as the start before
    /// counted them (a standalone group among them keeps its commits
    /// longer than Kafka would, never shorter).
    fn start_keeping_groups(&mut self) -> std::io::Result<()> {
        let now = wall_clock_ms();
        let unknown = KeptGroup {
            protocol_type: Some("consumer".into()),
            generation: 0,
            empty_since_ms: Some(now),
            session_timeout_ms: 0,
            protocol: None,
            leader: None,
            members: Vec::new(),
        };
        let mut records: Vec<Record> = self
            .committed
            .keys()
            .filter(|g| !self.kept_groups.contains_key(*g))
            .map(|g| group_record(g, Some(&unknown)))
            .collect();
        records.push(groups_kept_record());
        for chunk in records.chunks(REWRITE_RECORDS_PER_BATCH) {
            append_records(&mut self.log, chunk.to_vec(), now)?;
        }
        let groups: Vec<String> = self.committed.keys().cloned().collect();
        for group in groups {
            self.kept_groups.entry(group).or_insert_with(|| unknown.clone());
        }
        self.keeps_groups = true;
        Ok(())
    }

    /// One replayed record into the store.
    fn apply(&mut self, record: Record) {
        match record.key.as_ref().and_then(prefix) {
            Some(GROUP_KEY_KIND) => self.apply_group(record),
            Some(GROUPS_KEPT_KEY_KIND) => self.keeps_groups = true,
            _ => self.apply_offset(record),
        }
    }

    /// One replayed group record (or deletion) into `kept_groups`.
    fn apply_group(&mut self, record: Record) {
        let Some(key) = record
            .key
            .as_ref()
            .and_then(|k| decode_as::<GroupKey>(GROUP_KEY_KIND, k))
        else {
            tracing::warn!(offset = record.offset, "skipping an unreadable group record");
            self.skipped_records = true;
            return;
        };
        let Some(bytes) = &record.value else {
            self.kept_groups.remove(&key.group);
            return;
        };
        let Some(v) = decode_group_value(bytes) else {
            tracing::warn!(offset = record.offset, "skipping an unreadable group value");
            self.skipped_records = true;
            return;
        };
        let kept = KeptGroup {
            protocol_type: v.protocol_type,
            generation: v.generation,
            empty_since_ms: (v.empty_since >= 0).then_some(v.empty_since),
            session_timeout_ms: v.session_timeout_ms,
            protocol: v.protocol,
            leader: v.leader,
            members: v
                .members
                .into_iter()
                .map(|m| KeptMember {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscription: m.subscription,
                    assignment: m.assignment,
                })
                .collect(),
        };
        self.kept_groups.insert(key.group, kept);
    }

    /// One replayed commit (or deletion) into `committed`.
    fn apply_offset(&mut self, record: Record) {
        let Some(key) = record.key.as_ref().and_then(decode::<OffsetKey>) else {
            tracing::warn!(offset = record.offset, "skipping an unreadable committed-offset record");
            self.skipped_records = true;
            return;
        };
        let tp = (key.topic, key.partition);
        let Some(bytes) = &record.value else {
            if let Some(group) = self.committed.get_mut(&key.group) {
                group.remove(&tp);
            }
            return;
        };
        let Some(v) = decode::<OffsetValue>(bytes) else {
            // Not a deletion: an unreadable value is skipped, leaving the
            // previous commit in place.
            tracing::warn!(offset = record.offset, "skipping an unreadable committed-offset value");
            self.skipped_records = true;
            return;
        };
        let committed = CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
            expire_timestamp: (v.expire_timestamp >= 0).then_some(v.expire_timestamp),
        };
        self.committed.entry(key.group).or_default().insert(tp, committed);
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
        let records = entries
            .iter()
            .map(|(tp, committed)| offset_record(group, tp, committed.as_ref()))
            .collect();
        append_records(&mut self.log, records, now)?;
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
        self.rewrite_if_due_logged();
        Ok(())
    }

    /// The write is in the log and in memory whatever happens next: a
    /// failed rewrite only leaves the log longer.
    pub fn rewrite_if_due_logged(&mut self) {
        if let Err(e) = self.rewrite_if_due() {
            tracing::warn!(error = %e, "rewriting the committed-offsets log failed");
            self.rewritten_bytes = self.log.size_bytes();
        }
    }

    /// Rewrites the log (see the module documentation) once it has grown
    /// past both the minimum and twice what the last rewrite left.
    fn rewrite_if_due(&mut self) -> std::io::Result<()> {
        if !self.rewrite_due() {
            return Ok(());
        }
        let before = self.log.size_bytes();
        let start = self.append_live_copy()?;
        // The copy must be durable before the old records go.
        self.log.sync()?;
        self.log.delete_records_before(start)?;
        self.rewritten_bytes = self.log.size_bytes();
        tracing::info!(
            before_bytes = before,
            after_bytes = self.rewritten_bytes,
            "rewrote the committed-offsets log with its live commits"
        );
        Ok(())
    }

    /// Whether the log has grown past both the minimum and twice what the
    /// last rewrite left (and holds nothing a rewrite would lose).
    pub fn rewrite_due(&self) -> bool {
        let grown = self.log.size_bytes().saturating_sub(self.rewritten_bytes);
        !self.skipped_records && grown > self.rewrite_after_bytes_min.max(2 * self.rewritten_bytes)
    }

    /// Appends every live commit to a new segment; returns its first offset.
    fn append_live_copy(&mut self) -> std::io::Result<i64> {
        self.log.roll_unless_empty()?;
        let start = self.log.next_offset();
        let now = wall_clock_ms();
        let live: Vec<(i64, Record)> = self
            .committed
            .iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .iter()
                    .map(move |(tp, c)| (c.commit_timestamp, offset_record(group, tp, Some(c))))
            })
            .chain(
                self.kept_groups
                    .iter()
                    .map(|(group, kept)| (now, group_record(group, Some(kept)))),
            )
            .chain(self.keeps_groups.then(|| (now, groups_kept_record())))
            .collect();
        for chunk in live.chunks(REWRITE_RECORDS_PER_BATCH) {
            let newest = chunk.iter().map(|(t, _)| *t).max().unwrap_or(0);
            append_records(&mut self.log, chunk.iter().map(|(_, r)| r.clone()).collect(), newest)?;
        }
        Ok(start)
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

    /// Every group's record, as the log keeps it.
    pub fn kept_groups(&self) -> impl Iterator<Item = (&String, &KeptGroup)> {
        self.kept_groups.iter()
    }

    /// Records what to keep of `group` (`None`: forget it), durably in the
    /// log first.
    pub fn keep_group(&mut self, group: &str, kept: Option<KeptGroup>) -> std::io::Result<()> {
        append_records(&mut self.log, vec![group_record(group, kept.as_ref())], wall_clock_ms())?;
        match kept {
            Some(kept) => self.kept_groups.insert(group.to_string(), kept),
            None => self.kept_groups.remove(group),
        };
        // No rewrite here: the coordinator's lock is held, and every group
        // request would wait for its fsync. The coordinator's timer task
        // does it, outside that lock, when `rewrite_due` says so.
        Ok(())
    }

    /// Deletes `group`'s commits and its record, in one batch.
    pub fn delete_group(&mut self, group: &str) -> std::io::Result<()> {
        let mut records: Vec<Record> = self
            .committed
            .get(group)
            .into_iter()
            .flat_map(|offsets| offsets.keys().map(|tp| offset_record(group, tp, None)))
            .collect();
        if self.kept_groups.contains_key(group) {
            records.push(group_record(group, None));
        }
        if records.is_empty() {
            return Ok(());
        }
        append_records(&mut self.log, records, wall_clock_ms())?;
        self.committed.remove(group);
        self.kept_groups.remove(group);
        self.rewrite_if_due_logged();
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.log.sync()
    }

    /// Records written since the last sync.
    pub fn unflushed_messages(&self) -> u64 {
        self.log.unflushed_messages()
    }

    /// The offset after the last record written.
    pub fn next_offset(&self) -> i64 {
        self.log.next_offset()
    }

    /// What an fsync outside the store's lock needs (see
    /// [`PartitionLog::sync_handle`]).
    pub fn sync_handle(&mut self) -> std::io::Result<Option<SyncHandle>> {
        self.log.sync_handle()
    }

    /// Records that such an fsync failed: every later write fails too.
    pub fn mark_sync_failed(&mut self, end: i64) {
        self.log.mark_sync_failed(end);
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
            expire_timestamp: None,
        })
    }

    /// Values written before `expire_timestamp` existed (layout 0) still
    /// read, without one; an expiry time survives the log.
    #[test]
    fn expiry_times_survive_reopening_and_earlier_values_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        let expiring = CommittedOffset {
            expire_timestamp: Some(1_000),
            ..at(3).unwrap()
        };
        store.write("g", vec![(("t".into(), 0), Some(expiring))]).unwrap();
        let mut earlier = offset_record("g", &("t".into(), 1), None);
        let value = OffsetValue {
            offset: 4,
            leader_epoch: 0,
            metadata: None,
            commit_timestamp: 7,
            expire_timestamp: 99,
        };
        let mut bytes = BytesMut::from(&0i16.to_be_bytes()[..]);
        bytes.extend_from_slice(&encode_body(&value, 0, false));
        earlier.value = Some(bytes.freeze());
        append_records(&mut store.log, vec![earlier], 7).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(!store.skipped_records);
        let g = store.group("g").unwrap();
        assert_eq!(g[&("t".to_string(), 0)].expire_timestamp, Some(1_000));
        let read = &g[&("t".to_string(), 1)];
        assert_eq!(
            (read.offset, read.expire_timestamp),
            (4, None),
            "layout 0 has no expiry"
        );
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

    /// Commits of offsets 0..rounds to partitions 0..3 of "t" by group "g",
    /// and one commit by "h" that is then deleted.
    fn churn(store: &mut OffsetStore, rounds: i64) {
        store.write("h", vec![(("u".into(), 0), at(1))]).unwrap();
        store.write("h", vec![(("u".into(), 0), None)]).unwrap();
        for offset in 0..rounds {
            let commits = (0..3).map(|p| (("t".to_string(), p), at(offset + p as i64))).collect();
            store.write("g", commits).unwrap();
        }
    }

    fn assert_last_commits(store: &OffsetStore, rounds: i64) {
        let g = store.group("g").unwrap();
        let offsets: Vec<i64> = (0..3).map(|p| g[&("t".to_string(), p)].offset).collect();
        assert_eq!(offsets, [rounds - 1, rounds, rounds + 1]);
        assert!(store.group("h").is_none(), "a deletion stays deleted");
    }

    #[test]
    fn the_log_is_rewritten_with_its_live_commits_and_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        store.rewrite_after_bytes_min = 16 * 1024;
        churn(&mut store, 5_000);
        // 5,000 batches of three commits: about 700 KB if nothing went.
        assert!(store.log.log_start_offset() > 0);
        assert!(store.log.size_bytes() < 64 * 1024, "{} bytes", store.log.size_bytes());
        assert_eq!(store.log.segment_count(), 1);
        assert_last_commits(&store, 5_000);
        store.close().unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_last_commits(&store, 5_000);

        let mut in_memory = OffsetStore::in_memory();
        in_memory.rewrite_after_bytes_min = 16 * 1024;
        churn(&mut in_memory, 5_000);
        assert!(in_memory.log.size_bytes() < 64 * 1024);
        assert_last_commits(&in_memory, 5_000);
    }

    #[test]
    fn a_log_with_records_it_cannot_read_is_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        // A value in a layout this version does not know.
        let mut newer = offset_record("g", &("t".into(), 9), at(1).as_ref());
        newer.value = Some(Bytes::from_static(&[0x7f, 0x7f, 0xde, 0xad]));
        append_records(&mut store.log, vec![newer], 7).unwrap();
        drop(store);
        let mut store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.skipped_records);
        store.rewrite_after_bytes_min = 4 * 1024;
        churn(&mut store, 500);
        assert_eq!(store.log.log_start_offset(), 0, "nothing was rewritten away");
        assert_last_commits(&store, 500);
    }

    #[test]
    fn a_crash_before_the_old_records_go_replays_to_the_same_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        churn(&mut store, 100);
        let start = store.append_live_copy().unwrap();
        assert!(start > 0);
        drop(store); // crashed: the log start never moved
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.log.log_start_offset(), 0);
        assert_last_commits(&store, 100);
    }

    #[test]
    fn the_replay_starts_at_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        store.write("old", vec![(("t".into(), 0), at(5))]).unwrap();
        let g_at = store.log.next_offset();
        store.write("g", vec![(("t".into(), 0), at(6))]).unwrap();
        // Within one segment, so only the start offset hides the first.
        store.log.delete_records_before(g_at).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.group("old").is_none());
        assert_eq!(store.group("g").unwrap()[&("t".to_string(), 0)].offset, 6);
    }

    /// A log written before group records existed: its groups get one at
    /// the first open, as if they emptied then, with the marker after
    /// them, so the next open reads the same records and stamps nothing.
    #[test]
    fn a_log_from_before_group_records_gets_them_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PartitionLog::open(&dir.path().join(OFFSETS_DIR)).unwrap();
            append_records(
                &mut log,
                vec![offset_record("old", &("t".into(), 0), at(3).as_ref())],
                7,
            )
            .unwrap();
            log.close().unwrap();
        }
        let before = wall_clock_ms();
        let kept_at = |store: &OffsetStore| -> Vec<(String, KeptGroup)> {
            store.kept_groups().map(|(g, k)| (g.clone(), k.clone())).collect()
        };
        let store = OffsetStore::open(dir.path()).unwrap();
        let end = store.log.next_offset();
        let first = kept_at(&store);
        assert_eq!(first.len(), 1);
        let (group, kept) = &first[0];
        assert_eq!(group, "old");
        assert_eq!(kept.protocol_type.as_deref(), Some("consumer"));
        assert!(kept.empty_since_ms.unwrap() >= before);
        assert_eq!(store.group("old").unwrap()[&("t".to_string(), 0)].offset, 3);
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(kept_at(&store), first);
        assert_eq!(store.log.next_offset(), end, "nothing written at the second open");
        assert!(!store.skipped_records);
    }

    /// A group record of layout 0, from before members were kept, reads
    /// as the group it was, without members.
    #[test]
    fn a_group_record_of_layout_0_reads_without_members() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        let value = GroupValue {
            protocol_type: Some("consumer".into()),
            generation: 3,
            empty_since: -1,
            session_timeout_ms: 10_000,
            ..GroupValue::default()
        };
        let record = Record {
            key: Some(encode_as(GROUP_KEY_KIND, 0, &GroupKey { group: "old".into() })),
            value: Some(encode_as(0, 0, &value)),
            ..Record::default()
        };
        append_records(&mut store.log, vec![record], 7).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        let groups: Vec<_> = store.kept_groups().map(|(g, k)| (g.clone(), k.clone())).collect();
        let expected = KeptGroup {
            protocol_type: Some("consumer".into()),
            generation: 3,
            empty_since_ms: None,
            session_timeout_ms: 10_000,
            protocol: None,
            leader: None,
            members: Vec::new(),
        };
        assert_eq!(groups, [("old".to_string(), expected)]);
        assert!(!store.skipped_records);
    }

    /// Group records, members and all, survive a reopen and a rewrite; a
    /// deleted group's, and its commits, do not.
    #[test]
    fn group_records_survive_reopening_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = OffsetStore::open(dir.path()).unwrap();
        let member = |id: &str, instance_id: Option<&str>| KeptMember {
            id: id.into(),
            instance_id: instance_id.map(Into::into),
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            subscription: Bytes::from_static(b"subscription"),
            assignment: Bytes::from_static(b"assignment"),
        };
        let kept = KeptGroup {
            protocol_type: Some("consumer".into()),
            generation: 4,
            empty_since_ms: None,
            session_timeout_ms: 45_000,
            protocol: Some("range".into()),
            leader: Some("b".into()),
            members: vec![member("b", None), member("a", Some("static"))],
        };
        store.keep_group("g", Some(kept.clone())).unwrap();
        store.keep_group("gone", Some(kept.clone())).unwrap();
        store.write("gone", vec![(("t".into(), 0), at(1))]).unwrap();
        store.delete_group("gone").unwrap();
        assert!(store.group("gone").is_none());
        let start = store.append_live_copy().unwrap();
        store.log.delete_records_before(start).unwrap();
        let end = store.log.next_offset();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        let groups: Vec<_> = store.kept_groups().map(|(g, k)| (g.clone(), k.clone())).collect();
        assert_eq!(groups, [("g".to_string(), kept)]);
        assert!(store.group("gone").is_none());
        // Without the marker the open would record the groups anew.
        assert_eq!(store.log.next_offset(), end, "the rewrite copied the marker");
    }
}
