//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions and
//! DescribeCluster, with the errors Kafka gives.

use super::{AdminError, Broker};
use crate::protocol::ErrorCode;
use crate::protocol::messages::topic_admin::*;

/// Names Kafka keeps for itself; clients may not create them.
const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

pub fn create_topics(broker: &Broker, version: i16, request: &CreateTopicsRequest) -> CreateTopicsResponse {
    let node_id = broker.config().node_id;
    // A name asked for twice in one request gets one answer, an error, as
    // in Kafka (the response is keyed by name).
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for topic in &request.topics {
        *counts.entry(topic.name.as_str()).or_default() += 1;
    }
    let mut answered = std::collections::HashSet::new();
    let topics = request
        .topics
        .iter()
        .filter(|asked| answered.insert(asked.name.as_str()))
        .map(|asked| {
            if counts[asked.name.as_str()] > 1 {
                return CreatableTopicResult {
                    name: asked.name.clone(),
                    error_code: ErrorCode::InvalidRequest.code(),
                    error_message: Some(format!("topic {} appears more than once in the request", asked.name)),
                    ..Default::default()
                };
            }
            let mut result = CreatableTopicResult {
                name: asked.name.clone(),
                ..Default::default()
            };
            let refuse = |mut result: CreatableTopicResult, code: ErrorCode, message: String| {
                result.error_code = code.code();
                result.error_message = Some(message);
                result
            };
            let with_assignments = !asked.assignments.is_empty();
            let partitions = match (asked.num_partitions, with_assignments) {
                (-1, false) => broker.config().num_partitions,
                (-1, true) => asked.assignments.len() as i32,
                (n, false) if n > 0 => n,
                (n, false) => {
                    return refuse(
                        result,
                        ErrorCode::InvalidPartitions,
                        format!("number of partitions must be larger than 0, not {n}"),
                    );
                }
                (_, true) => {
                    let message = "both partitions and replica assignments were given; give one".to_string();
                    return refuse(result, ErrorCode::InvalidRequest, message);
                }
            };
            if INTERNAL_TOPICS.contains(&asked.name.as_str()) {
                return refuse(
                    result,
                    ErrorCode::InvalidRequest,
                    format!("creating internal topic {} is not allowed", asked.name),
                );
            }
            if with_assignments {
                if asked.replication_factor != -1 {
                    let message = "both replication factor and replica assignments were given; give one".to_string();
                    return refuse(result, ErrorCode::InvalidRequest, message);
                }
                let mut indexes: Vec<i32> = asked.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                let contiguous = indexes.iter().enumerate().all(|(i, p)| *p == i as i32);
                let on_this_node = asked.assignments.iter().all(|a| a.broker_ids == [node_id]);
                if !contiguous || !on_this_node {
                    let message =
                        format!("replica assignments must name partitions 0..n-1, each on broker {node_id} alone");
                    return refuse(result, ErrorCode::InvalidReplicaAssignment, message);
                }
            } else if !matches!(asked.replication_factor, -1 | 1) {
                let message = format!(
                    "replication factor {} is larger than the 1 available broker",
                    asked.replication_factor
                );
                return refuse(result, ErrorCode::InvalidReplicationFactor, message);
            }
            let mut configs = std::collections::BTreeMap::new();
            for config in &asked.configs {
                if let Err(reason) = super::topic_config::validate(&config.name, config.value.as_deref()) {
                    return refuse(result, ErrorCode::InvalidConfig, reason);
                }
                configs.insert(
                    config.name.clone(),
                    config.value.as_deref().unwrap_or_default().trim().to_string(),
                );
            }
            match broker.create_topic(&asked.name, partitions, configs.clone(), request.validate_only) {
                Ok(topic) => {
                    result.error_code = ErrorCode::None.code();
                    result.topic_id = topic.map(|t| t.id).unwrap_or_default();
                    result.num_partitions = partitions;
                    result.replication_factor = 1;
                    result.configs = Some(
                        super::configs::described_topic(broker, &configs, None, super::configs::DescribeOptions::PLAIN)
                            .into_iter()
                            .map(|c| CreatableTopicConfigs {
                                name: c.name,
                                value: c.value,
                                read_only: c.read_only,
                                config_source: c.config_source,
                                is_sensitive: c.is_sensitive,
                            })
                            .collect(),
                    );
                    result
                }
                Err(e) => {
                    let code = e.error_code();
                    refuse(result, code, e.to_string())
                }
            }
        })
        .map(|mut result| {
            if version < 5 {
                result.configs = None;
            }
            result
        })
        .collect();
    CreateTopicsResponse {
        topics,
        ..Default::default()
    }
}

