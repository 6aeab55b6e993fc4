//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, for topics
//! (the configs in `topic_config`) and this broker (read-only: its flags).

use std::collections::BTreeMap;

use super::{AdminError, Broker, topic_config};
use crate::protocol::ErrorCode;
use crate::protocol::messages::configs::*;

/// Every topic config with its value: the topic's own where set, the
/// default otherwise. `keys` narrows the list.
pub fn described_topic(
    broker: &Broker,
    set: &BTreeMap<String, String>,
    keys: Option<&Vec<String>>,
    documentation: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    topic_config::TOPIC_CONFIGS
        .iter()
        .filter(|def| keys.is_none_or(|k| k.iter().any(|n| n == def.name)))
        .map(|def| {
            let own = set.get(def.name);
            DescribeConfigsResourceResult {
                name: def.name.to_string(),
                value: Some(own.cloned().unwrap_or_else(|| def.default_value(broker.config()))),
                read_only: false,
                is_default: own.is_none(),
                config_source: if own.is_some() {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                },
                is_sensitive: false,
                synonyms: Vec::new(),
                config_type: if version >= 3 { def.config_type } else { 0 },
                documentation: documentation.then(|| def.doc.to_string()),
            }
        })
        .collect()
}

/// This broker's settings, as read-only configs with Kafka's names.
fn described_broker(broker: &Broker, keys: Option<&Vec<String>>) -> Vec<DescribeConfigsResourceResult> {
    let config = broker.config();
    let advertised = broker.advertised();
    let settings: Vec<(&str, String)> = vec![
        (
            "advertised.listeners",
            format!("PLAINTEXT://{}:{}", advertised.host, advertised.port),
        ),
        ("auto.create.topics.enable", config.auto_create_topics.to_string()),
        (
            "group.initial.rebalance.delay.ms",
            config.groups.initial_rebalance_delay.as_millis().to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            config.groups.max_session_timeout_ms.to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            config.groups.min_session_timeout_ms.to_string(),
        ),
        (
            "log.dirs",
            config
                .data_dir
                .as_ref()
                .map_or_else(|| "(in memory)".to_string(), |d| d.display().to_string()),
        ),
        ("message.max.bytes", config.message_max_bytes.to_string()),
        ("node.id", config.node_id.to_string()),
        ("num.partitions", config.num_partitions.to_string()),
        ("socket.request.max.bytes", config.socket_request_max_bytes.to_string()),
    ];
    settings
        .into_iter()
        .filter(|(name, _)| keys.is_none_or(|k| k.iter().any(|n| n == name)))
        .map(|(name, value)| DescribeConfigsResourceResult {
            name: name.to_string(),
            value: Some(value),
            read_only: true,
            is_default: false,
            config_source: SOURCE_STATIC_BROKER,
            is_sensitive: false,
            synonyms: Vec::new(),
            config_type: 0,
            documentation: None,
        })
        .collect()
}

fn is_this_broker(broker: &Broker, name: &str) -> bool {
    name.is_empty() || name == broker.config().node_id.to_string()
}

