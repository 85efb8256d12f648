#!/usr/bin/python3
"""Writes tests/fixtures/h5py-blobs-weights.h5: PyTorch weights saved with h5py in Lamina's
/model/<layer>/<param> layout, with no Lamina attributes at all, as another tool would write them.

The model matches the e2e test's blob classifier (dense 2->32, tanh, dense 32->4); fc2.bias is set
to known values the test checks after `lamina train --init`.
Run with Debian's python3 (python3-torch, python3-h5py): /usr/bin/python3 scripts/make-interop-fixtures.py
"""
import os
import h5py
import torch

torch.manual_seed(0)
fc1 = torch.nn.Linear(2, 32)
fc2 = torch.nn.Linear(32, 4)
with torch.no_grad():
    fc2.bias.copy_(torch.tensor([0.5, -0.25, 0.125, 1.0]))

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "h5py-blobs-weights.h5")
with h5py.File(out, "w") as f:
    for name, module in (("fc1", fc1), ("fc2", fc2)):
        for pname, p in module.state_dict().items():
            f.create_dataset(f"model/{name}/{pname}", data=p.numpy())
print("wrote", os.path.normpath(out))
