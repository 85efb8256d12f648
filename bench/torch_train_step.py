#!/usr/bin/python3
"""PyTorch side of bench/run.sh: times forward + backward + optimizer step of the same model on
one synthetic batch.  Prints "samples_per_s=...".

  torch_train_step.py MODEL --batch N --steps N --warmup N --threads N --optimizer sgd|adam --lr LR
                        [--device cpu|cuda] [--input-grad]

With --input-grad the input requires a gradient, so backward also computes dL/dx (what
bench-train-step --input-grad times).

On CUDA, fp32 is kept exact (TF32 off unless --tf32), and the clock stops after a device
synchronisation, as Lamina's figure includes its own wait for the device.
"""
import argparse
import time

import torch


def mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))


def lenet5():
    # The same network as bench/lenet5.ini and examples/lenet5-fashion-mnist.ini.
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 5 * 5, 120), torch.nn.ReLU(),
        torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))


class ResNetLite(torch.nn.Module):
    """The residual CNN of examples/resnet-fashion-mnist.ini and bench/resnet.ini: a 3x3 stem
    with batch norm and max pooling, one basic block (two 3x3 convolutions with batch norm, the
    identity shortcut), max pooling and a linear classifier."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x):
        s = self.stem(x)
        return self.head(torch.relu(self.block(s) + s))


class UNet(torch.nn.Module):
    """The U-Net of examples/unet-fashion-mnist-seg.ini: one logit per pixel, trained with
    BCEWithLogitsLoss against a 0/1 mask."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.enc1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec2 = nn.Sequential(nn.Conv2d(64, 32, 3, padding=1), nn.ReLU())
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d2 = self.dec2(torch.cat([self.up2(self.mid(e2)), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


MODELS = {"mlp": (mlp, (1, 28, 28), 10)}
MODELS["lenet5"] = (lenet5, (1, 28, 28), 10)
MODELS["resnet"] = (ResNetLite, (1, 28, 28), 10)
MODELS["unet"] = (UNet, (1, 28, 28), None)  # None: a per-pixel 0/1 mask, BCEWithLogitsLoss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--input-grad", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    make, shape, classes = MODELS[a.model]
    model = make().to(dev)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    x = torch.rand((a.batch,) + shape, device=dev)
    if classes is None:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        y = torch.randint(0, 2, (a.batch,) + shape, device=dev).float()
    else:
        loss_fn = torch.nn.CrossEntropyLoss()
        y = torch.randint(0, classes, (a.batch,), device=dev)
    if a.input_grad:
        x.requires_grad_(True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    sync()
    secs = time.perf_counter() - t0
    print(f"samples_per_s={a.steps * a.batch / secs:.1f} steps={a.steps} batch={a.batch} "
          f"seconds={secs:.3f} final_loss={loss.item():.4f} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} device={a.device}")


if __name__ == "__main__":
    main()
