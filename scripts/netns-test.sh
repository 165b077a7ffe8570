#!/usr/bin/env bash
# Several hosts on one machine: network namespaces joined by veth pairs to a bridge (itself in a
# namespace of its own, so nothing touches this machine's network). The coordinator runs in one
# namespace and reaches the workers in two others through deploy/ssh/launch.sh and a real sshd in
# each; a fourth namespace plays an attacker. It checks that
#   1. a real sweep runs across the hosts with CURVE (per-run keys from the launcher), and the
#      traffic on the wire is encrypted (no protocol text in the captured packets, while the
#      same capture of a plaintext --insecure sweep shows it);
#   2. a host cut off mid-sweep (its link down longer than --dead-after) is declared lost, its
#      trial is requeued, it comes back when the link is restored, and every trial is committed
#      exactly once;
#   3. a worker with a key that is not allowed and a plaintext client are both refused and
#      logged while the sweep goes on; a plaintext coordinator on a non-loopback address is
#      refused.
# Needs root. Cleans up its namespaces and processes on any exit.
#   scripts/netns-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "netns-test: needs root (ip netns)" >&2; exit 1; }
scripts/install-deps.sh
missing=()
for p in iproute2 openssh-server openssh-client python3-h5py; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  # policy-rc.d keeps the package's sshd service from starting on this machine.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
for product in sweep-coordinator sweep-worker; do
  swift build -c release --product $product > /tmp/netns-test-build.log 2>&1 || { grep -E "error" /tmp/netns-test-build.log | head; exit 1; }
done
bin=$repo/.build/release
py=/usr/bin/python3
started=$(date +%s)

