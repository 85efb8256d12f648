#!/usr/bin/env bash
# Installs Lamina into a temporary prefix, builds examples/plugin-optimizer (the Lion optimizer,
# which Lamina does not ship) against the *installed* headers through pkg-config, and trains the
# reference MLP with it via --plugin-path --optimizer lion — no Lamina rebuild.
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
echo "ok"
