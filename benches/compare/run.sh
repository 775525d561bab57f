#!/usr/bin/env bash
# Side-by-side comparison of Cairn, Prometheus and VictoriaMetrics on the
# same LLM-fleet workload, one database at a time, each fresh on 127.0.0.1.
# See docs/benchmarks.md for what each figure means.
#
#   benches/compare/run.sh [--series 10000] [--duration 1h] [--seed 1]
#                          [--runs 5] [--concurrency 4] [--churn 0] [--step 60]
#                          [--dbs prometheus,victoriametrics,cairn]
#                          [--openmetrics auto|yes|no] [--otlp auto|yes|no]
#                          [--workdir /tmp]
#                          [--markdown FILE] [--json FILE]
#
# It installs the peers if missing (apt-get), builds cairn-workload and cairn
# (release), generates the workload once per parameter set (kept under the
# work directory), then runs benches/compare/compare.py.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
series=10000 duration=1h seed=1 runs=5 concurrency=4 churn=0 step=60
dbs=prometheus,victoriametrics,cairn openmetrics=auto otlp=auto workdir=/tmp
markdown="" json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --series) series="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --churn) churn="$2"; shift 2 ;;
    --step) step="$2"; shift 2 ;;
    --dbs) dbs="$2"; shift 2 ;;
    --openmetrics) openmetrics="$2"; shift 2 ;;
    --otlp) otlp="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --markdown) markdown="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
   || ! command -v victoria-metrics >/dev/null; then
  echo "installing prometheus and victoria-metrics (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus victoria-metrics >/dev/null
fi

target="${CARGO_TARGET_DIR:-$repo/target}"
export CARGO_TARGET_DIR="$target"
# The target directory may be shared with other work trees that build the
# same binaries: run copies taken right after the build.
bindir="$workdir/cairn-compare-bin"
mkdir -p "$bindir"
(cd "$repo" && cargo build --release -q -p cairn-workload)
cp "$target/release/cairn-workload" "$bindir/"
workload="$bindir/cairn-workload"

cairn_bin="" cairn_reason=""
if [[ ",$dbs," == *",cairn,"* ]]; then
  if (cd "$repo" && cargo build --release -q -p cairn) 2>"$workdir/cairn-build.log"; then
    cp "$target/release/cairn" "$bindir/"
    cairn_bin="$bindir/cairn"
  else
    cairn_reason="the cairn binary did not build (see $workdir/cairn-build.log)"
  fi
fi

formats=remote-write
if [ "$openmetrics" = yes ] || { [ "$openmetrics" = auto ] && [ "$series" -le 20000 ]; }; then
  formats=remote-write,openmetrics
fi
# OTLP payloads of the same data, for a second Cairn instance fed by OTLP.
if [[ ",$dbs," == *",cairn,"* ]] && { [ "$otlp" = yes ] || { [ "$otlp" = auto ] && [ "$series" -le 20000 ]; }; }; then
  formats="$formats,otlp"
fi
data="$workdir/cairn-workload-s${series}-d${duration}-seed${seed}-churn${churn}-${formats//,/+}"
if [ ! -f "$data/summary.json" ]; then
  rm -rf "$data"
  echo "generating the workload into $data" >&2
  "$workload" gen --out "$data" --series "$series" --duration "$duration" --seed "$seed" \
    --churn "$churn" --formats "$formats" >/dev/null
fi

args=(--data "$data" --workload-bin "$workload" --dbs "$dbs" --runs "$runs" --step "$step"
      --concurrency "$concurrency" --workdir "$workdir" --cairn-bin "$cairn_bin")
[ -n "$cairn_reason" ] && args+=(--cairn-unavailable-reason "$cairn_reason")
[ -n "$markdown" ] && args+=(--markdown "$markdown")
[ -n "$json" ] && args+=(--json "$json")
python3 "$repo/benches/compare/compare.py" "${args[@]}" &
pids+=($!)
wait "${pids[0]}"
