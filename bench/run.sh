#!/usr/bin/env bash
# `just bench [area]`: runs bench/<area>/run.sh for one area, or every area that has one.
# Results are written down in docs/BENCHMARKS.md with the command, the machine and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
area="${1:-all}"
areas=()
if [ "$area" = all ]; then
  for d in bench/*/; do [ -f "$d/run.sh" ] && areas+=("$(basename "$d")"); done
else
  [ -f "bench/$area/run.sh" ] || { echo "bench: no benchmark for '$area' (have: $(ls -d bench/*/ 2>/dev/null | xargs -n1 basename | grep -v baselines | tr '\n' ' '))" >&2; exit 1; }
  areas=("$area")
fi
[ ${#areas[@]} -gt 0 ] || { echo "bench: no benchmark areas yet" >&2; exit 1; }
echo "bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
for a in "${areas[@]}"; do
  echo "== bench $a"
  bash "bench/$a/run.sh"
done
