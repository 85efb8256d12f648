#!/usr/bin/env bash
# Data-parallel training under mpirun against one process, on a 960-sample slice of
# Fashion-MNIST (Debian's dataset-fashion-mnist; 20 global batches of 48 an epoch, 2 epochs).
#   dist-train.sh LAMINA SOURCE_ROOT PYTHON CASE
# CASE:
#   mlp N...      the reference MLP with N ranks against one process, and N ranks twice
#   lenet-bn N... LeNet with batch normalisation likewise (per-rank batch statistics)
#   lstm N...     an LSTM on a 20-step adding problem with N ranks against one process, and
#                 the first N repeated (the generator's path in $LMN_GEN_ADDING)
#   syncbn N...   LeNet with synchronised batch normalisation (sync = true, 2-d and 1-d) with N
#                 ranks against one process, repeated; sync = true on one process is sync =
#                 false bit for bit; sync = false over 2 ranks must fail the same comparison; the
#                 errors for sync on a dense layer and for a short last batch that leaves a rank
#                 without samples
#   regularisers  the MLP with ema_decay, weight_noise, max_norm and activity_l1/l2, 2 ranks
#                 against one process: the weights and the moving average in /ema
#   streaming     x streamed from the file (LAMINA_DATA_BUDGET): each of 2 ranks reads only its
#                 slices, half of what one process reads, and trains what one process does
#   tcp           2 ranks over TCP (--mca btl self,tcp) give the shared-memory run's bits
#   indivisible   a batch_size that 3 ranks cannot share is a clear error
#   resume        a 2-rank checkpoint resumed with 1 and 3 ranks
#   kill          SIGKILL of one rank ends the job, naming it; earlier checkpoints stay intact
#   hang          a stopped (not dead) rank: the others' deadline names it and ends the job
#   mismatch      one rank with a different config: reported, the job stops
#   eval          lamina eval with the split shared among ranks against one process
#   vulkan        2 Vulkan ranks on lavapipe (gradients staged through host memory) against 2
#                 CPU ranks
#
# Tolerances.  One process sums a batch's 48 per-sample gradient terms inside its GEMMs; N ranks
# sum 48/N of them each and then add the N partial means in the ring's order.  Both are float32
# sums of the same terms in another order, so each step's gradient differs by a few units in the
# last place (relative 1e-7 to 1e-6); over 40 SGD or Adam steps on this convex-ish start these
# differences grow little (measured: at most 2e-7 on the weights).  The MLP therefore must agree
# to 1e-4 absolute on every weight and 1e-4 relative on each epoch's loss: loose enough for
# rounding, orders of magnitude below any real mistake (a wrong slice, a missing 1/N, a skipped
# bucket change the loss in the second or third digit).  Batch normalisation uses each rank's
# own batch statistics (as PyTorch's BatchNorm2d under DDP), which is a different model from
# one process's statistics over the whole batch, so LeNet-BN is held only to the same loss
# within 5% -- and to bit-identical repeats, like every case.  With sync = true the statistics
# are the global batch's again (each rank's count-weighted mean and variance combined exactly,
# then the backward's sums of dy and dy * x_hat), so LeNet-SyncBN is held to the MLP's
# tolerance: the statistics themselves are float32 sums of the same terms in another grouping
# (relative 1e-7); measured at most 5e-7 on the weights after 36 steps with 2, 3 and 4 ranks.
set -euo pipefail
lamina=$1
src=$2
python=$3
case_=$4
shift 4
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "Debian's dataset-fashion-mnist is not installed (scripts/install-deps.sh)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpirun=(mpirun --allow-run-as-root --oversubscribe)
compare=("$python" "$src/tests/dist/compare-runs.py")

