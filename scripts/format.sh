#!/usr/bin/env bash
# Formats the Swift sources with the toolchain's swift-format and the repository's .swift-format.
#
#   scripts/format.sh           # rewrite the files in place
#   scripts/format.sh --check   # change nothing; list what is not formatted and exit 1 if any
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Package.swift Sources Tests Benchmarks Fuzz)
if [ "${1:-}" = "--check" ]; then
  # lint reports each difference as a warning; --strict turns them into a failing exit status.
  swift format lint --strict --recursive --parallel "${paths[@]}"
  echo "format: every Swift file is formatted"
else
  swift format format --in-place --recursive --parallel "${paths[@]}"
fi
