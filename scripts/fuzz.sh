#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time each (coverage-guided,
# libFuzzer through cargo-fuzz, with AddressSanitizer), seeded from the
# request frames captured from real clients in tests/fixtures/requests.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh ci
#
# With seconds (default 30), each run explores from a random seed. `ci` is
# what the test command runs: a fixed seed and a fixed number of inputs per
# target (about 30 s each here), so that it passes or fails the same way
# every time for the same code; the open-ended search is the timed runs.
#
# Installs cargo-fuzz when it is missing. cargo-fuzz needs a nightly
# compiler's flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them,
# so no other toolchain is needed. A crash leaves its input under
# fuzz/artifacts/<target>/ and fails the run: turn it into a regression test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-30}"
shift || true
declare -A ci_runs=([request_frame]=1000000 [record_batch]=400000 [response_round_trip]=1000000 [index_file]=100000)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request_frame record_batch response_round_trip index_file)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# Seeds: real clients' request frames; their produced batches; and an empty
# body for every API at version 0 for the response decoder.
corpus=fuzz/corpus
mkdir -p "$corpus/request_frame" "$corpus/record_batch" "$corpus/response_round_trip" "$corpus/index_file"
cp tests/fixtures/requests/*.bin "$corpus/request_frame/"
python3 - "$corpus" <<'PY'
import glob, os, struct, sys
corpus = sys.argv[1]
# kcat's Produce v7 frame is not flexible: header, transactional id, acks,
# timeout, then topics -> partitions -> records (a 4-byte length).
for path in glob.glob("tests/fixtures/requests/*-Produce-v7.bin"):
    data = open(path, "rb").read()
    at = 8
    (client_id,) = struct.unpack_from(">h", data, at); at += 2 + max(client_id, 0)
    (txn,) = struct.unpack_from(">h", data, at); at += 2 + max(txn, 0)
    at += 2 + 4
    (topics,) = struct.unpack_from(">i", data, at); at += 4
    n = 0
    for _ in range(topics):
        (name,) = struct.unpack_from(">h", data, at); at += 2 + name
        (partitions,) = struct.unpack_from(">i", data, at); at += 4
        for _ in range(partitions):
            at += 4
            (size,) = struct.unpack_from(">i", data, at); at += 4
            batch = data[at:at + size]; at += size
            open(os.path.join(corpus, "record_batch", f"kcat-{n}"), "wb").write(b"\x84" + batch)
            n += 1
for key in range(0, 80):
    open(os.path.join(corpus, "response_round_trip", f"api-{key}-v0"), "wb").write(struct.pack(">hh", key, 0))
PY

mkdir -p target
for target in "${targets[@]}"; do
    if [ "$seconds" = ci ]; then
        echo "==> fuzz $target: ${ci_runs[$target]} inputs from seed 1"
        bound=(-seed=1 -runs="${ci_runs[$target]}")
    else
        echo "==> fuzz $target for ${seconds}s"
        bound=(-max_total_time="$seconds")
    fi
    log="target/fuzz-$target.log"
    set +e
    cargo fuzz run "$target" "$corpus/$target" -- \
        "${bound[@]}" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    # libFuzzer's closing lines: executions, coverage, corpus.
    grep -E "(DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
