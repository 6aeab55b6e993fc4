//! Topic administration through real admin clients: kafka-python's
//! KafkaAdminClient and librdkafka's AdminClient create, grow and delete
//! topics, get Kafka's errors for bad names, duplicates and replication
//! factor 3, and kcat -L sees every change.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;
use tokio::process::Command;

async fn kcat_topics(bootstrap: &str) -> String {
    let output = Command::new(kcat())
        .env_remove("LD_LIBRARY_PATH")
        .args(["-b", bootstrap, "-L"])
        .output()
        .await
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_admin_creates_grows_and_deletes_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        auto_create_topics: false,
        ..config(dir.path(), 1)
    })
    .await;
    let bootstrap = broker.bootstrap();

    assert_eq!(
        kp_admin(&bootstrap, &["create", "admin-py", "3"]).await["error"],
        Value::Null
    );
    assert!(
        kcat_topics(&bootstrap)
            .await
            .contains("topic \"admin-py\" with 3 partitions")
    );
    assert_eq!(
        kp_admin(&bootstrap, &["create", "admin-py", "3"]).await["error"],
        "TopicAlreadyExistsError"
    );
    assert_eq!(
        kp_admin(&bootstrap, &["create", "bad/name", "1"]).await["error"],
        "InvalidTopicError"
    );
    assert_eq!(
        kp_admin(&bootstrap, &["create", "three-copies", "1", "3"]).await["error"],
        "InvalidReplicationFactorError"
    );

    assert_eq!(
        kp_admin(&bootstrap, &["partitions", "admin-py", "5"]).await["error"],
        Value::Null
    );
    assert_eq!(
        kp_admin(&bootstrap, &["describe", "admin-py"]).await["partitions"],
        serde_json::json!([0, 1, 2, 3, 4])
    );
    assert_eq!(
        kp_admin(&bootstrap, &["partitions", "admin-py", "2"]).await["error"],
        "InvalidPartitionsError"
    );
    assert!(
        kcat_topics(&bootstrap)
            .await
            .contains("topic \"admin-py\" with 5 partitions")
    );

    assert_eq!(
        kp_admin(&bootstrap, &["delete", "admin-py"]).await["error"],
        Value::Null
    );
    assert!(!kcat_topics(&bootstrap).await.contains("admin-py"));
    assert_eq!(
        kp_admin(&bootstrap, &["delete", "admin-py"]).await["error"],
        "UnknownTopicOrPartitionError"
    );
    // The name can be used again, and its files are gone.
    assert!(!dir.path().join("admin-py-4").exists());
    assert_eq!(
        kp_admin(&bootstrap, &["create", "admin-py", "1"]).await["error"],
        Value::Null
    );
    assert_eq!(
        kp_admin(&bootstrap, &["list"]).await["topics"],
        serde_json::json!(["admin-py"])
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_admin_creates_grows_and_deletes_and_producers_use_new_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));

    let created = admin
        .create_topics(
            &[
                NewTopic::new("rd-admin", 2, TopicReplication::Fixed(1)),
                NewTopic::new("rd-other", 2, TopicReplication::Fixed(1)),
                NewTopic::new("rd..bad!", 1, TopicReplication::Fixed(1)),
                NewTopic::new("rd-three", 1, TopicReplication::Fixed(3)),
            ],
            &options,
        )
        .await
        .unwrap();
    let codes: Vec<Option<RDKafkaErrorCode>> = created.iter().map(|r| r.as_ref().err().map(|(_, c)| *c)).collect();
    assert_eq!(codes[0], None);
    assert_eq!(codes[1], None);
    assert_eq!(codes[2], Some(RDKafkaErrorCode::InvalidTopic));
    assert_eq!(codes[3], Some(RDKafkaErrorCode::InvalidReplicationFactor));

    let again = admin
        .create_topics(&[NewTopic::new("rd-admin", 2, TopicReplication::Fixed(1))], &options)
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::TopicAlreadyExists)
    );

    let validated = admin
        .create_topics(
            &[NewTopic::new("rd-dry", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().validate_only(true),
        )
        .await
        .unwrap();
    assert!(validated[0].is_ok());
    assert!(
        broker.broker().topic("rd-dry").is_none(),
        "validate_only creates nothing"
    );

    let grown = admin
        .create_partitions(&[NewPartitions::new("rd-admin", 4)], &options)
        .await
        .unwrap();
    assert!(grown[0].is_ok());
    let shrunk = admin
        .create_partitions(&[NewPartitions::new("rd-admin", 1)], &options)
        .await
        .unwrap();
    assert_eq!(
        shrunk[0].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::InvalidPartitions)
    );

    // A producer uses the new partitions once its metadata says so.
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("topic.metadata.refresh.interval.ms", "100")
        .create()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..400 {
        let key = format!("k{i}");
        let record = rdkafka::producer::FutureRecord::to("rd-admin").key(&key).payload("v");
        let delivery = producer.send(record, DEADLINE).await.map_err(|(e, _)| e).unwrap();
        seen.insert(delivery.partition);
    }
    assert_eq!(seen, (0..4).collect(), "every partition, old and new, gets records");
    // A live producer refreshing its metadata would auto-create the topic
    // again right after the deletion (as with Kafka): it goes first.
    drop(producer);

    let deleted = admin.delete_topics(&["rd-admin", "never-was"], &options).await.unwrap();
    assert!(deleted[0].is_ok());
    assert_eq!(
        deleted[1].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    assert!(broker.broker().topic("rd-admin").is_none());
    broker.shutdown().await;
}

#[tokio::test]
async fn describe_cluster_names_this_node() {
    use minikafka::protocol::messages::topic_admin::DescribeClusterRequest;
    use minikafka::protocol::messages::{Request, Response};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    for version in 0..=1 {
        let Response::DescribeCluster(r) = client
            .call(Request::DescribeCluster(DescribeClusterRequest::default()), version)
            .await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.cluster_id, broker.broker().cluster_id());
        assert_eq!(r.controller_id, 0);
        assert_eq!(
            (r.brokers[0].broker_id, r.brokers[0].port),
            (0, i32::from(broker.local_addr().port()))
        );
    }
    let request = DescribeClusterRequest {
        endpoint_type: 2,
        ..Default::default()
    };
    let Response::DescribeCluster(r) = client.call(Request::DescribeCluster(request), 1).await else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        114 /* MISMATCHED_ENDPOINT_TYPE, as a number: the test must not trust the enum */
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_describes_and_alters_topic_configs_which_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        kp_admin(&bootstrap, &["create", "configured", "1", "1", "retention.ms=1000"]).await["error"],
        Value::Null
    );
    let described = kp_admin(&bootstrap, &["describe-configs", "configured"]).await;
    assert_eq!(described["configs"]["retention.ms"], "1000");

    let altered = kp_admin(&bootstrap, &["alter-configs", "configured", "max.message.bytes=2000"]).await;
    assert_eq!(altered["error"], Value::Null, "{altered}");
    let described = kp_admin(&bootstrap, &["describe-configs", "configured"]).await;
    assert_eq!(described["configs"]["max.message.bytes"], "2000");
    // (kafka-python 3 alters through IncrementalAlterConfigs: retention.ms stays.)
    assert_eq!(described["configs"]["retention.ms"], "1000");

    let refused = kp_admin(&bootstrap, &["create", "compacted", "1", "1", "cleanup.policy=compact"]).await;
    assert_eq!(refused["error"], "InvalidConfigurationError");
    broker.shutdown().await;

    let broker = start(config(dir.path(), 1)).await;
    let described = kp_admin(&broker.bootstrap(), &["describe-configs", "configured"]).await;
    assert_eq!(
        described["configs"]["max.message.bytes"], "2000",
        "configs survive a restart"
    );
    broker.shutdown().await;
}

