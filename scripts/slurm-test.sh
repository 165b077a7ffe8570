#!/usr/bin/env bash
# The Slurm batch script end to end: starts a single-node Slurm cluster on this machine (Debian's
# slurm-wlm and munge; slurmctld and slurmd on 127.0.0.1 with a private configuration), submits
# deploy/slurm/sweep.sbatch with sbatch twice (one worker per node using all its cores, then one
# worker per core), waits for each job and checks its results: every trial done exactly once,
# CURVE in use, the workers srun started on the node, the job's keys removed. Then it cancels a
# job mid-sweep (the coordinator commits and exits 130) and submits the same sweep again, which
# continues it. Stops everything it
# started, even on failure. Needs root (the daemons); not part of .ci/run.
#   scripts/slurm-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "slurm-test: needs root (it runs slurmctld, slurmd and munged)" >&2; exit 1; }
scripts/install-deps.sh
missing=()
for p in slurm-wlm munge python3-h5py; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
for product in sweep-coordinator sweep-worker; do
  swift build -c release --product $product > /tmp/slurm-test-build.log 2>&1 || { grep -E "error" /tmp/slurm-test-build.log | head; exit 1; }
done
started=$(date +%s)

work=$(mktemp -d /tmp/slurm-test.XXXXXX)
chmod 755 "$work"
pids=()
jobs_submitted=()
cleanup() {
  for j in "${jobs_submitted[@]}"; do scancel "$j" 2> /dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  echo "slurm-test: daemons stopped; logs in $work"
}
trap cleanup EXIT
fail() { echo "slurm-test: FAILED: $*" >&2; for f in "$work"/slurmctld.log "$work"/slurmd.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

# munge: reuse a running munged, else start one (as the munge user) for this test.
if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --foreground > "$work/munged.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge > /dev/null || fail "munged did not start"
fi

# One node, "sweepnode", reached at 127.0.0.1, with this machine's cores and memory.
hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
ctld_port=$((17000 + RANDOM % 2000))
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=sweeptest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
SrunPortRange=$((ctld_port + 2))-$((ctld_port + 100))
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
NodeName=sweepnode NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=test Nodes=sweepnode Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p "$work/state" "$work/spool"
slurmctld -D -i > "$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N sweepnode > "$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  sinfo -h -N -o "%N %t" 2> /dev/null | grep -Eq "^sweepnode (idle|mix|alloc)" && break
  sleep 0.3
done
sinfo -h -N -o "%N %t" 2> /dev/null | grep -Eq "^sweepnode idle" || fail "the node did not come up: $(sinfo -N 2>&1)"
echo "== Slurm up: $(sinfo -h -N -o '%N %c CPUs %t')"

cores=$(sinfo -h -N -o "%c" | head -1)
cat > "$work/slurm-sweep.yaml" <<'EOF'
name: slurm-test
base: {model: mlp, hidden: [64], limit: 6000, test_limit: 1000, epochs: 3, optimizer: adamw}
grid: {lr: [0.0005, 0.001, 0.002, 0.004]}
seeds: [0, 1]
EOF
trials=8

wait_job() {  # job id: prints its final state (polled, as sbatch --wait needs a reachable submit host), at most 5 minutes
  local state=""
  for _ in $(seq 300); do
    state=$(scontrol show job "$1" 2> /dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    sleep 1
  done
  echo "$state"
}

run_job() {  # layout, expected workers
  local layout=$1 expected_workers=$2 out="$work/results-$1" log="$work/job-$1.out"
  echo "== sbatch (SWEEP_LAYOUT=$layout)"
  local t0 job
  t0=$(date +%s)
  job=$(SWEEP_BIN="$repo/.build/release" SWEEP_LAYOUT=$layout SWEEP_ARGS="--dead-after 10" \
    sbatch --parsable --nodes=1 --time=10:00 --chdir="$work" --output="$log" "$repo/deploy/slurm/sweep.sbatch" "$work/slurm-sweep.yaml" "$out")
  jobs_submitted+=("$job")
  local state
  state=$(wait_job "$job")
  echo "job $job: $state after $(( $(date +%s) - t0 )) s"
  sed 's/^/  | /' "$log" | grep -E "sweep |coordinator exited|registered|refused" || true
  [ "$state" = COMPLETED ] || { cat "$log" >&2; fail "job $job ended $state"; }
  grep -q "sweep slurm-test: $trials done" "$log" || fail "$layout: not all $trials trials done"
  grep -q "(CURVE)" "$log" || fail "$layout: the coordinator did not use CURVE"
  local registered
  registered=$(grep -c "authenticated worker key 'worker'" "$log" || true)
  [ "$registered" -ge "$expected_workers" ] || fail "$layout: $registered worker connection(s) authenticated, expected $expected_workers"
  for i in $(seq 0 $((expected_workers - 1))); do
    grep -q "worker sweepnode-$i on " "$log" || fail "$layout: worker sweepnode-$i did not register"
  done
  [ ! -e "/tmp/sweep-$job-worker.key_secret" ] || fail "$layout: the job's worker key was left on the node"
  ls -d "${TMPDIR:-/tmp}"/sweep-keys-"$job".* > /dev/null 2>&1 && fail "$layout: the job's key directory was left behind"
  /usr/bin/python3 - "$out" "$trials" <<'PY' || fail "$layout: results check"
import glob, os, sys
import h5py
out, expected = sys.argv[1], int(sys.argv[2])
with h5py.File(os.path.join(out, "sweep.h5"), "r") as f:
    ids = [i.decode() for i in f["trials"]["id"]]
    status = [s.decode() for s in f["trials"]["status"]]
    assert f.attrs["count_done"] == expected, f"count_done {f.attrs['count_done']}"
    workers = {f["by_id"][i].attrs["worker"] for i in ids}
seen = []
for path in glob.glob(os.path.join(out, "trials", "*.h5")):
    with h5py.File(path, "r") as b:
        # Format 2 lists every trial of the file in its /trials table; format 1 has a group each.
        seen += [i.decode() for i in b["trials"]["id"]] if "trials" in b else list(b.keys())
assert len(ids) == expected and status == ["done"] * expected, status
assert sorted(seen) == sorted(ids), "each trial committed exactly once"
print(f"  results: {expected} trials done, each committed once, trained by {sorted(workers)}")
PY
}

run_job node 1
run_job core "$cores"

echo "== scancel mid-sweep, then the same sbatch again: it continues"
cat > "$work/resume-sweep.yaml" <<'EOF'
name: slurm-resume
base: {model: mlp, hidden: [128], limit: 20000, test_limit: 1000, epochs: 4, optimizer: adamw}
grid: {lr: [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005]}
EOF
submit_resume() {
  SWEEP_BIN="$repo/.build/release" SWEEP_LAYOUT=core sbatch --parsable --nodes=1 --time=10:00 --chdir="$work" \
    --output="$work/job-resume-$1.out" "$repo/deploy/slurm/sweep.sbatch" "$work/resume-sweep.yaml" "$work/results-resume"
}
job=$(submit_resume 1)
jobs_submitted+=("$job")
for _ in $(seq 300); do
  done_so_far=$(grep -c '] done after' "$work/job-resume-1.out" 2> /dev/null || true)
  [ "${done_so_far:-0}" -ge 2 ] && break
  sleep 0.2
done
scancel "$job"
state=$(wait_job "$job")
grep -q "SIGTERM: no more trials will be handed out" "$work/job-resume-1.out" || fail "the coordinator did not get SIGTERM: $(tail "$work/job-resume-1.out")"
grep -q "coordinator exited with status 130" "$work/job-resume-1.out" || fail "the coordinator did not exit 130 after scancel"
first=$(grep -c '] done after' "$work/job-resume-1.out")
echo "job $job: $state after scancel; $first of 6 trials committed"
[ "$first" -lt 6 ] || fail "the sweep finished before scancel: make it longer"
job=$(submit_resume 2)
jobs_submitted+=("$job")
state=$(wait_job "$job")
[ "$state" = COMPLETED ] || { cat "$work/job-resume-2.out" >&2; fail "the resumed job ended $state"; }
grep -q "resuming: $first of 6 trials already committed" "$work/job-resume-2.out" || fail "the second job did not continue the first: $(head "$work/job-resume-2.out")"
second=$(grep -c '] done after' "$work/job-resume-2.out")
[ "$((first + second))" -eq 6 ] || fail "$first + $second trials run for 6"
echo "job $job: COMPLETED; resumed with $first committed, ran the other $second"
echo "slurm-test: ok ($(( $(date +%s) - started )) s)"
