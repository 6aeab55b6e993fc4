//! The broker: typed requests in, typed responses out, over the storage.
//! No sockets here; `server` feeds it.

mod api_versions;
mod fetch;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;
pub mod topic;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

pub use api_versions::unsupported_version_response as api_versions_unsupported;
pub use topic::{Partition, Topic, validate_topic_name};

use crate::config::BrokerConfig;
use crate::protocol::messages::{Request, Response};
use crate::protocol::{ErrorCode, RequestHeader};
use crate::storage::{Catalog, StorageError};

/// The leader epoch of every partition. One node never changes leader, so the
/// epoch never moves; Metadata reports it and batches are stamped with it.
pub const LEADER_EPOCH: i32 = 0;

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
            Some(dir) => Catalog::open(dir, config.node_id)?,
            None => (Catalog::in_memory(), Vec::new()),
        };
        let topics = stored
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .enumerate()
                    .map(|(i, log)| Partition::new(i as i32, log))
                    .collect();
                (
                    t.name.clone(),
                    Arc::new(Topic {
                        name: t.name,
                        id: t.id,
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
        Ok(Broker {
            config,
            advertised,
            catalog,
            topics: RwLock::new(topics),
            appended: tokio::sync::Notify::new(),
            shutdown: tokio::sync::watch::Sender::new(false),
        })
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
            .map(|(i, log)| Partition::new(i as i32, log))
            .collect();
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions,
        });
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, topic_id = %id, partitions = partition_count, "created topic");
        Ok(topic)
    }

    /// Starts a graceful shutdown: listeners stop, waits end early.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
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

    /// Answers one request; `None` means no response is sent (acks=0 produce).
    pub async fn handle(&self, header: &RequestHeader, request: Request) -> Option<Response> {
        let version = header.api_version;
        match request {
            Request::ApiVersions(req) => Some(Response::ApiVersions(api_versions::handle(version, &req))),
            Request::Metadata(req) => Some(Response::Metadata(metadata::handle(self, version, &req))),
            Request::Produce(req) => produce::handle(self, version, &req).map(Response::Produce),
            Request::Fetch(req) => Some(Response::Fetch(fetch::handle(self, version, &req).await)),
            Request::ListOffsets(req) => Some(Response::ListOffsets(list_offsets::handle(self, version, &req))),
            Request::OffsetForLeaderEpoch(req) => Some(Response::OffsetForLeaderEpoch(
                offset_for_leader_epoch::handle(self, version, &req),
            )),
        }
    }

    /// Flushes every log to disk (on shutdown).
    pub fn sync_all(&self) {
        for topic in self.topics() {
            for partition in &topic.partitions {
                if let Err(e) = partition.log().sync() {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "fsync failed");
                }
            }
        }
    }
}
