#!/usr/bin/env bash
# bench/gpu/device-check.sh from the build tree on lavapipe, with tiny step counts, so the script
# the GPU machine runs keeps working: every stage must pass (PyTorch CUDA absent is recorded as
# "unavailable"), the JSON must hold a figure for each model and GEMM shape, and a device that
# cannot be opened or an argument that is not a number must fail the run.
#   test-device-check.sh SOURCE_ROOT BUILD_ROOT PYTHON WORK_DIR
set -euo pipefail
src=$1 build=$2 py=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
check=$src/bench/gpu/device-check.sh

PYTHON=$py "$check" --build "$build" --device lavapipe --tiny --out "$work/ok" >"$work/ok.out" 2>&1 ||
  { cat "$work/ok.out"; echo "FAIL: device-check on lavapipe exited $?"; exit 1; }
"$py" - "$work/ok/device-check.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = [s["name"] for s in d["stages"] if s["status"] not in ("ok", "unavailable")]
assert not bad, f"stages not ok: {bad}"
assert d["pytorch_cuda"] == "unavailable" or all(
    isinstance(r["torch_cuda_fp32"], float) for r in d["training"]), d["pytorch_cuda"]
models = sorted(r["model"] for r in d["training"])
assert models == ["lenet5", "mlp", "resnet"], models
for r in d["training"]:
    assert r["lamina_vulkan"] and r["lamina_vulkan"] > 0, r
    assert "llvmpipe" in r["lamina_backend"], r
for name, t in d["tests"].items():
    assert t["passed"] >= 1 and t["failed"] == 0, (name, t)
shapes = [(r["net"], r["layer"]) for r in d["gemm"]]
assert shapes == [("mlp", "fc3"), ("square", "64")], shapes
for r in d["gemm"]:
    assert r["cpu"] > 0 and all(r["vulkan_" + k] > 0 for k in d["gemm_kernels"]), r
assert sorted(d["gemm_kernels"]) == ["reg", "splitk", "tiled"], d["gemm_kernels"]
assert "llvmpipe" in d["devices"], d["devices"]
PY
grep -q '^pytorch cuda: ' "$work/ok/device-check.txt"
grep -q '^== test-ops' "$work/ok/device-check.log"

# A device no driver has: the stages that open it fail, the rest still run, the exit status is 1.
if PYTHON=$py "$check" --build "$build" --device no-such-device --tiny --out "$work/bad" \
  >"$work/bad.out" 2>&1; then
  cat "$work/bad.out"; echo "FAIL: device-check passed on a device that does not exist"; exit 1
fi
"$py" - "$work/bad/device-check.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
st = {s["name"]: s["status"] for s in d["stages"]}
assert st["test-ops"] == "failed" and st["train-vulkan-mlp-b16"] == "failed", st
assert st["devices"] == "ok" and st["test-layers"] == "failed", st
PY

# Bad arguments name themselves.
for args in "--budget-s soon" "--steps many" "--frobnicate"; do
  # shellcheck disable=SC2086
  if "$check" --build "$build" $args --out "$work/args" 2>"$work/args.err"; then
    echo "FAIL: device-check accepted $args"; exit 1
  fi
  grep -q -- "${args%% *}" "$work/args.err" || { cat "$work/args.err"; echo "FAIL: no message naming $args"; exit 1; }
done
echo "device-check: ok"
