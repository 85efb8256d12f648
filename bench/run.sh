#!/usr/bin/env bash
# Side-by-side training throughput and memory: Lamina's CPU backend and PyTorch (CPU), same
# model, batch, optimizer and synthetic data, in one run, for the reference MLP
# (bench/mlp-sgd.ini), LeNet-5 (bench/lenet5.ini), the residual CNN (bench/resnet.ini) and the
# U-Net of examples/unet-fashion-mnist-seg.ini (batch 64, a random 0/1 mask).
# Each framework runs at 1 thread and at all cores, and PyTorch also with this environment's
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (they hold its OpenBLAS to older kernels); RUNS
# interleaved runs of each setting give min / median / max, and each framework's best median is
# compared.  Peak RSS is that of one benchmark process (model, optimizer state, one batch),
# Lamina at all cores against PyTorch at its best setting.  For the MLP it also prints the GEMM
# roofline (bench-gemm-roofline: the step's products alone) and Lamina's share of it.
#   bench/run.sh [BUILD_DIR] [MODELS...]     (default: mlp lenet5 resnet unet)
#   LMN_BENCH_RUNS (default 5), LMN_BENCH_STEPS (default: 300 for the MLP, 100 for the CNNs)
# Needs PyTorch (scripts/install-deps.sh) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp lenet5 resnet unet)
cores=$(nproc)
runs=${LMN_BENCH_RUNS:-5}
ninja -C "$build" bench/bench-train-step bench/bench-gemm-roofline >/dev/null
# Run from the build tree, so the build tree's plugins are used.
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH

value() { sed -n 's/.*samples_per_s=\([0-9.]*\).*/\1/p'; }
# min / median / max of the numbers on stdin
stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
  printf "%.0f / %.0f / %.0f", v[1], m, v[NR] }'; }
median() { stats | awk -F' / ' '{ print $2 }'; }

# model -> config, optimizer, lr, default steps
declare -A config=([mlp]=bench/mlp-sgd.ini [lenet5]=bench/lenet5.ini [resnet]=bench/resnet.ini
  [unet]=examples/unet-fashion-mnist-seg.ini)
declare -A optim=([mlp]="sgd --lr 0.05" [lenet5]="sgd --lr 0.05" [resnet]="adam --lr 0.002"
  [unet]="adam --lr 0.002")
declare -A default_steps=([mlp]=300 [lenet5]=100 [resnet]=100 [unet]=30)
declare -A batch=([mlp]=128 [lenet5]=128 [resnet]=128 [unet]=64)
declare -A lamina_flags=([mlp]="" [lenet5]="" [resnet]="" [unet]="--float-target 1,28,28")

lamina_run() { # MODEL THREADS STEPS
  # shellcheck disable=SC2086
  LAMINA_NUM_THREADS=$2 "$build/bench/bench-train-step" "${config[$1]}" \
    --steps "$3" ${lamina_flags[$1]} | value
}
torch_run() { # MODEL THREADS STEPS [env -u ...]
  local m=$1 t=$2 s=$3
  shift 3
  env "$@" OPENBLAS_NUM_THREADS="$t" OMP_NUM_THREADS="$t" /usr/bin/python3 \
    bench/torch_train_step.py "$m" --batch "${batch[$m]}" --steps "$s" --threads "$t" \
    --optimizer ${optim[$m]} | value
}
rss_kib() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }

summary=()
for m in "${models[@]}"; do
  steps=${LMN_BENCH_STEPS:-${default_steps[$m]}}
  echo "== $m (${config[$m]}), batch ${batch[$m]}, $steps steps, fp32, CPU, $runs runs: samples/s min / median / max"
  best_l=0 best_t=0 best_l_name="" best_t_name="" best_t_env=""
  for t in 1 "$cores"; do
    declare -a L=() T=() U=()
    for r in $(seq "$runs"); do
      L+=("$(lamina_run "$m" "$t" "$steps")")
      T+=("$(torch_run "$m" "$t" "$steps")")
      U+=("$(torch_run "$m" "$t" "$steps" -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)")
    done
    for side in L T U; do
      declare -n arr=$side
      s=$(printf '%s\n' "${arr[@]}" | stats)
      med=$(printf '%s\n' "${arr[@]}" | median)
      case $side in
        L) name="lamina  threads=$t" ;;
        T) name="pytorch threads=$t" ;;
        U) name="pytorch threads=$t, OPENBLAS_CORETYPE/L2_SIZE unset" ;;
      esac
      echo "$name: $s"
      if [ "$side" = L ]; then
        if awk -v a="$med" -v b="$best_l" 'BEGIN { exit !(a > b) }'; then best_l=$med; best_l_name=$name; fi
      elif awk -v a="$med" -v b="$best_t" 'BEGIN { exit !(a > b) }'; then
        best_t=$med best_t_name=$name best_t_threads=$t best_t_env=$side
      fi
    done
  done
  # Peak memory of one run each: Lamina at all cores, PyTorch at its best setting.
  # shellcheck disable=SC2086
  l_rss=$(LAMINA_NUM_THREADS=$cores rss_kib "$build/bench/bench-train-step" \
    "${config[$m]}" --steps 20 --warmup 5 ${lamina_flags[$m]})
  unset_env=()
  [ "$best_t_env" = U ] && unset_env=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
  t_rss=$(rss_kib env "${unset_env[@]}" OPENBLAS_NUM_THREADS="$best_t_threads" \
    OMP_NUM_THREADS="$best_t_threads" /usr/bin/python3 bench/torch_train_step.py "$m" --batch "${batch[$m]}" \
    --steps 20 --warmup 5 --threads "$best_t_threads" --optimizer ${optim[$m]})
  line=$(awk -v m="$m" -v a="$best_l" -v b="$best_t" -v la="$best_l_name" -v tb="$best_t_name" \
    -v lr="$l_rss" -v tr="$t_rss" \
    'BEGIN { printf "%s: lamina %.0f samples/s (%s), pytorch %.0f (%s): ratio %.2f; peak RSS lamina %.0f MiB, pytorch %.0f MiB (%.2f)",
      m, a, la, b, tb, a / b, lr / 1024, tr / 1024, lr / tr }')
  if [ "$m" = mlp ]; then
    # The GEMM roofline: the step's eight products alone, on the same library and threads.
    LAMINA_NUM_THREADS=$cores "$build/bench/bench-gemm-roofline" --batch "${batch[$m]}" | sed 's/^/  /'
    bound=$(LAMINA_NUM_THREADS=$cores "$build/bench/bench-gemm-roofline" --batch "${batch[$m]}" |
      sed -n 's/.*gemm_bound_samples_per_s=\([0-9.]*\).*/\1/p')
    line="$line; GEMM bound $bound samples/s, lamina at $(awk -v a="$best_l" -v b="$bound" 'BEGIN { printf "%.0f", 100 * a / b }')% of it"
  fi
  echo "$line"
  summary+=("$line")
done
echo "== best medians, each framework at its best setting"
printf '%s\n' "${summary[@]}"
