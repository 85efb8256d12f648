#!/usr/bin/env bash
# Installs Lamina into a temporary prefix, builds examples/gan (lamina-gan, a custom training loop
# over two models) against the *installed* SDK through pkg-config, installs it there too, and
# trains it briefly on Fashion-MNIST's 10k test images: the output files must exist with the
# documented shapes, the losses be finite, the checkpoints hold both optimizers' Adam state and
# load back into `lamina eval`/`lamina inspect`, and bad arguments give clear messages.
#   gan-example.sh SOURCE_ROOT
set -euo pipefail
src=$1
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH
export XDG_CACHE_HOME=$tmp/cache

echo "== install Lamina into $tmp/prefix"
meson setup "$tmp/build" "$src" --prefix "$tmp/prefix" -Dtests=false >"$tmp/setup.log"
meson install -C "$tmp/build" >"$tmp/install.log"
pc=$(dirname "$(find "$tmp/prefix" -name lamina.pc | head -n 1)")
export PKG_CONFIG_PATH=$pc
lamina=$tmp/prefix/bin/lamina

echo "== build and install examples/gan against the installed SDK"
meson setup "$tmp/gan" "$src/examples/gan" --prefix "$tmp/prefix" -Dwerror=true \
  >"$tmp/gan-setup.log"
ninja -C "$tmp/gan" >"$tmp/gan-build.log" || { cat "$tmp/gan-build.log"; exit 1; }
meson install -C "$tmp/gan" >"$tmp/gan-install.log"
gan=$tmp/prefix/bin/lamina-gan
test -f "$tmp/prefix/share/lamina-gan/generator.ini"

"$lamina" convert idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --output "$tmp/fm.h5:/test" \
  >/dev/null

echo "== bad arguments"
expect_error() {
  local want=$1
  shift
  if "$gan" "$@" >"$tmp/bad.log" 2>&1; then
    echo "lamina-gan $* succeeded"
    exit 1
  fi
  grep -q -- "$want" "$tmp/bad.log" || { echo "expected '$want' in:"; cat "$tmp/bad.log"; exit 1; }
}
expect_error "--output DIR is required" --data "$tmp/fm.h5:/test"
expect_error "--k must be >= 1" --data "$tmp/fm.h5:/test" --output "$tmp/x" --k 0
expect_error "no-such.h5" --data "$tmp/no-such.h5:/test" --output "$tmp/x"
expect_error "nope.ini" --data "$tmp/fm.h5:/test" --output "$tmp/x" --generator "$tmp/nope.ini"

echo "== a short run from the installed program (its configs from share/lamina-gan)"
# Batch 32, k = 2: the first epoch is 313 discriminator steps (10000 / 32, the last one short)
# and 156 generator steps; --max-steps 200 stops the second after 44 generator steps.
"$gan" --data "$tmp/fm.h5:/test" --epochs 2 --k 2 --batch-size 32 --max-steps 200 --seed 3 \
  --output "$tmp/out" | tee "$tmp/gan.log"
grep -c "^epoch " "$tmp/gan.log" | grep -qx 2
awk '/^epoch / {
       if ($3 != "d_loss" || $5 != "g_loss") exit 1
       if (!($4 + 0 == $4 + 0 && $4 > 0 && $4 < 100 && $6 > 0 && $6 < 100)) exit 1
       n++ }
     END { exit n == 2 ? 0 : 1 }' "$tmp/gan.log" || { echo "losses not finite"; exit 1; }
grep -q "^epoch 1/2 .* 313 d-steps 156 g-steps" "$tmp/gan.log"
grep -q "^epoch 2/2 .* 88 d-steps 44 g-steps" "$tmp/gan.log"

out=$tmp/out
for f in samples.h5 samples.png generator.h5 discriminator.h5; do test -s "$out/$f"; done
h5dump -H -d /samples/x "$out/samples.h5" | grep -q "H5T_IEEE_F32LE"
h5dump -H -d /samples/x "$out/samples.h5" | grep -q "( 1000, 1, 28, 28 )"
h5dump -H -d /samples/y "$out/samples.h5" | grep -q "( 1000 )"
# PNG signature and the 10x10 grid's size (302 x 302: 28-pixel tiles, 2-pixel borders)
head -c 8 "$out/samples.png" | od -An -tx1 | tr -d ' \n' | grep -qx "89504e470d0a1a0a"
od -An -tu1 -j16 -N8 "$out/samples.png" | tr -s ' ' | grep -q "^ 0 0 1 46 0 0 1 46$"
# values in [0, 1], and not all equal
h5dump -d /samples/x -w 0 -y "$out/samples.h5" | sed -n '/DATA {/,/}/p' | tr ',' '\n' |
  awk '$1 ~ /^[-0-9.e+]+$/ { v = $1 + 0; if (n == 0 || v < lo) lo = v; if (n == 0 || v > hi) hi = v; n++ }
       END { printf "samples: %d values in [%g, %g]\n", n, lo, hi
             exit (n == 784000 && lo >= 0 && hi <= 1 && hi > lo) ? 0 : 1 }'

# both checkpoints carry Adam's state and the steps taken
h5dump -a /optimizer/type "$out/generator.h5" | grep -q '"adam"'
h5dump -H -d /optimizer/state/fc4/weight/exp_avg_sq "$out/generator.h5" | grep -q "784, 1024"
h5dump -H -d /optimizer/state/fc1/weight/exp_avg "$out/discriminator.h5" | grep -q "1024, 784"
h5dump -a /optimizer/step "$out/generator.h5" | grep -q "(0): 200$"
h5dump -a /optimizer/step "$out/discriminator.h5" | grep -q "(0): 401$"
"$lamina" inspect "$out/generator.h5" >/dev/null
# The samples are a split `lamina eval` reads: a classifier trained for one epoch scores them
# (their labels are 0, so the accuracy is the share it calls T-shirt/top; it only has to run).
sed -e "s|data/fashion-mnist.h5:/train|$tmp/fm.h5:/test|" -e "/^test = /d" -e "s/^epochs = .*/epochs = 1/" \
  "$src/examples/mlp-fashion-mnist.ini" >"$tmp/mlp.ini"
"$lamina" train "$tmp/mlp.ini" --backend cpu --quiet --output "$tmp/mlp" >/dev/null
"$lamina" eval "$tmp/mlp/final.h5" --data "$out/samples.h5:/samples" --json --backend cpu |
  tee "$tmp/eval.json" | grep -q '"accuracy": [0-9]'
cat "$tmp/eval.json"
echo "ok"
