//! Metadata: this node is every partition's leader and only replica.

use crate::broker::{Broker, LEADER_EPOCH, Topic};
use crate::protocol::ErrorCode;
use crate::protocol::messages::metadata::{
    MetadataRequest, MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};

pub fn handle(broker: &Broker, version: i16, request: &MetadataRequest) -> MetadataResponse {
    let node_id = broker.config().node_id;
    let advertised = broker.advertised();
    // v0: an empty list means every topic. v1+: null means every topic.
    let wanted = match &request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    // Before v4 there is no flag and Kafka auto-creates whenever it may.
    let may_create = broker.config().auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match wanted {
        None => broker.topics().iter().map(|t| describe(node_id, t)).collect(),
        Some(requested) => requested
            .iter()
            .map(|asked| match &asked.name {
                Some(name) => lookup_by_name(broker, name, may_create),
                None => match broker.topic_by_id(asked.topic_id) {
                    Some(topic) => describe(node_id, &topic),
                    None => MetadataResponseTopic {
                        error_code: ErrorCode::UnknownTopicId.code(),
                        name: None,
                        topic_id: asked.topic_id,
                        ..Default::default()
                    },
                },
            })
            .collect(),
    };
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id,
            host: advertised.host.clone(),
            port: i32::from(advertised.port),
            rack: None,
        }],
        cluster_id: Some(broker.cluster_id().to_string()),
        controller_id: node_id,
        topics,
        ..Default::default()
    }
}

fn lookup_by_name(broker: &Broker, name: &str, may_create: bool) -> MetadataResponseTopic {
    let node_id = broker.config().node_id;
    if let Some(topic) = broker.topic(name) {
        return describe(node_id, &topic);
    }
    let error = |code: ErrorCode| MetadataResponseTopic {
        error_code: code.code(),
        name: Some(name.to_string()),
        ..Default::default()
    };
    if let Err(reason) = super::validate_topic_name(name) {
        tracing::debug!(topic = name, reason, "metadata for an invalid topic name");
        return error(ErrorCode::InvalidTopicException);
    }
    if !may_create {
        return error(ErrorCode::UnknownTopicOrPartition);
    }
    match broker.get_or_create_topic(name, broker.config().num_partitions) {
        Ok(topic) => describe(node_id, &topic),
        Err(e) => {
            tracing::error!(topic = name, error = %e, "auto-creating a topic failed");
            error(e.error_code())
        }
    }
}

fn describe(node_id: i32, topic: &Topic) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: ErrorCode::None.code(),
        name: Some(topic.name.clone()),
        topic_id: topic.id,
        is_internal: false,
        partitions: topic
            .partitions
            .iter()
            .map(|p| MetadataResponsePartition {
                error_code: ErrorCode::None.code(),
                partition_index: p.index,
                leader_id: node_id,
                leader_epoch: LEADER_EPOCH,
                replica_nodes: vec![node_id],
                isr_nodes: vec![node_id],
                offline_replicas: Vec::new(),
            })
            .collect(),
        ..Default::default()
    }
}
