#!/usr/bin/env bash
# Measures how long loading MODEL takes and the peak resident memory of the process, against
# the file size. Builds the `load_model` example in release mode (without the GUI).
#
#   scripts/measure_load.sh MODEL
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 MODEL" >&2
    exit 2
fi
model=$1
cd "$(dirname "$0")/.."

cargo build --release --no-default-features --example load_model >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/load_model"

report=$(mktemp)
trap 'rm -f "$report"' EXIT
/usr/bin/time -v "$bin" "$model" 2>"$report"

size=$(stat -c %s "$model")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$report")
wall=$(awk -F': ' '/Elapsed \(wall clock\) time/ {print $2}' "$report")
awk -v size="$size" -v rss="$rss_kb" -v wall="$wall" 'BEGIN {
    printf "file size: %.1f MB\n", size / 1e6
    printf "wall time (whole process): %s\n", wall
    printf "peak RSS: %.1f MB (%.2f x file size)\n", rss * 1024 / 1e6, rss * 1024 / size
}'