/// Dynamic broker configs through kafka-python: set on broker "0", they
/// become the default of every topic that does not set its own, read-only
/// settings are refused with INVALID_REQUEST as Kafka does, and both
/// survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_alters_broker_configs_which_topics_inherit_and_which_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    assert_eq!(
        kp_admin(&bootstrap, &["create", "inherits", "1"]).await["error"],
        Value::Null
    );
    assert_eq!(
        kp_admin(&bootstrap, &["create", "own-retention", "1", "1", "retention.ms=1000"]).await["error"],
        Value::Null
    );
    let altered = kp_admin(&bootstrap, &["alter-broker-configs", "0", "log.retention.ms=3600000"]).await;
    assert_eq!(altered["error"], Value::Null, "{altered}");

    let described = kp_admin(&bootstrap, &["describe-broker-configs", "0"]).await;
    let retention = &described["configs"]["log.retention.ms"];
    assert_eq!(retention["value"], "3600000", "{described}");
    assert_eq!(retention["source"], "DYNAMIC_BROKER_CONFIG");
    assert_eq!(retention["read_only"], false);
    assert_eq!(described["configs"]["num.partitions"]["read_only"], true);

    // kafka-python's default filter keeps modified configs, and an
    // inherited dynamic value is one.
    let inherited = kp_admin(&bootstrap, &["describe-configs", "inherits"]).await;
    assert_eq!(inherited["configs"]["retention.ms"], "3600000", "{inherited}");
    let own = kp_admin(&bootstrap, &["describe-configs", "own-retention"]).await;
    assert_eq!(own["configs"]["retention.ms"], "1000", "a topic's own config wins");

    let refused = kp_admin(&bootstrap, &["alter-broker-configs", "0", "num.partitions=3"]).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidRequestError")),
        "{refused}"
    );
    let refused = kp_admin(&bootstrap, &["alter-broker-configs", "0", "log.retention.ms=-5"]).await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("InvalidRequestError")),
        "{refused}"
    );
    broker.shutdown().await;

    let broker = start(config(dir.path(), 1)).await;
    let inherited = kp_admin(&broker.bootstrap(), &["describe-configs", "inherits"]).await;
    assert_eq!(
        inherited["configs"]["retention.ms"], "3600000",
        "dynamic broker configs survive a restart"
    );
    broker.shutdown().await;
}

