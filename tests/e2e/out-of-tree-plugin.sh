#!/usr/bin/env bash
# Installs Lamina into a temporary prefix, builds examples/plugin-optimizer (the Lion optimizer,
# which Lamina does not ship) against the *installed* headers through pkg-config, and trains the
# reference MLP with it via --plugin-path --optimizer lion — no Lamina rebuild.  When lavapipe is
# available, also 20 steps on Vulkan, where Lion's own SPIR-V kernel (built with the installed
# lamina-embed-shader.sh) must run without a CPU fallback and match the CPU run's losses.
#   out-of-tree-plugin.sh SOURCE_ROOT
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

echo "== install Lamina into $tmp/prefix"
meson setup "$tmp/build" "$src" --prefix "$tmp/prefix" -Dtests=false >"$tmp/setup.log"
meson install -C "$tmp/build" >"$tmp/install.log"
pc=$(dirname "$(find "$tmp/prefix" -name lamina.pc | head -n 1)")
export PKG_CONFIG_PATH=$pc
pkg-config --modversion lamina

echo "== build the example plugin against the installed headers"
meson setup "$tmp/example" "$src/examples/plugin-optimizer" >"$tmp/example-setup.log"
ninja -C "$tmp/example" >"$tmp/example-build.log"
plugin_dir=$tmp/example
lamina=$tmp/prefix/bin/lamina

echo "== the installed lamina lists its plugins and the example"
"$lamina" plugins --plugin-path "$plugin_dir" | tee "$tmp/plugins.txt"
grep -q "lion" "$tmp/plugins.txt"
grep -q "sgd" "$tmp/plugins.txt"
"$lamina" plugins describe lion --plugin-path "$plugin_dir" | grep -q "beta1"

echo "== train with it"
"$lamina" convert idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --output "$tmp/fm.h5:/test"
sed -e "s|data/fashion-mnist.h5:/train|$tmp/fm.h5:/test|" -e "/^test = /d" \
  "$src/examples/mlp-fashion-mnist.ini" >"$tmp/mlp.ini"
"$lamina" train "$tmp/mlp.ini" --plugin-path "$plugin_dir" --optimizer lion --lr 0.0003 \
  --epochs 2 --backend cpu --output "$tmp/out" 2>&1 | tee "$tmp/train.log"
grep -q "notice: --optimizer lion: dropping optimizer.momentum" "$tmp/train.log"
h5dump -a /optimizer/type "$tmp/out/final.h5" | grep -q '"lion"'
h5dump -d /optimizer/state/fc1/weight/exp_avg -H "$tmp/out/final.h5" | grep -q "256, 784"
json=$("$lamina" eval "$tmp/out/final.h5" --data "$tmp/fm.h5:/test" --json --plugin-path "$plugin_dir")
echo "eval: $json"
acc=$(echo "$json" | sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p')
awk -v a="$acc" 'BEGIN { if (a + 0 >= 0.75) exit 0; print "accuracy " a " is below 0.75"; exit 1 }'

echo "== the example's SPIR-V kernel on Vulkan (lavapipe)"
# With the shader tools installed the example must have built its SPIR-V variant through the
# SDK's lamina-embed-shader.sh (pkg-config variable embed_shader); without them it builds with
# the CPU function only, and there is nothing to run on the device.
if ! command -v glslangValidator >/dev/null || ! command -v spirv-val >/dev/null; then
  echo "no glslangValidator/spirv-val: the example has no SPIR-V kernel; Vulkan run skipped"
elif ! "$lamina" devices 2>/dev/null | grep -q llvmpipe; then
  test -f "$tmp/example/lion-update-spv.h"
  echo "no lavapipe device: Vulkan run skipped"
else
  test -f "$tmp/example/lion-update-spv.h"
  pkg-config --variable=embed_shader lamina | grep -q "^$tmp/prefix/"
  # The Vulkan backend's pipeline cache goes to the temporary directory, not ~/.cache.
  export XDG_CACHE_HOME=$tmp/cache
  # The same 20 steps (same seed, same batches) on both backends.
  for backend in cpu vulkan; do
    device=()
    [ "$backend" = vulkan ] && device=(--device lavapipe)
    "$lamina" train "$tmp/mlp.ini" --plugin-path "$plugin_dir" --optimizer lion --lr 0.0003 \
      --epochs 1 --max-steps 20 --backend "$backend" "${device[@]}" --no-progress \
      --output "$tmp/out-$backend" >"$tmp/train-$backend.log" 2>&1 ||
      { cat "$tmp/train-$backend.log"; exit 1; }
  done
  cat "$tmp/train-vulkan.log"
  grep -q "llvmpipe" "$tmp/train-vulkan.log"
  # Lion's update ran as SPIR-V: the backend warns when a kernel falls back to its CPU function.
  if grep -q "no usable SPIR-V" "$tmp/train-vulkan.log"; then
    echo "lion.update fell back to the CPU on Vulkan"
    exit 1
  fi
  # Mean training loss of the 20 steps (metrics.csv), and the loss of each run's final weights
  # on the whole set, evaluated on the CPU.  GEMMs sum in another order on the device (and in
  # OpenBLAS, per thread count), and Lion moves a weight by a full lr step whichever side of 0
  # its direction falls, so the runs differ by about 1e-4 relative; a wrong kernel by far more.
  for backend in cpu vulkan; do
    sed -n '2p' "$tmp/out-$backend/metrics.csv" | cut -d, -f4 >"$tmp/train-loss-$backend"
    "$lamina" eval "$tmp/out-$backend/final.h5" --data "$tmp/fm.h5:/test" --json --backend cpu \
      --plugin-path "$plugin_dir" | sed -n 's/.*"loss": \([-0-9.eE+]*\).*/\1/p' \
      >"$tmp/eval-loss-$backend"
  done
  for what in train-loss eval-loss; do
    awk -v c="$(cat "$tmp/$what-cpu")" -v v="$(cat "$tmp/$what-vulkan")" -v w="$what" 'BEGIN {
      d = c - v; if (d < 0) d = -d
      printf "%s: cpu %s vulkan %s (|difference| %.3g)\n", w, c, v, d
      if (c == "" || v == "" || !(d <= 2e-3 * (c < 0 ? -c : c) + 1e-6)) exit 1 }'
  done
fi
echo "ok"
