"""Stays a member of a consumer group for as long as a test needs one.

Subscribes to --subscribe in --group, polls until it has an assignment,
commits each --commit TOPIC:PARTITION:OFFSET (any topic, subscribed or
not), prints {"ready": true} and keeps polling (so heartbeats go on) until
a line arrives on stdin or stdin closes. Then it leaves the group and
prints {"left": true}.
"""

import argparse
import json
import select
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--group", required=True)
    p.add_argument("--subscribe", required=True, action="append")
    p.add_argument("--commit", default=[], action="append", help="TOPIC:PARTITION:OFFSET")
    p.add_argument("--timeout-s", type=float, default=60.0)
    args = p.parse_args()

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.subscribe(args.subscribe)
    deadline = time.monotonic() + args.timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            print("no assignment before the deadline", file=sys.stderr)
            return 1
        consumer.poll(timeout_ms=100)
    offsets = {}
    for spec in args.commit:
        topic, partition, offset = spec.rsplit(":", 2)
        offsets[TopicPartition(topic, int(partition))] = OffsetAndMetadata(int(offset), "", -1)
    if offsets:
        consumer.commit(offsets)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0)
        if readable:
            break
        consumer.poll(timeout_ms=100)
    consumer.close()
    print(json.dumps({"left": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
