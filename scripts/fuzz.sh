#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the wire-message decoder (fuzz-protocol: Message.decode)
# and of sweep and trial file parsing (fuzz-files: SweepFile.parse, TrialConfig.parse).
#
#   scripts/fuzz.sh [SECONDS]    # each target runs SECONDS (default 60)
#
# Builds the targets of Fuzz/ (SWEEP_FUZZ=1 adds them to the package) with -sanitize=fuzzer into
# .build-fuzz, and runs each on its corpus in .build-fuzz/corpus/TARGET, seeded from
# Fuzz/seeds/protocol (one message of each command), sweeps/ and examples/. Prints the executions
# and whether anything crashed, hung (-timeout) or used too much memory (-rss_limit_mb); such
# inputs are kept in .build-fuzz/crashes/TARGET/ (replay one: .build-fuzz/release/fuzz-TARGET FILE).
# Exits non-zero when a target found one.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
scripts/install-deps.sh
export SWEEP_FUZZ=1
# Swift code is instrumented by -sanitize=fuzzer, C code (libyaml, the kernels) for coverage only;
# lld links them (gold fails on them with an internal error).
flags=(-c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link -Xswiftc -use-ld=lld)
for target in protocol files; do
  swift build "${flags[@]}" --product "fuzz-$target"
done
bin=$(swift build "${flags[@]}" --show-bin-path)

found=0
for target in protocol files; do
  corpus=.build-fuzz/corpus/$target
  crashes=.build-fuzz/crashes/$target
  log=.build-fuzz/fuzz-$target.log
  mkdir -p "$corpus" "$crashes"
  if [ "$target" = protocol ]; then seeds=(Fuzz/seeds/protocol); else seeds=(sweeps examples); fi
  status=0
  "$bin/fuzz-$target" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    echo "fuzz-$target: ${runs:-?} executions in ${seconds}s, no crash ($(find "$corpus" -type f | wc -l) inputs in the corpus)"
  else
    found=1
    echo "fuzz-$target: FOUND A PROBLEM after ${runs:-?} executions (exit $status); log: $log"
    grep -E "^==[0-9]+==|ERROR: libFuzzer|Fatal error|SUMMARY" "$log" | head -5 || true
    echo "inputs kept in $crashes/:"
    find "$crashes" -type f | sed 's/^/  /'
  fi
done
exit $found
