#!/usr/bin/env bash
# Time per epoch of examples/gan's dense GAN: lamina-gan (CPU backend) against the same GAN in
# PyTorch (bench/gan_torch.py), each at 1 thread and at all cores, RUNS interleaved runs each,
# on a short epoch (the 10k images of Fashion-MNIST's test split, batch 64, k = 1).  Prints
# min/median/max seconds per epoch and the ratios PyTorch / Lamina (> 1: Lamina is faster).
#   bench/gan-run.sh LAMINA_GAN [RUNS] [FILE:/split]
# LAMINA_GAN is a lamina-gan built against an installed Lamina (examples/gan/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
gan=${1:?usage: bench/gan-run.sh LAMINA_GAN [RUNS] [FILE:/split]}
runs=${2:-3}
data=${3:-data/fashion-mnist.h5:/test}
file=${data%:/*}
if [ ! -f "$file" ]; then
  echo "no $file: scripts/make-fashion-mnist.sh build/cli/lamina data/fashion-mnist.h5" >&2
  exit 1
fi
all=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$runs"); do
  for t in 1 "$all"; do
    "$gan" --data "$data" --epochs 1 --batch-size 64 --threads "$t" --seed "$r" \
      --output "$tmp/out" | sed -n 's/^epoch .*  \([0-9.]*\) s$/\1/p' >>"$tmp/lamina-$t"
    /usr/bin/python3 bench/gan_torch.py "$data" --batch 64 --threads "$t" --seed "$r" |
      sed -n 's/.*epoch_s=\([0-9.]*\)/\1/p' >>"$tmp/torch-$t"
    # PyTorch at its best: also without this environment's OpenBLAS core-type pinning
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/gan_torch.py "$data" \
      --batch 64 --threads "$t" --seed "$r" |
      sed -n 's/.*epoch_s=\([0-9.]*\)/\1/p' >>"$tmp/torchu-$t"
  done
done
stats() { sort -g "$1" | awk '{ v[NR] = $1 } END {
  printf "%.2f %.2f %.2f", v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR] }'; }
echo "seconds per epoch over $data, $runs runs each (min / median / max):"
for t in 1 "$all"; do
  read -r lmin lmed lmax <<<"$(stats "$tmp/lamina-$t")"
  read -r pmin pmed pmax <<<"$(stats "$tmp/torch-$t")"
  read -r umin umed umax <<<"$(stats "$tmp/torchu-$t")"
  printf "  %d thread(s): lamina %s / %s / %s   pytorch %s / %s / %s   pytorch (OpenBLAS env unset) %s / %s / %s\n" \
    "$t" "$lmin" "$lmed" "$lmax" "$pmin" "$pmed" "$pmax" "$umin" "$umed" "$umax"
  awk -v a="$pmin" -v b="$lmin" -v c="$pmed" -v d="$lmed" -v e="$pmax" -v f="$lmax" -v t="$t" \
    'BEGIN { printf "  %d thread(s): pytorch / lamina = %.2fx (min) %.2fx (median) %.2fx (max)\n", t, a / b, c / d, e / f }'
done
best_l=$(cat "$tmp"/lamina-* | sort -g | head -n 1)
best_p=$(cat "$tmp"/torch-* "$tmp"/torchu-* | sort -g | head -n 1)
awk -v p="$best_p" -v l="$best_l" 'BEGIN { printf "best of each: lamina %.2f s, pytorch %.2f s: %.2fx\n", l, p, p / l }'
