#!/usr/bin/env bash
# Side-by-side training throughput: Lamina's CPU backend and PyTorch (CPU), same model, batch,
# optimizer and synthetic data, in one run.  Each framework runs with 1 thread and with all
# cores (PyTorch's multi-threaded CPU path is sometimes slower than its single-threaded one on a
# small machine); the best of each is compared, and every figure is printed.
#   bench/run.sh [BUILD_DIR]        (needs PyTorch: scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cores=$(nproc)
steps=${LMN_BENCH_STEPS:-300}
ninja -C "$build" bench/bench-train-step >/dev/null
# Run from the build tree, so the build tree's plugins are used.
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH

value() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p'; }
best_lamina=0
best_torch=0
echo "reference MLP 784-256-256-10, SGD momentum 0.9, batch 128, $steps steps, fp32, CPU"
for t in 1 "$cores"; do
  # OpenBLAS reads OPENBLAS_NUM_THREADS, oneDNN (OpenMP) OMP_NUM_THREADS: set both, whichever GEMM
  # library the build uses.
  l=$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$build/bench/bench-train-step" bench/mlp-sgd.ini \
    --steps "$steps")
  echo "lamina  threads=$t: $l"
  best_lamina=$(awk -v a="$best_lamina" -v b="$(echo "$l" | value)" 'BEGIN { print (b > a ? b : a) }')
  p=$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_train_step.py mlp \
    --batch 128 --steps "$steps" --threads "$t" --optimizer sgd --lr 0.05)
  echo "pytorch threads=$t: $p"
  best_torch=$(awk -v a="$best_torch" -v b="$(echo "$p" | value)" 'BEGIN { print (b > a ? b : a) }')
  # PyTorch at its best: also without this environment's OpenBLAS core-type pinning
  u=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t \
    /usr/bin/python3 bench/torch_train_step.py mlp --batch 128 --steps "$steps" --threads "$t" \
    --optimizer sgd --lr 0.05)
  echo "pytorch threads=$t (OPENBLAS_CORETYPE/L2_SIZE unset): $u"
  best_torch=$(awk -v a="$best_torch" -v b="$(echo "$u" | value)" 'BEGIN { print (b > a ? b : a) }')
done
awk -v a="$best_lamina" -v b="$best_torch" \
  'BEGIN { printf "best: lamina %.0f samples/s, pytorch %.0f samples/s, ratio lamina/pytorch %.2f\n", a, b, a / b }'
