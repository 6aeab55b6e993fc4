#!/usr/bin/env python3
"""Consume N records from every partition of a topic with kafka-python, for minikafka's tests.

Assigns all partitions (no consumer group), seeks to the beginning and polls
until N records arrived or the timeout passed. Prints one JSON line per record:
{"partition", "offset", "key", "value", "headers": [[k, v], ...], "timestamp"}
with key, value and header values decoded as utf-8 (null stays null). Exits
non-zero if fewer than N records arrived in time.
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def dec(b):
    return None if b is None else b.decode("utf-8")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--topic", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--timeout-s", type=float, default=30.0)
    p.add_argument("--group", default="none",
                   help="'none' assigns every partition; a group id subscribes in that group and commits at the end")
    p.add_argument("--seek", type=int, default=None,
                   help="seek every partition to this offset instead of the beginning")
    p.add_argument("--reset", default="earliest", choices=["earliest", "latest"],
                   help="auto_offset_reset, applied when --seek is out of range")
    args = p.parse_args()

    deadline = time.monotonic() + args.timeout_s
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        enable_auto_commit=False,
        group_id=None if args.group == "none" else args.group,
        auto_offset_reset=args.reset,
    )
    got = 0
    try:
        partitions = set()
        while True:
            partitions = consumer.partitions_for_topic(args.topic) or set()
            if partitions or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not partitions:
            print(f"kp_consume: no partitions for topic {args.topic!r} in metadata", file=sys.stderr)
            return 1
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        if args.group != "none":
            consumer.subscribe([args.topic])
        else:
            consumer.assign(tps)
        if args.group != "none":
            pass  # positions come from the group's committed offsets
        elif args.seek is None:
            consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, args.seek)

        while got < args.expect:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            # Never more than asked for: in a group, what was consumed is
            # exactly what gets committed below.
            batches = consumer.poll(timeout_ms=min(remaining_ms, 1000), max_records=args.expect - got)
            for tp in sorted(batches, key=lambda t: t.partition):
                for r in batches[tp]:
                    line = {
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": dec(r.key),
                        "value": dec(r.value),
                        "headers": [[k, dec(v)] for k, v in (r.headers or [])],
                        "timestamp": r.timestamp,
                    }
                    sys.stdout.write(json.dumps(line) + "\n")
                    got += 1
            sys.stdout.flush()
        if args.group != "none" and got >= args.expect:
            consumer.commit()
    finally:
        consumer.close()

    if got < args.expect:
        print(f"kp_consume: got {got} of {args.expect} records within {args.timeout_s}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