pub fn describe_configs(broker: &Broker, version: i16, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult {
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.clone(),
                ..Default::default()
            };
            let keys = resource.configuration_keys.as_ref();
            match resource.resource_type {
                RESOURCE_TOPIC => match broker.topic(&resource.resource_name) {
                    Some(topic) => {
                        let set = topic
                            .configs
                            .read()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        result.configs = described_topic(broker, &set, keys, request.include_documentation, version);
                    }
                    None => {
                        result.error_code = ErrorCode::UnknownTopicOrPartition.code();
                        result.error_message = Some(format!("no topic {}", resource.resource_name));
                    }
                },
                RESOURCE_BROKER if is_this_broker(broker, &resource.resource_name) => {
                    result.configs = described_broker(broker, keys);
                }
                other => {
                    result.error_code = ErrorCode::InvalidRequest.code();
                    result.error_message = Some(format!(
                        "resource type {other} named {:?} is not served",
                        resource.resource_name
                    ));
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

/// Validates and (unless `validate_only`) stores a topic's new config set.
fn apply_topic(
    broker: &Broker,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    if broker.topic(name).is_none() {
        return Err((ErrorCode::UnknownTopicOrPartition, format!("no topic {name}")));
    }
    for (key, value) in &configs {
        topic_config::validate(key, Some(value)).map_err(|reason| (ErrorCode::InvalidConfig, reason))?;
    }
    if validate_only {
        return Ok(());
    }
    broker
        .set_topic_configs(name, configs)
        .map_err(|e: AdminError| (e.error_code(), e.to_string()))
}

fn answer(
    resource_type: i8,
    resource_name: &str,
    outcome: Result<(), (ErrorCode, String)>,
) -> AlterConfigsResourceResponse {
    let (code, message) = match outcome {
        Ok(()) => (ErrorCode::None, None),
        Err((code, message)) => (code, Some(message)),
    };
    AlterConfigsResourceResponse {
        error_code: code.code(),
        error_message: message,
        resource_type,
        resource_name: resource_name.to_string(),
    }
}

fn broker_is_read_only() -> Result<(), (ErrorCode, String)> {
    Err((
        ErrorCode::InvalidConfig,
        "broker configs are set by flags at start, not at run time".into(),
    ))
}

/// AlterConfigs: the given set replaces the topic's configs.
pub fn alter_configs(broker: &Broker, request: &AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let outcome = match r.resource_type {
                RESOURCE_TOPIC => {
                    let configs = r
                        .configs
                        .iter()
                        .map(|c| {
                            (
                                c.name.clone(),
                                c.value.as_deref().unwrap_or_default().trim().to_string(),
                            )
                        })
                        .collect();
                    apply_topic(broker, &r.resource_name, configs, request.validate_only)
                }
                RESOURCE_BROKER => broker_is_read_only(),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("resource type {other} is not served"),
                )),
            };
            answer(r.resource_type, &r.resource_name, outcome)
        })
        .collect();
    AlterConfigsResponse {
        responses,
        ..Default::default()
    }
}

/// IncrementalAlterConfigs: set, delete, append to or subtract from
/// individual configs.
pub fn incremental_alter_configs(
    broker: &Broker,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let outcome = match r.resource_type {
                RESOURCE_TOPIC => match broker.topic(&r.resource_name) {
                    None => Err((
                        ErrorCode::UnknownTopicOrPartition,
                        format!("no topic {}", r.resource_name),
                    )),
                    Some(topic) => {
                        let mut configs = topic
                            .configs
                            .read()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        let mut outcome = Ok(());
                        for c in &r.configs {
                            let value = c.value.as_deref().unwrap_or_default().trim().to_string();
                            match c.config_operation {
                                0 => {
                                    configs.insert(c.name.clone(), value);
                                }
                                1 => {
                                    configs.remove(&c.name);
                                }
                                2 | 3 if topic_config::find(&c.name).is_some_and(|d| d.config_type == 7) => {
                                    let default = topic_config::find(&c.name)
                                        .map(|d| d.default_value(broker.config()))
                                        .unwrap_or_default();
                                    let current = configs.get(&c.name).cloned().unwrap_or(default);
                                    let mut items: Vec<String> = current
                                        .split(',')
                                        .map(|s| s.trim().to_string())
                                        .filter(|s| !s.is_empty())
                                        .collect();
                                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                                        if c.config_operation == 2 && !items.iter().any(|i| i == item) {
                                            items.push(item.to_string());
                                        } else if c.config_operation == 3 {
                                            items.retain(|i| i != item);
                                        }
                                    }
                                    configs.insert(c.name.clone(), items.join(","));
                                }
                                op => {
                                    outcome = Err((
                                        ErrorCode::InvalidConfig,
                                        format!("operation {op} does not apply to {}", c.name),
                                    ));
                                    break;
                                }
                            }
                        }
                        outcome.and_then(|()| apply_topic(broker, &r.resource_name, configs, request.validate_only))
                    }
                },
                RESOURCE_BROKER => broker_is_read_only(),
                other => Err((
                    ErrorCode::InvalidRequest,
                    format!("resource type {other} is not served"),
                )),
            };
            answer(r.resource_type, &r.resource_name, outcome)
        })
        .collect();
    IncrementalAlterConfigsResponse {
        responses,
        ..Default::default()
    }
}
