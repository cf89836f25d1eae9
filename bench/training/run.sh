#!/usr/bin/env bash
# `just bench training`: one training run of the trainer service on a realistic archive (the
# simulator's fleet before the committed GMAO interventions), against a throw-away PostgreSQL and
# Redis on 127.0.0.1. Prints read/featurise throughput, run times, held-out metrics.
# Results: docs/BENCHMARKS.md, section "Training".
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release -q -p proact-trainer --example fleet_training -- "$@"
