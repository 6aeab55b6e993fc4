//! The data directory: the cluster's identity and the topics found in it.
//!
//! With no directory (`--in-memory`) the catalog hands out memory logs and
//! remembers nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use uuid::Uuid;

use super::log::PartitionLog;
use super::{StorageError, create_dir_durably, in_parallel, sync_dir, write_atomically};

const META_PROPERTIES: &str = "meta.properties";
const PARTITION_METADATA: &str = "partition.metadata";
const TOPIC_CONFIG: &str = "topic.config";
/// Dynamic broker configs set for this broker (AlterConfigs on broker "0").
const BROKER_CONFIG: &str = "broker.config";
/// Dynamic broker configs set cluster-wide (AlterConfigs on broker "").
const CLUSTER_DEFAULT_CONFIG: &str = "cluster-default.config";

/// Which set of dynamic broker configs: Kafka keeps one per broker and one
/// cluster-wide default, the per-broker value winning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerConfigScope {
    Broker,
    ClusterDefault,
}

impl BrokerConfigScope {
    fn file_name(self) -> &'static str {
        match self {
            BrokerConfigScope::Broker => BROKER_CONFIG,
            BrokerConfigScope::ClusterDefault => CLUSTER_DEFAULT_CONFIG,
        }
    }
}

/// A topic as stored: its id and its partitions' logs, in partition order.
pub struct StoredTopic {
    pub name: String,
    pub id: Uuid,
    /// Configs set on the topic (`topic.config` in its first partition's directory).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionLog>,
}

pub struct Catalog {
    root: Option<PathBuf>,
    cluster_id: String,
}

impl Catalog {
    /// A catalog with no files.
    pub fn in_memory() -> Catalog {
        Catalog {
            root: None,
            cluster_id: new_cluster_id(),
        }
    }

    /// Opens (or initialises) `root` for node `node_id`, and loads every
    /// topic, opening partitions on up to `recovery_threads` threads.
    pub fn open(
        root: &Path,
        node_id: i32,
        recovery_threads: usize,
    ) -> Result<(Catalog, Vec<StoredTopic>), StorageError> {
        create_dir_durably(root).map_err(|e| StorageError::io(root, e))?;
        let meta_path = root.join(META_PROPERTIES);
        let cluster_id = match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                let props = parse_properties(&text);
                let stored_node = props.get("node.id").and_then(|v| v.parse::<i32>().ok());
                if stored_node != Some(node_id) {
                    return Err(StorageError::invalid(
                        &meta_path,
                        format!("stored node.id {stored_node:?} does not match --node-id {node_id}"),
                    ));
                }
                props
                    .get("cluster.id")
                    .cloned()
                    .ok_or_else(|| StorageError::invalid(&meta_path, "no cluster.id"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cluster_id = new_cluster_id();
                let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
                write_atomically(&meta_path, text.as_bytes())?;
                cluster_id
            }
            Err(e) => return Err(StorageError::io(&meta_path, e)),
        };
        let catalog = Catalog {
            root: Some(root.to_path_buf()),
            cluster_id,
        };
        catalog.remove_unfinished(root)?;
        let topics = catalog.load_topics(recovery_threads)?;
        // Names a crashed run made in the root without syncing them (and the
        // removals above) are durable from here on.
        sync_dir(root).map_err(|e| StorageError::io(root, e))?;
        Ok((catalog, topics))
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Stores a topic's configs (atomically) next to its first partition.
    pub fn write_topic_configs(&self, name: &str, configs: &BTreeMap<String, String>) -> Result<(), StorageError> {
        let Some(root) = &self.root else { return Ok(()) };
        write_properties(&root.join(format!("{name}-0")).join(TOPIC_CONFIG), configs)
    }

    /// The dynamic broker configs stored for `scope` (none in memory or when
    /// never set).
    pub fn read_broker_configs(&self, scope: BrokerConfigScope) -> Result<BTreeMap<String, String>, StorageError> {
        let Some(root) = &self.root else {
            return Ok(BTreeMap::new());
        };
        read_properties_if_present(&root.join(scope.file_name()))
    }

    /// Stores the dynamic broker configs of `scope` (atomically).
    pub fn write_broker_configs(
        &self,
        scope: BrokerConfigScope,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let Some(root) = &self.root else { return Ok(()) };
        write_properties(&root.join(scope.file_name()), configs)
    }

    /// Removes a topic's files (partition directories and everything in
    /// them), durably once it returns. Each partition's directory is
    /// renamed out of the topic's names first, the last partition first
    /// and each rename synced, then removed: a crash part way leaves
    /// partitions 0 to k whole, a topic the next start opens, where a gap
    /// in the numbers or a half-removed directory would stop it. The next
    /// start removes what is left of the renamed ones.
    pub fn delete_topic(&self, name: &str, partition_count: i32) -> Result<(), StorageError> {
        let Some(root) = &self.root else { return Ok(()) };
        let mut renamed = Vec::new();
        for index in (0..partition_count).rev() {
            let dir = root.join(format!("{name}-{index}"));
            let doomed = unfinished_name(&dir, DELETING_SUFFIX);
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => renamed.push(doomed),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(&dir, e)),
            }
            sync_dir(root).map_err(|e| StorageError::io(root, e))?;
        }
        for dir in renamed {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(())
    }

