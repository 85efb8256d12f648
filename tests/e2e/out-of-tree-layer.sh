#!/usr/bin/env bash
# Installs Lamina into a temporary prefix, builds examples/plugin-layer (nn.PReLU, which the
# --plugin-path below puts ahead of Lamina's own prelu) against the *installed* SDK through
# pkg-config, and checks the layer end to end:
# `lamina plugins describe` lists it, `lamina gradcheck` passes with one slope and with one per
# channel, its forward and backward equal PyTorch's recorded values (tests/fixtures/prelu.h5,
# scripts/make-prelu-fixtures.py) through the example's prelu-check program, and a short
# `lamina train` of examples/plugin-layer/prelu-mlp.ini lowers the loss.  When lavapipe is
# available, the same steps on Vulkan must run the layer's own SPIR-V kernels (no CPU fallback)
# and give the CPU run's losses.
#   out-of-tree-layer.sh SOURCE_ROOT
set -euo pipefail
src=$1
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The installed lamina must find its own installed plugins, not the build tree's.
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH
# The Vulkan backend's pipeline cache and the registry cache go to the temporary directory.
export XDG_CACHE_HOME=$tmp/cache

echo "== install Lamina into $tmp/prefix"
meson setup "$tmp/build" "$src" --prefix "$tmp/prefix" -Dtests=false >"$tmp/setup.log"
meson install -C "$tmp/build" >"$tmp/install.log"
pc=$(dirname "$(find "$tmp/prefix" -name lamina.pc | head -n 1)")
export PKG_CONFIG_PATH=$pc
pkg-config --modversion lamina

echo "== build the example layer against the installed SDK"
meson setup "$tmp/example" "$src/examples/plugin-layer" >"$tmp/example-setup.log"
ninja -C "$tmp/example" >"$tmp/example-build.log"
plugin_dir=$tmp/example
lamina=$tmp/prefix/bin/lamina

echo "== the installed lamina lists and describes it"
"$lamina" plugins --plugin-path "$plugin_dir" | tee "$tmp/plugins.txt" | grep "prelu"
grep -q "$plugin_dir/lamina-prelu.so" "$tmp/plugins.txt"
"$lamina" plugins describe prelu --plugin-path "$plugin_dir" | tee "$tmp/describe.txt"
grep -q "num_parameters" "$tmp/describe.txt"
grep -q "default 0.25" "$tmp/describe.txt"

echo "== gradcheck: one slope, and one per channel"
"$lamina" gradcheck prelu --plugin-path "$plugin_dir" --input 3,4,5
"$lamina" gradcheck prelu --plugin-path "$plugin_dir" --input 3,4,5 --set num_parameters=3
"$lamina" gradcheck prelu --plugin-path "$plugin_dir" --input 16 --set num_parameters=16
# a slope count that is neither 1 nor the channel count is a config error naming the fix
if "$lamina" gradcheck prelu --plugin-path "$plugin_dir" --input 3,4,5 \
  --set num_parameters=4 2>"$tmp/bad.txt"; then
  echo "num_parameters = 4 on 3 channels was accepted"
  exit 1
fi
grep -q "set num_parameters to 1 or to the channel count" "$tmp/bad.txt"

echo "== forward and backward against PyTorch"
"$tmp/example/prelu-check" "$src/tests/fixtures/prelu.h5" "$plugin_dir" cpu

echo "== train the PReLU MLP"
"$lamina" convert idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --output "$tmp/fm.h5:/test"
sed -e "s|data/fashion-mnist.h5:/train|$tmp/fm.h5:/test|" -e "/^test = /d" \
  "$src/examples/plugin-layer/prelu-mlp.ini" >"$tmp/mlp.ini"
"$lamina" train "$tmp/mlp.ini" --plugin-path "$plugin_dir" --epochs 2 --backend cpu \
  --no-progress --output "$tmp/out" 2>&1 | tee "$tmp/train.log"
cat "$tmp/out/metrics.csv"
# the loss falls from the first epoch to the second
awk -F, 'NR == 2 { l1 = $4 } NR == 3 { l2 = $4 } END {
  printf "epoch losses %s -> %s\n", l1, l2
  if (!(l1 > 0 && l2 > 0 && l2 < 0.9 * l1)) { print "the loss did not fall"; exit 1 } }' \
  "$tmp/out/metrics.csv"
# the slopes are checkpointed under PyTorch's names and shapes, and they were trained
h5dump -H -d /model/act1/weight "$tmp/out/final.h5" | grep -q "( 256 )"
h5dump -d /model/act2/weight "$tmp/out/final.h5" | grep -v "0.25," | grep -q "(0): "
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json --backend cpu \
  --plugin-path "$plugin_dir")
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" 'BEGIN { if (a + 0 >= 0.7) exit 0; print "accuracy " a " is below 0.7"; exit 1 }'

echo "== the example's SPIR-V kernels on Vulkan (lavapipe)"
# With the shader tools installed the example must have built its SPIR-V variants through the
# SDK's lamina-embed-shader.sh; without them it builds with the CPU functions only, and there is
# nothing to run on the device.
if ! command -v glslangValidator >/dev/null || ! command -v spirv-val >/dev/null; then
  echo "no glslangValidator/spirv-val: the example has no SPIR-V kernels; Vulkan run skipped"
elif ! "$lamina" devices 2>/dev/null | grep -q llvmpipe; then
  test -f "$tmp/example/prelu-forward-spv.h"
  echo "no lavapipe device: Vulkan run skipped"
else
  test -f "$tmp/example/prelu-forward-spv.h"
  test -f "$tmp/example/prelu-backward-spv.h"
  # The backend warns when a plugin kernel falls back to its CPU function.
  no_fallback() {
    if grep "no usable SPIR-V" "$1"; then
      echo "a prelu kernel fell back to the CPU on Vulkan"
      exit 1
    fi
  }
  "$tmp/example/prelu-check" "$src/tests/fixtures/prelu.h5" "$plugin_dir" vulkan lavapipe \
    2>"$tmp/check-vulkan.err" || { cat "$tmp/check-vulkan.err"; exit 1; }
  cat "$tmp/check-vulkan.err"
  no_fallback "$tmp/check-vulkan.err"
  # The same 10 steps (same seed, same batches) on both backends.  GEMMs sum in another order on
  # the device, so the losses differ by rounding (about 2e-5 here); a wrong kernel by far more.
  for backend in cpu vulkan; do
    device=()
    [ "$backend" = vulkan ] && device=(--device lavapipe)
    "$lamina" train "$tmp/mlp.ini" --plugin-path "$plugin_dir" --epochs 1 --max-steps 10 \
      --backend "$backend" "${device[@]}" --no-progress --output "$tmp/out-$backend" \
      >"$tmp/train-$backend.log" 2>&1 || { cat "$tmp/train-$backend.log"; exit 1; }
  done
  cat "$tmp/train-vulkan.log"
  grep -q "llvmpipe" "$tmp/train-vulkan.log"
  no_fallback "$tmp/train-vulkan.log"
  awk -F, -v c="$(sed -n '2p' "$tmp/out-cpu/metrics.csv" | cut -d, -f4)" \
    -v v="$(sed -n '2p' "$tmp/out-vulkan/metrics.csv" | cut -d, -f4)" 'BEGIN {
    d = c - v; if (d < 0) d = -d
    printf "mean loss of 10 steps: cpu %s vulkan %s (|difference| %.3g)\n", c, v, d
    if (c == "" || v == "" || !(d <= 1e-4)) exit 1 }'
fi
echo "ok"
