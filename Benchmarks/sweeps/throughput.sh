#!/usr/bin/env bash
# Coordinator throughput (docs/performance.md, "Coordinator throughput"): runs
# Benchmarks/sweeps/throughput.yaml (10,000 trivial trials, 2 local workers) RUNS times with this
# checkout's build and, given a second build's directory, as many times with that one,
# interleaved so both see the same machine load, and prints a table of medians: wall seconds,
# trials/s, the writer's commit time per trial, and the coordinator loop's other parts.
#   Benchmarks/sweeps/throughput.sh [RUNS (default 3)] [BASELINE_BIN_DIR]
# A baseline is any other build, e.g. of the commit before a change:
#   git worktree add ../base COMMIT && (cd ../base && swift build -c release)
#   Benchmarks/sweeps/throughput.sh 3 ../base/.build/release
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
baseline=${2:-}
bin=.build/release
[ -x "$bin/sweep-coordinator" ] && [ -x "$bin/sweep-worker" ] || { echo "build first: swift build -c release" >&2; exit 1; }
[ -z "$baseline" ] || [ -x "$baseline/sweep-coordinator" ] || { echo "$baseline has no sweep-coordinator" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One run: "wall trials commit dispatch receive index" from the coordinator's closing lines.
run() {  # bin_dir label n
  local out="$work/$2-$3"
  "$1/sweep-coordinator" start Benchmarks/sweeps/throughput.yaml --local-workers 2 --out "$out" --plain > "$out.log" 2>&1 \
    || { tail -5 "$out.log" >&2; exit 1; }
  local finished wall
  read -r finished wall < <(sed -n 's/^sweep throughput: \([0-9]*\) done in \([0-9.]*\) s.*/\1 \2/p' "$out.log")
  [ "$finished" = 10000 ] || { echo "$2 run $3: not every trial done" >&2; tail -3 "$out.log" >&2; exit 1; }
  timing() { sed -n "s/.*coordinator time:.*\b$1 \([0-9.]*\) s.*/\1/p" "$out.log"; }
  echo "$wall $finished $(timing commit) $(timing dispatch) $(timing receive) $(timing index)" >> "$work/$2.runs"
  rm -rf "$out"
}
for n in $(seq "$runs"); do
  [ -z "$baseline" ] || run "$baseline" baseline "$n"
  run "$bin" current "$n"
done

summary() {  # label
  sort -n "$work/$1.runs" | awk -v label="$1" '
    { wall[NR] = $1; trials = $2; commit[NR] = $3; dispatch[NR] = $4; receive[NR] = $5; idx[NR] = $6 }
    function median(a, n,   b, i, j, t) {  # of a[1..n], sorted here
      for (i = 1; i <= n; i++) b[i] = a[i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
      return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
    }
    END {
      w = median(wall, NR)
      printf "| %s | %d | %.2f (%.2f–%.2f) | %d | %.3f | %.2f | %.2f | %.2f |\n", label, NR, w, wall[1], wall[NR], trials / w,
        1000 * median(commit, NR) / trials, median(dispatch, NR), median(receive, NR), median(idx, NR)
    }'
}
echo "| build | runs | wall s, median (range) | trials/s | writer ms/trial (commit) | dispatch s | receive s | index s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
[ -z "$baseline" ] || summary baseline
summary current
