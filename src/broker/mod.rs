//! The broker: typed requests in, typed responses out, over the storage.
//! No sockets here; `server` feeds it.

mod api_versions;
pub mod broker_config;
mod configs;
pub mod coordinator;
mod delete_records;
mod fetch;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;
mod shared_fsync;
pub mod topic;
mod topic_admin;
pub mod topic_config;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use uuid::Uuid;

pub use api_versions::unsupported_version_response as api_versions_unsupported;
pub use fetch::RESPONSE_COPY_BYTES_MAX;
pub use topic::{Partition, Topic, validate_topic_name};

use crate::config::BrokerConfig;
use crate::protocol::messages::{Request, Response};
use crate::protocol::{ErrorCode, RequestHeader};
use crate::storage::offsets::OffsetStore;
use crate::storage::producer_ids::ProducerIdAllocator;
use crate::storage::{BrokerConfigScope, Catalog, StorageError};

/// The leader epoch of every partition. One node never changes leader, so the
/// epoch never moves; Metadata reports it and batches are stamped with it.
pub const LEADER_EPOCH: i32 = 0;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Reply {
    Respond(Response),
    /// No response is sent (acks=0 produce).
    Nothing,
    /// Close the connection, for the logged reason.
    Close(String),
}

/// The host and port clients are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub host: String,
    pub port: u16,
}

pub struct Broker {
    config: BrokerConfig,
    advertised: AdvertisedListener,
    catalog: Catalog,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Woken after every append, so waiting fetches (long polls) re-check
    /// without polling. Idle waiters cost nothing.
    appended: tokio::sync::Notify,
    /// Flipped once, when the broker begins to shut down.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Producer ids handed out by InitProducerId, and the epoch each was
    /// last given (for v3+ epoch bumps).
    producers: Mutex<IssuedProducers>,
    /// Consumer groups and their members.
    pub(crate) coordinator: coordinator::Coordinator,
    /// Committed offsets, durable in their own log.
    /// Shared with the coordinator, which keeps groups' records there.
    offsets: Arc<Mutex<OffsetStore>>,
    /// Under `--fsync always`, commits and deletions of committed offsets
    /// wait here for their write to be fsynced before they are answered.
    offsets_durable: shared_fsync::SharedFsync,
    /// Dynamic broker configs (AlterConfigs on the broker), over the flags.
    dynamic: RwLock<broker_config::DynamicConfigs>,
    /// Record bytes sent straight from segment files (sendfile), since start.
    file_bytes_sent: std::sync::atomic::AtomicU64,
}

pub(crate) struct IssuedProducers {
    ids: ProducerIdAllocator,
    /// The epoch last handed to each id, and when (wall clock, ms). Kept
    /// for `producer.id.expiration.ms`, like the producers' state in the
    /// partitions: after that an id that wrote nothing is not one the
    /// broker can resume, and asking with it gets a new id.
    epochs: HashMap<i64, IssuedEpoch>,
}

#[derive(Debug, Clone, Copy)]
struct IssuedEpoch {
    epoch: i16,
    issued_ms: i64,
}

impl IssuedProducers {
    /// The epoch last issued to `producer_id`, while remembered.
    pub(crate) fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.epochs.get(&producer_id).map(|issued| issued.epoch)
    }

    /// Records that `producer_id` was handed `epoch` now.
    pub(crate) fn remember(&mut self, producer_id: i64, epoch: i16) {
        let issued_ms = wall_clock_ms();
        self.epochs.insert(producer_id, IssuedEpoch { epoch, issued_ms });
    }

    pub(crate) fn allocate(&mut self) -> Result<i64, StorageError> {
        self.ids.allocate()
    }

    /// Forgets the epochs issued before `cutoff_ms`, as the partitions
    /// forget a producer that last wrote before it.
    fn forget_issued_before(&mut self, cutoff_ms: i64) {
        self.epochs.retain(|_, issued| issued.issued_ms > cutoff_ms);
    }
}

/// Why a topic administration request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("topic {0} does not exist")]
    Unknown(String),
    #[error("{0}")]
    Partitions(String),
    #[error(transparent)]
    Storage(StorageError),
}

