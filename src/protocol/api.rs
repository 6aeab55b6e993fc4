//! The one table of what we serve: it drives request dispatch, the
//! ApiVersions answer and the README's table (a test keeps the README equal).

/// An API this broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ApiKey {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    OffsetCommit = 8,
    OffsetFetch = 9,
    FindCoordinator = 10,
    JoinGroup = 11,
    Heartbeat = 12,
    LeaveGroup = 13,
    SyncGroup = 14,
    DescribeGroups = 15,
    ListGroups = 16,
    ApiVersions = 18,
    CreateTopics = 19,
    DeleteTopics = 20,
    DeleteRecords = 21,
    InitProducerId = 22,
    OffsetForLeaderEpoch = 23,
    DescribeConfigs = 32,
    AlterConfigs = 33,
    CreatePartitions = 37,
    DeleteGroups = 42,
    IncrementalAlterConfigs = 44,
    OffsetDelete = 47,
    DescribeCluster = 60,
    DescribeTopicPartitions = 75,
}

/// Versions we advertise for one API, and where its flexible versions start.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    /// First flexible version (compact encodings, tagged fields, header v2).
    pub flexible_from: i16,
    /// One line for the README: what the versions mean for clients.
    pub note: &'static str,
}

impl ApiSpec {
    pub fn supports(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }

    pub fn is_flexible(&self, version: i16) -> bool {
        version >= self.flexible_from
    }
}