tag=swt$$
net=10.254.77
declare -A ip=([coord]=$net.1 [w1]=$net.11 [w2]=$net.12 [rogue]=$net.66)
work=$(mktemp -d /tmp/netns-test.XXXXXX)
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  # And whatever still runs inside the namespaces (workers started over ssh, the launcher's
  # coordinator): all started by this test.
  for ns in hub coord w1 w2 rogue; do
    for p in $(ip netns pids "$tag-$ns" 2> /dev/null); do kill "$p" 2> /dev/null || true; done
  done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  for ns in hub coord w1 w2 rogue; do ip netns del "$tag-$ns" 2> /dev/null || true; done
  rm -rf /tmp/sweep-run-*-host?-"$net".*
  [ "$status" -eq 0 ] || echo "netns-test: FAILED (logs in $work)" >&2
  exit "$status"
}
trap cleanup EXIT
fail() { echo "netns-test: $*" >&2; exit 1; }
in_ns() { local ns=$1; shift; ip netns exec "$tag-$ns" "$@"; }
elapsed() { echo $(( $(date +%s) - started )); }
wait_for() {  # seconds, description, command...
  local limit=$1 what=$2 i; shift 2
  for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

echo "== network: bridge in $tag-hub; coord ${ip[coord]}, w1 ${ip[w1]}, w2 ${ip[w2]}, rogue ${ip[rogue]}"
ip netns add "$tag-hub"
ip -n "$tag-hub" link add br0 type bridge
ip -n "$tag-hub" link set br0 up
for host in coord w1 w2 rogue; do
  ip netns add "$tag-$host"
  ip link add "$tag${host:0:2}a" type veth peer name "$tag${host:0:2}b"
  ip link set "$tag${host:0:2}a" netns "$tag-$host"
  ip link set "$tag${host:0:2}b" netns "$tag-hub"
  ip -n "$tag-$host" link set "$tag${host:0:2}a" name eth0
  ip -n "$tag-$host" addr add "${ip[$host]}/24" dev eth0
  ip -n "$tag-$host" link set eth0 up
  ip -n "$tag-$host" link set lo up
  ip -n "$tag-hub" link set "$tag${host:0:2}b" master br0 up
done

echo "== sshd in w1 and w2"
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$work/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
for host in w1 w2; do echo "${ip[$host]} $(cut -d' ' -f1,2 "$work/host_key.pub")" >> "$work/known_hosts"; done
cat > "$work/sshd_config" <<EOF
ListenAddress 0.0.0.0
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
EOF
for host in w1 w2; do
  ip netns exec "$tag-$host" /usr/sbin/sshd -D -e -f "$work/sshd_config" -o "PidFile=$work/sshd-$host.pid" 2> "$work/sshd-$host.log" &
  pids+=($!)
done
ssh="ssh -i $work/client_key -o BatchMode=yes -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR"
wait_for 10 "ssh from coord to sshd in w1 and w2 (the namespaces' network)" \
  bash -c "ip netns exec $tag-coord $ssh ${ip[w1]} true 2> /dev/null && ip netns exec $tag-coord $ssh ${ip[w2]} true 2> /dev/null"

# Packets to and from the coordinator, captured on the bridge side of its link. (Background
# commands run `ip netns exec` directly, so that the recorded pid is the program's own.)
capture() {  # name, seconds at most; stops when $work/NAME.stop exists
  ip netns exec "$tag-hub" $py - "${tag}cob" "$work/$1.capture" "$work/$1.stop" "$2" <<'PY' &
import socket, sys, time, os, json
iface, out, stop, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((iface, 0))
s.settimeout(0.2)
# The protocol's texts: its header, a command, JSON keys every trial sends. (4-byte SWP2 turns up
# by chance about once in 4 GB of random bytes, so the encrypted run is judged on the longer ones.)
needles = ("SWP2", "HEARTBEAT", "trainLoss", '"lease"', "CURVE")
stats = {"packets": 0, "bytes": 0, **{n: 0 for n in needles}}
end = time.time() + limit
while time.time() < end and not os.path.exists(stop):
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    stats["packets"] += 1
    stats["bytes"] += len(frame)
    for needle in needles:
        stats[needle] += frame.count(needle.encode())
json.dump(stats, open(out, "w"))
PY
  pids+=($!)
  sleep 0.5
}
stop_capture() { touch "$work/$1.stop"; wait_for 5 "the $1 capture" test -s "$work/$1.capture"; cat "$work/$1.capture"; }

echo "== control: a plaintext --insecure sweep between coord and w1 shows its protocol on the wire"
printf 'name: plain\nbase: {model: quadratic, steps: 300, optimizer: sgd}\ngrid: {lr: [0.01, 0.02]}\n' > "$work/plain.yaml"
capture plain 30
in_ns coord "$bin/sweep-coordinator" start "$work/plain.yaml" --bind "tcp://${ip[coord]}:5557" --out "$work/plain" --plain > "$work/refused-plain.log" 2>&1 \
  && fail "a plaintext coordinator on ${ip[coord]} was not refused"
grep -q "refusing to listen on tcp://${ip[coord]}:5557 in plaintext" "$work/refused-plain.log" || fail "no clear refusal: $(cat "$work/refused-plain.log")"
echo "plaintext coordinator on ${ip[coord]} without --insecure: refused"
ip netns exec "$tag-coord" "$bin/sweep-coordinator" start "$work/plain.yaml" --bind "tcp://${ip[coord]}:5557" --insecure --out "$work/plain" --plain > "$work/plain.log" 2>&1 &
plain_coordinator=$!
pids+=("$plain_coordinator")
in_ns w1 "$bin/sweep-worker" --connect "tcp://${ip[coord]}:5557" --insecure --name plain-w1 --give-up-after 20 > "$work/plain-w1.log" 2>&1 \
  || fail "the plaintext worker: $(tail -3 "$work/plain-w1.log")"
wait "$plain_coordinator" || fail "the plaintext sweep: $(tail -3 "$work/plain.log")"
plain_stats=$(stop_capture plain)
echo "captured: $plain_stats"
$py -c "import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s['SWP2'] > 0 and s['trainLoss'] > 0 and s['\"lease\"'] > 0 else 1)" "$plain_stats" \
  || fail "the capture does not see plaintext protocol messages: it cannot tell encrypted from plaintext"

echo "== the sweep over ssh with CURVE ($(elapsed) s)"
cat > "$work/netns.yaml" <<'EOF'
name: netns
checkpoints: {every: 1}
base: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 8, optimizer: adamw}
grid: {lr: [0.0005, 0.001, 0.002, 0.003]}
seeds: [0, 1, 2]
EOF
trials=12
capture curve 170
ip netns exec "$tag-coord" deploy/ssh/launch.sh --ssh "$ssh" --address "${ip[coord]}" --port 5555 --bin "$bin" --remote-bin "$bin" \
  --threads 1 --slots 1 --out "$work/out" "$work/netns.yaml" "${ip[w1]}" "${ip[w2]}" -- --plain --dead-after 3 --heartbeat 0.5 \
  > "$work/coordinator.log" 2>&1 &
launcher=$!
pids+=("$launcher")
log() { cat "$work/coordinator.log"; }
w1=host0-${ip[w1]}
w2=host1-${ip[w2]}
wait_for 60 "both workers to register" bash -c "grep -q 'worker $w1 on' $work/coordinator.log && grep -q 'worker $w2 on' $work/coordinator.log"
wait_for 60 "a first trial" grep -q "] done after" "$work/coordinator.log"
echo "== cutting $w2 off ($(elapsed) s)"
ip -n "$tag-hub" link set "${tag}w2b" down
wait_for 20 "$w2 to be declared lost" grep -q "worker $w2 on .* declared lost" "$work/coordinator.log"
sleep 1
ip -n "$tag-hub" link set "${tag}w2b" up
echo "== $w2 restored ($(elapsed) s)"

echo "== an unknown key and a plaintext client from $tag-rogue, while the sweep runs"
server_key=$(sed -n 's/^CURVE: coordinator public key \([^;]*\);.*/\1/p' "$work/coordinator.log")
[ -n "$server_key" ] || fail "no coordinator key in the log"
"$bin/sweep-coordinator" keys --out "$work/rogue-keys" intruder > /dev/null
in_ns rogue "$bin/sweep-worker" --connect "tcp://${ip[coord]}:5555" --key "$work/rogue-keys/intruder.key_secret" --server-key="$server_key" \
  --name intruder --give-up-after 20 > "$work/intruder.log" 2>&1 && fail "the intruder was not refused"
