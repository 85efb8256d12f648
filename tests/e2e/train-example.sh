#!/usr/bin/env bash
# Trains an example config on Fashion-MNIST on the CPU backend for EPOCHS epochs and requires at
# least MIN_ACCURACY test accuracy, measured by `lamina eval --json`.
#   train-example.sh LAMINA SOURCE_ROOT EXAMPLE EPOCHS MIN_ACCURACY
set -euo pipefail
lamina=$1
src=$2
example=$3
epochs=$4
min=$5
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5"
sed "s|data/fashion-mnist.h5|$tmp/fm.h5|g" "$src/examples/$example" >"$tmp/example.ini"
"$lamina" train "$tmp/example.ini" --output "$tmp/out" --backend cpu --epochs "$epochs"
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json)
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" -v m="$min" 'BEGIN { if (a + 0 >= m + 0) exit 0; print "accuracy " a " is below " m; exit 1 }'
echo "ok: $example, $epochs epochs, test accuracy $acc (at least $min)"
