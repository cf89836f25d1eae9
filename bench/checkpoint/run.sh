#!/usr/bin/env bash
# `just bench checkpoint`: the scoring loop's longest stall and readings/s with 10,000
# equipment, the online detectors' checkpoint written inline against spread over its interval
# and written in the background, side by side (docs/BENCHMARKS.md, issue #22).
# PROACT_BENCH_EQUIPMENT, PROACT_BENCH_CHECKPOINT_SECS and PROACT_BENCH_SECS size the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -q -p proact-anomaly-detector --bench checkpoint_stall 2>&1 | grep -v "^\s*$"
