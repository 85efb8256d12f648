#!/usr/bin/env bash
# FGSM accuracy of the reference MLP trained normally (examples/mlp-fashion-mnist.ini) and
# adversarially (examples/mlp-adversarial.ini) on Fashion-MNIST's test split, at
# eps = 0, 0.05, 0.1 and 0.2 (pixels clipped to [0, 1]), as a Markdown table.
#   scripts/fgsm-table.sh [BUILD_DIR] [OUTPUT_DIR]     (default build, out/fgsm-table)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-out/fgsm-table}
lamina="$build/cli/lamina"
[ -f data/fashion-mnist.h5 ] || scripts/make-fashion-mnist.sh "$lamina" data/fashion-mnist.h5
mkdir -p "$out"
for run in mlp-fashion-mnist mlp-adversarial; do
  [ -f "$out/$run/final.h5" ] ||
    "$lamina" train "examples/$run.ini" --backend cpu --output "$out/$run" --quiet
done
echo "| eps | trained normally | trained adversarially (FGSM, eps 0.1) |"
echo "|---|---|---|"
for eps in 0 0.05 0.1 0.2; do
  row="| $eps |"
  for run in mlp-fashion-mnist mlp-adversarial; do
    acc=$("$lamina" attack "$out/$run/final.h5" --data data/fashion-mnist.h5:/test \
      --method fgsm --eps "$eps" --clip 0,1 --backend cpu --json |
      sed -n 's/.*"adversarial_accuracy": *\([0-9.]*\).*/\1/p')
    row="$row $(awk -v a="$acc" 'BEGIN { printf "%.2f%%", 100 * a }') |"
  done
  echo "$row"
done
