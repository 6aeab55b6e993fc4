#!/usr/bin/env python3
"""Topic administration with kafka-python's KafkaAdminClient, for minikafka's tests.

Runs one action and prints one JSON object on stdout:
  create NAME PARTITIONS [REPLICATION [KEY=VALUE ...]]  -> {"error": null | "<ErrorClassName>"}
  describe-configs NAME                 -> {"configs": {name: value, ...}}
  alter-configs NAME KEY=VALUE ...      -> {"error": ...}
  describe-broker-configs ID            -> {"configs": {name: {"value": ..., "source": ...}}}, every config
  alter-broker-configs ID KEY=VALUE ... -> {"error": ...}, IncrementalAlterConfigs set operations
  partitions NAME COUNT                 -> {"error": ...}
  delete NAME                           -> {"error": ...}
  list                                  -> {"topics": [...]}
  describe NAME                         -> {"partitions": [0, 1, ...]}
  list-groups [STATE,...] [TYPE,...]     -> {"groups": {group_id: state, ...}}; "-" for no filter
  describe-groups GROUP ...             -> {"groups": {group_id: {"state": ..., "protocol_type": ...}}}
  delete-groups GROUP ...               -> {"results": {group_id: "OK" | "<ErrorClassName>"}}
  delete-group-offsets GROUP TOPIC:PARTITION ...
                                        -> {"error": null | "<ErrorClassName>",
                                            "partitions": {"TOPIC:PARTITION": null | "<ErrorClassName>"}}
"""
import argparse
import json
import sys

from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic


def error_name(e):
    return type(e).__name__


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("action")
    p.add_argument("args", nargs="*")
    args = p.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=10000)
    try:
        if args.action == "create":
            name, partitions = args.args[0], int(args.args[1])
            replication = int(args.args[2]) if len(args.args) > 2 else 1
            configs = dict(kv.split("=", 1) for kv in args.args[3:])
            try:
                admin.create_topics([NewTopic(name, partitions, replication, topic_configs=configs)])
                print(json.dumps({"error": None}))
            except Exception as e:  # noqa: BLE001 - the error class is the answer
                print(json.dumps({"error": error_name(e)}))
        elif args.action == "partitions":
            try:
                admin.create_partitions({args.args[0]: NewPartitions(int(args.args[1]))})
                print(json.dumps({"error": None}))
            except Exception as e:  # noqa: BLE001
                print(json.dumps({"error": error_name(e)}))
        elif args.action == "delete":
            try:
                admin.delete_topics([args.args[0]])
                print(json.dumps({"error": None}))
            except Exception as e:  # noqa: BLE001
                print(json.dumps({"error": error_name(e)}))
        elif args.action == "describe-configs":
            # kafka-python 3 answers {"topic": {name: {config: {"value": ...}}}},
            # leaving out configs at their defaults.
            result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.args[0])])
            described = result.get("topic", {}).get(args.args[0], {})
            print(json.dumps({"configs": {k: v["value"] for k, v in described.items()}}))
        elif args.action == "alter-configs":
            configs = dict(kv.split("=", 1) for kv in args.args[1:])
            try:
                result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, args.args[0], configs=configs)])
                outcome = result.get("topic", {}).get(args.args[0])
                print(json.dumps({"error": None if outcome == "OK" else str(outcome)}))
            except Exception as e:  # noqa: BLE001
                print(json.dumps({"error": error_name(e)}))
        elif args.action == "describe-broker-configs":
            result = admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, args.args[0])], config_filter="all"
            )
            described = result.get("broker", {}).get(args.args[0], {})
            print(json.dumps({"configs": {
                k: {"value": v["value"], "source": v["config_source"], "read_only": v["read_only"]}
                for k, v in described.items()
            }}))
        elif args.action == "alter-broker-configs":
            configs = dict(kv.split("=", 1) for kv in args.args[1:])
            # raise_on_unknown=False: let the broker judge read-only configs.
            result = admin.alter_configs(
                [ConfigResource(ConfigResourceType.BROKER, args.args[0], configs=configs)],
                raise_on_unknown=False,
            )
            outcome = result.get("broker", {}).get(args.args[0])
            print(json.dumps({"error": None if outcome == "OK" else str(outcome)}))
        elif args.action == "list":
            print(json.dumps({"topics": sorted(admin.list_topics())}))
        elif args.action == "describe":
            described = admin.describe_topics([args.args[0]])
            print(json.dumps({"partitions": sorted(p.get("partition_index", p.get("partition")) for p in described[0]["partitions"])}))
        elif args.action == "list-groups":
            filters = [a.split(",") if a != "-" else None for a in args.args] + [None, None]
            groups = admin.list_groups(states_filter=filters[0], types_filter=filters[1])
            print(json.dumps({"groups": {g["group_id"]: g.get("group_state", "") for g in groups}}))
        elif args.action == "describe-groups":
            described = admin.describe_groups(args.args)
            print(json.dumps({"groups": {
                group: {"state": d["group_state"], "protocol_type": d["protocol_type"]}
                for group, d in described.items()
            }}))
        elif args.action == "delete-groups":
            print(json.dumps({"results": admin.delete_groups(args.args)}))
        elif args.action == "delete-group-offsets":
            group, specs = args.args[0], args.args[1:]
            partitions = [TopicPartition(t, int(p)) for t, p in (spec.rsplit(":", 1) for spec in specs)]
            try:
                results = admin.delete_group_offsets(group, partitions)
            except Exception as e:  # noqa: BLE001 - a top-level error is the answer
                print(json.dumps({"error": error_name(e), "partitions": {}}))
            else:
                print(json.dumps({"error": None, "partitions": {
                    f"{tp.topic}:{tp.partition}": None if err.errno == 0 else err.__name__
                    for tp, err in results.items()
                }}))
        else:
            p.error(f"unknown action {args.action}")
    finally:
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
