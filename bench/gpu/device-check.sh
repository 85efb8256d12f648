#!/usr/bin/env bash
# One-command check of Lamina's Vulkan backend on a GPU, next to PyTorch CUDA on the same card.
#
#   bench/gpu/device-check.sh [--device NAME] [--out DIR] [--budget-s N] [--bundle DIR | --build DIR]
#                             [--steps N] [--warmup N] [--batches "128 1024"] [--tiny]
#
# --device   the Vulkan device, an index or a name substring as `lamina --device` takes
#            (default: $LAMINA_VK_DEVICE, else lavapipe); "NVIDIA" on the H200 machine
# --out      where device-check.json, device-check.txt and device-check.log go (default: $OUT,
#            else ./device-check-out)
# --budget-s wall-clock budget of the whole run (default 480); every stage runs under its own
#            timeout, cut to what is left, and a stage that would start with under 5 s left is
#            recorded as skipped
# --bundle   the folder scripts/make-device-bundle.sh made, or its .tar.xz (unpacked into a
#            temporary folder); default: .device-bundle in the repository, else
#            .device-bundle.tar.xz; --build DIR runs a build tree's programs instead (the meson
#            test)
# --steps, --warmup, --batches  the training runs (defaults: 200/20 for the MLP, 100/10 for
#            LeNet-5 and the residual CNN, batches "128 1024"; on lavapipe 2/1, as a CPU driver
#            takes seconds per step)
# --tiny     the smallest run that still goes through every stage (meson test gpu-device-check):
#            one step at batch 16, one test of each test program, the GEMM bench on one shape
#
# Stages, in order: the Vulkan loader (unpacked from the bundle's vulkan-loader/*.deb when
# `ldconfig -p` has no libvulkan), `lamina devices`, PyTorch CUDA's presence, the Vulkan-against-
# CPU op tests, the training runs (bench-train-step --backend vulkan; torch_train_step.py --device
# cuda with TF32 off, then on), the GEMM bench (bench-vulkan-gemm with a 4096^3 product) against
# torch.matmul, then the GEMM and layer test programs.  A stage that fails or times out is
# recorded and the next one runs; the exit status is 0 when every stage ran and passed (PyTorch
# CUDA missing is recorded as "unavailable", not a failure), 1 otherwise (a failure, a timeout, or
# a stage skipped because the budget was spent), 2 for a bad argument.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
device=${LAMINA_VK_DEVICE:-lavapipe}
out=${OUT:-$PWD/device-check-out}
budget=480
bundle="" unpacked=""
build=""
steps="" warmup="" batches="" tiny=0
python=${PYTHON:-python3}

usage() { sed -n '4,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --budget-s) budget=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    -h | --help) usage ;;
    *) echo "device-check: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$budget" in '' | *[!0-9]*) echo "device-check: --budget-s '$budget' is not a number of seconds" >&2; exit 2 ;; esac
for v in "$steps" "$warmup"; do
  case "$v" in *[!0-9]*) echo "device-check: --steps/--warmup '$v' is not a count" >&2; exit 2 ;; esac
done

# Programs: from the bundle (its env.sh points the registry at its plugins and scanner) or from
# a build tree (the registry finds the build tree's plugins itself).
if [ -n "$build" ]; then
  build=$(cd "$build" && pwd) || exit 2
  lamina=$build/cli/lamina bench_dir=$build/bench tests_dir=$build/tests/vulkan
  loader_debs="" bundle=""
else
  if [ -z "$bundle" ]; then
    bundle=$src/.device-bundle
    [ -f "$bundle/env.sh" ] || bundle=$src/.device-bundle.tar.xz
  fi
  if [ -f "$bundle" ]; then
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    # Python's tarfile where the machine has no xz program.
    tar -C "$unpacked" -xJf "$bundle" 2>/dev/null ||
      "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$bundle" "$unpacked" || { echo "device-check: cannot unpack $bundle" >&2; exit 2; }
    bundle=$(dirname "$(find "$unpacked" -mindepth 2 -maxdepth 2 -name env.sh | head -1)")
  fi
  if [ ! -f "$bundle/env.sh" ]; then
    echo "device-check: no bundle at $bundle (run scripts/make-device-bundle.sh, or pass --build DIR)" >&2
    exit 2
  fi
  bundle=$(cd "$bundle" && pwd)
  # shellcheck source=/dev/null
  . "$bundle/env.sh"
  lamina=$bundle/bin/lamina bench_dir=$bundle/bin tests_dir=$bundle/bin
  loader_debs=$bundle/vulkan-loader
