"""Commits offsets for a group as a consumer outside it.

Assigns itself the partitions of each --commit TOPIC:PARTITION:OFFSET (no
subscription, so it never joins --group), commits them, prints
{"committed": true} and closes.
"""

import argparse
import json
import sys

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--group", required=True)
    p.add_argument("--commit", required=True, action="append", help="TOPIC:PARTITION:OFFSET")
    args = p.parse_args()

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
    )
    offsets = {}
    for spec in args.commit:
        topic, partition, offset = spec.rsplit(":", 2)
        offsets[TopicPartition(topic, int(partition))] = OffsetAndMetadata(int(offset), "", -1)
    consumer.assign(list(offsets))
    consumer.commit(offsets)
    consumer.close()
    print(json.dumps({"committed": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
