#!/usr/bin/env bash
# Side-by-side training throughput: Lamina's CPU backend and PyTorch (CPU), same model, batch,
# optimizer and thread count, in one run.  Prints both figures and Lamina/PyTorch as a ratio.
#   bench/run.sh [BUILD_DIR]        (needs: scripts/install-deps.sh --bench)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${LMN_BENCH_THREADS:-$(nproc)}
steps=${LMN_BENCH_STEPS:-300}
ninja -C "$build" bench/bench-train-step >/dev/null
export LAMINA_PLUGIN_SYSTEM_PATH=
export OPENBLAS_NUM_THREADS=$threads

value() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p'; }

echo "reference MLP 784-256-256-10, SGD momentum 0.9, batch 128, $threads threads, $steps steps"
lam=$("$build/bench/bench-train-step" bench/mlp-sgd.ini --steps "$steps")
echo "lamina:  $lam"
tor=$(/usr/bin/python3 bench/torch_train_step.py mlp --batch 128 --steps "$steps" \
  --threads "$threads" --optimizer sgd --lr 0.05)
echo "pytorch: $tor"
awk -v a="$(echo "$lam" | value)" -v b="$(echo "$tor" | value)" \
  'BEGIN { printf "ratio lamina/pytorch: %.2f\n", a / b }'
