#!/usr/bin/env bash
# `just bench online`: the scoring loop with the online detectors off and on, side by side
# (readings/s per core, two channels), and their state size per equipment. See
# docs/BENCHMARKS.md (Online detectors). PROACT_BENCH_READINGS sizes the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p proact-anomaly-detector --bench online_scoring 2>&1 | grep -v "^\s*$"
