#!/usr/bin/env bash
# `just demo`: the local stack, the five services and the simulated sensors, with the
# dashboard on http://127.0.0.1:8080/ — until Ctrl-C, which stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
echo "demo: building (first time takes a few minutes)…"
cargo build -q -p proact-testkit -p proact-ingest -p proact-archive -p proact-anomaly-detector \
  -p proact-alert-gateway -p proact-trainer -p proact-simulator
bin=target/debug
logs=target/demo-logs
mkdir -p "$logs"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping…"
  # Services first (they drain), then the stack.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "demo: stopped. Logs are in $logs/"
}
trap cleanup INT TERM EXIT

# The stack runs in a temporary directory, removed when the demo stops.
"$bin/proact-stack" >"$logs/stack.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "stack ready" "$logs/stack.log" 2>/dev/null && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$logs/stack.log"; exit 1; fi
  sleep 0.1
done
grep -q "stack ready" "$logs/stack.log" || { echo "demo: the stack did not start"; cat "$logs/stack.log"; exit 1; }
echo "demo: Mosquitto :1883, Redis :6379, PostgreSQL :5432 up"

"$bin/proact-trainer" migrate >"$logs/migrate.log" 2>&1
"$bin/proact-trainer" load-reference --data data >"$logs/reference.log" 2>&1 && echo "demo: reference data loaded (AMDEC, GMAO history, workload)"

for svc in archive anomaly-detector alert-gateway trainer ingest; do
  "$bin/proact-$svc" >"$logs/$svc.log" 2>&1 &
  pids+=($!)
done
# Wait for the gateway, then start the sensors.
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
  (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
  sleep 0.1
done
"$bin/proact-simulator" --rate 2 --episode-every-secs 180 --episode-secs 60 --malformed-every 500 >"$logs/simulator.log" 2>&1 &
pids+=($!)

echo
echo "  Dashboard:   http://127.0.0.1:8080/"
echo "  Metrics:     http://127.0.0.1:9101/metrics (ingest) … :9105 (trainer)"
echo "  Logs:        $logs/"
echo
echo "demo: running — 12 simulated machines, a failure episode every few minutes. Ctrl-C to stop."
wait "${pids[0]}"
