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
# Sends signal $1 to the given processes, waits at most $2 tenths of a second for them to
# exit, then kills what is left.
stop_within() {
  local sig=$1 tenths=$2; shift 2
  kill "-$sig" "$@" 2>/dev/null || true
  for _ in $(seq 1 "$tenths"); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping…"
  # The services drain into Redis and PostgreSQL, so they stop while the stack is still up;
  # then the stack. Both waits are bounded: a stuck drain cannot hold the terminal.
  # The stack stops its servers on SIGINT (its Ctrl-C); a SIGKILL would leave them running.
  if ((${#pids[@]} > 1)); then stop_within TERM 80 "${pids[@]:1}"; fi
  if ((${#pids[@]} > 0)); then stop_within INT 100 "${pids[0]}"; fi
  echo "demo: stopped. Logs are in $logs/"
}
# On Ctrl-C (or TERM) the script stops there, whatever step it was in.
# Ctrl-C is how the demo is meant to end: a clean stop exits 0, so `just` reports no failure.
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

# The stack runs in a temporary directory, removed when the demo stops. It runs in its own
# session, out of reach of the terminal's Ctrl-C: the services drain into Redis and PostgreSQL
# when they get it, so the stack must still be up; cleanup stops it after them.
setsid "$bin/proact-stack" >"$logs/stack.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "stack ready" "$logs/stack.log" 2>/dev/null && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$logs/stack.log"; exit 1; fi
  sleep 0.1
done
grep -q "stack ready" "$logs/stack.log" || { echo "demo: the stack did not start"; cat "$logs/stack.log"; exit 1; }
echo "demo: Mosquitto :1883, Redis :6379, PostgreSQL :5432 up"

# This run's model signing pair (the stack is new each run): the trainer signs every model it
# stores with the secret key, the detector loads only what the public key verifies.
keys="$("$bin/proact-trainer" keygen)"
signing_key="$(sed -n 's/^PROACT_MODEL_SIGNING_KEY=//p' <<<"$keys")"
verify_key="$(sed -n 's/^PROACT_MODEL_VERIFY_KEY=//p' <<<"$keys")"
unset keys
"$bin/proact-trainer" migrate >"$logs/migrate.log" 2>&1
"$bin/proact-trainer" load-reference --data data >"$logs/reference.log" 2>&1 && echo "demo: reference data loaded (AMDEC, GMAO history, workload)"

# How the demo learns (the trainer's settings; the service and the first run below share them).
# It retrains every few minutes (weekly by default), so a visitor sees new versions promoted
# and hot-loaded. The forest learns the minute before the rules' alerts: positive windows are
# the 45 s before each alert of a confirmed failure (the simulator's episodes last 60 s), every
# 10 s of event time; healthy windows are thinned to one per 2 minutes per machine, so three
# weeks of them train in seconds. No per-machine normal-behaviour models here: the page shows
# one version, the forest's.
export PROACT_TRAIN_SCHEDULE="${PROACT_TRAIN_SCHEDULE:-*/3 * * * *}"
export PROACT_TRAIN_SAMPLE_EVERY_SECS="${PROACT_TRAIN_SAMPLE_EVERY_SECS:-10}"
export PROACT_TRAIN_NEGATIVE_EVERY_SECS="${PROACT_TRAIN_NEGATIVE_EVERY_SECS:-120}"
export PROACT_TRAIN_LABEL_HORIZON_HOURS="${PROACT_TRAIN_LABEL_HORIZON_HOURS:-0.0125}"
export PROACT_TRAIN_HISTORY_DAYS="${PROACT_TRAIN_HISTORY_DAYS:-30}"
export PROACT_TRAIN_NB_MIN_ROWS="${PROACT_TRAIN_NB_MIN_ROWS:-1000000000}"
# Successive versions differ by a few thousandths of held-out F1 either way: within 0.01 of
# the active one's (on the same rows) a new version is promoted, so the visitor sees them
# replace each other; the default (0) keeps the active version on any drop.
export PROACT_PROMOTION_MARGIN="${PROACT_PROMOTION_MARGIN:-0.01}"
# The simulator's live episodes; the back-fill writes its past with the same ones.
episode_secs=60

# A past for the fleet: three weeks of readings with failure episodes, the rules' alerts and
# their work orders closed by the team (failures confirmed, a few false alarms). Written once:
# a back-fill on record is not written again.
t=$SECONDS
"$bin/proact-trainer" backfill --days "${PROACT_DEMO_HISTORY_DAYS:-21}" --episode-secs "$episode_secs" \
  >"$logs/backfill.log" 2>&1 || { echo "demo: the back-fill failed"; tail -5 "$logs/backfill.log"; exit 1; }
echo "demo: $(grep '^back-fill' "$logs/backfill.log") [$((SECONDS - t)) s]"
# The first model, before the detector starts: it runs the forest from its first reading.
t=$SECONDS
PROACT_MODEL_SIGNING_KEY="$signing_key" "$bin/proact-trainer" train --name anomaly-rf >"$logs/train.log" 2>&1 || { echo "demo: the first training failed"; tail -5 "$logs/train.log"; exit 1; }
echo "demo: $(grep -E '^(trained|skipped)' "$logs/train.log" | head -1) [$((SECONDS - t)) s]"

for svc in archive anomaly-detector alert-gateway trainer ingest; do
  # Each key reaches only the service that uses it.
  case $svc in
    trainer) PROACT_MODEL_SIGNING_KEY="$signing_key" "$bin/proact-$svc" >"$logs/$svc.log" 2>&1 & ;;
    anomaly-detector) PROACT_MODEL_VERIFY_KEY="$verify_key" "$bin/proact-$svc" >"$logs/$svc.log" 2>&1 & ;;
    # Sparkplug B beside the JSON topic (docs/sparkplug.md).
    ingest) PROACT_INGEST_SPARKPLUG=all "$bin/proact-$svc" >"$logs/$svc.log" 2>&1 & ;;
    *) "$bin/proact-$svc" >"$logs/$svc.log" 2>&1 & ;;
  esac
  pids+=($!)
done
# Wait for the gateway, then start the sensors.
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
  (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
  sleep 0.1
done
"$bin/proact-simulator" --rate 2 --episode-every-secs 180 --episode-secs "$episode_secs" --malformed-every 500 \
  --sparkplug-device PRESSE-SP-01 >"$logs/simulator.log" 2>&1 &
pids+=($!)

echo
echo "  Dashboard:   http://127.0.0.1:8080/"
echo "  Metrics:     http://127.0.0.1:9101/metrics (ingest) … :9105 (trainer)"
echo "  Logs:        $logs/"
echo
echo "demo: up in $SECONDS s, with the forest the detector runs from its first reading."
echo "demo: running — 12 simulated machines, a failure episode every few minutes; the forest learned"
echo "      from the back-filled history raises before the rules, and retrains on the schedule"
echo "      \"$PROACT_TRAIN_SCHEDULE\" (UTC): each version it promotes is hot-loaded. PRESSE-SP-01 speaks Sparkplug B:
      its device dies every 150 s for 30 s, its no-data alarm raised at the death, cleared at its birth. Ctrl-C to stop."
wait "${pids[0]}"
