//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, for topics
//! (the configs in `topic_config`) and this broker (its flags, read-only,
//! and the dynamic configs in `broker_config`).

use std::collections::BTreeMap;

use super::broker_config::{self, Resolved};
use super::{AdminError, Broker, topic_config};
use crate::protocol::ErrorCode;
use crate::protocol::messages::configs::*;
use crate::storage::BrokerConfigScope;

/// Every topic config with its value: the topic's own where set, the
/// broker's default otherwise. `keys` narrows the list.
pub fn described_topic(
    broker: &Broker,
    set: &BTreeMap<String, String>,
    keys: Option<&Vec<String>>,
    options: DescribeOptions,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.dynamic_configs();
    topic_config::TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(keys, def.name))
        .map(|def| {
            let mut layers: Vec<(&str, Resolved)> = Vec::new();
            if let Some(own) = set.get(def.name) {
                let own = Resolved {
                    value: own.clone(),
                    source: SOURCE_DYNAMIC_TOPIC,
                };
                layers.push((def.name, own));
            }
            layers.extend(
                dynamic
                    .layers(def, broker.config())
                    .into_iter()
                    .map(|l| (def.broker_name, l)),
            );
            entry(def.name, def, false, &layers, options)
        })
        .collect()
}

/// What a DescribeConfigs request asks for beyond names and values.
#[derive(Debug, Clone, Copy)]
pub struct DescribeOptions {
    pub synonyms: bool,
    pub documentation: bool,
    pub version: i16,
}

impl DescribeOptions {
    /// Names, values and sources only.
    pub const PLAIN: DescribeOptions = DescribeOptions {
        synonyms: false,
        documentation: false,
        version: 0,
    };
}

fn wanted(keys: Option<&Vec<String>>, name: &str) -> bool {
    keys.is_none_or(|k| k.iter().any(|n| n == name))
}

/// One described config from its layers, most specific first (the first
/// is the value in force; all of them are its synonyms).
fn entry(
    name: &str,
    def: &topic_config::ConfigDef,
    read_only: bool,
    layers: &[(&str, Resolved)],
    options: DescribeOptions,
) -> DescribeConfigsResourceResult {
    let in_force = &layers[0].1;
    DescribeConfigsResourceResult {
        name: name.to_string(),
        value: Some(in_force.value.clone()),
        read_only,
        is_default: in_force.source == SOURCE_DEFAULT,
        config_source: in_force.source,
        is_sensitive: false,
        synonyms: if options.synonyms {
            layers
                .iter()
                .map(|(name, l)| DescribeConfigsSynonym {
                    name: name.to_string(),
                    value: Some(l.value.clone()),
                    source: l.source,
                })
                .collect()
        } else {
            Vec::new()
        },
        config_type: if options.version >= 3 { def.config_type } else { 0 },
        documentation: options.documentation.then(|| def.doc.to_string()),
    }
}

/// This broker's configs: its flags (read-only) and the dynamic configs
/// that give topics their defaults, in name order.
fn described_broker(
    broker: &Broker,
    keys: Option<&Vec<String>>,
    options: DescribeOptions,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.dynamic_configs();
    let mut described: Vec<DescribeConfigsResourceResult> =
        broker_config::static_configs(broker.config(), broker.advertised())
            .into_iter()
            .filter(|(name, _)| wanted(keys, name))
            .map(|(name, value)| DescribeConfigsResourceResult {
                name: name.to_string(),
                value: Some(value.clone()),
                read_only: true,
                is_default: false,
                config_source: SOURCE_STATIC_BROKER,
                is_sensitive: false,
                synonyms: if options.synonyms {
                    vec![DescribeConfigsSynonym {
                        name: name.to_string(),
                        value: Some(value),
                        source: SOURCE_STATIC_BROKER,
                    }]
                } else {
                    Vec::new()
                },
                config_type: 0,
                documentation: None,
            })
            .collect();
    described.extend(
        topic_config::TOPIC_CONFIGS
            .iter()
            .filter(|def| wanted(keys, def.broker_name))
            .map(|def| {
                let layers: Vec<(&str, Resolved)> = dynamic
                    .layers(def, broker.config())
                    .into_iter()
                    .map(|l| (def.broker_name, l))
                    .collect();
                entry(def.broker_name, def, false, &layers, options)
            }),
    );
    described.sort_by(|a, b| a.name.cmp(&b.name));
    described
}

/// The cluster-wide default (broker ""): only the dynamic configs set at
/// that level, as Kafka lists them.
fn described_cluster_default(
    broker: &Broker,
    keys: Option<&Vec<String>>,
    options: DescribeOptions,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.dynamic_configs();
    dynamic
        .cluster_default
        .iter()
        .filter(|(name, _)| wanted(keys, name))
        .filter_map(|(name, value)| {
            let def = topic_config::find_by_broker_name(name)?;
            let layer = Resolved {
                value: value.clone(),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
            };
            Some(entry(name, def, false, &[(name.as_str(), layer)], options))
        })
        .collect()
}

