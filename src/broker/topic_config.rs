//! Topic configs: the ones minikafka knows, their defaults, their checks.
//!
//! Only configs that mean something here are accepted; a name Kafka knows
//! but minikafka does not apply is refused with INVALID_CONFIG rather than
//! silently stored.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// Config types as DescribeConfigs v3+ reports them.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
pub const TYPE_LIST: i8 = 7;

pub struct ConfigDef {
    pub name: &'static str,
    /// The broker config that gives the default (Kafka's synonym): a
    /// dynamic broker config when set, else the broker's flag.
    pub broker_name: &'static str,
    pub config_type: i8,
    pub doc: &'static str,
    default: fn(&BrokerConfig) -> String,
    check: fn(&str) -> Result<(), String>,
}

impl ConfigDef {
    pub fn default_value(&self, broker: &BrokerConfig) -> String {
        (self.default)(broker)
    }
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("{v:?} is not a whole number of at least {min}")),
    }
}

/// Every topic config minikafka accepts, in name order.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: TYPE_LIST,
        doc: "delete: whole segments past the retention limits are removed (compact is not supported yet)",
        default: |_| "delete".into(),
        check: |v| match v.trim() {
            "delete" => Ok(()),
            other if other.split(',').any(|p| p.trim() == "compact") => {
                Err("cleanup.policy=compact is not supported yet".into())
            }
            other => Err(format!("{other:?} is not a cleanup policy")),
        },
    },
    ConfigDef {
        name: "compression.type",
        broker_name: "compression.type",
        config_type: TYPE_STRING,
        doc: "producer: batches are kept as the producer compressed them",
        default: |_| "producer".into(),
        check: |v| {
            if v.trim() == "producer" {
                Ok(())
            } else {
                Err("only compression.type=producer is supported".into())
            }
        },
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: TYPE_INT,
        doc: "the largest record batch accepted (MESSAGE_TOO_LARGE above it)",
        default: |broker| broker.message_max_bytes.to_string(),
        check: |v| long_at_least(0)(v),
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: TYPE_STRING,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime sets the broker's time on every batch",
        default: |_| "CreateTime".into(),
        check: |v| match v.trim() {
            "CreateTime" | "LogAppendTime" => Ok(()),
            other => Err(format!("{other:?} is neither CreateTime nor LogAppendTime")),
        },
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        config_type: TYPE_INT,
        doc: "one node: every write is on its only replica",
        default: |_| "1".into(),
        check: |v| {
            if v.trim() == "1" {
                Ok(())
            } else {
                Err("one node: min.insync.replicas can only be 1".into())
            }
        },
    },
    ConfigDef {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: TYPE_LONG,
        doc: "the size a partition's log may keep, in whole segments; -1 for no limit",
        default: |broker| broker.retention_bytes.to_string(),
        check: |v| long_at_least(-1)(v),
    },
    ConfigDef {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: TYPE_LONG,
        doc: "how long records are kept, in whole segments; -1 for ever",
        default: |broker| broker.retention_ms.to_string(),
        check: |v| long_at_least(-1)(v),
    },
    ConfigDef {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: TYPE_INT,
        doc: "segment file size",
        default: |broker| broker.segment_bytes.to_string(),
        check: |v| long_at_least(14)(v),
    },
    ConfigDef {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: TYPE_LONG,
        doc: "age at which the active segment rolls, counted from its first record's timestamp",
        default: |broker| broker.segment_ms.to_string(),
        check: |v| long_at_least(1)(v),
    },
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// The topic config whose default a broker config gives.
pub fn find_by_broker_name(broker_name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|c| c.broker_name == broker_name)
}

/// Checks one config; `Err` is the reason for INVALID_CONFIG.
pub fn validate(name: &str, value: Option<&str>) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown or unsupported topic config {name}"))?;
    match value {
        Some(value) => (def.check)(value),
        None => Err(format!("{name} needs a value")),
    }
}

/// Parses `topic.config` contents (key=value lines).
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn render(configs: &BTreeMap<String, String>) -> String {
    configs.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        assert!(validate("retention.ms", Some("-1")).is_ok());
        assert!(validate("retention.ms", Some("-2")).is_err());
        assert!(
            validate("cleanup.policy", Some("compact"))
                .unwrap_err()
                .contains("not supported")
        );
        assert!(validate("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate("no.such.config", Some("1")).is_err());
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
