#!/usr/bin/env bash
# `just bench pipeline`: the whole pipeline (MQTT → ingest → streams → archive/detector →
# gateway → WebSocket) as five OS processes from release binaries, on the test kit's servers
# on free loopback ports, stepped through fixed publish rates up to the highest sustained one;
# the ProAct steps run once per variant (--variants, default json/single,json/batch,array20/batch:
# one JSON reading or arrays of 20 per MQTT message, one reading or an ingest batch per stream
# entry), side by side; then the original Python design (bench/baselines/python_design.py) on
# the same servers.
# See crates/e2e/examples/pipeline-bench/main.rs for what is measured and how.
#
# Results: target/bench-pipeline/{report.md,results.json,logs/}, and the plot
# docs/bench-pipeline.png. Extra arguments go to the driver (e.g. --secs 20 --search 20000,40000).
# PYTHON_BASELINE=0 skips the Python design.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=target/bench-pipeline
VENV=target/bench-venv
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"

bash deploy/install-deps.sh
python_args=()
if [ "${PYTHON_BASELINE:-1}" != 0 ]; then
  if ! "$VENV/bin/python" -c 'import paho.mqtt, psycopg2, redis, websockets, matplotlib' 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3' psycopg2-binary redis 'websockets>=13' matplotlib
  fi
  python_args=(--python "$VENV/bin/python")
fi

# The services' binaries, then the driver. (A different set of -p changes the features cargo
# unifies and rebuilds everything, so keep these two lines as they are.)
cargo build --quiet --release -p proact-ingest -p proact-archive -p proact-anomaly-detector \
  -p proact-alert-gateway -p proact-trainer -p proact-testkit
cargo build --quiet --release -p proact-e2e --example pipeline-bench
mkdir -p "$OUT"
RUST_LOG="${RUST_LOG:-warn}" target/release/examples/pipeline-bench --bin-dir target/release --out "$OUT" \
  "${python_args[@]}" "$@" | tee "$OUT/run.log"

if [ -x "$VENV/bin/python" ]; then
  "$VENV/bin/python" bench/pipeline/plot.py "$OUT/results.json" docs/bench-pipeline.png
fi
