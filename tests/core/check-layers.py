#!/usr/bin/env python3
"""Checks that core/'s folders keep the order core/README.md states.

usage: check-layers.py CORE_SOURCE_DIR LIBLAMINA_OBJECT_DIR

Reads the "Which folder may use which" block of core/README.md, then checks two things against it:
- every quoted #include in core/ names a header of its own folder, or one of an allowed folder by
  its folder-qualified path;
- every lmn_ symbol an object file of liblamina needs (nm -u) is defined in its own folder or an
  allowed one.
Also fails when a core/ source is not in one of the listed folders, so a new file cannot land
outside the chain.  Exits 1 listing every violation.
"""
import os
import re
import subprocess
import sys


def read_rules(readme):
    text = open(readme, encoding="utf-8").read()
    section = text.split("## Which folder may use which", 1)[1]
    block = section.split("```", 2)[1]
    rules = {}
    for line in block.strip().splitlines():
        m = re.match(r"\s*([a-z0-9]+)\s*->\s*([^(]*)", line)
        if not m:
            continue
        deps = {d.strip() for d in m.group(2).split(",") if d.strip()}
        deps.discard("nothing but GLib")
        rules[m.group(1)] = deps
    return rules


def main():
    core, objdir = sys.argv[1], sys.argv[2]
    rules = read_rules(os.path.join(core, "README.md"))
    errors = []
    if len(rules) < 5:
        errors.append("core/README.md: could not read the folder rules")
    sources = {}
    for folder in sorted(os.listdir(core)):
        path = os.path.join(core, folder)
        if not os.path.isdir(path):
            continue
        if folder not in rules:
            errors.append(f"core/{folder}/ is not in core/README.md's folder rules")
            continue
        for name in sorted(os.listdir(path)):
            if name.endswith((".c", ".h")):
                sources[f"{folder}/{name}"] = folder

    for rel, folder in sources.items():
        for n, line in enumerate(open(os.path.join(core, rel), encoding="utf-8"), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            inc = m.group(1)
            if "/" not in inc:
                if f"{folder}/{inc}" not in sources and not inc.endswith(("-spv.h", ".pb-c.h")):
                    errors.append(f"core/{rel}:{n}: includes \"{inc}\", not a header of {folder}/")
                continue
            target = inc.split("/", 1)[0]
            if inc not in sources:
                errors.append(f"core/{rel}:{n}: includes \"{inc}\", which is not in core/")
            elif target != folder and target not in rules[folder]:
                errors.append(f"core/{rel}:{n}: {folder}/ may not include {target}/ (\"{inc}\")")

    # Which folder defines each exported or library-internal symbol.
    objects = {}
    for rel, folder in sources.items():
        if rel.endswith(".c"):
            obj = os.path.join(objdir, rel.replace("/", "_") + ".o")
            if not os.path.exists(obj):
                errors.append(f"{obj}: object file of core/{rel} not found (build first)")
                continue
            objects[rel] = obj
    defined = {}
    for rel, obj in objects.items():
        out = subprocess.run(["nm", "--defined-only", obj], check=True, capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "TDBR" and parts[2].startswith("lmn_"):
                defined[parts[2]] = sources[rel]
    n_checked = 0
    for rel, obj in objects.items():
        folder = sources[rel]
        out = subprocess.run(["nm", "-u", obj], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            sym = line.split()[-1]
            if sym not in defined:
                continue
            n_checked += 1
            target = defined[sym]
            if target != folder and target not in rules[folder]:
                errors.append(f"core/{rel} calls {sym} of {target}/, which {folder}/ may not use")

    for e in errors:
        print(e)
    print(f"{len(sources)} files in {len(rules)} folders, {n_checked} cross-file calls checked, "
          f"{len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
