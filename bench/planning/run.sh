#!/usr/bin/env bash
# `just bench planning`: the technician planner on instances generated from data/ (workload,
# AMDEC, GMAO history): against the greedy earliest-deadline baseline and, on small
# instances, the proven MILP optimum; plan and re-plan times. Markdown tables on stdout,
# raw figures in target/bench-planning/results.json.
# PLANNING_MILP_SECS bounds each MILP (default 60), PLANNING_SEEDS the small instances per shape.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --quiet -p proact-planning --bench planning
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
