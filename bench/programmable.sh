#!/usr/bin/env bash
# What programmable training costs per step, side by side with PyTorch in one run: the reference
# MLP (784-256-256-10, SGD momentum, batch 128) trained by `lamina train` on Fashion-MNIST for
# LMN_BENCH_STEPS steps (default 200) plainly, with adversarial training (FGSM; PGD, 3 steps;
# eps 0.1, clip 0, 1, weight 0.5) and with a frozen trunk (fc1 and fc2 trainable = false), and the
# same in PyTorch (bench/torch_programmable.py).  Each figure is the min/median/max of
# LMN_BENCH_RUNS runs (default 3) at 1 thread and at all cores, PyTorch also with this
# environment's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset; every variant is also given as a
# ratio to its framework's own plain step, and Lamina's best against PyTorch's best.
# Input gradients alone (off against on) are timed by bench-train-step --input-grad.
#   bench/programmable.sh [BUILD_DIR] [DATA.h5]    (needs PyTorch: scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
data=${2:-data/fashion-mnist.h5}
steps=${LMN_BENCH_STEPS:-200}
runs=${LMN_BENCH_RUNS:-3}
cores=$(nproc)
ninja -C "$build" cli/lamina bench/bench-train-step >/dev/null
[ -f "$data" ] || scripts/make-fashion-mnist.sh "$build/cli/lamina" "$data"
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^train = .*|train = $data:/train|" examples/mlp-fashion-mnist.ini >"$tmp/mlp.ini"
sed -i '/^test = /d' "$tmp/mlp.ini"

declare -A lamina_sets=(
  [plain]=""
  [fgsm]="-s train.adversarial=fgsm -s train.adversarial_eps=0.1 -s train.adversarial_clip=0,1"
  [pgd]="-s train.adversarial=pgd -s train.adversarial_eps=0.1 -s train.adversarial_steps=3 -s train.adversarial_clip=0,1"
  [frozen]="-s fc1.trainable=false -s fc2.trainable=false"
)
variants="plain fgsm pgd frozen"

# min/median/max of the numbers on stdin
stats() { sort -g | awk '{ v[NR] = $1 } END { printf "%.0f %.0f %.0f", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
lamina_run() { # threads variant
  # shellcheck disable=SC2086
  OPENBLAS_NUM_THREADS=$1 "$build/cli/lamina" train "$tmp/mlp.ini" --backend cpu --no-progress \
    --max-steps "$steps" --epochs 1 -o "$tmp/out" ${lamina_sets[$2]} |
    sed -n 's/.* \([0-9]*\) samples\/s.*/\1/p'
}
torch_run() { # threads variant [env...]
  local t=$1 v=$2
  shift 2
  env "$@" OMP_NUM_THREADS="$t" /usr/bin/python3 bench/torch_programmable.py "$data" \
    --variant "$v" --steps "$steps" --threads "$t" | sed -n 's/samples_per_s=\([0-9.]*\).*/\1/p'
}

echo "reference MLP, batch 128, $steps steps, $runs runs each; samples/s min median max"
declare -A best
for v in $variants; do
  for t in 1 "$cores"; do
    l=$(for _ in $(seq "$runs"); do lamina_run "$t" "$v"; done | stats)
    p=$(for _ in $(seq "$runs"); do torch_run "$t" "$v"; done | stats)
    u=$(for _ in $(seq "$runs"); do torch_run "$t" "$v" -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE; done | stats)
    printf "%-7s threads=%s  lamina %-20s pytorch %-20s pytorch (OpenBLAS env unset) %s\n" "$v" "$t" "$l" "$p" "$u"
    for k in "lamina $l" "torch $p" "torch $u"; do
      set -- $k
      med=$3
      key="$1-$v"
      best[$key]=$(awk -v a="${best[$key]:-0}" -v b="$med" 'BEGIN { print (b > a ? b : a) }')
    done
  done
done
echo "best medians; per-step cost relative to the framework's plain step; lamina/pytorch throughput"
for v in $variants; do
  awk -v v="$v" -v l="${best[lamina-$v]}" -v p="${best[torch-$v]}" -v l0="${best[lamina-plain]}" \
    -v p0="${best[torch-plain]}" 'BEGIN { printf "%-7s lamina %6.0f (%.2fx the plain step)  pytorch %6.0f (%.2fx)  ratio %.2f\n", v, l, l0 / l, p, p0 / p, l / p }'
done

echo "input gradients (bench-train-step, synthetic batch, 1 thread): off, on"
for flag in "" --input-grad; do
  # shellcheck disable=SC2086
  r=$(for _ in $(seq "$runs"); do OPENBLAS_NUM_THREADS=1 "$build/bench/bench-train-step" bench/mlp-sgd.ini --steps "$steps" $flag | sed -n 's/samples_per_s=\([0-9.]*\).*/\1/p'; done | stats)
  # shellcheck disable=SC2086
  p=$(for _ in $(seq "$runs"); do OMP_NUM_THREADS=1 /usr/bin/python3 bench/torch_train_step.py mlp --steps "$steps" --threads 1 $flag | sed -n 's/samples_per_s=\([0-9.]*\).*/\1/p'; done | stats)
  echo "input-grad ${flag:-off}: lamina $r  pytorch $p"
done
