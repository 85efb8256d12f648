#!/usr/bin/env bash
# Installs what is missing, builds Lamina with warnings as errors, and runs every test suite.
#   scripts/test.sh [BUILD_DIR] [extra meson setup options...]
# An existing BUILD_DIR (say the one scripts/demo.sh made, without -Dwerror) is reconfigured with
# -Dwerror=true and the extra options, so the tests always run on a warning-free build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${1:-build}
shift || true
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dwerror=true "$@"
else
  meson configure "$build" -Dwerror=true "$@"
fi
ninja -C "$build"
# LMN_TEST_ARGS passes extra options to meson test (e.g. "--no-suite slow").
# shellcheck disable=SC2086
meson test -C "$build" --print-errorlogs --num-processes 2 \
  --timeout-multiplier "${LMN_TIMEOUT_MULTIPLIER:-1}" ${LMN_TEST_ARGS:-}