"$src/scripts/make-fashion-mnist.sh" "$lamina" "$tmp/fm.h5" >/dev/null
"$python" - "$tmp/fm.h5" "$tmp/small.h5" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as src, h5py.File(sys.argv[2], "w") as dst:
    for split, n in (("train", 960), ("test", 300)):
        x = dst.create_dataset(split + "/x", data=src[split + "/x"][:n])
        for k, v in src[split + "/x"].attrs.items():
            x.attrs[k] = v
        dst.create_dataset(split + "/y", data=src[split + "/y"][:n])
EOF
sed -e "s|data/fashion-mnist.h5|$tmp/small.h5|g" -e "s/^epochs = 5/epochs = 2/" \
  -e "s/^batch_size = 128/batch_size = 48/" "$src/examples/mlp-fashion-mnist.ini" >"$tmp/mlp.ini"
sed -e "s|DATA|$tmp/small.h5|g" "$src/tests/dist/lenet-bn.ini" >"$tmp/lenet-bn.ini"
sed -e "s|DATA|$tmp/small.h5|g" "$src/tests/dist/lenet-syncbn.ini" >"$tmp/syncbn.ini"
sed -e "s|DATA|$tmp/small.h5|g" "$src/tests/dist/mlp-regularised.ini" >"$tmp/reg.ini"
sed -e "s/^sync = true/sync = false/" "$tmp/syncbn.ini" >"$tmp/nosync.ini"

train1() { # CONFIG OUT [args]
  local cfg=$1 out=$2
  shift 2
  "$lamina" train "$cfg" --output "$out" --backend cpu --no-progress --distributed none "$@"
}
trainn() { # N CONFIG OUT [args]
  local n=$1 cfg=$2 out=$3
  shift 3
  "${mpirun[@]}" -np "$n" "$lamina" train "$cfg" --output "$out" --backend cpu --no-progress "$@"
}

agree() { # MODEL N...: N ranks against one process, and N ranks repeated
  local model=$1
  shift
  local tol=(--atol 1e-4 --loss-rtol 1e-4)
  [ "$model" = lenet-bn ] && tol=(--atol 1 --loss-rtol 0.05)
  train1 "$tmp/$model.ini" "$tmp/one" -q
  for n in "$@"; do
    LAMINA_CPU_STATS=1 trainn "$n" "$tmp/$model.ini" "$tmp/n$n" 2>"$tmp/stats$n" |
      tee "$tmp/log$n" || { cat "$tmp/stats$n" >&2; exit 1; }
    grep -q "data-parallel over $n ranks" "$tmp/log$n"
    # Each rank made its convolution plans (its slice of a batch, the test split's short batch)
    # before its first step: every rank's backend reports none made in a step.
    if [ "$(grep -c 'cpu stats: .* made ahead, 0 made in a step' "$tmp/stats$n")" -ne "$n" ]; then
      cat "$tmp/stats$n"
      echo "not every rank reported 0 convolution plans made in a step" >&2
      exit 1
    fi
    [ "$(grep -c '^epoch ' "$tmp/log$n")" -eq 2 ] || { echo "rank 0 alone prints epochs"; exit 1; }
    "${compare[@]}" "$tmp/one" "$tmp/n$n" "${tol[@]}"
    trainn "$n" "$tmp/$model.ini" "$tmp/n$n-again" -q
    "${compare[@]}" "$tmp/n$n" "$tmp/n$n-again" --exact
    # Buckets of 50 KiB: several sums in flight while backward goes on (other chunk boundaries,
    # so another order of the same additions).
    trainn "$n" "$tmp/$model.ini" "$tmp/n$n-buckets" -q --set train.bucket_mib=0.05
    "${compare[@]}" "$tmp/one" "$tmp/n$n-buckets" "${tol[@]}"
  done
}

fails() { # LOG PATTERN COMMAND...: COMMAND must fail with PATTERN in its output
  local log=$1 pattern=$2
  shift 2
  if "$@" >"$log" 2>&1; then
    echo "accepted: $*" >&2
    exit 1
  fi
  cat "$log"
  grep -qF "$pattern" "$log" || { echo "the error does not say: $pattern" >&2; exit 1; }
}

