#!/usr/bin/env bash
# `just bench knowledge`: search latency over the real FMEA + 100,000 generated interventions,
# full re-index time, time for a new intervention to become searchable, and PostgreSQL
# full-text search on the same rows and questions (crates/knowledge/benches/search.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PROACT_DATASETS="$(realpath -m "${PROACT_DATASETS:-../shared/datasets}")"
echo "load: $(uptime)"
cargo bench -q -p proact-knowledge --bench search