fi

mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work" ${unpacked:+"$unpacked"}' EXIT
log=$out/device-check.log
: >"$log"
: >"$work/stages.tsv"
t_start=$(date +%s)
export LMN_TEST_BUILD_DIR=$work LMN_VK_TEST_DEVICE=$device LAMINA_VK_DEVICE=$device
# One pipeline cache for every stage, and none written into the user's ~/.cache.
export XDG_CACHE_HOME=$work/xdg-cache-home
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# run_stage NAME TIMEOUT_S CMD...: runs CMD under min(TIMEOUT_S, what is left of the budget),
# its output in $work/NAME.log and device-check.log, its outcome in stages.tsv.
run_stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - ($(date +%s) - t_start)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    printf '%s\tskipped\t0\t-\tthe budget of %s s was spent\n' "$name" "$budget" >>"$work/stages.tsv"
    echo "== $name: skipped (budget spent)" | tee -a "$log"
    return 0
  fi
  echo "== $name (timeout ${limit} s): $*" | tee -a "$log"
  local t0 rc status cmd=("$@")
  # A shell function (exported with export -f) runs in a bash that timeout can start.
  [ "$(type -t "$1")" = function ] && cmd=(bash -c "$1")
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "${cmd[@]}" >"$work/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    77) status=failed ;; # a test program that cannot open the device skips itself whole
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  cat "$work/$name.log" >>"$log"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$rc" "$*" >>"$work/stages.tsv"
  echo "== $name: $status (rc $rc, $secs s)" | tee -a "$log"
}

