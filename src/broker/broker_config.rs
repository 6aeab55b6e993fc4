//! The broker's own configs as DescribeConfigs and AlterConfigs see them.
//!
//! Most are the flags the broker was started with, read-only. The ones
//! that give topics their defaults (`log.retention.ms` for `retention.ms`,
//! `message.max.bytes` for `max.message.bytes`, ...) are dynamic broker
//! configs (KIP-226): AlterConfigs and IncrementalAlterConfigs set them at
//! run time, for this broker (resource name "0") or cluster-wide (""), and
//! they are stored in the data directory. A topic's effective value is the
//! first of: its own config, this broker's dynamic value, the cluster-wide
//! dynamic value, the flag.

use std::collections::BTreeMap;

use super::topic_config::{self, ConfigDef};
use crate::config::BrokerConfig;
use crate::protocol::messages::configs::{SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER};
use crate::storage::BrokerConfigScope;

/// The dynamic broker configs in force: one set per scope.
#[derive(Debug, Default, Clone)]
pub struct DynamicConfigs {
    pub broker: BTreeMap<String, String>,
    pub cluster_default: BTreeMap<String, String>,
}

/// A config's value and where it comes from (a `ConfigSource` code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub value: String,
    pub source: i8,
}

impl DynamicConfigs {
    pub fn scope(&self, scope: BrokerConfigScope) -> &BTreeMap<String, String> {
        match scope {
            BrokerConfigScope::Broker => &self.broker,
            BrokerConfigScope::ClusterDefault => &self.cluster_default,
        }
    }

    pub fn scope_mut(&mut self, scope: BrokerConfigScope) -> &mut BTreeMap<String, String> {
        match scope {
            BrokerConfigScope::Broker => &mut self.broker,
            BrokerConfigScope::ClusterDefault => &mut self.cluster_default,
        }
    }

    /// The default a topic config falls back to, most specific first.
    pub fn topic_default(&self, def: &ConfigDef, flags: &BrokerConfig) -> Resolved {
        self.layers(def, flags)
            .into_iter()
            .next()
            .expect("the flag is always a layer")
    }

    /// Every level that gives `def`'s broker config a value, most specific
    /// first, ending with the flag: Kafka's synonyms.
    pub fn layers(&self, def: &ConfigDef, flags: &BrokerConfig) -> Vec<Resolved> {
        let mut layers = Vec::with_capacity(3);
        if let Some(value) = self.broker.get(def.broker_name) {
            layers.push(Resolved {
                value: value.clone(),
                source: SOURCE_DYNAMIC_BROKER,
            });
        }
        if let Some(value) = self.cluster_default.get(def.broker_name) {
            layers.push(Resolved {
                value: value.clone(),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER,
            });
        }
        layers.push(Resolved {
            value: def.default_value(flags),
            source: SOURCE_DEFAULT,
        });
        layers
    }
}

/// The broker's read-only settings, under Kafka's names, in name order.
pub fn static_configs(flags: &BrokerConfig, advertised: &super::AdvertisedListener) -> Vec<(&'static str, String)> {
    vec![
        (
            "advertised.listeners",
            format!("PLAINTEXT://{}:{}", advertised.host, advertised.port),
        ),
        ("auto.create.topics.enable", flags.auto_create_topics.to_string()),
        (
            "group.initial.rebalance.delay.ms",
            flags.groups.initial_rebalance_delay.as_millis().to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            flags.groups.max_session_timeout_ms.to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            flags.groups.min_session_timeout_ms.to_string(),
        ),
        (
            "log.dirs",
            flags
                .data_dir
                .as_ref()
                .map_or_else(|| "(in memory)".to_string(), |d| d.display().to_string()),
        ),
        ("node.id", flags.node_id.to_string()),
        ("num.partitions", flags.num_partitions.to_string()),
        ("socket.request.max.bytes", flags.socket_request_max_bytes.to_string()),
    ]
}

/// Why a change to dynamic broker configs is refused. Kafka answers every
/// one of these with INVALID_REQUEST (it turns the broker's config
/// exceptions into that code, KAFKA-13609), so the message says which.
pub fn check_change(configs: &BTreeMap<String, String>) -> Result<(), String> {
    let fixed: Vec<&str> = configs
        .keys()
        .filter(|name| topic_config::find_by_broker_name(name).is_none())
        .map(String::as_str)
        .collect();
    if !fixed.is_empty() {
        return Err(format!(
            "cannot update these configs dynamically: {} (they are set by flags at start)",
            fixed.join(", ")
        ));
    }
    for (name, value) in configs {
        if let Some(def) = topic_config::find_by_broker_name(name) {
            topic_config::validate(def.name, Some(value))
                .map_err(|reason| format!("invalid value for {name}: {reason}"))?;
        }
    }
    Ok(())
}

/// The resource name of a broker resource, as a scope: "" is the
/// cluster-wide default, this node's id is this broker.
pub fn scope_of(resource_name: &str, node_id: i32) -> Result<BrokerConfigScope, String> {
    if resource_name.is_empty() {
        return Ok(BrokerConfigScope::ClusterDefault);
    }
    match resource_name.parse::<i32>() {
        Ok(id) if id == node_id => Ok(BrokerConfigScope::Broker),
        Ok(_) => Err(format!(
            "unexpected broker id: this is node {node_id}, the request names {resource_name}"
        )),
        Err(_) => Err(format!("a broker id must be an integer, not {resource_name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_layer_wins() {
        let flags = BrokerConfig {
            retention_ms: 5,
            ..BrokerConfig::default()
        };
        let def = topic_config::find("retention.ms").expect("known");
        let mut dynamic = DynamicConfigs::default();
        assert_eq!(dynamic.topic_default(def, &flags).value, "5");
        dynamic.cluster_default.insert("log.retention.ms".into(), "7".into());
        assert_eq!(
            dynamic.topic_default(def, &flags),
            Resolved {
                value: "7".into(),
                source: SOURCE_DYNAMIC_DEFAULT_BROKER
            }
        );
        dynamic.broker.insert("log.retention.ms".into(), "9".into());
        let layers: Vec<String> = dynamic.layers(def, &flags).into_iter().map(|l| l.value).collect();
        assert_eq!(layers, ["9", "7", "5"]);
    }

    #[test]
    fn only_topic_defaults_are_dynamic_and_values_are_checked() {
        let set = |name: &str, value: &str| BTreeMap::from([(name.to_string(), value.to_string())]);
        assert!(check_change(&set("log.retention.ms", "1000")).is_ok());
        assert!(check_change(&set("message.max.bytes", "300")).is_ok());
        assert!(
            check_change(&set("num.partitions", "3"))
                .unwrap_err()
                .contains("dynamically")
        );
        assert!(check_change(&set("log.retention.ms", "-2")).is_err());
        assert!(check_change(&set("log.cleanup.policy", "compact")).is_err());
        assert_eq!(scope_of("", 0), Ok(BrokerConfigScope::ClusterDefault));
        assert_eq!(scope_of("0", 0), Ok(BrokerConfigScope::Broker));
        assert!(scope_of("1", 0).is_err());
        assert!(scope_of("x", 0).is_err());
    }
}
