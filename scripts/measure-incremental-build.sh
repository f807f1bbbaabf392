#!/usr/bin/env bash
# Times `cargo build` (debug) after a one-line change in a handler: the edit-
# compile loop of someone working on the API. Usage:
#   scripts/measure-incremental-build.sh FILE 'TEXT IN A LINE' [ROUNDS]
# BUILD_ARGS="--all-targets" also rebuilds the test binaries.
# Each round appends a different number to TEXT (a string in that file), builds,
# and records the wall time; the file is restored at the end. Prints each
# round and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
file=$1 text=$2 rounds=${3:-5}
grep -qF -- "$text" "$file" || { echo "text not found in $file" >&2; exit 1; }
cp "$file" "$file.orig"
trap 'mv "$file.orig" "$file"' EXIT
cargo build -q ${BUILD_ARGS:-} 2>/dev/null   # warm: the measured rounds start from a built tree
times=()
for i in $(seq 1 "$rounds"); do
  python3 - "$file" "$text" "$i" <<'PY'
import sys
path, text, i = sys.argv[1:]
src = open(path + ".orig").read()
open(path, "w").write(src.replace(text, f"{text} {i}", 1))
PY
  start=$(date +%s.%N)
  cargo build -q ${BUILD_ARGS:-}
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc)
  times+=("$t")
  printf 'round %d: %.2f s\n' "$i" "$t"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median of %d: %.2f s\n", NR, a[int((NR+1)/2)]}'
