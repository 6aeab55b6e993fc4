#!/usr/bin/env bash
# The project's one "run every test" command: installs what the tests need
# (kcat, a C compiler for librdkafka and tests/native, a Python venv with
# kafka-python, KafkaJS from npm), then runs fmt, clippy, cargo test
# and a bounded, seeded fuzz run (`scripts/fuzz.sh ci`, about 30 s a
# target). Extra arguments are passed to `cargo test`, e.g.
# `scripts/test.sh kcat`, and then the fuzz run is skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned Python packages used by tests/python/*.py. The codec libraries let
# kafka-python produce/consume snappy, lz4 and zstd batches (gzip is stdlib).
PY_PACKAGES=(
    "kafka-python==3.0.12"
    "python-snappy==0.7.3"
    "cramjam==2.14.0"
    "lz4==4.4.5"
    "zstandard==0.25.0"
)

echo "==> kcat"
if ! command -v kcat >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y kcat
fi
kcat -V 2>&1 | head -n 1 || true

echo "==> C compiler (librdkafka's build, tests/native/failing_disk.c)"
if ! command -v cc >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y gcc
fi
cc --version | head -n 1

echo "==> python venv (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c '
import kafka, snappy, cramjam, lz4, zstandard
assert kafka.__version__ == "3.0.12"
from kafka import codec
assert codec.has_snappy() and codec.has_lz4() and codec.has_zstd()
' >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
fi
.venv/bin/python -c 'import kafka; print("kafka-python", kafka.__version__)'

echo "==> KafkaJS (tests/node)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nodejs npm
fi
if [ ! -f tests/node/node_modules/kafkajs/package.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --silent)
fi
node -e 'console.log("kafkajs", require("./tests/node/node_modules/kafkajs/package.json").version)'

export MINIKAFKA_PYTHON="$PWD/.venv/bin/python"
MINIKAFKA_KCAT="$(command -v kcat)"
export MINIKAFKA_KCAT

echo "==> cargo fmt --all -- --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "==> cargo test $*"
cargo test "$@"

if [ $# -eq 0 ]; then
    echo "==> fuzz (bounded)"
    bash scripts/fuzz.sh ci
fi
