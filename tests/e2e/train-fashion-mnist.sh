#!/usr/bin/env bash
# Trains the reference MLP (examples/mlp-fashion-mnist.ini: 784-256-256-10, SGD lr 0.05,
# momentum 0.9, batch 128, 5 epochs) on Fashion-MNIST on the CPU backend and requires at least
# 85% test accuracy, measured by `lamina eval --json`.
#   train-fashion-mnist.sh LAMINA SOURCE_ROOT
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
sed "s|data/fashion-mnist.h5|$tmp/fm.h5|g" "$src/examples/mlp-fashion-mnist.ini" >"$tmp/mlp.ini"
"$lamina" train "$tmp/mlp.ini" --output "$tmp/out" --backend cpu
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json)
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" 'BEGIN { if (a + 0 >= 0.85) exit 0; print "accuracy " a " is below 0.85"; exit 1 }'
rows=$(($(wc -l <"$tmp/out/metrics.csv") - 1))
[ "$rows" -eq 5 ] || { echo "metrics.csv has $rows epoch rows, expected 5"; exit 1; }
echo "ok: test accuracy $acc"
