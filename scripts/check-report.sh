#!/usr/bin/env bash
# The analysis end to end, as a person would see it: runs two tiny sweeps through the real
# executables (the Fashion-MNIST MLP, SGD vs AdamW; and Adam vs SGD on the Rosenbrock function),
# analyses them with sweep-analyze (terminal summary, CSV, HTML report), renders each report in
# headless Chromium (a screenshot, and the DOM to check that every chart's <svg> is there with
# marks), and reads the results with h5py and pandas (examples/read_results.py).
# Installs what it needs (Debian): the project's packages, chromium, python3-h5py, python3-pandas.
# Usage: scripts/check-report.sh [OUTPUT_DIR]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh chromium python3-h5py python3-pandas
# Debian's python3 has Debian's h5py and pandas (a python3 earlier on the PATH may not).
python=python3
python3 -c 'import h5py, pandas' 2>/dev/null || python=/usr/bin/python3

swift build -c release --product sweep-coordinator
swift build -c release --product sweep-worker
swift build -c release --product sweep-analyze
bin=.build/release
out="${1:-$(mktemp -d /tmp/check-report.XXXXXX)}"
mkdir -p "$out"
fail() { echo "check-report: FAILED: $*" >&2; exit 1; }

# sweep-analyze reads results through SweepCore and HDF5 alone (docs/architecture.md): it must
# not link OpenBLAS (or any BLAS), which only training needs.
if blas=$(ldd "$bin/sweep-analyze" | grep -i blas); then fail "sweep-analyze links BLAS: $blas"; fi

check() {  # name, sweep file, expected charts (space-separated)
  local name=$1 sweep=$2 expected=$3 dir="$out/$1"
  rm -rf "$dir"
  "$bin/sweep-coordinator" start "$sweep" --local-workers 2 --out "$dir" --plain > "$out/$name-sweep.log" 2>&1 \
    || { cat "$out/$name-sweep.log"; fail "the $name sweep"; }
  tail -n 2 "$out/$name-sweep.log"
  "$bin/sweep-analyze" "$dir" --html "$dir/report.html" --csv "$dir/trials.csv" | tee "$out/$name-analyze.txt"
  grep -q "^Leaderboard by " "$out/$name-analyze.txt" || fail "$name: no leaderboard printed"
  grep -q "^Best per optimizer" "$out/$name-analyze.txt" || fail "$name: no best-per-optimizer table"
  grep -q "^Sensitivity of " "$out/$name-analyze.txt" || fail "$name: no sensitivity table"
  local trials
  trials=$(sed -n 's/^sweep [^:]*: \([0-9]*\) trials.*/\1/p' "$out/$name-analyze.txt")
  [ "$(wc -l < "$dir/trials.csv")" -eq $((trials + 1)) ] || fail "$name: trials.csv should have $((trials + 1)) lines"

  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$out/chromium-profile" \
    --screenshot="$dir/report.png" --window-size=1400,3000 "file://$(realpath "$dir/report.html")" > "$out/$name-chromium.log" 2>&1 \
    || { cat "$out/$name-chromium.log"; fail "$name: chromium could not take the screenshot"; }
  [ -s "$dir/report.png" ] || fail "$name: no screenshot"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$out/chromium-profile" \
    --dump-dom "file://$(realpath "$dir/report.html")" > "$dir/report.dom.html" 2> "$out/$name-chromium-dom.log" \
    || { cat "$out/$name-chromium-dom.log"; fail "$name: chromium could not load the report"; }
  "$python" - "$dir/report.dom.html" $expected <<'PY' || fail "$name: the rendered report is missing charts or marks"
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
if "<title>Sweep " not in dom or "</body>" not in dom:
    sys.exit("the page did not load")
figures = dict(re.findall(r'<figure class="chart[^"]*" id="chart-([^"]+)">(.*?)</figure>', dom, re.S))
problems = []
for chart in sys.argv[2:]:
    figure = figures.get(chart)
    if figure is None:
        problems.append(f"chart {chart} is missing")
        continue
    svgs, marks = figure.count("<svg"), sum(figure.count(t) for t in ("<path", "<rect", "<circle"))
    bad = re.findall(r'\s(?:x|y|x1|x2|y1|y2|cx|cy|r|width|height|d)="[^"]*(?:nan|NaN|inf)[^"]*"', figure)
    print(f"  chart {chart}: {svgs} svg, {marks} marks")
    if svgs != 1 or marks == 0 or bad:
        problems.append(f"chart {chart}: {svgs} svg, {marks} marks, non-finite attributes {bad[:2]}")
if problems:
    sys.exit("; ".join(problems))
PY
  "$python" examples/read_results.py "$dir" > "$out/$name-python.txt" || { cat "$out/$name-python.txt"; fail "$name: examples/read_results.py"; }
  echo "  examples/read_results.py: ok ($(head -n 1 "$out/$name-python.txt"))"
  echo "screenshot: $dir/report.png"
}

check mlp Tests/AnalysisTests/Fixtures/report-sweep.yaml \
  "train-loss test-loss test-accuracy time-per-epoch final-metric heatmap parallel-coordinates best-so-far"
check toy Tests/AnalysisTests/Fixtures/report-toy.yaml \
  "train-loss time-per-epoch final-metric parallel-coordinates best-so-far pareto trajectory-1"
echo "check-report: ok ($out)"
