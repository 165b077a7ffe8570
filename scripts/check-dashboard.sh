#!/usr/bin/env bash
# The live dashboard as a person would watch it: runs a small sweep of program trials (python3,
# half a second an epoch) with `sweep-coordinator start --dashboard`, opens the printed address in
# headless Chromium (driven over the DevTools protocol by scripts/dashboard_browser.py) and checks
# that, without a reload, a running trial's curve gains points and finished trials reach the
# leaderboard; then serves the finished results with `sweep-analyze --serve` and checks that page.
# Screenshots: OUTPUT_DIR/dashboard-*.png (docs/running-sweeps.md shows them).
# Installs what it needs (Debian): the project's packages, chromium.
# Usage: scripts/check-dashboard.sh [OUTPUT_DIR]   (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh chromium
swift build -c release --product sweep-coordinator
swift build -c release --product sweep-worker
swift build -c release --product sweep-analyze
bin=$(pwd)/.build/release
out="${1:-$(mktemp -d /tmp/check-dashboard.XXXXXX)}"
mkdir -p "$out"
out=$(realpath "$out")
python=/usr/bin/python3
[ -x "$python" ] || python=python3
fail() { echo "check-dashboard: FAILED: $*" >&2; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

sweep="$out/sweep"
rm -rf "$sweep" && mkdir -p "$sweep"
cat > "$sweep/train.py" <<'PY'
import time
import sweep_report as sweep
cfg = sweep.config()
for epoch in range(1, cfg["epochs"] + 1):
    time.sleep(cfg["sleep"])
    loss = 1.0 / (1.0 + cfg["lr"] * epoch)
    sweep.report(epoch=epoch, train_loss=loss, test_loss=loss + 0.1, test_accuracy=1 - loss / 2)
PY
cat > "$sweep/sweep.yaml" <<YAML
name: dashboard-check
description: three program trials of twelve half-second epochs, watched on the dashboard
objective: {metric: test_loss}
base:
  program: [python3, train.py]
  env: {PYTHONPATH: $(pwd)/python}
  epochs: 12
  sleep: 0.5
grid: {lr: [0.5, 1.0, 2.0]}
YAML

echo "live dashboard of a running sweep:"
"$bin/sweep-coordinator" start "$sweep/sweep.yaml" --local-workers 1 --out "$sweep/out" --plain --dashboard > "$out/coordinator.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/^dashboard: \(http:[^ ]*\).*/\1/p' "$out/coordinator.log" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$out/coordinator.log"; fail "the coordinator stopped"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$out/coordinator.log"; fail "the coordinator printed no dashboard address"; }
echo "  $url"
timeout 300 "$python" scripts/dashboard_browser.py live "$url" "$out" || { tail -n 20 "$out/coordinator.log"; fail "the live dashboard"; }
wait "${pids[0]}" || { cat "$out/coordinator.log"; fail "the sweep"; }
tail -n 2 "$out/coordinator.log"

echo "sweep-analyze --serve of the finished results:"
"$bin/sweep-analyze" "$sweep/out" --serve > "$out/serve.log" 2>&1 &
pids+=($!)
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/^dashboard: \(http:[^ ]*\).*/\1/p' "$out/serve.log" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$out/serve.log"; fail "sweep-analyze --serve stopped"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$out/serve.log"; fail "sweep-analyze --serve printed no address"; }
echo "  $url"
timeout 120 "$python" scripts/dashboard_browser.py served "$url" "$out" || fail "the served dashboard"
kill -TERM "${pids[1]}"
wait "${pids[1]}" || fail "sweep-analyze --serve did not stop cleanly on SIGTERM"
grep -q "^dashboard stopped" "$out/serve.log" || fail "sweep-analyze --serve did not say it stopped"
echo "check-dashboard: ok ($out)"
