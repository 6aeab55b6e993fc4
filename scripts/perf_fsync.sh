#!/usr/bin/env bash
# What `--fsync always` costs: kcat (librdkafka) sends N x 100 B records with
# acks=all to a broker with the default policy (page cache) and to one with
# --fsync always, in the same run, and prints the ratio.
#
#   scripts/perf_fsync.sh [N]        (default N = 200000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
records="${1:-200000}"
cargo build --release --quiet
bin=target/release/minikafka
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

start_broker() { # name, extra flags... -> sets $addr
    local name=$1
    addr=""
    shift
    "$bin" broker --listen 127.0.0.1:0 --data-dir "$work/$name" --num-partitions 3 "$@" >/dev/null 2>"$work/$name.log" &
    pids+=($!)
    for _ in $(seq 100); do
        addr=$(grep -o 'addr=[0-9.:]*' "$work/$name.log" | head -n 1 | cut -d= -f2 || true)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "the $name broker did not start" >&2; exit 1; }
}

python3 -c "import sys; line = 'x' * 100 + '\n'; sys.stdout.write(line * $records)" > "$work/records.txt"
seconds() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$@"; }
produce() { # addr -> seconds
    local start
    start=$(date +%s.%N)
    kcat -b "$1" -P -t fsync -X acks=all -X linger.ms=5 -l "$work/records.txt"
    seconds "$start" "$(date +%s.%N)"
}

start_broker os
os_addr=$addr
start_broker always --fsync always
always_addr=$addr
os=$(produce "$os_addr")
always=$(produce "$always_addr")

python3 - "$records" "$os" "$always" <<'PY'
import sys
n, os_s, always_s = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"{n} x 100 B, acks=all, 3 partitions, kcat")
print(f"  --fsync os:     {n / os_s:>10.0f} records/s")
print(f"  --fsync always: {n / always_s:>10.0f} records/s")
print(f"  ratio always/os: {os_s / always_s:.2f}")
PY
