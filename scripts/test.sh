#!/usr/bin/env bash
# The test suite: installs the system packages if needed, builds in release mode (the tests train
# real models on Fashion-MNIST) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --build-tests
# The test process loads OpenBLAS directly (no re-exec): give it the kernel the workers choose, so
# results computed in the tests and by worker processes are bit-identical.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  kernel=$(.build/release/sweep-worker info | sed -n 's/^best kernel for this CPU: //p')
  [ -n "$kernel" ] && export OPENBLAS_CORETYPE="$kernel"
fi
# One BLAS thread, as the workers default to: results do not depend on which test ran first.
export OPENBLAS_NUM_THREADS=1
swift test -c release --skip-build
