#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for N seconds.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default 20 seconds, all targets
# Findings (crash-*, leak-*, timeout-*) are written to build-fuzz/findings/.  The whole build is
# instrumented for coverage (-fsanitize=fuzzer-no-link); libhdf5 itself is not, and the dataset
# target can find crashes inside it (Debian 12 ships HDF5 1.10.8, which has known bugs on corrupt
# files), which need an HDF5 update rather than a Lamina fix.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config dataset idx npy csv checkpoint)
if [ ! -d build-fuzz ]; then
  CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C build-fuzz >/dev/null
mkdir -p build-fuzz/findings
status=0
for t in "${targets[@]}"; do
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "fuzz-$t: ${secs}s"
  # The committed seeds are read, new inputs go to the work directory only.
  if ! ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=fuzz/lsan.supp UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      build-fuzz/fuzz/fuzz-$t -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -artifact_prefix=build-fuzz/findings/$t- -print_final_stats=1 \
      "$work" "fuzz/corpus/$t" 2>build-fuzz/fuzz-$t.log; then
    echo "fuzz-$t: FAILED (see build-fuzz/fuzz-$t.log and build-fuzz/findings/)"
    status=1
  fi
  grep -E "stat::number_of_executed_runs|stat::new_units_added" build-fuzz/fuzz-$t.log || true
done
exit $status