/// librdkafka sets message.max.bytes on the broker: producers to a topic
/// without max.message.bytes of its own then get MESSAGE_TOO_LARGE above
/// it, and DescribeConfigs shows where each value comes from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_sets_a_broker_message_max_bytes_that_produce_enforces() {
    use rdkafka::admin::{AlterConfig, ConfigSource, ResourceSpecifier};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new();
    let created = admin
        .create_topics(&[NewTopic::new("capped", 1, TopicReplication::Fixed(1))], &options)
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "5000")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let big = "x".repeat(1000);
    let send_big = || {
        producer.send(
            rdkafka::producer::FutureRecord::to("capped").payload(&big).key("k"),
            DEADLINE,
        )
    };
    let delivered = send_big().await.map_err(|(e, _)| e).unwrap();
    assert_eq!(
        (delivered.partition, delivered.offset),
        (0, 0),
        "accepted under the flag's 1 MiB"
    );

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Broker(0)).set("message.max.bytes", "300")],
            &options,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let code = send_big().await.err().map(|(e, _)| e.rdkafka_error_code());
    assert_eq!(code, Some(Some(RDKafkaErrorCode::MessageSizeTooLarge)));

    let described = admin
        .describe_configs(
            &[ResourceSpecifier::Broker(0), ResourceSpecifier::Topic("capped")],
            &options,
        )
        .await
        .unwrap();
    let broker_configs = described[0].as_ref().unwrap();
    let entry = broker_configs.get("message.max.bytes").unwrap();
    assert_eq!(entry.value.as_deref(), Some("300"));
    assert!(matches!(entry.source, ConfigSource::DynamicBroker), "{entry:?}");
    assert!(!entry.is_read_only);
    let topic_configs = described[1].as_ref().unwrap();
    let entry = topic_configs.get("max.message.bytes").unwrap();
    assert_eq!(entry.value.as_deref(), Some("300"));
    assert!(matches!(entry.source, ConfigSource::DynamicBroker), "{entry:?}");
    assert!(!entry.is_default);

    // AlterConfigs replaces the broker's set: an empty set takes the cap away.
    let altered = admin
        .alter_configs(&[AlterConfig::new(ResourceSpecifier::Broker(0))], &options)
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    assert_eq!(send_big().await.map_err(|(e, _)| e).unwrap().offset, 1);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_take_effect_log_append_time_and_max_message_bytes() {
    use rdkafka::Message;
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    use rdkafka::message::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(minikafka::BrokerConfig {
        retention_ms: 86_400_000,
        ..config(dir.path(), 1)
    })
    .await;
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new();
    let created = admin
        .create_topics(
            &[NewTopic::new("stamped", 1, TopicReplication::Fixed(1)).set("message.timestamp.type", "LogAppendTime")],
            &options,
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let created = admin
        .create_topics(&[NewTopic::new("small", 1, TopicReplication::Fixed(1))], &options)
        .await
        .unwrap();
    assert!(created[0].is_ok());
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("small")).set("max.message.bytes", "300")],
            &options,
        )
        .await;
    let altered = match altered {
        Ok(results) => results,
        Err(e) => panic!("alter configs: {e}"),
    };
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("small")], &options)
        .await
        .unwrap();
    let small = described[0].as_ref().unwrap();
    assert_eq!(
        small.get("max.message.bytes").and_then(|e| e.value.as_deref()),
        Some("300")
    );
    // Every config is listed, defaults included (the broker's, from its
    // flags), as tools expect.
    assert_eq!(
        small.get("cleanup.policy").and_then(|e| e.value.as_deref()),
        Some("delete")
    );
    assert_eq!(
        small.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("86400000")
    );
    assert!(small.get("retention.ms").is_some_and(|e| e.is_default));

    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    let long_ago = 1_000_000_000_000; // 2001
    let record = rdkafka::producer::FutureRecord::to("stamped")
        .payload("then")
        .key("k")
        .timestamp(long_ago);
    producer.send(record, DEADLINE).await.map_err(|(e, _)| e).unwrap();
    let big = "x".repeat(1000);
    let refused = producer
        .send(
            rdkafka::producer::FutureRecord::to("small").payload(&big).key("k"),
            DEADLINE,
        )
        .await;
    let code = refused.err().map(|(e, _)| e.rdkafka_error_code());
    assert_eq!(code, Some(Some(RDKafkaErrorCode::MessageSizeTooLarge)));

    let consumer = consumer_from_beginning(&bootstrap, "stamped", 1);
    let timestamp = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                return message.timestamp();
            }
        }
        Timestamp::NotAvailable
    })
    .await
    .unwrap();
    match timestamp {
        Timestamp::LogAppendTime(ms) => assert!(
            ms > long_ago + 1_000_000_000,
            "the broker's time, not the producer's: {ms}"
        ),
        other => panic!("expected a LogAppendTime timestamp, got {other:?}"),
    }
    broker.shutdown().await;
}