syncbn() { # N...
  local tol=(--atol 1e-4 --loss-rtol 1e-4)
  # One process: nothing is summed, so sync = true is sync = false bit for bit.
  train1 "$tmp/syncbn.ini" "$tmp/one" -q
  train1 "$tmp/nosync.ini" "$tmp/one-nosync" -q
  "${compare[@]}" "$tmp/one" "$tmp/one-nosync" --exact
  # (a repeat with the first N only: the other cases repeat every N, and this keeps the
  # suite short under the sanitizers)
  for n in "$@"; do
    trainn "$n" "$tmp/syncbn.ini" "$tmp/n$n" -q
    "${compare[@]}" "$tmp/one" "$tmp/n$n" "${tol[@]}"
  done
  trainn "$1" "$tmp/syncbn.ini" "$tmp/again" -q
  "${compare[@]}" "$tmp/n$1" "$tmp/again" --exact
  # Per-rank statistics are another model: the same comparison must see it (so the one above
  # is not vacuous), and the running statistics differ by far more than rounding.
  trainn 2 "$tmp/nosync.ini" "$tmp/nosync2" -q
  if "${compare[@]}" "$tmp/one" "$tmp/nosync2" "${tol[@]}"; then
    echo "per-rank batch statistics passed for global ones" >&2
    exit 1
  fi
  "$python" - "$tmp/one/final.h5" "$tmp/nosync2/final.h5" <<'EOF'
import sys
import h5py
import numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
d = max(np.abs(a["model/bn1"][k][()] - b["model/bn1"][k][()]).max()
        for k in ("running_mean", "running_var"))
assert d > 1e-3, d
print(f"ok: per-rank statistics move bn1's running statistics by {d:g}")
EOF
  sed -e "/^units = 120/a sync = true" "$tmp/syncbn.ini" >"$tmp/bad.ini"
  fails "$tmp/log" "[layer fc1] sync: layer 'fc1' (dense) keeps no batch statistics" \
    train1 "$tmp/bad.ini" "$tmp/bad" -q
  # 863 training samples in batches of 862: a last batch of 1 leaves rank 1 without one.
  fails "$tmp/log" "the last batch of each epoch has 1 of the 863 training samples, fewer than" \
    trainn 2 "$tmp/syncbn.ini" "$tmp/bad" -q --batch-size 862 --set data.validation_split=0.101
  grep -q "layer 'bn1' has sync = true" "$tmp/log"
}

# The regularisers act on weights every rank holds identically (weight noise is drawn from the
# step, max_norm and the moving average follow the update) or, for the activity penalties, on
# each rank's slice like the loss: N ranks are one process up to the MLP's rounding.
regularisers() {
  train1 "$tmp/reg.ini" "$tmp/one" -q
  for n in 2; do
    trainn "$n" "$tmp/reg.ini" "$tmp/n$n" -q
    "${compare[@]}" "$tmp/one" "$tmp/n$n" --atol 1e-4 --loss-rtol 1e-4
    "$python" - "$tmp/one/final.h5" "$tmp/n$n/final.h5" <<'EOF'
import sys
import h5py
import numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
names = []
a["ema"].visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
assert sorted(names) == ["fc1/bias", "fc1/weight", "fc2/bias", "fc2/weight", "fc3/bias",
                         "fc3/weight"], names
worst = max(np.abs(a["ema"][k][()] - b["ema"][k][()]).max() for k in names)
assert worst < 1e-4, worst
# the average is not the weights themselves, and max_norm holds on fc1's rows (and binds)
lag = max(np.abs(a["ema"][k][()] - a["model"][k][()]).max() for k in names)
assert lag > 1e-3, lag
norms = np.linalg.norm(b["model/fc1/weight"][()], axis=1)
assert norms.max() <= 0.6 * (1 + 1e-5) and norms.max() > 0.6 * (1 - 1e-5), norms.max()
print(f"ok: /ema within {worst:g} of one process (the average lags the weights by {lag:g})")
EOF
  done
}