    /// Removes what a crash left of a partition directory being created or
    /// deleted (see [`Catalog::create_partitions`] and
    /// [`Catalog::delete_topic`]).
    fn remove_unfinished(&self, root: &Path) -> Result<(), StorageError> {
        for entry in std::fs::read_dir(root).map_err(|e| StorageError::io(root, e))? {
            let path = entry.map_err(|e| StorageError::io(root, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() && (name.ends_with(CREATING_SUFFIX) || name.ends_with(DELETING_SUFFIX)) {
                tracing::warn!(path = %path.display(), "removing a partition directory a crash left half created or deleted");
                std::fs::remove_dir_all(&path).map_err(|e| StorageError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Creates the partitions of a new topic.
    pub fn create_topic(&self, name: &str, id: Uuid, partition_count: i32) -> Result<Vec<PartitionLog>, StorageError> {
        self.create_partitions(name, id, 0..partition_count)
    }

    /// Creates partitions `indexes` of a topic (new, or growing).
    pub fn create_partitions(
        &self,
        name: &str,
        id: Uuid,
        indexes: std::ops::Range<i32>,
    ) -> Result<Vec<PartitionLog>, StorageError> {
        let partition_count = indexes.end - indexes.start;
        let Some(root) = &self.root else {
            return Ok((0..partition_count).map(|_| PartitionLog::in_memory()).collect());
        };
        indexes
            .map(|index| {
                // The directory takes its name with its topic id in it, so
                // that a crash never leaves a partition without one (the
                // next start would refuse it): it is made under a name that
                // is no partition's, and renamed into place.
                let dir = root.join(format!("{name}-{index}"));
                let staged = unfinished_name(&dir, CREATING_SUFFIX);
                std::fs::create_dir(&staged).map_err(|e| StorageError::io(&staged, e))?;
                let text = format!("version: 0\ntopic_id: {}\n", id.as_hyphenated());
                write_atomically(&staged.join(PARTITION_METADATA), text.as_bytes())?;
                if dir.exists() {
                    // Left by a creation that failed after its rename (its
                    // log could not be opened): the topic does not have
                    // this partition, so nothing of it is live.
                    tracing::warn!(path = %dir.display(), "replacing a partition directory a failed creation left");
                    std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
                }
                std::fs::rename(&staged, &dir).map_err(|e| StorageError::io(&dir, e))?;
                sync_dir(root).map_err(|e| StorageError::io(root, e))?;
                PartitionLog::open(&dir)
            })
            .collect()
    }

    fn load_topics(&self, recovery_threads: usize) -> Result<Vec<StoredTopic>, StorageError> {
        let Some(root) = &self.root else { return Ok(Vec::new()) };
        let mut found: BTreeMap<String, BTreeMap<i32, (Uuid, PathBuf)>> = BTreeMap::new();
        for entry in std::fs::read_dir(root).map_err(|e| StorageError::io(root, e))? {
            let entry = entry.map_err(|e| StorageError::io(root, e))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name() == super::offsets::OFFSETS_DIR {
                continue; // committed offsets, not a topic
            }
            let Some((topic, index)) = entry.file_name().to_str().and_then(split_partition_dir) else {
                tracing::warn!(path = %path.display(), "ignoring a directory that is not <topic>-<partition>");
                continue;
            };
            let id = read_topic_id(&path.join(PARTITION_METADATA))?;
            found.entry(topic).or_default().insert(index, (id, path));
        }
        // Every topic's layout is checked before any log is opened (and
        // perhaps recovered), then all partitions open together.
        let mut topics = Vec::with_capacity(found.len());
        let mut dirs = Vec::new();
        let mut partition_counts = Vec::with_capacity(found.len());
        for (name, partitions) in found {
            let (first_id, first_path) = partitions.values().next().cloned().expect("at least one partition");
            partition_counts.push(partitions.len());
            for (expected, (index, (id, path))) in partitions.into_iter().enumerate() {
                if index != expected as i32 {
                    return Err(StorageError::invalid(
                        &path,
                        format!("topic {name} has no partition {expected}"),
                    ));
                }
                if id != first_id {
                    return Err(StorageError::invalid(
                        &path,
                        format!("topic id {id} differs from {first_id} in {}", first_path.display()),
                    ));
                }
                dirs.push(path);
            }
            let configs = read_properties_if_present(&root.join(format!("{name}-0")).join(TOPIC_CONFIG))?;
            topics.push(StoredTopic {
                name,
                id: first_id,
                configs,
                partitions: Vec::new(),
            });
        }
        let mut logs = in_parallel(&dirs, recovery_threads, |dir| PartitionLog::open(dir)).into_iter();
        for (topic, count) in topics.iter_mut().zip(partition_counts) {
            topic.partitions = logs.by_ref().take(count).collect::<Result<_, _>>()?;
        }
        Ok(topics)
    }
}

/// Kafka's cluster ids are 22 characters: a random UUID in URL-safe base64.
fn new_cluster_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes())
}

/// Suffixes of partition directories being created or deleted: no
/// partition's name ends so (they end in its number), as Kafka marks the
/// directories it deletes with `-delete`.
const CREATING_SUFFIX: &str = "-creating";
const DELETING_SUFFIX: &str = "-delete";

/// `<dir>.<unique><suffix>`, beside `dir`, with `dir`'s name cut short as
/// Kafka cuts its `-delete` names: a topic name takes up to 249 of the 255
/// bytes a file name may have. Topic names are ASCII.
fn unfinished_name(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let kept = name.get(..name.len().min(200)).unwrap_or(name);
    dir.with_file_name(format!("{kept}.{}{suffix}", Uuid::new_v4().simple()))
}

fn split_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index: i32 = index.parse().ok()?;
    (!topic.is_empty() && index >= 0).then(|| (topic.to_string(), index))
}

fn read_topic_id(path: &Path) -> Result<Uuid, StorageError> {
    let text = std::fs::read_to_string(path).map_err(|e| StorageError::io(path, e))?;
    let props = parse_properties(&text.replace(": ", "="));
    props
        .get("topic_id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StorageError::invalid(path, "no valid topic_id"))
}

/// Writes `name=value` lines, in name order, atomically.
fn write_properties(path: &Path, configs: &BTreeMap<String, String>) -> Result<(), StorageError> {
    let text: String = configs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_atomically(path, text.as_bytes())
}

/// A `name=value` file, or nothing when there is no such file.
fn read_properties_if_present(path: &Path) -> Result<BTreeMap<String, String>, StorageError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_properties(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_topics_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, topics) = Catalog::open(dir.path(), 0, 2).unwrap();
        assert!(topics.is_empty());
        assert_eq!(catalog.cluster_id().len(), 22);
        let id = Uuid::new_v4();
        catalog.create_topic("orders-eu", id, 3).unwrap();
        let cluster_id = catalog.cluster_id().to_string();
        drop(catalog);

        let (catalog, topics) = Catalog::open(dir.path(), 0, 2).unwrap();
        assert_eq!(catalog.cluster_id(), cluster_id);
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].name, "orders-eu");
        assert_eq!(topics[0].id, id);
        assert_eq!(topics[0].partitions.len(), 3);
    }

