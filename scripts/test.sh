#!/usr/bin/env bash
# The test suite: installs the system packages if needed, builds in release mode (the tests train
# real models on Fashion-MNIST) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --build-tests
swift test -c release --skip-build