pub fn describe_configs(broker: &Broker, version: i16, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
    let options = DescribeOptions {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
        version,
    };
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
                        result.configs = described_topic(broker, &set, keys, options);
                    }
                    None => {
                        result.error_code = ErrorCode::UnknownTopicOrPartition.code();
                        result.error_message = Some(format!("no topic {}", resource.resource_name));
                    }
                },
                RESOURCE_BROKER => match broker_config::scope_of(&resource.resource_name, broker.config().node_id) {
                    Ok(BrokerConfigScope::Broker) => result.configs = described_broker(broker, keys, options),
                    Ok(BrokerConfigScope::ClusterDefault) => {
                        result.configs = described_cluster_default(broker, keys, options)
                    }
                    Err(reason) => {
                        result.error_code = ErrorCode::InvalidRequest.code();
                        result.error_message = Some(reason);
                    }
                },
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

/// Validates and (unless `validate_only`) stores a new set of dynamic
/// broker configs for the broker resource `name`. Kafka answers every
/// refusal here with INVALID_REQUEST (see `broker_config::check_change`).
fn apply_broker(
    broker: &Broker,
    name: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    validate_only: bool,
) -> Result<(), (ErrorCode, String)> {
    let invalid = |reason: String| (ErrorCode::InvalidRequest, reason);
    let scope = broker_config::scope_of(name, broker.config().node_id).map_err(invalid)?;
    let mut configs = broker.dynamic_configs().scope(scope).clone();
    change(&mut configs).map_err(invalid)?;
    broker_config::check_change(&configs).map_err(invalid)?;
    if validate_only {
        return Ok(());
    }
    broker
        .set_broker_configs(scope, configs)
        .map_err(|e| (ErrorCode::KafkaStorageError, e.to_string()))
}

/// Kafka refuses a null value for anything but a delete, naming the configs.
fn refuse_nulls<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let nulls: Vec<&str> = names.collect();
    if nulls.is_empty() {
        Ok(())
    } else {
        Err(format!("null value not supported for: {}", nulls.join(", ")))
    }
}

/// Applies IncrementalAlterConfigs operations to `configs`, in order.
/// `list_default` gives the current value of a list config that `configs`
/// does not set, or `None` for a name that is not a list config.
fn apply_operations(
    configs: &mut BTreeMap<String, String>,
    operations: &[IncrementalAlterableConfig],
    list_default: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for c in operations {
        let value = c.value.as_deref().unwrap_or_default().trim().to_string();
        match c.config_operation {
            0 => {
                configs.insert(c.name.clone(), value);
            }
            1 => {
                configs.remove(&c.name);
            }
            op @ (2 | 3) => {
                let Some(default) = list_default(&c.name) else {
                    return Err(format!("operation {op} applies to list configs only, not {}", c.name));
                };
                let current = configs.get(&c.name).cloned().unwrap_or(default);
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if op == 2 && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    } else if op == 3 {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(c.name.clone(), items.join(","));
            }
            op => return Err(format!("unknown config operation {op} for {}", c.name)),
        }
    }
    Ok(())
}

/// An AlterConfigs resource's configs by name, values trimmed (a null
/// value reads as empty, which every check refuses).
fn trimmed_set(resource: &AlterConfigsResource) -> BTreeMap<String, String> {
    resource
        .configs
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.value.as_deref().unwrap_or_default().trim().to_string(),
            )
        })
        .collect()
}

/// AlterConfigs: the given set replaces the resource's configs.
pub fn alter_configs(broker: &Broker, request: &AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .iter()
        .map(|r| {
            let outcome = match r.resource_type {
                RESOURCE_TOPIC => apply_topic(broker, &r.resource_name, trimmed_set(r), request.validate_only),
                RESOURCE_BROKER => apply_broker(
                    broker,
                    &r.resource_name,
                    |configs| {
                        refuse_nulls(r.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()))?;
                        *configs = trimmed_set(r);
                        Ok(())
                    },
                    request.validate_only,
                ),
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
    let is_list = |def: &topic_config::ConfigDef| def.config_type == topic_config::TYPE_LIST;
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
                        let list_default = |name: &str| {
                            topic_config::find(name)
                                .filter(|def| is_list(def))
                                .map(|def| broker.dynamic_configs().topic_default(def, broker.config()).value)
                        };
                        apply_operations(&mut configs, &r.configs, list_default)
                            .map_err(|reason| (ErrorCode::InvalidConfig, reason))
                            .and_then(|()| apply_topic(broker, &r.resource_name, configs, request.validate_only))
                    }
                },
                RESOURCE_BROKER => apply_broker(
                    broker,
                    &r.resource_name,
                    |configs| {
                        refuse_nulls(
                            r.configs
                                .iter()
                                .filter(|c| c.config_operation != 1 && c.value.is_none())
                                .map(|c| c.name.as_str()),
                        )?;
                        let list_default = |name: &str| {
                            topic_config::find_by_broker_name(name)
                                .filter(|def| is_list(def))
                                .map(|def| def.default_value(broker.config()))
                        };
                        apply_operations(configs, &r.configs, list_default)
                    },
                    request.validate_only,
                ),
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