# Streaming: one process reads every training sample once an epoch; each of 2 ranks reads its
# slice of every batch (24 of 48), so exactly half, and the two halves make the whole.
streaming() {
  export LAMINA_DATA_BUDGET=0.1
  train1 "$tmp/mlp.ini" "$tmp/one" | tee "$tmp/log1"
  grep -q "960 samples streamed from the file" "$tmp/log1"
  grep -q "^read 1920 training samples of x from the file" "$tmp/log1"
  "${mpirun[@]}" -x LAMINA_DATA_BUDGET -np 2 "$lamina" train "$tmp/mlp.ini" --output "$tmp/n2" \
    --backend cpu --no-progress -v | tee "$tmp/log2"
  for r in 0 1; do
    grep -q "^rank $r read 960 training samples of x from the file" "$tmp/log2"
  done
  "${compare[@]}" "$tmp/one" "$tmp/n2" --atol 1e-4 --loss-rtol 1e-4
  unset LAMINA_DATA_BUDGET
}

case "$case_" in
regularisers)
  regularisers
  ;;
streaming)
  streaming
  ;;
lstm)
  [ -x "${LMN_GEN_ADDING:-}" ] || { echo "LMN_GEN_ADDING: no adding-problem generator" >&2; exit 1; }
  sh "$src/scripts/make-adding-problem.sh" "$LMN_GEN_ADDING" "$tmp/adding.h5" --steps 20 \
    --train 480 --test 96 >/dev/null
  sed -e "s|DATA|$tmp/adding.h5|g" "$src/tests/dist/lstm-adding.ini" >"$tmp/lstm.ini"
  # each N against one process; the repeat with the first N (as syncbn)
  train1 "$tmp/lstm.ini" "$tmp/one" -q
  for n in "$@"; do
    trainn "$n" "$tmp/lstm.ini" "$tmp/n$n" -q
    "${compare[@]}" "$tmp/one" "$tmp/n$n" --atol 1e-4 --loss-rtol 1e-4
  done
  trainn "$1" "$tmp/lstm.ini" "$tmp/again" -q
  "${compare[@]}" "$tmp/n$1" "$tmp/again" --exact
  ;;
mlp | lenet-bn)
  agree "$case_" "$@"
  ;;
syncbn)
  syncbn "$@"
  ;;
tcp)
  "${mpirun[@]}" --mca btl self,vader -np 2 "$lamina" train "$tmp/mlp.ini" --output "$tmp/shm" \
    --backend cpu -q
  "${mpirun[@]}" --mca btl self,tcp -np 2 "$lamina" train "$tmp/mlp.ini" --output "$tmp/tcp" \
    --backend cpu -q
  "${compare[@]}" "$tmp/shm" "$tmp/tcp" --exact
  ;;
indivisible)
  if trainn 3 "$tmp/mlp.ini" "$tmp/bad" -q --batch-size 50 >"$tmp/log" 2>&1; then
    echo "batch_size 50 over 3 ranks was accepted" >&2
    exit 1
  fi
  cat "$tmp/log"
  grep -q "batch_size: 50 is the global batch and must divide evenly among the 3 processes" \
    "$tmp/log"
  grep -q "such as 51 or 48" "$tmp/log"
  [ ! -e "$tmp/bad/final.h5" ]
  ;;