/// DescribeTopicPartitions pages through partitions with a cursor.
#[tokio::test]
async fn describe_topic_partitions_pages_with_a_cursor() {
    use minikafka::protocol::messages::describe_topic_partitions::*;
    use minikafka::protocol::messages::{Request, Response};
    use minikafka::protocol::primitives::Nullable;
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("paged-a", 3).unwrap();
    broker.broker().get_or_create_topic("paged-b", 2).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut seen = Vec::new();
    let mut cursor = Nullable(None);
    loop {
        let request = DescribeTopicPartitionsRequest {
            topics: vec![],
            response_partition_limit: 2,
            cursor,
        };
        let Response::DescribeTopicPartitions(r) = client.call(Request::DescribeTopicPartitions(request), 0).await
        else {
            panic!()
        };
        for topic in &r.topics {
            for p in &topic.partitions {
                seen.push((topic.name.clone().unwrap(), p.partition_index));
            }
        }
        if r.next_cursor.0.is_none() {
            break;
        }
        cursor = r.next_cursor;
    }
    let expected: Vec<(String, i32)> = vec![
        ("paged-a".into(), 0),
        ("paged-a".into(), 1),
        ("paged-a".into(), 2),
        ("paged-b".into(), 0),
        ("paged-b".into(), 1),
    ];
    assert_eq!(seen, expected);
    broker.shutdown().await;
}

