#!/usr/bin/env bash
# Data-parallel throughput on one machine (docs/distributed.md), with `lamina train` itself:
#  1. the reference MLP and LeNet-5 (bench/mlp-sgd.ini, bench/lenet5.ini; batch 128) on
#     Fashion-MNIST: 1 rank with 2 threads against 2 ranks with 1 thread each (mpirun binds
#     each rank to a core, and the CPU backend sizes its pool from the cores it may use);
#  2. the overlap share: 2 ranks with the gradient summed in small buckets while backward goes
#     on (bucket_mib 0.25) against one bucket summed after backward (bucket_mib 4096);
#  3. the all-reduce's bus bandwidth over TCP loopback (--mca btl self,tcp), 64 KiB to 64 MiB.
# Samples/s are those of the epoch lines after the first (so start-up is left out), the best of
# LMN_BENCH_REPEATS runs (default 3): other load on the machine only ever slows a run down.
#   bench/dist.sh [BUILD_DIR]       (needs Open MPI and Debian's dataset-fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ninja -C "$build" cli/lamina bench/bench-allreduce >/dev/null
unset LAMINA_PLUGIN_SYSTEM_PATH LAMINA_PLUGIN_PATH OPENBLAS_NUM_THREADS OMP_NUM_THREADS
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
lamina=$build/cli/lamina
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=data/fashion-mnist.h5
[ -f "$data" ] || { scripts/make-fashion-mnist.sh "$lamina" "$tmp/fm.h5" >/dev/null; data=$tmp/fm.h5; }
samples=${LMN_BENCH_SAMPLES:-15360}

repeats=${LMN_BENCH_REPEATS:-3}
# the best samples/s of the epoch lines after the first
rate() {
  grep '^epoch ' | tail -n +2 | sed -n 's/.*  \([0-9]*\) samples\/s.*/\1/p' | sort -n | tail -1
}
best() { # COMMAND...: the best rate of $repeats runs
  local b=0 r
  for _ in $(seq "$repeats"); do
    r=$("$@" | rate)
    [ "$r" -gt "$b" ] && b=$r
  done
  echo "$b"
}
config() { # BENCH_INI OUT: the bench config with the data
  sed -e "s|unused.h5|$data|" "$1" >"$2"
}
run1() {
  "$lamina" train "$1" --output "$tmp/o" --backend cpu --no-progress --epochs 3 --seed 1 "${@:2}"
}
run2() {
  mpirun -np 2 --bind-to core "$lamina" train "$1" --output "$tmp/o" --backend cpu \
    --no-progress --epochs 3 --seed 1 "${@:2}"
}

# A slice of the training split keeps each run short; the data order is the same either way.
"${LMN_PYTHON:-/usr/bin/python3}" - "$data" "$tmp/part.h5" "$samples" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    n = int(sys.argv[3])
    x = dst.create_dataset("train/x", data=src["train/x"][:n])
    for k, v in src["train/x"].attrs.items():
        x.attrs[k] = v
    dst.create_dataset("train/y", data=src["train/y"][:n])
EOF
data=$tmp/part.h5

echo "== 1 rank x 2 threads against 2 ranks x 1 thread ($samples samples, batch 128, CPU)"
for m in mlp-sgd lenet5; do
  config "bench/$m.ini" "$tmp/$m.ini"
  a=$(best run1 "$tmp/$m.ini")
  b=$(best run2 "$tmp/$m.ini")
  echo "$m: 1x2 $a samples/s, 2x1 $b samples/s"
done

echo "== overlap: 2 ranks, buckets summed during backward against one sum after it"
for m in mlp-sgd lenet5; do
  over=$(best run2 "$tmp/$m.ini" --set train.bucket_mib=0.25)
  block=$(best run2 "$tmp/$m.ini" --set train.bucket_mib=4096)
  echo "$m: overlapped (0.25 MiB buckets) $over samples/s, after backward $block samples/s"
done

echo "== all-reduce over TCP loopback"
mpirun -np 2 --bind-to core --mca btl self,tcp "$build/bench/bench-allreduce"