/// Every API we serve, in api-key order.
pub const SUPPORTED_APIS: &[ApiSpec] = &[
    ApiSpec {
        key: ApiKey::Produce,
        min_version: 0,
        max_version: 11,
        flexible_from: 9,
        note: "v3+ served (record batch v2); v0-v2 advertised for old librdkafka's compression check and answered with UNSUPPORTED_VERSION",
    },
    ApiSpec {
        key: ApiKey::Fetch,
        min_version: 4,
        max_version: 17,
        flexible_from: 12,
        note: "v4 is the oldest librdkafka needs for record batch v2; v13+ by topic id; no fetch sessions (session id 0); long polling",
    },
    ApiSpec {
        key: ApiKey::ListOffsets,
        min_version: 0,
        max_version: 10,
        flexible_from: 6,
        note: "earliest, latest, by timestamp, max timestamp (v7+)",
    },
    ApiSpec {
        key: ApiKey::Metadata,
        min_version: 0,
        max_version: 12,
        flexible_from: 9,
        note: "auto-creates topics (v4+ when asked; always before v4)",
    },
    ApiSpec {
        key: ApiKey::OffsetCommit,
        min_version: 0,
        max_version: 9,
        flexible_from: 8,
        note: "durable (an internal log in the data dir); generation and member checks",
    },
    ApiSpec {
        key: ApiKey::OffsetFetch,
        min_version: 0,
        max_version: 9,
        flexible_from: 6,
        note: "v8+ several groups per request",
    },
    ApiSpec {
        key: ApiKey::FindCoordinator,
        min_version: 0,
        max_version: 6,
        flexible_from: 3,
        note: "this node coordinates every group; v4+ batches keys",
    },
    ApiSpec {
        key: ApiKey::JoinGroup,
        min_version: 0,
        max_version: 9,
        flexible_from: 6,
        note: "classic protocol; v4+ MEMBER_ID_REQUIRED round trip; static membership v5+",
    },
    ApiSpec {
        key: ApiKey::Heartbeat,
        min_version: 0,
        max_version: 4,
        flexible_from: 4,
        note: "REBALANCE_IN_PROGRESS asks members to rejoin",
    },
    ApiSpec {
        key: ApiKey::LeaveGroup,
        min_version: 0,
        max_version: 5,
        flexible_from: 4,
        note: "v3+ several members at once",
    },
    ApiSpec {
        key: ApiKey::SyncGroup,
        min_version: 0,
        max_version: 5,
        flexible_from: 4,
        note: "members the leader left out get a valid empty assignment",
    },
    ApiSpec {
        key: ApiKey::DescribeGroups,
        min_version: 0,
        max_version: 5,
        flexible_from: 5,
        note: "",
    },
    ApiSpec {
        key: ApiKey::ListGroups,
        min_version: 0,
        max_version: 5,
        flexible_from: 3,
        note: "state (v4+) and type (v5+) filters",
    },
    ApiSpec {
        key: ApiKey::ApiVersions,
        min_version: 0,
        max_version: 4,
        flexible_from: 3,
        note: "newer versions are answered in v0 with UNSUPPORTED_VERSION (KIP-511)",
    },
    ApiSpec {
        key: ApiKey::CreateTopics,
        min_version: 0,
        max_version: 7,
        flexible_from: 5,
        note: "Kafka's naming rules; replication factor 1 (or -1); validate_only; topic configs validated and kept",
    },
    ApiSpec {
        key: ApiKey::DeleteTopics,
        min_version: 0,
        max_version: 6,
        flexible_from: 4,
        note: "by name, or by id from v6; removes the files",
    },
    ApiSpec {
        key: ApiKey::DeleteRecords,
        min_version: 0,
        max_version: 2,
        flexible_from: 2,
        note: "moves the log start offset; whole segments below it are deleted",
    },
    ApiSpec {
        key: ApiKey::InitProducerId,
        min_version: 0,
        max_version: 5,
        flexible_from: 2,
        note: "idempotent producers (v0 advertised: librdkafka < 2.11 needs it); v3+ bumps the epoch; transactional ids refused with INVALID_REQUEST",
    },
    ApiSpec {
        key: ApiKey::OffsetForLeaderEpoch,
        min_version: 0,
        max_version: 4,
        flexible_from: 4,
        note: "one node: leader epoch 0 forever, ending at the log end offset",
    },
    ApiSpec {
        key: ApiKey::DescribeConfigs,
        min_version: 0,
        max_version: 4,
        flexible_from: 4,
        note: "every topic config with value, source and synonyms; the broker's flags (read-only) and dynamic configs",
    },
    ApiSpec {
        key: ApiKey::AlterConfigs,
        min_version: 0,
        max_version: 2,
        flexible_from: 2,
        note: "topics and both broker levels: the set replaces the resource's configs; persisted",
    },
    ApiSpec {
        key: ApiKey::CreatePartitions,
        min_version: 0,
        max_version: 3,
        flexible_from: 2,
        note: "grow only; every topic echoed with its own error",
    },
    ApiSpec {
        key: ApiKey::DeleteGroups,
        min_version: 0,
        max_version: 2,
        flexible_from: 2,
        note: "empty groups only (NON_EMPTY_GROUP otherwise); deletes their offsets",
    },
    ApiSpec {
        key: ApiKey::IncrementalAlterConfigs,
        min_version: 0,
        max_version: 1,
        flexible_from: 1,
        note: "set, delete, append, subtract, for topics and dynamic broker configs; persisted",
    },
    ApiSpec {
        key: ApiKey::OffsetDelete,
        min_version: 0,
        max_version: 0,
        flexible_from: NOT_FLEXIBLE,
        note: "refused for topics the group's members subscribe to",
    },
    ApiSpec {
        key: ApiKey::DescribeCluster,
        min_version: 0,
        max_version: 1,
        flexible_from: 0,
        note: "brokers endpoint only (v1 controllers: UNSUPPORTED_ENDPOINT_TYPE)",
    },
    ApiSpec {
        key: ApiKey::DescribeTopicPartitions,
        min_version: 0,
        max_version: 0,
        flexible_from: 0,
        note: "paged with a cursor; tried by Kafka's tools (3.7+) before Metadata",
    },
];

/// `flexible_from` of an API that has no flexible version.
pub const NOT_FLEXIBLE: i16 = i16::MAX;

impl ApiKey {
    /// The key for a served API, or `None`.
    pub fn from_i16(key: i16) -> Option<ApiKey> {
        SUPPORTED_APIS.iter().map(|spec| spec.key).find(|k| *k as i16 == key)
    }

    pub fn spec(self) -> &'static ApiSpec {
        SUPPORTED_APIS
            .iter()
            .find(|spec| spec.key == self)
            .expect("every ApiKey variant has a row in SUPPORTED_APIS")
    }

    pub fn name(self) -> &'static str {
        api_name(self as i16).unwrap_or("?")
    }
}

