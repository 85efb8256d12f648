#!/usr/bin/env bash
# Trains LeNet-5 (examples/lenet5-fashion-mnist.ini: conv 6-16, max pooling, dense 120-84-10,
# Adam with cosine annealing, batch 128, 8 epochs, seed 1) on Fashion-MNIST on the CPU backend
# and requires at least 89% test accuracy, measured by `lamina eval --json` (the config reaches
# 89.7%).  Training goes through the batch reader's prefetch thread.
#   train-lenet5.sh LAMINA SOURCE_ROOT
set -euo pipefail
lamina=$1
src=$2
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5"
sed "s|data/fashion-mnist.h5|$tmp/fm.h5|g" "$src/examples/lenet5-fashion-mnist.ini" >"$tmp/lenet5.ini"
"$lamina" train "$tmp/lenet5.ini" --output "$tmp/out" --backend cpu
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json --backend cpu)
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" 'BEGIN { if (a + 0 >= 0.89) exit 0; print "accuracy " a " is below 0.89"; exit 1 }'
rows=$(($(wc -l <"$tmp/out/metrics.csv") - 1))
[ "$rows" -eq 8 ] || { echo "metrics.csv has $rows epoch rows, expected 8"; exit 1; }
echo "ok: test accuracy $acc"
