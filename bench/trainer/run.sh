#!/usr/bin/env bash
# `just bench trainer`: ProAct RandomForest vs scikit-learn on the same data, same trees/depth.
# Creates bench/.venv idempotently, exports the datasets once from Rust (so both sides read the
# very same rows and split), runs both, prints a ratio table and writes
# target/bench-trainer/results.json (read by `proact-model-eval ai4i`).
#
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set on this machine and slow numpy down; they are
# unset for the Python runs only.
set -euo pipefail
cd "$(dirname "$0")/../.."
TREES="${TREES:-100}"
DEPTH="${DEPTH:-16}"
THREADS="${THREADS:-2}"
OUT=target/bench-trainer
VENV=bench/.venv
PY=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$VENV/bin/python")

if ! "${PY[@]}" -c 'import sklearn, numpy, pandas' 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check scikit-learn numpy pandas
fi

cargo build --quiet --release -p proact-model-eval
EVAL=target/release/proact-model-eval
mkdir -p "$OUT"
"$EVAL" export --out "$OUT"

: > "$OUT/runs.jsonl"
for ds in synthetic ai4i; do
  [ -f "$OUT/${ds}_train.csv" ] || continue
  common=(--train "$OUT/${ds}_train.csv" --test "$OUT/${ds}_test.csv" --trees "$TREES" --depth "$DEPTH" --threads "$THREADS")
  echo "== $ds: rust (histogram learner)" >&2
  "$EVAL" bench "${common[@]}" | sed "s/^{/{\"dataset\":\"$ds\",/" >> "$OUT/runs.jsonl"
  echo "== $ds: rust (linfa-trees learner, per-tree subspace)" >&2
  "$EVAL" bench "${common[@]}" --learner linfa --sampling sqrt_per_tree --repeat 1 | sed "s/^{/{\"dataset\":\"$ds\",/" >> "$OUT/runs.jsonl"
  echo "== $ds: scikit-learn" >&2
  "${PY[@]}" bench/trainer/sk_bench.py "${common[@]}" | sed "s/^{/{\"dataset\":\"$ds\",/" >> "$OUT/runs.jsonl"
done
"${PY[@]}" bench/trainer/report.py "$OUT/runs.jsonl" "$OUT/results.json"
