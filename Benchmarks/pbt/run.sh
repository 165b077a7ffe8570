#!/usr/bin/env bash
# Population-based training against random search with the same epochs in total, on the MLP
# (sweeps/004-mlp-pbt.yaml: 8 members x 8 epochs; random: 8 trials x 8 epochs, same space), for
# several sweep seeds. Prints the best test accuracy of each and the median of each column.
#   Benchmarks/pbt/run.sh [SEEDS]     (default 5; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=${1:-5}
bin=.build/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$($bin/sweep-worker info | sed -n 's/^best kernel for this CPU: //p')}
best() { sed -n 's/^best test_accuracy: \([0-9.]*\).*/\1/p' "$1"; }
printf "seed  pbt     random\n"
pbt_all=() random_all=()
for ((s = 0; s < seeds; s++)); do
  sed "s/^seed: .*/seed: $s/" sweeps/004-mlp-pbt.yaml > "$work/pbt.yaml"
  sed -e "s/^seed: .*/seed: $s/" -e 's/^  algorithm: pbt/  algorithm: random\n  trials: 8/' \
      -e '/^  population:/d' -e '/^  interval:/d' -e 's/^name: 004-mlp-pbt/name: 004-mlp-random/' sweeps/004-mlp-pbt.yaml > "$work/random.yaml"
  $bin/sweep-coordinator start "$work/pbt.yaml" --local-workers 2 --out "$work/pbt-$s" --plain > "$work/pbt-$s.log" 2>&1
  $bin/sweep-coordinator start "$work/random.yaml" --local-workers 2 --out "$work/random-$s" --plain > "$work/random-$s.log" 2>&1
  p=$(best "$work/pbt-$s.log") r=$(best "$work/random-$s.log")
  pbt_all+=("$p") random_all+=("$r")
  printf "%-5s %-7s %s\n" "$s" "$p" "$r"
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
printf "median %-7s %s\n" "$(median "${pbt_all[@]}")" "$(median "${random_all[@]}")"