grep -q "refused this worker's key" "$work/intruder.log" || fail "intruder: $(cat "$work/intruder.log")"
in_ns rogue "$bin/sweep-worker" --connect "tcp://${ip[coord]}:5555" --insecure --name plaintext --give-up-after 20 > "$work/plaintext.log" 2>&1 \
  && fail "the plaintext client was not refused"
grep -q "requires CURVE" "$work/plaintext.log" || fail "plaintext client: $(cat "$work/plaintext.log")"
# Which side of a NULL-versus-CURVE handshake notices first is a race; a raw client that sends a
# whole ZMTP 3.0 NULL greeting and waits lets the coordinator see the mismatch itself. (It waits
# a moment before the greeting, as a client across a network would, so that the coordinator's
# monitor has read the connection's address before it is closed.)
ip netns exec "$tag-rogue" $py - "${ip[coord]}" <<'PY' || fail "the NULL greeting was not closed by the coordinator"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 5555), timeout=5)
time.sleep(0.5)
s.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL" + bytes(16) + b"\x00" + bytes(31))
while s.recv(256):
    pass
PY
sweep_running_after_rogues=$(grep -c "^sweep netns: $trials done" "$work/coordinator.log" || true)
[ "$sweep_running_after_rogues" -eq 0 ] || fail "the sweep ended before the refused clients were tried: make it longer"

wait_for 30 "$w2 to come back" bash -c "[ \$(grep -c 'worker $w2 on .* registered' $work/coordinator.log) -ge 2 ]"
echo "== waiting for the sweep ($(elapsed) s)"
wait "$launcher" || { log | tail -30; fail "the launcher (coordinator) failed"; }
curve_stats=$(stop_capture curve)

log | grep -E "^(sweep netns|refused|worker .* (registered|declared lost)|requeueing|rejected|CURVE:)" | sed 's/^/  | /'
grep -q "^sweep netns: $trials done" "$work/coordinator.log" || fail "not all $trials trials done"
grep -q "refused a connection from ${ip[rogue]}: CURVE key .* is not in the allow-list" "$work/coordinator.log" || fail "the unknown key was not logged"
grep -q "refused a connection from ${ip[rogue]}:[0-9]*: it does not use CURVE" "$work/coordinator.log" || fail "the plaintext greeting was not logged"
refused=$(sed -n 's/^refused \([0-9]*\) connections.*/\1/p' "$work/coordinator.log")
# At least: the intruder, the plaintext worker (once or more), the plaintext greeting.
[ "${refused:-0}" -ge 3 ] || fail "$refused refused connections counted, expected 3 or more"
! grep -Eq "worker (intruder|plaintext) on" "$work/coordinator.log" || fail "a refused client registered"
for w in "$w1" "$w2"; do
  grep -q "CURVE handshake with tcp://${ip[coord]}:5555 succeeded" "$work/out/ssh-logs-"*/"$w.log" || fail "$w's log (fetched by the launcher) has no CURVE handshake"
done
ls /tmp/sweep-run-* > /dev/null 2>&1 && fail "the launcher left worker directories: $(ls -d /tmp/sweep-run-*)"
echo "captured: $curve_stats"
$py - "$work/out" "$trials" "$curve_stats" "$w1" "$w2" <<'PY' || fail "results check"
import glob, json, os, sys
import h5py
out, expected, stats, w1, w2 = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
with h5py.File(os.path.join(out, "sweep.h5"), "r") as f:
    ids = [i.decode() for i in f["trials"]["id"]]
    status = [s.decode() for s in f["trials"]["status"]]
    attempts = list(f["trials"]["attempts"])
    workers = [f["by_id"][i].attrs["worker"] for i in ids]
seen = []
for path in glob.glob(os.path.join(out, "trials", "*.h5")):
    with h5py.File(path, "r") as b:
        # Format 2 lists every trial of the file in its /trials table; format 1 has a group each.
        seen += [i.decode() for i in b["trials"]["id"]] if "trials" in b else list(b.keys())
assert len(ids) == expected and status == ["done"] * expected, status
assert sorted(seen) == sorted(ids), f"a trial committed twice or missing: {sorted(seen)}"
assert {w1, w2} <= set(workers), f"trained by {set(workers)}"
# Encrypted: a megabyte and more of traffic with CURVE greetings, and none of the protocol's text.
assert stats["bytes"] > 1_000_000 and stats["CURVE"] > 0, stats
assert stats["HEARTBEAT"] == 0 and stats["trainLoss"] == 0 and stats['"lease"'] == 0, f"plaintext on the wire: {stats}"
print(f"results: {expected} trials done, each committed once; by worker: "
      + ", ".join(f"{w} {workers.count(w)}" for w in sorted(set(workers)))
      + f"; attempts > 1: {sum(a > 1 for a in attempts)}")
print(f"wire: {stats['packets']} packets, {stats['bytes']} bytes, none of HEARTBEAT, trainLoss, \"lease\" (the plaintext control has them)")
PY
echo "netns-test: ok ($(elapsed) s)"
