#!/usr/bin/env bash
# `just bench replica-wait`: what a Redis `WAIT` for one replica adds to the detector's alert
# publish and to ingest's acknowledgement, on the test kit's Redis Cluster, interleaved with
# the same writes without it. See docs/BENCHMARKS.md ("What WAIT costs"). The figures there
# are from this command's debug build (`cargo test`), as it runs here; PROACT_BENCH_ROUNDS
# sizes the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
cargo test -q -p proact-anomaly-detector --bench replica_wait 2>&1 | grep -v "^\s*$"
