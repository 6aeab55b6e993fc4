//! Topic administration from the client side, through the standard APIs
//! only (so it works against Apache Kafka too): list, create, describe
//! (partitions and configs), delete, alter configs.

use std::collections::BTreeMap;

use super::{ClientError, Cluster};
use crate::protocol::ErrorCode;
use crate::protocol::messages::configs::{
    DescribeConfigsRequest, DescribeConfigsResource, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResource,
    IncrementalAlterableConfig, RESOURCE_TOPIC,
};
use crate::protocol::messages::metadata::MetadataRequest;
use crate::protocol::messages::topic_admin::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest, DeleteTopicsRequest,
};
use crate::protocol::messages::{Request, Response};

fn unexpected() -> ClientError {
    ClientError::Decode(crate::protocol::DecodeError::Malformed(nom::error::ErrorKind::Verify))
}

fn check(code: i16, message: Option<String>) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ClientError::Broker {
            code: ErrorCode::from_code(code),
            message,
        })
    }
}

/// Every topic with its partition count, in name order.
pub async fn list_topics(cluster: &mut Cluster) -> Result<Vec<(String, usize)>, ClientError> {
    let request = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    let Response::Metadata(metadata) = cluster.any_broker().await?.call(request).await? else {
        return Err(unexpected());
    };
    let mut topics: Vec<(String, usize)> = metadata
        .topics
        .into_iter()
        .filter_map(|t| t.name.map(|n| (n, t.partitions.len())))
        .collect();
    topics.sort();
    Ok(topics)
}

/// Creates a topic (-1 partitions or replication factor: the broker's default).
pub async fn create_topic(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
) -> Result<(), ClientError> {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.to_string(),
            num_partitions: partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
        }],
        timeout_ms: 30_000,
        validate_only: false,
    });
    let Response::CreateTopics(response) = cluster.any_broker().await?.call(request).await? else {
        return Err(unexpected());
    };
    let result = response.topics.into_iter().next().ok_or_else(unexpected)?;
    check(result.error_code, result.error_message)
}

pub async fn delete_topic(cluster: &mut Cluster, name: &str) -> Result<(), ClientError> {
    let request = Request::DeleteTopics(DeleteTopicsRequest {
        topic_names: vec![name.to_string()],
        topics: vec![crate::protocol::messages::topic_admin::DeleteTopicState {
            name: Some(name.to_string()),
            ..Default::default()
        }],
        timeout_ms: 30_000,
    });
    let Response::DeleteTopics(response) = cluster.any_broker().await?.call(request).await? else {
        return Err(unexpected());
    };
    let result = response.responses.into_iter().next().ok_or_else(unexpected)?;
    check(result.error_code, result.error_message)
}

/// A topic's partitions (index, leader) and its configs (name, value, is it
/// the default).
pub struct TopicDescription {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: Vec<(i32, i32)>,
    pub configs: Vec<(String, String, bool)>,
}

pub async fn describe_topic(cluster: &mut Cluster, name: &str) -> Result<TopicDescription, ClientError> {
    cluster.refresh(&[name], false).await?;
    let info = cluster.topic(name).cloned().ok_or_else(|| ClientError::Topic {
        topic: name.to_string(),
        reason: cluster
            .topic_error(name)
            .map_or_else(|| "not in metadata".to_string(), |c| c.to_string()),
    })?;
    let request = Request::DescribeConfigs(DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: RESOURCE_TOPIC,
            resource_name: name.to_string(),
            configuration_keys: None,
        }],
        ..Default::default()
    });
    let Response::DescribeConfigs(response) = cluster.any_broker().await?.call(request).await? else {
        return Err(unexpected());
    };
    let result = response.results.into_iter().next().ok_or_else(unexpected)?;
    check(result.error_code, result.error_message)?;
    let configs = result
        .configs
        .into_iter()
        .map(|c| {
            let default = c.is_default || c.config_source == crate::protocol::messages::configs::SOURCE_DEFAULT;
            (c.name, c.value.unwrap_or_default(), default)
        })
        .collect();
    Ok(TopicDescription {
        name: name.to_string(),
        id: info.id,
        partitions: info
            .leaders
            .iter()
            .enumerate()
            .map(|(i, leader)| (i as i32, *leader))
            .collect(),
        configs,
    })
}

/// Sets (Some) or removes (None) topic configs, leaving the others alone.
pub async fn alter_topic_configs(
    cluster: &mut Cluster,
    name: &str,
    changes: &BTreeMap<String, Option<String>>,
) -> Result<(), ClientError> {
    let request = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![IncrementalAlterConfigsResource {
            resource_type: RESOURCE_TOPIC,
            resource_name: name.to_string(),
            configs: changes
                .iter()
                .map(|(k, v)| IncrementalAlterableConfig {
                    name: k.clone(),
                    config_operation: if v.is_some() { 0 } else { 1 },
                    value: v.clone(),
                })
                .collect(),
        }],
        validate_only: false,
    });
    let Response::IncrementalAlterConfigs(response) = cluster.any_broker().await?.call(request).await? else {
        return Err(unexpected());
    };
    let result = response.responses.into_iter().next().ok_or_else(unexpected)?;
    check(result.error_code, result.error_message)
}
