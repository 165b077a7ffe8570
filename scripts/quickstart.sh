#!/usr/bin/env bash
# Quick start: install what is needed, build, and train the Fashion-MNIST MLP with AdamW
# (one trial, 2 epochs), writing its results to results/quickstart-mlp.h5.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product sweep-worker
mkdir -p results
.build/release/sweep-worker run examples/mlp-adamw.yaml --out results/quickstart-mlp.h5
echo
echo "results: results/quickstart-mlp.h5 (try: h5dump -d /history/test_accuracy results/quickstart-mlp.h5)"