resume)
  # 2 ranks for 2 epochs, and 2 ranks for 1 epoch resumed for the second with 1 and 3 ranks:
  # the global data order is the same, so only the reduction order differs (tolerance above).
  trainn 2 "$tmp/mlp.ini" "$tmp/full" -q
  trainn 2 "$tmp/mlp.ini" "$tmp/half" -q --set train.checkpoint_every=1 --epochs 1
  train1 "$tmp/mlp.ini" "$tmp/r1" -q --resume "$tmp/half/epoch-1.h5"
  trainn 3 "$tmp/mlp.ini" "$tmp/r3" -q --resume "$tmp/half/epoch-1.h5"
  for r in r1 r3; do
    "$python" - "$tmp/full/final.h5" "$tmp/$r/final.h5" <<'EOF'
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert int(b["train"].attrs["epoch"]) == 2, dict(b["train"].attrs)
for layer in a["model"]:
    for p in a["model"][layer]:
        d = np.abs(a["model"][layer][p][()] - b["model"][layer][p][()]).max()
        assert d < 1e-4, (layer, p, d)
print("ok:", sys.argv[2], "matches the uninterrupted run")
EOF
  done
  ;;
kill | hang)
  # A long run with a checkpoint every epoch; once epoch-1.h5 exists, rank 1 is killed
  # (mpirun notices and names it) or stopped (only the other rank's deadline can notice).
  signal=KILL
  [ "$case_" = hang ] && signal=STOP
  start=$(date +%s)
  trainn 2 "$tmp/mlp.ini" "$tmp/run" -q --epochs 1000 --set train.checkpoint_every=1 \
    --set train.comm_timeout=5 >"$tmp/log" 2>&1 &
  job=$!
  for _ in $(seq 600); do
    [ -e "$tmp/run/epoch-1.h5" ] && break
    sleep 0.1
  done
  [ -e "$tmp/run/epoch-1.h5" ] || { cat "$tmp/log"; echo "no checkpoint appeared"; exit 1; }
  victim=""
  for p in $(pgrep -f "lamina train $tmp/mlp.ini"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then
      victim=$p
    fi
  done
  [ -n "$victim" ] || { echo "rank 1 not found"; exit 1; }
  kill -"$signal" "$victim"
  status=0
  wait "$job" || status=$?
  elapsed=$(($(date +%s) - start))
  cat "$tmp/log"
  [ "$status" -ne 0 ] || { echo "the job exited 0 after rank 1 was sent SIG$signal"; exit 1; }
  [ "$elapsed" -lt 90 ] || { echo "the job took $elapsed s to stop"; exit 1; }
  if [ "$case_" = kill ]; then
    grep -Eq "rank 1 .*(exited on signal 9|Killed)" "$tmp/log"
  else
    grep -q "rank 1 (host .*) did not answer rank 0 (host .*) within 5 s" "$tmp/log"
  fi
  for f in "$tmp"/run/epoch-*.h5; do
    "$lamina" inspect "$f" >/dev/null
  done
  echo "stopped after $elapsed s; $(ls "$tmp"/run/epoch-*.h5 | wc -l) checkpoints intact"
  ;;
eval)
  # lamina eval with the split shared by 3 ranks (100 samples each) against one process: one
  # report, the same figures (the loss is a sum in another grouping: 1e-6 relative); a
  # 2-checkpoint ensemble with test-time augmentation likewise over 2 ranks.
  train1 "$tmp/mlp.ini" "$tmp/a" -q
  train1 "$tmp/mlp.ini" "$tmp/b" -q --seed 2
  ev=("$lamina" eval --data "$tmp/small.h5:/test" --json --backend cpu)
  "${ev[@]}" "$tmp/a/final.h5" --distributed none >"$tmp/e1"
  "${mpirun[@]}" -np 3 "${ev[@]}" "$tmp/a/final.h5" >"$tmp/e3"
  "${ev[@]}" "$tmp/a/final.h5" "$tmp/b/final.h5" --tta hflip --distributed none >"$tmp/f1"
  "${mpirun[@]}" -np 2 "${ev[@]}" "$tmp/a/final.h5" "$tmp/b/final.h5" --tta hflip >"$tmp/f2"
  for pair in "e1 e3" "f1 f2"; do
    set -- $pair
    "$python" - "$tmp/$1" "$tmp/$2" <<'EOF'