pub async fn delete_topics(broker: &Broker, version: i16, request: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let asked: Vec<DeleteTopicState> = if version >= 6 {
        request.topics.clone()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| DeleteTopicState {
                name: Some(n.clone()),
                ..Default::default()
            })
            .collect()
    };
    let responses = asked
        .into_iter()
        .map(|state| {
            let topic = match &state.name {
                Some(name) => broker.topic(name),
                None => broker.topic_by_id(state.topic_id),
            };
            let Some(topic) = topic else {
                let code = if state.name.is_some() {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::UnknownTopicId
                };
                return DeletableTopicResult {
                    name: state.name,
                    topic_id: state.topic_id,
                    error_code: code.code(),
                    error_message: Some("no such topic".into()),
                };
            };
            let (code, message) = match broker.delete_topic(&topic.name) {
                Ok(()) => (ErrorCode::None, None),
                Err(AdminError::Unknown(_)) => (ErrorCode::UnknownTopicOrPartition, Some("no such topic".into())),
                Err(e) => (e.error_code(), Some(e.to_string())),
            };
            DeletableTopicResult {
                name: Some(topic.name.clone()),
                topic_id: topic.id,
                error_code: code.code(),
                error_message: message,
            }
        })
        .collect();
    // The deleted topics' commits went from the committed-offsets log:
    // durable as the flush policy says before the answer, or they come
    // back after a power cut for a topic created later under the name.
    let due = broker.offsets_sync_due(&broker.offsets());
    if let Some(end) = due
        && let Err(e) = broker.make_offsets_durable(end).await
    {
        tracing::error!(error = %e, "syncing the deleted topics' committed offsets failed");
    }
    DeleteTopicsResponse {
        responses,
        ..Default::default()
    }
}

pub fn create_partitions(broker: &Broker, request: &CreatePartitionsRequest) -> CreatePartitionsResponse {
    let node_id = broker.config().node_id;
    let results = request
        .topics
        .iter()
        .map(|asked| {
            let current = broker.topic(&asked.name).map_or(0, |t| t.partitions.len() as i32);
            let outcome = match &asked.assignments {
                Some(assignments)
                    if assignments.len() as i32 != asked.count - current
                        || assignments.iter().any(|a| a.broker_ids != [node_id]) =>
                {
                    Err((
                        ErrorCode::InvalidReplicaAssignment,
                        format!("give one assignment per new partition, each on broker {node_id} alone"),
                    ))
                }
                _ => broker
                    .add_partitions(&asked.name, asked.count, request.validate_only)
                    .map_err(|e| (e.error_code(), e.to_string())),
            };
            match outcome {
                Ok(()) => CreatePartitionsTopicResult {
                    name: asked.name.clone(),
                    error_code: 0,
                    error_message: None,
                },
                Err((code, message)) => CreatePartitionsTopicResult {
                    name: asked.name.clone(),
                    error_code: code.code(),
                    error_message: Some(message),
                },
            }
        })
        .collect();
    CreatePartitionsResponse {
        results,
        ..Default::default()
    }
}

pub fn describe_cluster(broker: &Broker, request: &DescribeClusterRequest) -> DescribeClusterResponse {
    if request.endpoint_type != 1 {
        // Controllers (2) are not a separate endpoint here; other types are unknown.
        let code = if request.endpoint_type == 2 {
            ErrorCode::MismatchedEndpointType
        } else {
            ErrorCode::UnsupportedEndpointType
        };
        return DescribeClusterResponse {
            error_code: code.code(),
            error_message: Some("only the brokers endpoint (1) is served".into()),
            endpoint_type: request.endpoint_type,
            ..Default::default()
        };
    }
    let advertised = broker.advertised();
    let node_id = broker.config().node_id;
    DescribeClusterResponse {
        cluster_id: broker.cluster_id().to_string(),
        controller_id: node_id,
        brokers: vec![DescribeClusterBroker {
            broker_id: node_id,
            host: advertised.host.clone(),
            port: i32::from(advertised.port),
            rack: None,
        }],
        ..Default::default()
    }
}

/// DescribeTopicPartitions: the asked topics (all when none are named) in
/// name order, from the cursor on, at most `response_partition_limit`
/// partitions; `next_cursor` says where to go on.
pub fn describe_topic_partitions(
    broker: &Broker,
    request: &crate::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsRequest,
) -> crate::protocol::messages::describe_topic_partitions::DescribeTopicPartitionsResponse {
    use crate::protocol::messages::describe_topic_partitions::*;
    use crate::protocol::primitives::Nullable;
    let node_id = broker.config().node_id;
    let mut names: Vec<String> = if request.topics.is_empty() {
        broker.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        request.topics.iter().map(|t| t.name.clone()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = match &request.cursor.0 {
        Some(cursor) => (Some(cursor.topic_name.clone()), cursor.partition_index),
        None => (None, 0),
    };
    let mut budget = request.response_partition_limit.max(1) as usize;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names
        .into_iter()
        .filter(|n| start_topic.as_ref().is_none_or(|s| n >= s))
    {
        let Some(topic) = broker.topic(&name) else {
            topics.push(DescribeTopicPartitionsResponseTopic {
                error_code: ErrorCode::UnknownTopicOrPartition.code(),
                name: Some(name),
                ..Default::default()
            });
            continue;
        };
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition.max(0)
        } else {
            0
        };
        let mut partitions = Vec::new();
        for partition in topic.partitions.iter().skip(first as usize) {
            if budget == 0 {
                next_cursor = Some(Cursor {
                    topic_name: name.clone(),
                    partition_index: partition.index,
                });
                break;
            }
            budget -= 1;
            partitions.push(DescribeTopicPartitionsResponsePartition {
                error_code: 0,
                partition_index: partition.index,
                leader_id: node_id,
                leader_epoch: super::LEADER_EPOCH,
                replica_nodes: vec![node_id],
                isr_nodes: vec![node_id],
                eligible_leader_replicas: None,
                last_known_elr: None,
                offline_replicas: Vec::new(),
            });
        }
        topics.push(DescribeTopicPartitionsResponseTopic {
            error_code: 0,
            name: Some(name),
            topic_id: topic.id,
            is_internal: false,
            partitions,
            ..Default::default()
        });
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse {
        topics,
        next_cursor: Nullable(next_cursor),
        ..Default::default()
    }
}
