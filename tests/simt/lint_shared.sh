#!/usr/bin/env bash
# Reject bare __shared__ in the CUDA kernels: shared memory is declared with
# ST_SHARED / ST_SHARED_DYN (kernels/cuda/launch.cuh), which the SIMT
# emulator turns into per-block heap memory that AddressSanitizer watches.
# Usage: lint_shared.sh [kernels/cuda directory]
set -euo pipefail
dir=${1:-$(dirname "$0")/../../kernels/cuda}
[ -d "$dir" ] || { echo "lint_shared: no directory $dir" >&2; exit 2; }
bad=0
while IFS= read -r -d '' f; do
  # launch.cuh defines the macros; everything else must use them.
  [ "$(basename "$f")" = launch.cuh ] && continue
  # drop // comments and string literals before looking
  if hits=$(sed -e 's://.*$::' -e 's/"[^"]*"//g' "$f" | grep -n '\b__shared__\b'); then
    while IFS= read -r h; do
      echo "$f:${h%%:*}: bare __shared__ (use ST_SHARED or ST_SHARED_DYN from launch.cuh)" >&2
    done <<< "$hits"
    bad=1
  fi
done < <(find "$dir" -type f \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' \) -print0)
exit $bad
