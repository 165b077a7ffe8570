#!/usr/bin/env bash
# A sweep on an ad-hoc list of hosts over ssh: the coordinator runs here, in the foreground; one
# worker per host is started through ssh, detached (it outlives a dropped ssh connection), with
# CURVE keys made for this run: each host gets its own key pair (its secret key travels over the
# ssh connection into a private directory, mode 0600) and only those keys are allowed in. At the
# end each worker's log is copied back and its key removed.
#
#   deploy/ssh/launch.sh [options] SWEEP.yaml HOST... [-- COORDINATOR_OPTIONS...]
#
#   --hosts-file FILE   more hosts, one per line (# comments)
#   --address ADDR      the address the workers connect to (default: hostname -f)
#   --port PORT         the coordinator's port (default 5555)
#   --out DIR           results directory (default: results/NAME)
#   --threads N         BLAS threads per trial on each host (default 1)
#   --slots K           trials at once on each host (default: the host's cores / threads)
#   --remote-bin DIR    where sweep-worker is on the hosts (default: their PATH)
#   --bin DIR           where sweep-coordinator is here (default: the PATH, else .build/release)
#   --ssh "COMMAND"     the ssh command (default: "ssh -o BatchMode=yes"); also $SWEEP_SSH
#
# A host is anything ssh accepts (user@host, an alias from ~/.ssh/config). Hosts need
# sweep-worker and its libraries (see docs/deployment-and-security.md); they need no shared filesystem.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

hosts=()
address=""
port=5555
out=""
threads=1
slots=""
remote_bin=""
bin=""
ssh_command=${SWEEP_SSH:-ssh -o BatchMode=yes}
sweep=""
coordinator_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --hosts-file) while read -r line; do line=${line%%#*}; for h in $line; do hosts+=("$h"); done; done < "$2"; shift 2 ;;
    --address) address=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --remote-bin) remote_bin=${2%/}/; shift 2 ;;
    --bin) bin=${2%/}/; shift 2 ;;
    --ssh) ssh_command=$2; shift 2 ;;
    --) shift; coordinator_args=("$@"); break ;;
    -h|--help) usage ;;
    -*) echo "launch.sh: unknown option $1" >&2; usage ;;
    *) if [ -z "$sweep" ]; then sweep=$1; else hosts+=("$1"); fi; shift ;;
  esac
done
[ -n "$sweep" ] && [ ${#hosts[@]} -gt 0 ] || usage
if [ -z "$bin" ]; then
  if command -v sweep-coordinator > /dev/null; then bin=""
  elif [ -x "$here/.build/release/sweep-coordinator" ]; then bin=$here/.build/release/
  else echo "launch.sh: sweep-coordinator is not on the PATH nor in $here/.build/release: give --bin" >&2; exit 1; fi
fi
[ -n "$address" ] || address=$(hostname -f)
read -r -a ssh_argv <<< "$ssh_command"

run=$(date +%Y%m%d-%H%M%S)-$$
keys=$(mktemp -d "${TMPDIR:-/tmp}/sweep-keys-$run.XXXXXX")
logs=${out:-results}/ssh-logs-$run
started_hosts=()
remote_pids=()
remote_dirs=()
started_names=()
cleanup() {
  local i
  mkdir -p "$logs"
  for i in "${!started_hosts[@]}"; do
    local h=${started_hosts[$i]} name=${started_names[$i]} pid=${remote_pids[$i]} remote_dir=${remote_dirs[$i]}
    # The worker left when the sweep ended; if not (the coordinator failed), stop the one we started.
    "${ssh_argv[@]}" "$h" "grep -qs $remote_dir /proc/$pid/cmdline && kill $pid; cat $remote_dir/worker.log; rm -rf $remote_dir" > "$logs/$name.log" 2> /dev/null \
      || echo "launch.sh: could not clean up $remote_dir on $h" >&2
  done
  rm -rf "$keys"
  [ ${#started_hosts[@]} -eq 0 ] || echo "launch.sh: worker logs in $logs"
}
trap cleanup EXIT

"${bin}sweep-coordinator" keys --out "$keys" coordinator > /dev/null
mkdir -m 700 "$keys/workers"
server_key=$(sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$keys/coordinator.key")
for i in "${!hosts[@]}"; do
  h=${hosts[$i]}
  name="host$i-${h##*@}"
  remote_dir=/tmp/sweep-run-$run-$name
  "${bin}sweep-coordinator" keys --out "$keys/workers" "$name" > /dev/null
  slots_arg=${slots:+--slots $slots}
  # The secret key arrives on standard input; the worker is detached from the ssh session.
  pid=$("${ssh_argv[@]}" "$h" "set -e; umask 077; mkdir -p $remote_dir; cat > $remote_dir/worker.key_secret
    slots='$slots_arg'; [ -n \"\$slots\" ] || slots=\"--slots \$(( \$(nproc) / $threads > 0 ? \$(nproc) / $threads : 1 ))\"
    nohup ${remote_bin}sweep-worker --connect tcp://$address:$port --key $remote_dir/worker.key_secret --server-key='$server_key' \
      --name '$name' --threads $threads \$slots --give-up-after 300 > $remote_dir/worker.log 2>&1 < /dev/null &
    echo \$!" < "$keys/workers/$name.key_secret") || { echo "launch.sh: could not start a worker on $h" >&2; exit 1; }
  started_hosts+=("$h")
  remote_pids+=("$pid")
  remote_dirs+=("$remote_dir")
  started_names+=("$name")
  echo "launch.sh: worker $name started on $h (pid $pid)"
done

status=0
"${bin}sweep-coordinator" start "$sweep" --bind "tcp://*:$port" --key "$keys/coordinator.key_secret" --allow "$keys/workers" \
  ${out:+--out "$out"} "${coordinator_args[@]}" || status=$?
exit $status
