#!/usr/bin/python3
"""Writes the PyTorch interop fixtures in tests/fixtures/:

h5py-blobs-weights.h5: PyTorch weights saved with h5py in Lamina's /model/<layer>/<param> layout,
  with no Lamina attributes at all, as another tool would write them.  The model matches the e2e
  test's blob classifier (dense 2->32, tanh, dense 32->4); fc2.bias is set to known values the
  test checks after `lamina train --init`.

torch-mlp-logits.h5: a small PyTorch MLP (Linear 5->16, Tanh, Linear 16->8, ReLU, Linear 8->6,
  Sigmoid, Linear 6->3) as /model/fc1..fc4/{weight,bias}, an input batch /input [10, 5] and
  PyTorch's logits for it /logits [10, 3] (eval mode).  tests/e2e/test-interop.c loads the
  weights into the equivalent Lamina model and compares its forward pass.

Run with Debian's python3 (python3-torch, python3-h5py): /usr/bin/python3 scripts/make-interop-fixtures.py
"""
import os
import h5py
import torch

fixtures = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

torch.manual_seed(0)
fc1 = torch.nn.Linear(2, 32)
fc2 = torch.nn.Linear(32, 4)
with torch.no_grad():
    fc2.bias.copy_(torch.tensor([0.5, -0.25, 0.125, 1.0]))

out = os.path.join(fixtures, "h5py-blobs-weights.h5")
with h5py.File(out, "w") as f:
    for name, module in (("fc1", fc1), ("fc2", fc2)):
        for pname, p in module.state_dict().items():
            f.create_dataset(f"model/{name}/{pname}", data=p.numpy())
print("wrote", os.path.normpath(out))

torch.manual_seed(1)
layers = {
    "fc1": torch.nn.Linear(5, 16),
    "act1": torch.nn.Tanh(),
    "fc2": torch.nn.Linear(16, 8),
    "act2": torch.nn.ReLU(),
    "fc3": torch.nn.Linear(8, 6),
    "act3": torch.nn.Sigmoid(),
    "fc4": torch.nn.Linear(6, 3),
}
model = torch.nn.Sequential(*layers.values()).eval()
x = torch.randn(10, 5) * 2
with torch.no_grad():
    logits = model(x)
out = os.path.join(fixtures, "torch-mlp-logits.h5")
with h5py.File(out, "w") as f:
    for name, module in layers.items():
        for pname, p in module.state_dict().items():
            f.create_dataset(f"model/{name}/{pname}", data=p.numpy())
    f.create_dataset("input", data=x.numpy())
    f.create_dataset("logits", data=logits.numpy())
    f.attrs["torch_version"] = str(torch.__version__)
print("wrote", os.path.normpath(out))