/// `minikafka topics` drives the same APIs from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topics_cli_creates_describes_alters_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let cli = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_minikafka"));
        command.args(["topics", "-b", &bootstrap]).args(args);
        command
    };
    let run = |mut command: Command| async move {
        let output = command.output().await.unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (ok, _, err) = run(cli(&["create", "cli-topic", "-p", "4", "-c", "retention.ms=5000"])).await;
    assert!(ok, "{err}");
    let (ok, listed, _) = run(cli(&["list"])).await;
    assert!(ok && listed.contains("cli-topic\t4"), "{listed}");
    let (ok, described, _) = run(cli(&["describe", "cli-topic"])).await;
    assert!(ok);
    assert!(described.contains("4 partitions"), "{described}");
    assert!(described.contains("retention.ms=5000\n"), "{described}");
    assert!(described.contains("cleanup.policy=delete  (default)"), "{described}");

    let (ok, _, err) = run(cli(&[
        "alter",
        "cli-topic",
        "-c",
        "retention.ms",
        "-c",
        "max.message.bytes=4096",
    ]))
    .await;
    assert!(ok, "{err}");
    let (_, described, _) = run(cli(&["describe", "cli-topic"])).await;
    assert!(described.contains("retention.ms=604800000  (default)"), "{described}");
    assert!(described.contains("max.message.bytes=4096\n"), "{described}");

    let (ok, _, err) = run(cli(&["create", "cli-topic"])).await;
    assert!(!ok && err.contains("TopicAlreadyExists"), "{err}");
    let (ok, _, _) = run(cli(&["delete", "cli-topic"])).await;
    assert!(ok);
    let (_, listed, _) = run(cli(&["list"])).await;
    assert!(!listed.contains("cli-topic"));
    broker.shutdown().await;
}

/// The cluster-wide default (broker ""), what each level describes, the
/// incremental operations and the refusals, byte by byte.
#[tokio::test]
async fn cluster_wide_broker_configs_sit_under_the_broker_s_own() {
    use minikafka::protocol::messages::configs::*;
    use minikafka::protocol::messages::{Request, Response};
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    broker.broker().get_or_create_topic("layered", 1).unwrap();
    let mut client = RawClient::connect(broker.local_addr()).await;
    let set = |name: &str, value: Option<&str>, op: i8| IncrementalAlterableConfig {
        name: name.into(),
        config_operation: op,
        value: value.map(Into::into),
    };
    let mut alter = async |resource_name: &str, configs: Vec<IncrementalAlterableConfig>| {
        let request = IncrementalAlterConfigsRequest {
            resources: vec![IncrementalAlterConfigsResource {
                resource_type: RESOURCE_BROKER,
                resource_name: resource_name.into(),
                configs,
            }],
            validate_only: false,
        };
        let Response::IncrementalAlterConfigs(r) = client.call(Request::IncrementalAlterConfigs(request), 1).await
        else {
            panic!()
        };
        r.responses[0].error_code
    };
    assert_eq!(alter("", vec![set("log.retention.ms", Some("2000"), 0)]).await, 0);
    assert_eq!(alter("0", vec![set("log.retention.ms", Some("1000"), 0)]).await, 0);
    assert_eq!(
        alter("0", vec![set("log.cleanup.policy", Some("delete"), 2)]).await,
        0,
        "append to a list"
    );
    assert_eq!(alter("0", vec![set("log.segment.bytes", Some("x"), 0)]).await, 42);
    assert_eq!(
        alter("0", vec![set("auto.create.topics.enable", Some("false"), 0)]).await,
        42
    );
    assert_eq!(
        alter("0", vec![set("log.retention.ms", None, 0)]).await,
        42,
        "null value"
    );
    assert_eq!(
        alter("1", vec![set("log.retention.ms", Some("5"), 0)]).await,
        42,
        "another node"
    );
    assert_eq!(
        alter("0", vec![set("log.retention.ms", Some("5"), 9)]).await,
        42,
        "no such operation"
    );

    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut describe = async |resource_type: i8, resource_name: &str, key: &str| {
        let request = DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type,
                resource_name: resource_name.into(),
                configuration_keys: Some(vec![key.into()]),
            }],
            include_synonyms: true,
            include_documentation: false,
        };
        let Response::DescribeConfigs(r) = client.call(Request::DescribeConfigs(request), 4).await else {
            panic!()
        };
        let entry = r.results[0].configs.first().cloned();
        entry.map(|e| {
            let synonyms: Vec<(String, i8)> = e
                .synonyms
                .iter()
                .map(|s| (s.value.clone().unwrap(), s.source))
                .collect();
            (e.value.unwrap(), e.config_source, synonyms)
        })
    };
    let (value, source, synonyms) = describe(RESOURCE_TOPIC, "layered", "retention.ms").await.unwrap();
    assert_eq!((value.as_str(), source), ("1000", 2), "this broker's value wins");
    let expected: Vec<(String, i8)> = vec![("1000".into(), 2), ("2000".into(), 3), ("604800000".into(), 5)];
    assert_eq!(synonyms, expected, "every level, most specific first");
    let (value, source, _) = describe(RESOURCE_BROKER, "", "log.retention.ms").await.unwrap();
    assert_eq!((value.as_str(), source), ("2000", 3));
    assert_eq!(
        describe(RESOURCE_BROKER, "", "log.segment.bytes").await,
        None,
        "the cluster level lists only what is set there"
    );
    let (value, source, _) = describe(RESOURCE_BROKER, "0", "log.cleanup.policy").await.unwrap();
    assert_eq!((value.as_str(), source), ("delete", 2));

    // Deleting this broker's value uncovers the cluster-wide one.
    let mut client = RawClient::connect(broker.local_addr()).await;
    let request = IncrementalAlterConfigsRequest {
        resources: vec![IncrementalAlterConfigsResource {
            resource_type: RESOURCE_BROKER,
            resource_name: "0".into(),
            configs: vec![set("log.retention.ms", None, 1)],
        }],
        validate_only: false,
    };
    let Response::IncrementalAlterConfigs(r) = client.call(Request::IncrementalAlterConfigs(request), 1).await else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    let mut client = RawClient::connect(broker.local_addr()).await;
    let request = DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: RESOURCE_TOPIC,
            resource_name: "layered".into(),
            configuration_keys: Some(vec!["retention.ms".into()]),
        }],
        include_synonyms: false,
        include_documentation: false,
    };
    let Response::DescribeConfigs(r) = client.call(Request::DescribeConfigs(request), 4).await else {
        panic!()
    };
    let entry = &r.results[0].configs[0];
    assert_eq!((entry.value.as_deref(), entry.config_source), (Some("2000"), 3));
    broker.shutdown().await;
}

