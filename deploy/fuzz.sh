#!/usr/bin/env bash
# Coverage-guided fuzzing of the six cargo-fuzz targets with libFuzzer, on the stable
# toolchain: `deploy/fuzz.sh [seconds]` (default 30 s per target), or `just fuzz [seconds]`.
#
# - cargo-fuzz is installed from the crate registry only when `cargo fuzz --version` fails.
# - RUSTC_BOOTSTRAP=1 lets the stable compiler accept the unstable flags cargo-fuzz passes
#   (-Zsanitizer, sanitizer coverage); there is no nightly toolchain on these machines.
# - One target dir (target/fuzz) for the five fuzz workspaces, so their shared dependencies
#   are compiled once; each workspace gets a copy of the main Cargo.lock so it builds the
#   same dependency versions as the code the tests cover.
# - Each target runs on a scratch copy of its corpus under target/fuzz/corpus/<target>
#   (libFuzzer writes every new input into its corpus dir; the committed corpus stays small).
#   Crashes are saved by libFuzzer in crates/<crate>/fuzz/artifacts/<target>/, which the
#   stable replay test (tests/fuzz_corpus.rs) reads: minimise one with
#   `cargo fuzz tmin`, commit it there, fix the bug.
# - PROACT_FUZZ_SANITIZER=none builds without AddressSanitizer (default: address).
# - PROACT_FUZZ_SEED=N fixes libFuzzer's seed (CI does, so that its short run is repeatable;
#   an exploratory run leaves it unset).
#
# Exits 1 when any target crashed or failed to build, after running all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: seconds must be a whole number, got '$seconds'" >&2; exit 64 ;;
esac
sanitizer=${PROACT_FUZZ_SANITIZER:-address}

# crate:target, in the order of the flow.
targets=(
  ingest:parse_mqtt
  ingest:sparkplug
  dataprep:import_csv
  archive:decode_telemetry
  anomaly-detector:score_entries
  alert-gateway:decode_alert
)

export RUSTC_BOOTSTRAP=1
target_dir="$root/target/fuzz"
# The machine is shared with test runs: one compiler job unless told otherwise.
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz || { echo "fuzz: cannot install cargo-fuzz" >&2; exit 1; }
fi

logs="$target_dir/logs"
mkdir -p "$logs"
failed=()
summary=()
started=$SECONDS

for entry in "${targets[@]}"; do
  crate=${entry%%:*}
  target=${entry#*:}
  fuzz_dir="$root/crates/$crate/fuzz"
  scratch="$target_dir/corpus/$target"
  log="$logs/$target.log"

  cp "$root/Cargo.lock" "$fuzz_dir/Cargo.lock"
  mkdir -p "$scratch" "$fuzz_dir/artifacts/$target"
  # Committed seeds are copied in at each run; inputs found by earlier runs stay.
  cp "$fuzz_dir/corpus/$target/"* "$scratch/"

  echo "fuzz: building $target ($crate, sanitizer $sanitizer)"
  if ! (cd "$root/crates/$crate" && cargo fuzz build --target-dir "$target_dir" --sanitizer "$sanitizer" "$target"); then
    failed+=("$target: build failed")
    summary+=("$(printf '%-17s build failed' "$target")")
    continue
  fi

  echo "fuzz: running $target for ${seconds}s (log: ${log#"$root"/})"
  t0=$SECONDS
  (cd "$root/crates/$crate" && cargo fuzz run --target-dir "$target_dir" --sanitizer "$sanitizer" "$target" "$scratch" -- \
    -max_total_time="$seconds" -print_final_stats=1 ${PROACT_FUZZ_SEED:+-seed="$PROACT_FUZZ_SEED"}) >"$log" 2>&1
  rc=$?
  took=$((SECONDS - t0))

  # libFuzzer's last status line ("#N DONE cov: C ft: F corp: ...") and its final stats.
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  status=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
  line=$(printf '%-17s %6ss  %10s execs  cov %5s  ft %6s  corpus %5s' \
    "$target" "$took" "${runs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
  if [ "$rc" -ne 0 ]; then
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    line="$line  CRASH (exit $rc) ${crash#"$root"/}"
    failed+=("$target: exit $rc, ${crash:-see $log}")
    tail -40 "$log" >&2
  fi
  summary+=("$line")
  echo "$line"
done

echo
echo "fuzz: sanitizer $sanitizer, ${seconds}s per target, $((SECONDS - started))s in all"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
