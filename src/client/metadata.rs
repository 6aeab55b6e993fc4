//! What a client knows of the cluster: brokers, topics and partition
//! leaders, learned from Metadata, and one connection per broker.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::{BrokerConnection, ClientError};
use crate::protocol::ErrorCode;
use crate::protocol::messages::metadata::{MetadataRequest, MetadataRequestTopic};
use crate::protocol::messages::{Request, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    /// Leader node id of each partition, by index.
    pub leaders: Vec<i32>,
}

pub struct Cluster {
    bootstrap_servers: String,
    client_id: String,
    timeout: Duration,
    bootstrap: BrokerConnection,
    brokers: HashMap<i32, String>,
    connections: HashMap<i32, BrokerConnection>,
    topics: HashMap<String, TopicInfo>,
    /// The error Metadata last gave for a topic it could not describe.
    topic_errors: HashMap<String, ErrorCode>,
}

impl Cluster {
    /// Connects to the first bootstrap server (comma-separated) that answers.
    pub async fn connect(bootstrap: &str, client_id: &str, timeout: Duration) -> Result<Cluster, ClientError> {
        let mut errors = Vec::new();
        for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match BrokerConnection::connect(server, client_id, timeout).await {
                Ok(connection) => {
                    return Ok(Cluster {
                        bootstrap_servers: bootstrap.to_string(),
                        client_id: client_id.to_string(),
                        timeout,
                        bootstrap: connection,
                        brokers: HashMap::new(),
                        connections: HashMap::new(),
                        topics: HashMap::new(),
                        topic_errors: HashMap::new(),
                    });
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(ClientError::NoBroker(errors.join("; ")))
    }

    /// Asks for `topics` (creating them only if `allow_auto_create`).
    pub async fn refresh(&mut self, topics: &[&str], allow_auto_create: bool) -> Result<(), ClientError> {
        let request = Request::Metadata(MetadataRequest {
            topics: Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic {
                        name: Some(t.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            allow_auto_topic_creation: allow_auto_create,
            ..Default::default()
        });
        let answer = match self.bootstrap.call(request.clone()).await {
            Ok(answer) => answer,
            Err(first) => {
                // The connection may be gone (a restarted broker) or out of
                // step (a timed-out call): start a new one, once.
                tracing::debug!(error = %first, "metadata failed; reconnecting");
                self.reconnect().await?;
                self.bootstrap.call(request).await?
            }
        };
        let Response::Metadata(metadata) = answer else {
            unreachable!("call answers with the request's api")
        };
        for broker in metadata.brokers {
            let addr = if broker.host.contains(':') {
                format!("[{}]:{}", broker.host, broker.port)
            } else {
                format!("{}:{}", broker.host, broker.port)
            };
            if self
                .brokers
                .insert(broker.node_id, addr.clone())
                .is_some_and(|old| old != addr)
            {
                self.connections.remove(&broker.node_id);
            }
        }
        for topic in metadata.topics {
            let name = topic.name.unwrap_or_default();
            if topic.error_code != ErrorCode::None.code() {
                // One topic's error does not stop the others from updating.
                self.topic_errors.insert(name, ErrorCode::from_code(topic.error_code));
                continue;
            }
            self.topic_errors.remove(&name);
            let mut partitions: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id))
                .collect();
            partitions.sort_unstable();
            let leaders = partitions.into_iter().map(|(_, leader)| leader).collect();
            self.topics.insert(
                name,
                TopicInfo {
                    id: topic.topic_id,
                    leaders,
                },
            );
        }
        Ok(())
    }

    /// Node ids of every broker Metadata named.
    pub fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The bootstrap connection (any broker will do for FindCoordinator).
    pub async fn any_broker(&mut self) -> Result<&mut BrokerConnection, ClientError> {
        Ok(&mut self.bootstrap)
    }

    /// The error Metadata last gave for `topic`, if it gave one.
    pub fn topic_error(&self, topic: &str) -> Option<ErrorCode> {
        self.topic_errors.get(topic).copied()
    }

    /// Replaces the bootstrap connection: the bootstrap servers first, then
    /// every broker Metadata has named.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut candidates: Vec<String> = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        candidates.extend(self.brokers.values().cloned());
        let mut errors = Vec::new();
        for addr in candidates {
            match BrokerConnection::connect(&addr, &self.client_id, self.timeout).await {
                Ok(connection) => {
                    self.bootstrap = connection;
                    return Ok(());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(ClientError::NoBroker(errors.join("; ")))
    }

    /// `host:port` of broker `node_id`, as Metadata advertised it.
    pub fn broker_addr(&self, node_id: i32) -> Option<&str> {
        self.brokers.get(&node_id).map(String::as_str)
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The connection to broker `node_id`, opened on first use.
    pub async fn broker(&mut self, node_id: i32) -> Result<&mut BrokerConnection, ClientError> {
        if !self.connections.contains_key(&node_id) {
            let addr = self
                .brokers
                .get(&node_id)
                .ok_or_else(|| ClientError::NoBroker(format!("node {node_id}")))?;
            let connection = BrokerConnection::connect(addr, &self.client_id, self.timeout).await?;
            self.connections.insert(node_id, connection);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// Forgets the connection to `node_id` (after an error on it).
    pub fn disconnect(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
    }
}
