#!/usr/bin/env bash
# Build every libFuzzer target (tests/fuzz/fuzz_*.c) with clang and run each
# for a bounded time from its seed corpus. Exit non-zero on any finding.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
BUILD=${STRAIT_FUZZ_BUILD_DIR:-build-fuzz}
if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found; skipping fuzz targets" >&2
  exit 0
fi
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DSTRAIT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTRAIT_WITH_CUDA=OFF >/dev/null
targets=$(ls tests/fuzz/fuzz_*.c 2>/dev/null | xargs -n1 basename | sed 's/\.c$//')
[ -z "$targets" ] && { echo "fuzz: no targets" >&2; exit 0; }
cmake --build "$BUILD" -j"$(nproc)" --target $targets >/dev/null
fail=0
for t in $targets; do
  name=${t#fuzz_}
  seeds=tests/fuzz/seeds/$name
  corpus=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
  out=$(mktemp)
  if "$BUILD/tests/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$BUILD/$t-" "$corpus" >"$out" 2>&1; then
    echo "fuzz: $t ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out" || tail -1 "$out" | cut -c1-80))"
  else
    echo "fuzz: $t FAILED" >&2
    tail -40 "$out" >&2
    fail=1
  fi
  rm -rf "$corpus" "$out"
done
exit $fail
