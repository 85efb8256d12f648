#!/usr/bin/env bash
# Trains the small AlexNet (examples/alexnet-lite-fashion-mnist.ini: convolutions with local
# response normalisation, overlapping max pooling with kernel 3 and stride 2, dropout before the
# dense layers; Adam with cosine annealing, batch 128, 3 epochs, seed 1) on Fashion-MNIST on the
# CPU backend and requires the test accuracy that `lamina eval --json` reports to reach
# MIN_ACCURACY below (about 2 to 5 minutes on two cores).
#   train-alexnet-lite.sh LAMINA SOURCE_ROOT
set -euo pipefail
lamina=$1
src=$2
# The config reaches 86.9%; a network whose normalisation or pooling were wrong stays far below.
MIN_ACCURACY=0.855
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5"
sed "s|data/fashion-mnist.h5|$tmp/fm.h5|g" "$src/examples/alexnet-lite-fashion-mnist.ini" \
  >"$tmp/alexnet.ini"
"$lamina" train "$tmp/alexnet.ini" --output "$tmp/out" --backend cpu
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json --backend cpu)
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/^{"loss": [0-9.]*, .*"accuracy": \([0-9.]*\), "samples".*/\1/p')
[ -n "$acc" ] || { echo "no accuracy in lamina eval's output"; exit 1; }
awk -v a="$acc" -v m="$MIN_ACCURACY" \
  'BEGIN { if (a + 0 >= m) exit 0; print "accuracy " a " is below " m; exit 1 }'
rows=$(($(wc -l <"$tmp/out/metrics.csv") - 1))
[ "$rows" -eq 3 ] || { echo "metrics.csv has $rows epoch rows, expected 3"; exit 1; }
echo "ok: test accuracy $acc"
