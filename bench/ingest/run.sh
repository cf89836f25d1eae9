#!/usr/bin/env bash
# `just bench ingest`: MQTT QoS 1 → ingest → Redis Streams throughput, next to the raw
# broker's own QoS 1 publish→subscribe rate in the same run (see
# crates/ingest/examples/ingest-bench.rs). Servers from the test kit on free loopback ports.
# Arguments (optional): messages per round (200000), rounds (3), publisher connections (4),
# ack batches to alternate (512; e.g. 512,1 to compare with upstream rumqttc, vendor/PATCHES.md),
# replicas to wait for on a Redis Cluster (unset: one Redis; e.g. 0,1: what WAIT costs).
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
RUST_LOG="${RUST_LOG:-warn}" cargo run --quiet --release -p proact-ingest --example ingest-bench -- "$@"
