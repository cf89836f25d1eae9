#!/usr/bin/env bash
# `just bench archive`: telemetry from the Redis streams into PostgreSQL, next to `psql \copy`
# and a plain binary COPY of the same rows in the same run; database write paths alone; archive
# lag at a fixed producer rate; BRIN vs B-tree on `ts`. Starts its own Redis and PostgreSQL on
# free loopback ports (test kit). Knobs (environment): ROWS (1000000), EQUIPMENT (200),
# BATCH_ROWS (10000), WRITERS (2), LAG_RATE (50000 rows/s), LAG_SECS (20), INDEX_ROWS (1000000).
# Report: target/bench-archive/report.md and results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v psql >/dev/null || { echo "bench archive: psql not found (Debian package postgresql-client)" >&2; exit 1; }
cargo build --quiet --release -p proact-archive --example archive_bench
RUST_LOG="${RUST_LOG:-warn}" target/release/examples/archive_bench "$@"
