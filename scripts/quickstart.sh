#!/usr/bin/env bash
# Quick start: install what is needed, build, and run a real sweep end to end on this machine:
# the Fashion-MNIST MLP, SGD with momentum against AdamW, two learning rates each, two seeds,
# on two local workers. Results: results/quickstart/sweep.h5.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product sweep-coordinator
swift build -c release --product sweep-worker
.build/release/sweep-coordinator start sweeps/quickstart.yaml --local-workers 2 "$@"