impl AdminError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            AdminError::InvalidName(_) => ErrorCode::InvalidTopicException,
            AdminError::Exists(_) => ErrorCode::TopicAlreadyExists,
            AdminError::Unknown(_) => ErrorCode::UnknownTopicOrPartition,
            AdminError::Partitions(_) => ErrorCode::InvalidPartitions,
            AdminError::Storage(_) => ErrorCode::KafkaStorageError,
        }
    }
}

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CreateTopicError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            CreateTopicError::InvalidName(_) => ErrorCode::InvalidTopicException,
            CreateTopicError::Storage(_) => ErrorCode::KafkaStorageError,
        }
    }
}

impl Broker {
    /// Opens the data directory (or memory) and loads every stored topic.
    pub fn open(config: BrokerConfig, advertised: AdvertisedListener) -> Result<Broker, StorageError> {
        let (catalog, stored) = match &config.data_dir {
            Some(dir) => Catalog::open(dir, config.node_id, config.recovery_threads)?,
            None => (Catalog::in_memory(), Vec::new()),
        };
        let topics = stored
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .enumerate()
                    .map(|(i, log)| Arc::new(Partition::new(i as i32, log)))
                    .collect();
                (
                    t.name.clone(),
                    Arc::new(Topic {
                        name: t.name,
                        id: t.id,
                        configs: RwLock::new(t.configs),
                        partitions,
                    }),
                )
            })
            .collect::<BTreeMap<_, _>>();
        tracing::info!(
            cluster_id = catalog.cluster_id(),
            topics = topics.len(),
            "storage opened"
        );
        // One past the largest producer id in any log: a floor for new ids
        // even if the allocator's file were lost.
        let floor = topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|p| p.log().producers().max_producer_id())
            })
            .max()
            .map_or(0, |id: i64| id.saturating_add(1));
        let ids = match catalog.root() {
            Some(root) => ProducerIdAllocator::open(root, floor)?,
            None => ProducerIdAllocator::in_memory(),
        };
        let offsets = match catalog.root() {
            Some(root) => OffsetStore::open(root)?,
            None => OffsetStore::in_memory(),
        };
        let offsets_durable = shared_fsync::SharedFsync::new(offsets.next_offset());
        let offsets = Arc::new(Mutex::new(offsets));
        let coordinator = coordinator::Coordinator::new(config.groups.clone(), offsets.clone());
        let dynamic = broker_config::DynamicConfigs {
            broker: catalog.read_broker_configs(BrokerConfigScope::Broker)?,
            cluster_default: catalog.read_broker_configs(BrokerConfigScope::ClusterDefault)?,
        };
        let broker = Broker {
            config,
            advertised,
            catalog,
            topics: RwLock::new(topics),
            appended: tokio::sync::Notify::new(),
            shutdown: tokio::sync::watch::Sender::new(false),
            producers: Mutex::new(IssuedProducers {
                ids,
                epochs: HashMap::new(),
            }),
            coordinator,
            offsets,
            offsets_durable,
            dynamic: RwLock::new(dynamic),
            file_bytes_sent: std::sync::atomic::AtomicU64::new(0),
        };
        for topic in broker.topics() {
            broker.apply_segment_bytes(&topic);
        }
        Ok(broker)
    }

    /// The dynamic broker configs in force (a copy: they are small).
    pub fn dynamic_configs(&self) -> broker_config::DynamicConfigs {
        self.dynamic.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The value of a topic config in force for `topic`: its own, else the
    /// broker's default for it (dynamic, else the flag).
    pub fn topic_config_value(&self, topic: &Topic, def: &topic_config::ConfigDef) -> String {
        topic.config(def.name).unwrap_or_else(|| {
            self.dynamic
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .topic_default(def, &self.config)
                .value
        })
    }

    /// A numeric topic config in force for `topic` (`None` only if a stored
    /// value does not parse, which the checks on every write prevent).
    pub fn topic_number(&self, topic: &Topic, name: &str) -> Option<i64> {
        let def = topic_config::find(name)?;
        self.topic_config_value(topic, def).trim().parse().ok()
    }

    /// Gives every partition of `topic` the segment size and age in force.
    fn apply_segment_bytes(&self, topic: &Topic) {
        let bytes = self
            .topic_number(topic, "segment.bytes")
            .map_or(self.config.segment_bytes, |b| b.max(0) as u64);
        let ms = self.topic_number(topic, "segment.ms").unwrap_or(self.config.segment_ms);
        topic.set_segment_limits(bytes, ms);
    }

    /// Replaces the dynamic broker configs of `scope`, on disk first, and
    /// applies them to every topic that does not set its own.
    pub fn set_broker_configs(
        &self,
        scope: BrokerConfigScope,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        self.catalog.write_broker_configs(scope, &configs)?;
        *self
            .dynamic
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .scope_mut(scope) = configs;
        for topic in self.topics() {
            self.apply_segment_bytes(&topic);
        }
        tracing::info!(?scope, "dynamic broker configs changed");
        Ok(())
    }

    /// Producer ids whose issued epoch the broker still remembers (for
    /// tests).
    pub fn issued_producer_ids_held(&self) -> usize {
        self.producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .epochs
            .len()
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        self.catalog.cluster_id()
    }

    pub fn advertised(&self) -> &AdvertisedListener {
        &self.advertised
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.values().find(|t| t.id == id).cloned()
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Returns the topic, creating it with `partition_count` partitions if it
    /// does not exist. Two callers racing to create one name get one topic.
    pub fn get_or_create_topic(&self, name: &str, partition_count: i32) -> Result<Arc<Topic>, CreateTopicError> {
        validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        let id = Uuid::new_v4();
        let logs = self.catalog.create_topic(name, id, partition_count)?;
        let partitions = logs
            .into_iter()
            .enumerate()
            .map(|(i, log)| Arc::new(Partition::new(i as i32, log)))
            .collect();
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            configs: RwLock::default(),
            partitions,
        });
        self.apply_segment_bytes(&topic);
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, topic_id = %id, partitions = partition_count, "created topic");
        Ok(topic)
    }

    /// Creates a topic that must not exist yet (CreateTopics).
    pub fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, AdminError> {
        validate_topic_name(name).map_err(AdminError::InvalidName)?;
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        if topics.contains_key(name) {
            return Err(AdminError::Exists(name.to_string()));
        }
        // Kafka refuses names that differ from an existing one only by '.'
        // against '_': they collide in metric names.
        let normal = name.replace('.', "_");
        if let Some(other) = topics.keys().find(|t| t.replace('.', "_") == normal) {
            return Err(AdminError::InvalidName(format!(
                "topic {name} collides with existing topic {other}"
            )));
        }
        if validate_only {
            return Ok(None);
        }
        let id = Uuid::new_v4();
        let logs = self
            .catalog
            .create_topic(name, id, partition_count)
            .map_err(AdminError::Storage)?;
        let partitions = logs
            .into_iter()
            .enumerate()
            .map(|(i, log)| Arc::new(Partition::new(i as i32, log)))
            .collect();
        self.catalog
            .write_topic_configs(name, &configs)
            .map_err(AdminError::Storage)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            configs: RwLock::new(configs),
            partitions,
        });
        self.apply_segment_bytes(&topic);
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, topic_id = %id, partitions = partition_count, "created topic");
        Ok(Some(topic))
    }

    /// Replaces a topic's configs (AlterConfigs, IncrementalAlterConfigs),
    /// on disk first.
    pub fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), AdminError> {
        let topic = self.topic(name).ok_or_else(|| AdminError::Unknown(name.to_string()))?;
        self.catalog
            .write_topic_configs(name, &configs)
            .map_err(AdminError::Storage)?;
        *topic.configs.write().unwrap_or_else(PoisonError::into_inner) = configs;
        self.apply_segment_bytes(&topic);
        Ok(())
    }

    /// Deletes a topic and its files (DeleteTopics).
    pub fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.remove(name) else {
            return Err(AdminError::Unknown(name.to_string()));
        };
        // Clients still holding the topic write to unlinked files, which
        // vanish when the last handle goes, as Kafka's deleted logs do.
        for partition in &topic.partitions {
            partition.log().mark_deleted();
        }
        self.catalog
            .delete_topic(name, topic.partitions.len() as i32)
            .map_err(AdminError::Storage)?;
        drop(topics);
        tracing::info!(topic = name, topic_id = %topic.id, "deleted topic");
        // Groups forget the topic too, as Kafka's coordinator does when
        // partitions are deleted; a topic created later under the name
        // starts without old positions.
        match self.offsets().delete_topic(name) {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(topic = name, deleted, "deleted the topic's committed offsets"),
            Err(e) => tracing::error!(topic = name, error = %e, "deleting the topic's committed offsets failed"),
        }
        Ok(())
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub fn add_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), AdminError> {
        let mut topics = self.topics.write().unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get(name).cloned() else {
            return Err(AdminError::Unknown(name.to_string()));
        };
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(AdminError::Partitions(format!(
                "topic {name} has {current} partitions; the new count must be larger, not {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let logs = self
            .catalog
            .create_partitions(name, topic.id, current..count)
            .map_err(AdminError::Storage)?;
        let mut partitions = topic.partitions.clone();
        partitions.extend(
            logs.into_iter()
                .zip(current..)
                .map(|(log, i)| Arc::new(Partition::new(i, log))),
        );
        topics.insert(
            name.to_string(),
            Arc::new(Topic {
                name: name.to_string(),
                id: topic.id,
                configs: RwLock::new(topic.configs.read().unwrap_or_else(PoisonError::into_inner).clone()),
                partitions,
            }),
        );
        if let Some(topic) = topics.get(name) {
            self.apply_segment_bytes(topic);
        }
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Starts a graceful shutdown: listeners stop, waits end early.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Record bytes sent straight from segment files (large Fetch answers,
    /// with sendfile) since the broker started.
    pub fn file_bytes_sent(&self) -> u64 {
        self.file_bytes_sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_file_bytes_sent(&self, bytes: usize) {
        self.file_bytes_sent
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// A receiver that sees `true` once shutdown has begun.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn stopped(signal: &mut tokio::sync::watch::Receiver<bool>) {
        // The guard `wait_for` returns is dropped here, inside this function,
        // so callers' futures stay Send.
        let _ = signal.wait_for(|stop| *stop).await;
    }

    /// The committed-offsets store (held only for synchronous work). When
    /// both are needed, the coordinator's lock comes first and this one
    /// inside it (expiry, DeleteGroups, OffsetDelete); never the other way
    /// round.
    pub(crate) fn offsets(&self) -> std::sync::MutexGuard<'_, OffsetStore> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The committed-offsets log's end, when the flush policy wants what
    /// was just written to it fsynced before the write is answered: always
    /// under `--fsync always`, and once `--flush-messages` records are
    /// unsynced. Kafka's flush configs cover `__consumer_offsets` as they
    /// cover every topic.
    pub(crate) fn offsets_sync_due(&self, store: &OffsetStore) -> Option<i64> {
        let due = self.config.fsync_always
            || self
                .config
                .flush_messages
                .is_some_and(|n| store.unflushed_messages() >= n);
        due.then(|| store.next_offset())
    }

    /// How many fsyncs of the committed-offsets log writes waiting for
    /// durability (and `--flush-ms`) have caused.
    pub fn offsets_durable_syncs(&self) -> u64 {
        self.offsets_durable.syncs()
    }

    /// Waits until the committed-offsets log is fsynced up to `end`, as a
    /// partition's producers wait, sharing fsyncs. Call it without the
    /// store's lock.
    pub(crate) async fn make_offsets_durable(&self, end: i64) -> std::io::Result<()> {
        self.offsets_durable
            .wait_for(
                end,
                || self.offsets().sync_handle(),
                |end| self.offsets().mark_sync_failed(end),
            )
            .await
    }

    /// Runs the group coordinator's timers (session timeouts, rebalance
    /// deadlines) until shutdown. Sleeps until the next deadline; idle
    /// groups cost nothing. Each run also rewrites the committed-offsets
    /// log if group records have grown it enough, under the store's lock
    /// only, as a commit's write would.
    pub async fn run_group_timers(&self) {
        let mut shutdown = self.shutdown_signal();
        loop {
            let next = self.coordinator.tick(tokio::time::Instant::now());
            self.offsets().rewrite_if_due_logged();
            let wake = next.unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.coordinator.timers.notified() => {}
                _ = Broker::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Deletes old segments per retention.ms / retention.bytes (the topic's,
    /// or the broker's defaults) every `retention_check_interval`, until
    /// shutdown.
    pub async fn run_retention(&self) {
        self.every(self.config.retention_check_interval, || async {
            self.apply_retention(wall_clock_ms())
        })
        .await;
    }

    fn apply_retention(&self, now: i64) {
        for topic in self.topics() {
            let retention_ms = self
                .topic_number(&topic, "retention.ms")
                .unwrap_or(self.config.retention_ms);
            let retention_bytes = self
                .topic_number(&topic, "retention.bytes")
                .unwrap_or(self.config.retention_bytes);
            for partition in &topic.partitions {
                match partition.log().apply_retention(now, retention_ms, retention_bytes) {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(topic = %topic.name, partition = partition.index, deleted, "retention deleted segments")
                    }
                    Err(e) => {
                        tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "retention failed")
                    }
                }
            }
        }
    }

    /// Deletes the committed offsets of groups that have had no members and
    /// no commit for `offsets.retention.minutes`, every
    /// `offsets.retention.check.interval.ms`, until shutdown. As in Kafka
    /// (KIP-211) the time counts from when the group became empty (kept
    /// across restarts), and a later commit counts too. A group nobody has
    /// joined loses each commit as it ages.
    pub async fn run_offset_expiry(&self) {
        self.every(self.config.offsets_retention_check_interval, || async {
            self.expire_offsets(wall_clock_ms())
        })
        .await;
    }

    /// Runs `tick` every `interval` until shutdown.
    async fn every<F: std::future::Future<Output = ()>>(
        &self,
        interval: std::time::Duration,
        mut tick: impl FnMut() -> F,
    ) {
        let mut shutdown = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = Broker::stopped(&mut shutdown) => return,
            }
            tick().await;
        }
    }

    /// One run of offset expiry, as at wall-clock time `now_ms`, then of
    /// the removal of empty groups with nothing committed; public so that
    /// tests can choose the time.
    pub fn expire_offsets(&self, now_ms: i64) {
        let groups: Vec<String> = self.offsets().groups().cloned().collect();
        for group in groups {
            // Under the coordinator's lock: no member joins, and no group
            // empties, between the check and the deletion.
            self.coordinator.with_membership(&group, |membership| {
                self.expire_group_offsets(&group, membership, now_ms)
            });
        }
        // As Kafka's cleanupGroupMetadata: an Empty group with nothing
        // committed is gone (Dead), however recently it emptied.
        let removed = self.coordinator.remove_idle_groups(tokio::time::Instant::now());
        if removed > 0 {
            tracing::info!(groups = removed, "removed empty groups with no committed offsets");
        }
    }

    /// Deletes `group`'s commits that are due at `now_ms`, given its
    /// membership. The caller holds the coordinator's lock.
    fn expire_group_offsets(&self, group: &str, membership: coordinator::Membership, now_ms: i64) {
        use coordinator::Membership;
        let retention_ms = self.config.offsets_retention_ms;
        // Which commits may go: those of topics no member subscribes to,
        // (in an empty group) all of them, from when it emptied, or
        // (outside any group) each on its own.
        enum Expiring {
            Unsubscribed(std::collections::BTreeSet<String>),
            AllSinceEmpty(i64),
            EachOnItsOwn,
        }
        let mut offsets = self.offsets();
        let expiring = match membership {
            Membership::Members => return,
            Membership::Subscribed(topics) => Expiring::Unsubscribed(topics),
            Membership::EmptySince(since) => Expiring::AllSinceEmpty(since),
            // Committed by consumers outside any group (nobody has joined
            // it, before this start or since): Kafka's standalone group,
            // whose commits go one by one as they age.
            Membership::Unknown => Expiring::EachOnItsOwn,
        };
        let Some(committed) = offsets.group(group) else {
            return;
        };
        // As Kafka's GroupMetadata.removeExpiredOffsets: in an empty group,
        // commits without an expiry time of their own go together, once the
        // group has been empty, and without a commit, for the retention
        // time (KIP-211). In a consumer group with members, each commit of
        // a topic no member subscribes to goes once it is that old, and so
        // does each commit of a standalone group. Either way a commit with
        // its own expiry time (OffsetCommit v2-v4's retention_time_ms) goes
        // at that time.
        let newest_commit = committed.values().map(|c| c.commit_timestamp).max().unwrap_or(i64::MIN);
        let due = |c: &crate::storage::offsets::CommittedOffset, counted_from: i64| {
            c.expire_timestamp
                .map_or(now_ms.saturating_sub(counted_from) >= retention_ms, |at| now_ms >= at)
        };
        let expired: Vec<_> = committed
            .iter()
            .filter(|(tp, c)| match &expiring {
                Expiring::Unsubscribed(topics) => !topics.contains(&tp.0) && due(c, c.commit_timestamp),
                Expiring::AllSinceEmpty(empty_since) => due(c, (*empty_since).max(newest_commit)),
                Expiring::EachOnItsOwn => due(c, c.commit_timestamp),
            })
            .map(|(tp, _)| (tp.clone(), None))
            .collect();
        if expired.is_empty() {
            return;
        }
        let partitions = expired.len();
        match offsets.write(group, expired) {
            Ok(()) => tracing::info!(%group, partitions, "committed offsets expired"),
            Err(e) => tracing::error!(%group, error = %e, "deleting expired committed offsets failed"),
        }
    }

    /// Forgets idle idempotent producers in every partition, and the epochs
    /// InitProducerId issued, every `producer.id.expiration.check.interval.ms`,
    /// until shutdown.
    pub async fn run_producer_expiry(&self) {
        self.every(self.config.producer_id_expiration_check_interval, || async {
            self.expire_producers(wall_clock_ms())
        })
        .await;
    }

    /// One run of that expiry, as at wall-clock time `now` (ms); public so
    /// that tests can choose the time.
    pub fn expire_producers(&self, now: i64) {
        let expiration_ms = self.config.producer_id_expiration_ms;
        self.producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget_issued_before(now.saturating_sub(expiration_ms));
        for topic in self.topics() {
            for partition in &topic.partitions {
                let expired = partition
                    .log()
                    .expire_producers(now, self.config.producer_id_expiration_ms);
                if expired > 0 {
                    tracing::debug!(topic = %topic.name, partition = partition.index, expired, "forgot idle producers");
                }
            }
        }
    }

    /// Fsyncs partitions with unsynced records every `flush_ms` (Kafka's
    /// `log.flush.interval.ms`), until shutdown. Returns at once if unset.
    pub async fn run_flusher(&self) {
        let Some(interval) = self.config.flush_ms else { return };
        self.every(std::time::Duration::from_millis(interval), || self.flush_unflushed())
            .await;
    }

    /// Fsyncs, as group commit does (outside the log's lock), each
    /// partition with records appended since its last sync, and the
    /// committed-offsets log.
    async fn flush_unflushed(&self) {
        for topic in self.topics() {
            for partition in &topic.partitions {
                let end = {
                    let log = partition.log();
                    if log.unflushed_messages() == 0 {
                        continue;
                    }
                    log.next_offset()
                };
                if let Err(e) = partition.make_durable(end).await {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "fsync failed");
                }
            }
        }
        let offsets_end = {
            let store = self.offsets();
            (store.unflushed_messages() > 0).then(|| store.next_offset())
        };
        if let Some(end) = offsets_end
            && let Err(e) = self.make_offsets_durable(end).await
        {
            tracing::error!(error = %e, "fsync of the committed-offsets log failed");
        }
    }

    /// Answers one request from `peer`; see [`Reply`].
    pub async fn handle(&self, header: &RequestHeader, peer: std::net::SocketAddr, request: Request) -> Reply {
        let version = header.api_version;
        let client_id = header.client_id.as_deref().unwrap_or("");
        let response = match request {
            Request::ApiVersions(req) => Response::ApiVersions(api_versions::handle(version, &req)),
            Request::Metadata(req) => Response::Metadata(metadata::handle(self, version, &req)),
            Request::Produce(req) => match produce::handle(self, version, &req).await {
                produce::ProduceOutcome::Respond(response) => Response::Produce(response),
                produce::ProduceOutcome::Silent => return Reply::Nothing,
                produce::ProduceOutcome::Close(reason) => return Reply::Close(reason),
            },
            Request::Fetch(req) => Response::Fetch(fetch::handle(self, version, &req).await),
            Request::InitProducerId(req) => Response::InitProducerId(init_producer_id::handle(self, version, &req)),
            Request::ListOffsets(req) => Response::ListOffsets(list_offsets::handle(self, version, &req)),
            Request::OffsetForLeaderEpoch(req) => {
                Response::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(self, version, &req))
            }
            Request::FindCoordinator(req) => Response::FindCoordinator(groups::find_coordinator(self, version, &req)),
            Request::JoinGroup(req) => {
                let host = format!("/{}", peer.ip());
                Response::JoinGroup(groups::join_group(self, version, client_id, &host, &req).await)
            }
            Request::SyncGroup(req) => Response::SyncGroup(groups::sync_group(self, &req).await),
            Request::Heartbeat(req) => Response::Heartbeat(groups::heartbeat(self, &req)),
            Request::LeaveGroup(req) => Response::LeaveGroup(groups::leave_group(self, version, &req)),
            Request::OffsetCommit(req) => Response::OffsetCommit(groups::offset_commit(self, &req).await),
            Request::OffsetFetch(req) => Response::OffsetFetch(groups::offset_fetch(self, version, &req)),
            Request::ListGroups(req) => Response::ListGroups(groups::list_groups(self, &req)),
            Request::DescribeGroups(req) => Response::DescribeGroups(groups::describe_groups(self, &req)),
            Request::DeleteGroups(req) => Response::DeleteGroups(groups::delete_groups(self, &req).await),
            Request::OffsetDelete(req) => Response::OffsetDelete(groups::offset_delete(self, &req).await),
            Request::CreateTopics(req) => Response::CreateTopics(topic_admin::create_topics(self, version, &req)),
            Request::DeleteTopics(req) => Response::DeleteTopics(topic_admin::delete_topics(self, version, &req).await),
            Request::CreatePartitions(req) => Response::CreatePartitions(topic_admin::create_partitions(self, &req)),
            Request::DescribeCluster(req) => Response::DescribeCluster(topic_admin::describe_cluster(self, &req)),
            Request::DeleteRecords(req) => Response::DeleteRecords(delete_records::handle(self, &req)),
            Request::DescribeTopicPartitions(req) => {
                Response::DescribeTopicPartitions(topic_admin::describe_topic_partitions(self, &req))
            }
            Request::DescribeConfigs(req) => Response::DescribeConfigs(configs::describe_configs(self, version, &req)),
            Request::AlterConfigs(req) => Response::AlterConfigs(configs::alter_configs(self, &req)),
            Request::IncrementalAlterConfigs(req) => {
                Response::IncrementalAlterConfigs(configs::incremental_alter_configs(self, &req))
            }
        };
        Reply::Respond(response)
    }

    /// Flushes every log to disk and closes it cleanly, so the next start
    /// need not recover it (on shutdown).
    pub fn sync_all(&self) {
        if let Err(e) = self.offsets().close() {
            tracing::error!(error = %e, "closing the committed offsets' log failed");
        }
        let topics = self.topics();
        let partitions: Vec<(&Topic, &Partition)> = topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (&**topic, &**p)))
            .collect();
        crate::storage::in_parallel(&partitions, self.config.recovery_threads, |(topic, partition)| {
            if let Err(e) = partition.log().close() {
                tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "closing the log failed");
            }
        });
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