/// Kafka's name for any api key, served or not (for log lines).
pub fn api_name(key: i16) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "LeaderAndIsr",
        "StopReplica",
        "UpdateMetadata",
        "ControlledShutdown",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "ListGroups",
        "SaslHandshake",
        "ApiVersions",
        "CreateTopics",
        "DeleteTopics",
        "DeleteRecords",
        "InitProducerId",
        "OffsetForLeaderEpoch",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "WriteTxnMarkers",
        "TxnOffsetCommit",
        "DescribeAcls",
        "CreateAcls",
        "DeleteAcls",
        "DescribeConfigs",
        "AlterConfigs",
        "AlterReplicaLogDirs",
        "DescribeLogDirs",
        "SaslAuthenticate",
        "CreatePartitions",
        "CreateDelegationToken",
        "RenewDelegationToken",
        "ExpireDelegationToken",
        "DescribeDelegationToken",
        "DeleteGroups",
        "ElectLeaders",
        "IncrementalAlterConfigs",
        "AlterPartitionReassignments",
        "ListPartitionReassignments",
        "OffsetDelete",
        "DescribeClientQuotas",
        "AlterClientQuotas",
        "DescribeUserScramCredentials",
        "AlterUserScramCredentials",
        "Vote",
        "BeginQuorumEpoch",
        "EndQuorumEpoch",
        "DescribeQuorum",
        "AlterPartition",
        "UpdateFeatures",
        "Envelope",
        "FetchSnapshot",
        "DescribeCluster",
        "DescribeProducers",
        "BrokerRegistration",
        "BrokerHeartbeat",
        "UnregisterBroker",
        "DescribeTransactions",
        "ListTransactions",
        "AllocateProducerIds",
        "ConsumerGroupHeartbeat",
        "ConsumerGroupDescribe",
        "ControllerRegistration",
        "GetTelemetrySubscriptions",
        "PushTelemetry",
        "AssignReplicasToDirs",
        "ListClientMetricsResources",
        "DescribeTopicPartitions",
        "ShareGroupHeartbeat",
        "ShareGroupDescribe",
        "ShareFetch",
        "ShareAcknowledge",
        "AddRaftVoter",
        "RemoveRaftVoter",
        "UpdateRaftVoter",
        "InitializeShareGroupState",
        "ReadShareGroupState",
        "WriteShareGroupState",
        "DeleteShareGroupState",
        "ReadShareGroupStateSummary",
    ];
    usize::try_from(key).ok().and_then(|i| NAMES.get(i)).copied()
}

/// The README's table of supported APIs, generated from [`SUPPORTED_APIS`].
pub fn supported_apis_markdown() -> String {
    let mut table = String::from("| API (key) | Versions | Flexible from | Notes |\n|---|---|---|---|\n");
    for spec in SUPPORTED_APIS {
        table.push_str(&format!(
            "| {} ({}) | {}-{} | {} | {} |\n",
            spec.key.name(),
            spec.key as i16,
            spec.min_version,
            spec.max_version,
            if spec.flexible_from == NOT_FLEXIBLE {
                "none".to_string()
            } else {
                spec.flexible_from.to_string()
            },
            spec.note
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_keys() {
        assert_eq!(api_name(0), Some("Produce"));
        assert_eq!(api_name(18), Some("ApiVersions"));
        assert_eq!(api_name(75), Some("DescribeTopicPartitions"));
        assert_eq!(api_name(87), Some("ReadShareGroupStateSummary"));
        assert_eq!(api_name(-1), None);
        assert_eq!(api_name(1000), None);
    }

    #[test]
    fn every_served_key_has_one_row() {
        for spec in SUPPORTED_APIS {
            assert_eq!(ApiKey::from_i16(spec.key as i16), Some(spec.key));
            assert_eq!(spec.key.spec().key, spec.key);
        }
        let mut keys: Vec<i16> = SUPPORTED_APIS.iter().map(|s| s.key as i16).collect();
        let sorted = {
            let mut k = keys.clone();
            k.sort();
            k.dedup();
            k
        };
        assert_eq!(keys, sorted, "rows are unique and in key order");
        keys.clear();
    }
}

#[cfg(test)]
mod readme {
    /// The README's table is this module's table, verbatim. Run with
    /// MINIKAFKA_BLESS_README=1 to rewrite the README's copy.
    #[test]
    fn readme_table_matches_supported_apis() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let mut readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme.find("<!-- supported-apis:start -->\n").expect("start marker") + 30;
        let end = readme.find("<!-- supported-apis:end -->").expect("end marker");
        if std::env::var_os("MINIKAFKA_BLESS_README").is_some() {
            readme.replace_range(start..end, &super::supported_apis_markdown());
            std::fs::write(path, &readme).expect("README.md is writable");
            return;
        }
        assert_eq!(
            &readme[start..end],
            super::supported_apis_markdown(),
            "README's API table is stale; paste supported_apis_markdown()'s output between the markers"
        );
    }
}
