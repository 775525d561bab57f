#!/usr/bin/env bash
# Evaluation time of a group of 200 recording rules (the LLM workload's
# dashboard queries), Cairn beside Prometheus 2.42 on the same data loaded
# by remote-write with cairn-workload. See benches/rules/run.py and
# docs/benchmarks.md.
#
#   benches/rules/run.sh [--series 10000] [--duration 30m] [--interval 15s]
#                        [--evaluations 8] [--workdir /tmp] [--dbs prometheus,cairn]
#
# Builds cairn and cairn-workload (release) into $CARGO_TARGET_DIR (default
# ./target) and runs copies of them, so a concurrent build cannot swap the
# binary under the measurement.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
export CARGO_TARGET_DIR="$target"
command -v prometheus >/dev/null && command -v promtool >/dev/null \
  || "$repo/scripts/install-peers.sh"
(cd "$repo" && cargo build --release -q -p cairn --bin cairn -p cairn-workload --bin cairn-workload)
bindir="$(mktemp -d /tmp/cairn-rules-bin.XXXXXX)"
trap 'rm -rf "$bindir"' EXIT
cp "$target/release/cairn" "$target/release/cairn-workload" "$bindir/"
python3 "$repo/benches/rules/run.py" --cairn-bin "$bindir/cairn" \
  --workload-bin "$bindir/cairn-workload" "$@"