    #[test]
    fn partitions_opened_together_come_back_in_their_places() {
        use crate::protocol::record_batch::BatchHeader;
        use crate::protocol::record_batch::tests::sample_batch;
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _) = Catalog::open(dir.path(), 0, 2).unwrap();
        // Partition p of topic t holds 10 * t + p + 1 records: every log
        // has a length of its own.
        for (t, name) in ["alpha", "beta"].into_iter().enumerate() {
            let logs = catalog.create_topic(name, Uuid::new_v4(), 4).unwrap();
            for (p, mut log) in logs.into_iter().enumerate() {
                let batch = sample_batch(10 * t + p + 1);
                log.append(&batch, &BatchHeader::parse(&batch).unwrap(), 0).unwrap();
                // Dropped unclosed: the next open recovers it, as after a crash.
            }
        }
        drop(catalog);
        for threads in [1, 3] {
            let (_, topics) = Catalog::open(dir.path(), 0, threads).unwrap();
            let lengths: Vec<Vec<i64>> = topics
                .iter()
                .map(|topic| topic.partitions.iter().map(|log| log.next_offset()).collect())
                .collect();
            assert_eq!(lengths, [[1, 2, 3, 4], [11, 12, 13, 14]], "{threads} threads");
            assert!(
                topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .all(|log| !log.recovery().clean)
            );
        }
    }

    #[test]
    fn a_different_node_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Catalog::open(dir.path(), 0, 2).unwrap());
        assert!(Catalog::open(dir.path(), 1, 2).is_err());
    }
}
