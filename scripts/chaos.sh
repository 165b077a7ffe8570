#!/usr/bin/env bash
# Chaos test: runs Benchmarks/sweeps/chaos.yaml once undisturbed, then again while repeatedly
# kill -9-ing random workers and the coordinator (restarting each), and checks that the final
# results are the same: same trials, same statuses, bit-identical final metrics and histories,
# nothing missing, nothing duplicated, every file readable.
#   scripts/chaos.sh [KILLS (default 12)]
set -euo pipefail
cd "$(dirname "$0")/.."
kills_wanted=${1:-12}
scripts/install-deps.sh
# h5py and pandas for the comparison (examples/read_results.py): Debian's, through Debian's python3.
py=/usr/bin/python3
$py -c "import h5py, numpy, pandas" 2>/dev/null || {
  [ "$(id -u)" -eq 0 ] && sudo="" || sudo=sudo
  $sudo apt-get install -y -qq python3-h5py python3-pandas >/dev/null
}
for product in sweep-coordinator sweep-worker; do
  swift build -c release --product $product > /tmp/chaos-build.log 2>&1 || { grep -E "error" /tmp/chaos-build.log | head; exit 1; }
done
bin=.build/release
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true' EXIT
# Same kernel and threads everywhere, so results are comparable bit for bit.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$($bin/sweep-worker info | sed -n 's/^best kernel for this CPU: //p')}

echo "== undisturbed run"
$bin/sweep-coordinator start Benchmarks/sweeps/chaos.yaml --local-workers 2 --out "$work/calm" --plain > "$work/calm.log"
tail -1 "$work/calm.log"

echo "== chaos run"
port=$((20000 + RANDOM % 20000))
endpoint="tcp://127.0.0.1:$port"
start_coordinator() {
  $bin/sweep-coordinator start Benchmarks/sweeps/chaos.yaml --bind "$endpoint" --out "$work/chaos" --plain \
    --dead-after 3 --heartbeat 0.5 --max-attempts 50 >> "$work/coordinator.log" 2>&1 &
  coordinator=$!
}
start_worker() { $bin/sweep-worker --connect "$endpoint" --name "w$1" --give-up-after 120 >> "$work/worker$1.log" 2>&1 & eval "worker$1=\$!"; }
start_coordinator
start_worker 1
start_worker 2
kills=0; coordinator_kills=0
deadline=$((SECONDS + 900))
while kill -0 "$coordinator" 2>/dev/null; do
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.1f", 1.5 + (r % 30) / 10 }')"
  kill -0 "$coordinator" 2>/dev/null || break
  [ "$kills" -ge "$kills_wanted" ] && { sleep 1; continue; }
  case $((RANDOM % 3)) in
    0) kill -9 "$coordinator" 2>/dev/null || true; wait "$coordinator" 2>/dev/null || true
       sleep 0.5; start_coordinator; coordinator_kills=$((coordinator_kills + 1)); echo "kill -9 coordinator";;
    1) kill -9 "$worker1" 2>/dev/null || true; wait "$worker1" 2>/dev/null || true; start_worker 1; echo "kill -9 worker 1";;
    2) kill -9 "$worker2" 2>/dev/null || true; wait "$worker2" 2>/dev/null || true; start_worker 2; echo "kill -9 worker 2";;
  esac
  kills=$((kills + 1))
  [ "$SECONDS" -lt "$deadline" ] || { echo "chaos run did not finish in time"; exit 1; }
done
wait "$coordinator" || { echo "the last coordinator failed:"; tail -20 "$work/coordinator.log"; exit 1; }
tail -2 "$work/coordinator.log"

echo "== comparing"
$py - "$work/calm" "$work/chaos" <<'PY'
import glob, os, sys
from types import SimpleNamespace
import h5py
import numpy as np
sys.path.insert(0, "examples")
from read_results import trial  # a trial's group through /by_id, or its rows of the batch tables

def load(out):
    trials = {}
    with h5py.File(os.path.join(out, "sweep.h5"), "r") as f:
        index = f["trials"][:]
        ids = [i.decode() for i in index["id"]]
        assert len(ids) == len(set(ids)), "duplicate rows in the index"
        for i, file in zip(ids, index["file"]):
            attrs, history, _ = trial(f, SimpleNamespace(id=i, file=file.decode()))
            trials[i] = (attrs["status"], history)
    # Every batch file is readable and holds each trial once (its /trials table lists them).
    seen = []
    for path in glob.glob(os.path.join(out, "trials", "*.h5")):
        with h5py.File(path, "r") as b:
            seen += [i.decode() for i in b["trials"]["id"]]
    assert len(seen) == len(set(seen)), f"a trial was committed twice: {sorted(seen)}"
    return trials

calm, chaos = load(sys.argv[1]), load(sys.argv[2])
assert calm.keys() == chaos.keys(), f"different trials: {sorted(calm.keys() ^ chaos.keys())}"
for i in calm:
    (s1, h1), (s2, h2) = calm[i], chaos[i]
    assert s1 == s2, f"{i}: status {s1} vs {s2}"
    for column in ("epoch", "step", "train_loss", "test_loss", "test_accuracy", "grad_norm", "lr"):
        a, b = h1[column], h2[column]
        assert np.array_equal(a, b, equal_nan=True), f"{i}: {column} differs: {a} vs {b}"
print(f"identical: {len(calm)} trials, statuses, histories and final metrics bit for bit")
PY
echo "survived $kills kills ($coordinator_kills of the coordinator); results in $work"
