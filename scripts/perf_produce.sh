#!/usr/bin/env bash
# Producer throughput, side by side in one run: `minikafka perf produce` and
# kcat (librdkafka) each send N x 100 B records with acks=1 to a fresh
# 3-partition topic on a release broker with its log on disk.
#
#   scripts/perf_produce.sh [N]        (default N = 1000000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
records="${1:-1000000}"
cargo build --release --quiet
bin=target/release/minikafka
work=$(mktemp -d)
trap 'kill "$broker" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" broker --listen 127.0.0.1:0 --data-dir "$work/data" --num-partitions 3 2>"$work/broker.log" &
broker=$!
for _ in $(seq 100); do
    addr=$(grep -o 'addr=[0-9.:]*' "$work/broker.log" | head -n 1 | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.05
done
[ -n "$addr" ] || { echo "the broker did not start" >&2; exit 1; }

python3 -c "import sys; line = 'x' * 100 + '\n'; sys.stdout.write(line * $records)" > "$work/records.txt"

seconds() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$@"; }

start=$(date +%s.%N)
"$bin" perf produce -b "$addr" -t ours --num-records "$records" --record-size 100 --acks 1 \
    --batch-size 1000000 --linger-ms 5 >"$work/ours.txt"
ours=$(seconds "$start" "$(date +%s.%N)")

start=$(date +%s.%N)
kcat -b "$addr" -P -t theirs -X acks=1 -X linger.ms=5 -X batch.size=1000000 -l "$work/records.txt"
theirs=$(seconds "$start" "$(date +%s.%N)")

python3 - "$records" "$ours" "$theirs" <<'PY'
import sys
n, ours, theirs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"{n} x 100 B, acks=1, 3 partitions, log on disk")
print(f"  minikafka perf produce: {n / ours:>10.0f} records/s {n * 100 / ours / 1e6:>7.1f} MB/s")
print(f"  kcat (librdkafka):      {n / theirs:>10.0f} records/s {n * 100 / theirs / 1e6:>7.1f} MB/s")
print(f"  ratio ours/librdkafka:  {theirs / ours:.2f}")
PY
cat "$work/ours.txt"
