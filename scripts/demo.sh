#!/usr/bin/env bash
# Installs what is missing, builds Lamina, converts Fashion-MNIST and trains the reference MLP,
# then evaluates the result on the test split.
#   scripts/demo.sh [CONFIG]      (default examples/mlp-fashion-mnist.ini)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
config=${1:-examples/mlp-fashion-mnist.ini}
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build
if [ ! -f data/fashion-mnist.h5 ]; then
  scripts/make-fashion-mnist.sh build/cli/lamina data/fashion-mnist.h5
fi
name=$(basename "$config" .ini)
build/cli/lamina train "$config" --output "out/$name"
build/cli/lamina eval "out/$name/final.h5" --data data/fashion-mnist.h5:/test
