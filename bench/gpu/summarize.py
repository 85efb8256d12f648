#!/usr/bin/python3
"""Collects the stage logs of bench/gpu/device-check.sh into device-check.json and a text table
device-check.txt.

  summarize.py --work DIR --out DIR --device NAME --budget S --elapsed S --version V

DIR holds stages.tsv (name, status, seconds, exit status, command per line) and NAME.log for each
stage that ran.  Only the standard library is used: this runs under whatever python3 the device
machine has.
"""
import argparse
import json
import os
import re
import sys

SPS = re.compile(r"samples_per_s=([0-9.]+)")
BACKEND = re.compile(r'backend="([^"]*)"')
GEMM_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+([NT]{2})\s+(\d+x\d+x\d+)\s+(\d+)\s+([0-9.]+)(.*)$")
GEMM_KERNEL = re.compile(r"([0-9.]+) \(\s*[0-9.]+x\)")
TORCH_GEMM = re.compile(r"^gemm (\S+) (\S+) (\S+) (\S+) (\S+) (\d+) fp32=([0-9.]+) tf32=([0-9.]+)")


def read(work, name):
    path = os.path.join(work, name + ".log")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def stages(work):
    out = []
    with open(os.path.join(work, "stages.tsv"), encoding="utf-8") as f:
        for line in f:
            name, status, secs, rc, detail = line.rstrip("\n").split("\t", 4)
            out.append({"name": name, "status": status, "seconds": float(secs),
                        "rc": None if rc == "-" else int(rc), "command": detail})
    return out


def tap_counts(text):
    if text is None:
        return None
    lines = text.splitlines()
    failed = [ln for ln in lines if ln.startswith("not ok")]
    return {"passed": sum(1 for ln in lines if ln.startswith("ok") and "# SKIP" not in ln),
            "skipped": sum(1 for ln in lines if ln.startswith("ok") and "# SKIP" in ln),
            "failed": len(failed), "first_failure": failed[0] if failed else None,
            "last_line": lines[-1] if lines else ""}


def sps(text):
    m = SPS.search(text or "")
    return float(m.group(1)) if m else None


def training(work, by_name):
    rows = []
    for name in by_name:
        m = re.match(r"train-vulkan-(\w+)-b(\d+)$", name)
        if not m:
            continue
        model, batch = m.group(1), int(m.group(2))
        text = read(work, name)
        be = BACKEND.search(text or "")
        row = {"model": model, "batch": batch, "lamina_vulkan": sps(text),
               "lamina_backend": be.group(1) if be else None, "status": by_name[name]["status"]}
        for prec in ("fp32", "tf32"):
            tname = f"train-torch-{prec}-{model}-b{batch}"
            st = by_name.get(tname, {}).get("status")
            row[f"torch_cuda_{prec}"] = sps(read(work, tname)) if st == "ok" else st
        rows.append(row)
    return rows


def gemm(work):
    text = read(work, "gemm-vulkan") or ""
    kernels = [ln.split()[1] for ln in text.splitlines()
               if ln.startswith("# ") and len(ln.split()) > 2 and ln.split()[2].endswith(":")
               and ln.split()[1] != "cpu"]
    torch_rows = {}
    for ln in (read(work, "gemm-torch") or "").splitlines():
        m = TORCH_GEMM.match(ln)
        if m:
            torch_rows[m.groups()[:6]] = (float(m.group(7)), float(m.group(8)))
    rows = []
    for ln in text.splitlines():
        m = GEMM_ROW.match(ln)
        if not m:
            continue
        key = m.groups()[:6]
        row = {"net": key[0], "layer": key[1], "pass": key[2], "op": key[3], "mnk": key[4],
               "batch": int(key[5]), "cpu": float(m.group(7))}
        for kname, v in zip(kernels, GEMM_KERNEL.findall(m.group(8))):
            row[f"vulkan_{kname}"] = float(v)
        t = torch_rows.get(key)
        row["torch_cuda_fp32"], row["torch_cuda_tf32"] = t if t else (None, None)
        rows.append(row)
    return kernels, rows


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) and b > 0 else "-"


def table(doc):
    out = [f"Lamina device check: device '{doc['device']}', {doc['version']}, "
           f"{doc['elapsed_s']} s of a {doc['budget_s']} s budget",
           f"pytorch cuda: {doc['pytorch_cuda']}", "", "stages:"]
    for s in doc["stages"]:
        out.append(f"  {s['name']:<30} {s['status']:<11} {s['seconds']:>7.1f} s")
    out += ["", "tests (Vulkan against the CPU backend):"]
    for name, t in doc["tests"].items():
        if t:
            out.append(f"  {name:<12} passed {t['passed']}, failed {t['failed']}, skipped "
                       f"{t['skipped']}" + (f"  first failure: {t['first_failure']}"
                                            if t["first_failure"] else ""))
    out += ["", "training, samples/s (ratio = Lamina / PyTorch):",
            f"  {'model':<8} {'batch':>6} {'Lamina Vulkan':>14} {'torch fp32':>12} "
            f"{'torch tf32':>12} {'vs fp32':>8} {'vs tf32':>8}"]
    for r in doc["training"]:
        out.append(f"  {r['model']:<8} {r['batch']:>6} {fmt(r['lamina_vulkan']):>14} "
                   f"{fmt(r['torch_cuda_fp32']):>12} {fmt(r['torch_cuda_tf32']):>12} "
                   f"{ratio(r['lamina_vulkan'], r['torch_cuda_fp32']):>8} "
                   f"{ratio(r['lamina_vulkan'], r['torch_cuda_tf32']):>8}")
    kernels = doc["gemm_kernels"]
    out += ["", "GEMM, GFLOP/s (cpu = the CPU backend):",
            "  " + " ".join([f"{'shape':<22} {'op':<3} {'MxNxK':>15} {'batch':>5} {'cpu':>8}"]
                            + [f"{k:>9}" for k in kernels] + [f"{'torch':>9}", f"{'tf32':>9}"])]
    for r in doc["gemm"]:
        shape = f"{r['net']} {r['layer']} {r['pass']}"
        cells = [f"{fmt(r.get('vulkan_' + k)):>9}" for k in kernels]
        out.append("  " + " ".join([f"{shape:<22} {r['op']:<3} {r['mnk']:>15} {r['batch']:>5} "
                                    f"{fmt(r['cpu']):>8}"] + cells +
                                   [f"{fmt(r['torch_cuda_fp32']):>9}",
                                    f"{fmt(r['torch_cuda_tf32']):>9}"]))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--work", "--out", "--device", "--version"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--elapsed", type=int, required=True)
    a = ap.parse_args()
    st = stages(a.work)
    by_name = {s["name"]: s for s in st}
    cuda_text = read(a.work, "cuda") or ""
    m = re.search(r"^pytorch cuda: (.*)$", cuda_text, re.M)
    kernels, gemm_rows = gemm(a.work)
    doc = {
        "device": a.device, "version": a.version, "budget_s": a.budget, "elapsed_s": a.elapsed,
        "devices": read(a.work, "devices"),
        "nvidia_smi": read(a.work, "nvidia-smi"),
        "pytorch": cuda_text.strip(),
        "pytorch_cuda": m.group(1) if m else "unavailable",
        "stages": st,
        "tests": {n: tap_counts(read(a.work, "test-" + n)) for n in ("ops", "gemm", "layers")},
        "training": training(a.work, by_name),
        "gemm_kernels": kernels,
        "gemm": gemm_rows,
    }
    with open(os.path.join(a.out, "device-check.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.out, "device-check.txt"), "w", encoding="utf-8") as f:
        f.write(table(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