# The Vulkan loader: the device machine may have none; the bundle carries Debian's.
loader() {
  if ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    echo "libvulkan: $(ldconfig -p | grep 'libvulkan\.so\.1' | head -1)"
    return 0
  fi
  if [ -z "$loader_debs" ] || ! ls "$loader_debs"/*.deb >/dev/null 2>&1; then
    echo "no libvulkan.so.1 on this machine and no loader debs to unpack" >&2
    return 1
  fi
  for f in "$loader_debs"/*.deb; do dpkg -x "$f" / || return 1; done
  ldconfig
  ldconfig -p | grep 'libvulkan\.so\.1'
}

# An NVIDIA driver mounted outside the loader's search path (the device README's note).
driver_files() {
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] &&
    ! grep -qls nvidia /usr/share/vulkan/icd.d/* /etc/vulkan/icd.d/* 2>/dev/null; then
    export VK_DRIVER_FILES=$icd
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-} VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-}"
}

cuda_check() {
  "$python" - <<'EOF'
import sys
try:
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means no PyTorch here
    print(f"pytorch: unavailable ({e})")
    print("pytorch cuda: unavailable")
    sys.exit(0)
print(f"pytorch {torch.__version__}, cuda {torch.version.cuda}")
if not torch.cuda.is_available():
    print("pytorch cuda: unavailable")
    sys.exit(0)
print(f"pytorch cuda: {torch.cuda.get_device_name(0)}")
EOF
}

export -f loader cuda_check
export loader_debs python
run_stage loader 30 loader
case "$device" in *lavapipe* | *llvmpipe*) lavapipe=1 ;; *) lavapipe=0; driver_files >>"$log" ;; esac
run_stage devices 30 "$lamina" devices
if command -v nvidia-smi >/dev/null; then
  run_stage nvidia-smi 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
else
  printf 'nvidia-smi\tunavailable\t0\t-\tno nvidia-smi on this machine\n' >>"$work/stages.tsv"
fi
run_stage cuda 60 cuda_check
cuda=0
grep -q '^pytorch cuda: [^u]' "$work/cuda.log" 2>/dev/null && cuda=1

# The op tests first: training figures of a device that computes wrong results mean nothing.
if [ "$tiny" = 1 ]; then
  ops_args=(-p /vulkan/ops/gemm) gemm_args=(-p /vulkan/gemm/splitk-deterministic)
  layers_args=(-p /vulkan/layers/forward/dense)
else
  ops_args=() gemm_args=() layers_args=()
fi
run_stage test-ops 150 "$tests_dir/test-vulkan-ops" "${ops_args[@]}"

declare -A config=([mlp]=mlp-sgd.ini [lenet5]=lenet5.ini [resnet]=resnet.ini)
declare -A optim=([mlp]="sgd --lr 0.05" [lenet5]="sgd --lr 0.05" [resnet]="adam --lr 0.002")
declare -A def_steps=([mlp]=200 [lenet5]=100 [resnet]=100)
declare -A def_warmup=([mlp]=20 [lenet5]=10 [resnet]=10)
if [ "$tiny" = 1 ]; then
  batches=${batches:-16} steps=${steps:-1} warmup=${warmup:-0}
elif [ "$lavapipe" = 1 ]; then
  steps=${steps:-2} warmup=${warmup:-1}
fi
batches=${batches:-128 1024}
for b in $batches; do
  case "$b" in '' | *[!0-9]*) echo "device-check: --batches '$batches' is not a list of sizes" >&2; exit 2 ;; esac
done
for m in mlp lenet5 resnet; do
  s=${steps:-${def_steps[$m]}} w=${warmup:-${def_warmup[$m]}}
  for b in $batches; do
    run_stage "train-vulkan-$m-b$b" 90 "$bench_dir/bench-train-step" "$src/bench/${config[$m]}" \
      --backend vulkan --batch "$b" --steps "$s" --warmup "$w"
    for prec in fp32 tf32; do
      name=train-torch-$prec-$m-b$b
      if [ "$cuda" = 1 ]; then
        tf=()
        [ "$prec" = tf32 ] && tf=(--tf32)
        # shellcheck disable=SC2086 # the optimizer's options are words
        run_stage "$name" 90 "$python" "$src/bench/torch_train_step.py" "$m" --device cuda \
          --batch "$b" --steps "$s" --warmup "$w" --optimizer ${optim[$m]} "${tf[@]}"
      else
        printf '%s\tunavailable\t0\t-\tpytorch cuda: unavailable\n' "$name" >>"$work/stages.tsv"
      fi
    done
  done
done

if [ "$tiny" = 1 ]; then
  gemm_bench=(--filter "mlp fc3 fwd" --square 64 --time 0.01)
elif [ "$lavapipe" = 1 ]; then
  gemm_bench=(--filter "mlp fc2" --square 256 --time 0.05)
else
  # The default choice, then the large and medium tiles forced on every shape (which tile wins
  # where, for vk-gemm.c's choice), the register-tiled kernel and split-K.
  gemm_bench=(--kernels "tiled,tiled:tile=0,tiled:tile=1,reg,splitk" --square 4096 --time 0.2)
fi
run_stage gemm-vulkan 150 "$bench_dir/bench-vulkan-gemm" --device "$device" "${gemm_bench[@]}"
if [ "$cuda" = 1 ]; then
  run_stage gemm-torch 90 "$python" "$here/torch_gemm.py" "$work/gemm-vulkan.log"
else
  printf 'gemm-torch\tunavailable\t0\t-\tpytorch cuda: unavailable\n' >>"$work/stages.tsv"
fi

run_stage test-gemm 120 "$tests_dir/test-vulkan-gemm" "${gemm_args[@]}"
run_stage test-layers 150 "$tests_dir/test-vulkan-layers" "${layers_args[@]}"

elapsed=$(($(date +%s) - t_start))
/usr/bin/env "$python" "$here/summarize.py" --work "$work" --out "$out" --device "$device" \
  --budget "$budget" --elapsed "$elapsed" --version "$(cat "$bundle/VERSION" 2>/dev/null ||
    git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)" ||
  { echo "device-check: summarize.py failed" >&2; exit 1; }
cat "$out/device-check.txt"
awk -F'\t' '$2 != "ok" && $2 != "unavailable" { bad = 1 } END { exit bad }' "$work/stages.tsv"
