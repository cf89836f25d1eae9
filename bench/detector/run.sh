#!/usr/bin/env bash
# `just bench detector`: engine and service-loop throughput with a 100-tree forest, and the
# latency from stream write to alert event. See docs/BENCHMARKS.md (Detector).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p proact-anomaly-detector --bench detector_loop 2>&1 | grep -v "^\s*$"
