#!/usr/bin/env python3
"""Produce N records to a topic with kafka-python, for minikafka's integration tests.

Record i has key f"{key_prefix}{i}", value f"{value_prefix}{i}" (utf-8) and the
header ("i", str(i).encode()). Prints one JSON object on stdout:
{"delivered": [[partition, offset], ...]} in send order. Exits non-zero, with a
message on stderr, if any send fails.
"""
import argparse
import json
import sys
import time

from kafka import KafkaProducer


def parse_acks(s):
    if s == "all":
        return "all"
    if s in ("0", "1"):
        return int(s)
    raise argparse.ArgumentTypeError("acks must be 0, 1 or all")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--acks", type=parse_acks, default="all", help="0, 1 or all")
    p.add_argument("--key-prefix", default="key-")
    p.add_argument("--value-prefix", default="value-")
    p.add_argument("--idempotence", action="store_true",
                   help="kafka-python's default (enable_idempotence=True); off unless given")
    p.add_argument("--timeout-s", type=float, default=60.0, help="give up on unacknowledged sends after this long")
    p.add_argument("--partition", type=int, default=None, help="send every record to this partition")
    p.add_argument("--retries", type=int, default=None, help="kafka-python's retries (its default unless given)")
    args = p.parse_args()

    try:
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap,
            compression_type=None if args.compression == "none" else args.compression,
            acks=args.acks,
            enable_idempotence=args.idempotence,
            linger_ms=5,
            **({} if args.retries is None else {"retries": args.retries}),
        )
    except Exception as e:  # noqa: BLE001
        print(f"kp_produce: cannot create the producer: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    deadline = time.monotonic() + args.timeout_s
    delivered = []
    failures = 0
    try:
        futures = []
        for i in range(args.count):
            try:
                fut = producer.send(
                    args.topic,
                    key=f"{args.key_prefix}{i}".encode("utf-8"),
                    value=f"{args.value_prefix}{i}".encode("utf-8"),
                    headers=[("i", str(i).encode("utf-8"))],
                    partition=args.partition,
                )
            except Exception as e:  # noqa: BLE001
                fut = e
            futures.append(fut)
        try:
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as e:  # noqa: BLE001 - the per-record futures below say what failed
            print(f"kp_produce: flush: {type(e).__name__}: {e}", file=sys.stderr)
        for i, fut in enumerate(futures):
            try:
                if isinstance(fut, Exception):
                    raise fut
                md = fut.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
                failures += 1
                if failures <= 10:
                    print(f"kp_produce: send of record {i} failed: {type(e).__name__}: {e}", file=sys.stderr)
                delivered.append(None)
                continue
            delivered.append([md.partition, md.offset])
    finally:
        try:
            producer.close(timeout=0 if failures else 10)
        except Exception as e:  # noqa: BLE001
            print(f"kp_produce: close: {type(e).__name__}: {e}", file=sys.stderr)

    if failures:
        print(f"kp_produce: {failures} of {args.count} sends failed", file=sys.stderr)
        return 1
    print(json.dumps({"delivered": delivered}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