import json
import math
import sys
lines = [open(p).read().splitlines() for p in sys.argv[1:]]
assert len(lines[1]) == 1, f"{len(lines[1])} reports from the ranks, expected one"
a, b = (json.loads(x[0]) for x in lines)
def walk(x, y, path):
    if isinstance(x, dict):
        assert sorted(x) == sorted(y), path
        for k in x:
            walk(x[k], y[k], path + "/" + k)
    elif isinstance(x, list):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)):
            walk(u, v, f"{path}[{i}]")
    elif isinstance(x, float) and "loss" in path:
        assert math.isclose(x, y, rel_tol=1e-6), (path, x, y)
    else:
        assert x == y, (path, x, y)
walk(a, b, "")
print("ok:", sys.argv[2], "reports what one process does")
EOF
  done
  ;;
vulkan)
  # The CPU backend is the oracle of the Vulkan one; its GEMMs sum in another order, so the
  # tolerance is the MLP's.
  # (12 steps: lavapipe is slow, the more so under AddressSanitizer)
  trainn 2 "$tmp/mlp.ini" "$tmp/cpu" -q --max-steps 12
  trainn 2 "$tmp/mlp.ini" "$tmp/vk" -q --max-steps 12 --backend vulkan --device lavapipe
  "${compare[@]}" "$tmp/cpu" "$tmp/vk" --atol 1e-4 --loss-rtol 1e-4
  # synchronised batch normalisation: the statistics' sums go through host memory.  With
  # average pooling: max pooling's near-ties (flat regions of an image give equal conv outputs
  # to within an ulp) break by rounding, and one broken the other way moves the conv weights by
  # 1e-4 in a step: with it, summing the dense layers' bias gradients exactly (the Vulkan GEMM
  # epilogue's compensated sums, bit-equal to the CPU's double ones) instead of pairwise in
  # float flipped one at step 7, while with average pooling both agree with the CPU to 5e-7
  # after 36 steps.
  sed -e "s/^type = maxpool2d/type = avgpool2d/" "$tmp/syncbn.ini" >"$tmp/syncbn-avg.ini"
  trainn 2 "$tmp/syncbn-avg.ini" "$tmp/cpu-bn" -q --max-steps 12
  trainn 2 "$tmp/syncbn-avg.ini" "$tmp/vk-bn" -q --max-steps 12 --backend vulkan --device lavapipe
  "${compare[@]}" "$tmp/cpu-bn" "$tmp/vk-bn" --atol 1e-4 --loss-rtol 1e-4
  ;;
mismatch)
  status=0
  "${mpirun[@]}" -np 1 "$lamina" train "$tmp/mlp.ini" --output "$tmp/mm" --backend cpu -q : \
    -np 1 "$lamina" train "$tmp/mlp.ini" --output "$tmp/mm" --backend cpu -q --lr 0.1 \
    >"$tmp/log" 2>&1 || status=$?
  cat "$tmp/log"
  [ "$status" -ne 0 ] || { echo "a job whose ranks differ ran"; exit 1; }
  grep -q "rank 1 (host .*) runs a different job from rank 0" "$tmp/log"
  grep -q "the config (with its overrides)" "$tmp/log"
  [ ! -e "$tmp/mm/final.h5" ]
  # ranks on different devices (one rank per GPU) run the same job
  "${mpirun[@]}" -np 1 "$lamina" train "$tmp/mlp.ini" --output "$tmp/dev" --backend cpu -q \
    --device 0 --max-steps 2 : -np 1 "$lamina" train "$tmp/mlp.ini" --output "$tmp/dev" \
    --backend cpu -q --max-steps 2
  [ -e "$tmp/dev/final.h5" ]
  ;;
*)
  echo "unknown case $case_" >&2
  exit 2
  ;;
esac
echo "ok: $case_ $*"
