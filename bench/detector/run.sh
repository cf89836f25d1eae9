#!/usr/bin/env bash
# `just bench detector`: engine and service-loop throughput with a 100-tree forest, and for
# hot readings at 1,000 and 10,000 readings/s (and a burst) the latency end to end and the
# latency the detector adds (Redis-clock entry ids, and the service's
# proact_detector_alert_latency_seconds). See docs/BENCHMARKS.md (Detector).
# PROACT_BENCH_EVENTS, PROACT_BENCH_RATES (comma-separated) and PROACT_BENCH_PACED_SECS
# size the runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p proact-anomaly-detector --bench detector_loop 2>&1 | grep -v "^\s*$"
