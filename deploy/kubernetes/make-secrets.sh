#!/usr/bin/env bash
# Makes the CURVE keys of a Kubernetes deployment and the three Secrets that hold them:
#   sweep-coordinator-key   coordinator.key_secret        (mounted in the coordinator only)
#   sweep-allowed-workers   worker.key                    (the coordinator's allow-list)
#   sweep-worker-key        worker.key_secret, coordinator.key   (mounted in the workers)
# The key files are made in a private temporary directory and deleted afterwards; only the
# Secrets keep them.
#   deploy/kubernetes/make-secrets.sh [--namespace NS] [--apply]   (default: print the manifests)
# Needs kubectl (`kubectl create secret --dry-run=client` makes the manifests; --apply sends them
# to the cluster) and sweep-coordinator (on the PATH, or SWEEP_BIN, or .build/release).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
namespace=()
apply=false
while [ $# -gt 0 ]; do
  case $1 in
    --namespace) namespace=(--namespace "$2"); shift 2 ;;
    --apply) apply=true; shift ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
if [ -n "${SWEEP_BIN:-}" ]; then coordinator=${SWEEP_BIN%/}/sweep-coordinator
elif command -v sweep-coordinator > /dev/null; then coordinator=sweep-coordinator
else coordinator=$here/.build/release/sweep-coordinator; fi
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT
"$coordinator" keys --out "$keys" coordinator worker > /dev/null
manifests() {
  kubectl create secret generic sweep-coordinator-key "${namespace[@]}" --dry-run=client -o yaml \
    --from-file="$keys/coordinator.key_secret"
  echo ---
  kubectl create secret generic sweep-allowed-workers "${namespace[@]}" --dry-run=client -o yaml \
    --from-file="$keys/worker.key"
  echo ---
  kubectl create secret generic sweep-worker-key "${namespace[@]}" --dry-run=client -o yaml \
    --from-file="$keys/worker.key_secret" --from-file="$keys/coordinator.key"
}
if $apply; then manifests | kubectl apply -f -; else manifests; fi
