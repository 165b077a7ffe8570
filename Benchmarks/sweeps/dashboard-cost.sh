#!/usr/bin/env bash
# The dashboard's cost to the coordinator: the trivial-trial benchmark (throughput.yaml, 10,000
# trials, 2 local workers) run ROUNDS times each way, interleaved in one run: without the
# dashboard; with --dashboard and nobody watching; with --dashboard, one browser-like client on
# its event stream and /metrics scraped every second. Prints a Markdown table of the median and
# range of each: wall seconds (the coordinator's own summary line) and CPU seconds of the
# coordinator with its two workers (the workers' share is the same in every run).
# Usage: Benchmarks/sweeps/dashboard-cost.sh [ROUNDS]   (default 3; builds the release products)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
swift build -c release --product sweep-coordinator > /dev/null
swift build -c release --product sweep-worker > /dev/null
bin=.build/release
work=$(mktemp -d /tmp/dashboard-cost.XXXXXX)
declare -A seconds cpu
run() {  # mode, round
  local mode=$1 dir="$work/$1-$2" log="$work/$1-$2.log" args=() watcher=()
  [ "$mode" = without ] || args=(--dashboard)
  : > "$log"
  # The coordinator under a wrapper that reports the CPU time of it and its children.
  python3 -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime + u.ru_stime:.2f}", file=open(sys.argv[1] + ".cpu", "w"))
sys.exit(rc)' "$log" "$bin/sweep-coordinator" start Benchmarks/sweeps/throughput.yaml --local-workers 2 --out "$dir" --plain "${args[@]}" &
  local pid=$!
  if [ "$mode" = watched ]; then
    local url=""
    while [ -z "$url" ] && kill -0 "$pid" 2>/dev/null; do url=$(sed -n 's/^dashboard: \(http:[^ ]*\).*/\1/p' "$log" || true); sleep 0.05; done
    curl -sN "${url}events" > /dev/null 2>&1 &
    watcher+=($!)
    ( while kill -0 "$pid" 2>/dev/null; do curl -s "${url}metrics" > /dev/null 2>&1 || true; sleep 1; done ) &
    watcher+=($!)
  fi
  wait "$pid"
  for w in "${watcher[@]}"; do kill "$w" 2>/dev/null || true; wait "$w" 2>/dev/null || true; done
  local s
  s=$(sed -n 's/^sweep throughput: .* in \([0-9.]*\) s;.*/\1/p' "$log")
  [ -n "$s" ] || { cat "$log"; exit 1; }
  seconds[$mode]="${seconds[$mode]:-} $s"
  cpu[$mode]="${cpu[$mode]:-} $(cat "$log.cpu")"
  rm -rf "$dir"
}
for r in $(seq 1 "$rounds"); do
  for mode in without unwatched watched; do run "$mode" "$r"; done
done
echo "| coordinator | runs | wall s, median (range) | trials/s (median) | CPU s, median (range) |"
echo "| --- | --- | --- | --- | --- |"
for mode in without unwatched watched; do
  python3 - "$mode" "${seconds[$mode]}" "${cpu[$mode]}" <<'PY'
import statistics, sys
mode = sys.argv[1]
wall, cpu = (sorted(float(x) for x in a.split()) for a in sys.argv[2:4])
label = {"without": "without `--dashboard`", "unwatched": "`--dashboard`, nobody watching",
         "watched": "`--dashboard`, one event stream + `/metrics` every second"}[mode]
w, c = statistics.median(wall), statistics.median(cpu)
print(f"| {label} | {len(wall)} | {w:.2f} ({wall[0]:.2f}–{wall[-1]:.2f}) | {10000 / w:,.0f} | {c:.2f} ({cpu[0]:.2f}–{cpu[-1]:.2f}) |")
PY
done
rm -rf "$work"
