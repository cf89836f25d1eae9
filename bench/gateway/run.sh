#!/usr/bin/env bash
# `just bench gateway`: delivery latency of alerts from the alerts-stream write to WebSocket
# receipt, 1,000 clients at 1,000 alerts/s, against real Redis and PostgreSQL (test kit) on
# free ports of 127.0.0.1. Side by side in one run: the Redis floor (one XREAD reader),
# gateways with linger 0 / 2 / 5 ms (LINGERS), a tenth of the alerts, and a tenth of the
# clients. The gateway runs in the bench process; the clients in a second process (the same
# example, --clients-only) with a minimal frame reader; the publisher on a thread of its own.
# All on this machine (127.0.0.1 only). Bounded: 6 scenarios of SECONDS_EACH seconds
# (default 10) plus setup.
# Results: a table on stdout, JSON lines in target/bench-gateway/.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS="${CLIENTS:-1000}"
RATE="${RATE:-1000}"
SECONDS_EACH="${SECONDS_EACH:-10}"
LINGERS="${LINGERS:-0,2,5}"
OUT=target/bench-gateway
mkdir -p "$OUT"
# 1,000 clients hold 1,000 sockets in each of the two processes.
ulimit -n 8192 2>/dev/null || true
cargo build --quiet --release -p proact-alert-gateway --example ws_bench
echo "gateway bench: $CLIENTS clients, $RATE alerts/s, ${SECONDS_EACH}s per scenario, lingers $LINGERS ms"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%FT%TZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/ws_bench --clients "$CLIENTS" --rate "$RATE" --seconds "$SECONDS_EACH" --lingers "$LINGERS" 2> "$OUT/results.jsonl"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); JSON lines: $OUT/results.jsonl"
