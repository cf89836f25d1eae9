#!/usr/bin/env bash
# Replays the 51 NAB development series through the live detector's code path
# (`proact-anomaly-detector replay`), as NAB's protocol wants: rules off (the series are not
# temperatures), each file's probationary period (15 % of its rows, at most 750) learned from
# and never judged. The online detectors judge (they learn from every row after scoring it);
# `--probation-model on` adds the normal-behaviour model fitted on the probation. Writes one
# scores file per series in NAB's results layout for `proact-model-eval nab --results OUT`.
#
# usage: nab-replay.sh NAB_DIR OUT_DIR DETECTOR_BINARY [REPLAY OPTION]...
# (the options, e.g. `--margin 2`, are passed on to every replay)
set -euo pipefail
# An episode clears after three hours of normal readings (36 of these 5-minute samples): chosen on
# the tuning families (crates/model-eval/EVAL.md); the service's default is 60 s.
export PROACT_CLEAR_AFTER_SECS="${PROACT_CLEAR_AFTER_SECS:-10800}"
nab=${1:?NAB_dev directory}
out=${2:?output directory}
bin=${3:?proact-anomaly-detector binary}
shift 3
count=0
for f in "$nab"/data/*/*.csv; do
    family=$(basename "$(dirname "$f")")
    rows=$(($(wc -l < "$f") - 1))
    probation=$((rows * 15 / 100))
    if [ "$probation" -gt 750 ]; then probation=750; fi
    mkdir -p "$out/$family"
    "$bin" replay --input "$f" --rules off --probation "$probation" --probation-model off "$@" \
        --output "$out/$family/$(basename "$f")" > /dev/null
    count=$((count + 1))
done
echo "nab-replay: $count series replayed into $out"