/// Deleting a topic deletes the groups' committed offsets for it, as in
/// Kafka: a topic created again under the name starts with no positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_deletes_its_committed_offsets() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    /// Commits `commit` (if any) for group "remembers", then reads back
    /// the committed offsets of doomed-0 and kept-0.
    async fn committed(bootstrap: &str, commit: Option<(i64, i64)>) -> (Offset, Offset) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "remembers")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        tokio::task::spawn_blocking(move || {
            let mut positions = TopicPartitionList::new();
            let (doomed, kept) = commit.unwrap_or_default();
            positions
                .add_partition_offset("doomed", 0, Offset::Offset(doomed))
                .unwrap();
            positions.add_partition_offset("kept", 0, Offset::Offset(kept)).unwrap();
            if commit.is_some() {
                consumer.commit(&positions, CommitMode::Sync).unwrap();
            }
            let read = consumer.committed_offsets(positions, DEADLINE).unwrap();
            let offset = |topic: &str| read.find_partition(topic, 0).unwrap().offset();
            (offset("doomed"), offset("kept"))
        })
        .await
        .unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config(dir.path(), 1)).await;
    let bootstrap = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new();
    let topics = [
        NewTopic::new("doomed", 1, TopicReplication::Fixed(1)),
        NewTopic::new("kept", 1, TopicReplication::Fixed(1)),
    ];
    let created = admin.create_topics(&topics, &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(
        committed(&bootstrap, Some((7, 9))).await,
        (Offset::Offset(7), Offset::Offset(9))
    );

    let deleted = admin.delete_topics(&["doomed"], &options).await.unwrap();
    assert!(deleted[0].is_ok());
    let created = admin.create_topics(&topics[..1], &options).await.unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    assert_eq!(committed(&bootstrap, None).await, (Offset::Invalid, Offset::Offset(9)));
    broker.shutdown().await;

    // The deletion is in the offsets log: it holds across a restart.
    let broker = start(config(dir.path(), 1)).await;
    assert_eq!(
        committed(&broker.bootstrap(), None).await,
        (Offset::Invalid, Offset::Offset(9))
    );
    broker.shutdown().await;
}
