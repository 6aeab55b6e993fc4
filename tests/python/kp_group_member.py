"""Stays a member of a consumer group for as long as a test needs one.

Subscribes to --subscribe in --group, polls until it has an assignment,
commits each --commit TOPIC:PARTITION:OFFSET (any topic, subscribed or
not), prints {"ready": true} and keeps polling (so heartbeats go on).
A line "commit TOPIC:PARTITION:OFFSET" on stdin commits that, as the
member, and prints {"committed": true} or {"commit_error": "..."}. Any
other line, or stdin closing, makes it leave the group and print
{"left": true}.
"""

import argparse
import json
import os
import select
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


def parse_commit(spec: str):
    topic, partition, offset = spec.rsplit(":", 2)
    return TopicPartition(topic, int(partition)), OffsetAndMetadata(int(offset), "", -1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--group", required=True)
    p.add_argument("--subscribe", required=True, action="append")
    p.add_argument("--commit", default=[], action="append", help="TOPIC:PARTITION:OFFSET")
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--session-timeout-ms", type=int, default=10000)
    args = p.parse_args()

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
    )
    consumer.subscribe(args.subscribe)
    deadline = time.monotonic() + args.timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            print("no assignment before the deadline", file=sys.stderr)
            return 1
        consumer.poll(timeout_ms=100)
    offsets = dict(parse_commit(spec) for spec in args.commit)
    if offsets:
        consumer.commit(offsets)
    print(json.dumps({"ready": True}), flush=True)
    # Read stdin unbuffered, so that select sees every line that is waiting.
    pending = b""
    stdin = sys.stdin.fileno()
    while True:
        if select.select([stdin], [], [], 0)[0]:
            read = os.read(stdin, 4096)
            if not read:
                break
            pending += read
        if b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            words = line.decode().split()
            if len(words) != 2 or words[0] != "commit":
                break
            try:
                consumer.commit(dict([parse_commit(words[1])]))
                print(json.dumps({"committed": True}), flush=True)
            except Exception as e:  # reported to the test, which decides
                print(json.dumps({"commit_error": repr(e)}), flush=True)
            continue
        consumer.poll(timeout_ms=100)
    consumer.close()
    print(json.dumps({"left": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
