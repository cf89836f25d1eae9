#!/usr/bin/env bash
# `just bench tracing`: the per-reading cost of tracing on the hot path (off, on but not
# sampled, sampled), side by side in one criterion run (crates/server/benches/tracing.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
cargo bench -q -p proact-server --bench tracing -- --warm-up-time 1 --measurement-time 3 "$@"
