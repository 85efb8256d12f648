#!/usr/bin/python3
"""Writes the fixtures of tests/e2e/test-predict.c (`lamina predict`) in tests/fixtures/:

predict-MODEL.h5, for MODEL in mlp, bce, lenet, resnet, lstm, multi (two heads, the second's loss
  reading another target): a Lamina checkpoint as h5py can
  write one (the root's format attributes, /config, /model/LAYER/PARAM in PyTorch's names and
  shapes, /data with the training split's preprocessing), plus what the test compares with:
    /test/x        float32 [N, input...]  inputs, a split without labels
    /expected      float64 [N, K]         PyTorch's probabilities for /test/x (softmax, or the
                                          sigmoid for bce), computed in float64 from the stored
                                          float32 weights and inputs
    /top3          int32 [N, 3]           NumPy's three most likely classes of each row
    /expected_coarse  (multi) the second head's probabilities (--head coarse)
  lenet's /data records scale 1/255, mean 0.5, std 0.25 and ten class names; its /images/NAME
  holds PyTorch's probabilities for image NAME of predict-images/, decoded and preprocessed by
  PIL and NumPy (Image.open().convert('L'), resized with Image.NEAREST where the name says so).

predict-images/*.png, *.jpg: small images made with PIL: grey, RGB and RGBA PNGs, grey and RGB
  JPEGs, larger and smaller ones for --resize nearest, a corrupt PNG, a truncated JPEG and a PNG
  whose header claims 60000 x 60000 pixels.
predict-images.h5: /pixels/NAME/cC (C = 1, 3) uint8 [C, H, W]: PIL's decode of image NAME,
  convert('L') or convert('RGB'), at its own size; /resized/NAME/cC the same after
  resize((12, 12), Image.NEAREST).

Run with Debian's Python (python3-torch, python3-h5py, python3-pil):
    /usr/bin/python3 scripts/make-predict-fixtures.py
"""
import os
import struct
import zlib

import h5py
import numpy as np
import torch
from PIL import Image

F = torch.nn.functional
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
IMAGES = os.path.join(FIXTURES, "predict-images")
TAIL = "[optimizer]\ntype = sgd\n[train]\nbackend = cpu\n[data]\ntrain = absent.h5:/train\n"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


class Mlp(torch.nn.Module):
    config = ("[model]\ninput = 6\n[layer fc1]\ntype = dense\nunits = 8\n[layer act]\n"
              "type = tanh\n[layer fc2]\ntype = dense\nunits = 4\n[layer loss]\n"
              "type = softmax_cross_entropy\n")
    shape = (6,)

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Bce(torch.nn.Module):
    config = ("[model]\ninput = 5\n[layer fc]\ntype = dense\nunits = 3\n[layer loss]\n"
              "type = binary_cross_entropy_with_logits\n")
    shape = (5,)
    activation = "sigmoid"

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(x)


class Lenet(torch.nn.Module):
    config = ("[model]\ninput = 1, 12, 12\n[layer conv]\ntype = conv2d\nout_channels = 4\n"
              "kernel_size = 5\n[layer act]\ntype = relu\n[layer pool]\ntype = maxpool2d\n"
              "kernel_size = 2\n[layer flat]\ntype = flatten\n[layer fc]\ntype = dense\n"
              "units = 10\n[layer loss]\ntype = softmax_cross_entropy\n")
    shape = (1, 12, 12)

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 5)
        self.fc = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(h, 1))


class Resnet(torch.nn.Module):
    config = ("[model]\ninput = 2, 6, 6\n[layer conv1]\ntype = conv2d\nout_channels = 2\n"
              "kernel_size = 3\npadding = 1\n[layer act1]\ntype = relu\n[layer conv2]\n"
              "type = conv2d\nout_channels = 2\nkernel_size = 3\npadding = 1\n[layer sum]\n"
              "type = add\ninput = conv2, input\n[layer act2]\ntype = relu\n[layer flat]\n"
              "type = flatten\n[layer fc]\ntype = dense\nunits = 3\n[layer loss]\n"
              "type = softmax_cross_entropy\n")
    shape = (2, 6, 6)

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.fc = torch.nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x))) + x)
        return self.fc(torch.flatten(h, 1))


class Lstm(torch.nn.Module):
    config = ("[model]\ninput = 5, 3\n[layer lstm]\ntype = lstm\nhidden_size = 4\n"
              "[layer fc]\ntype = dense\nunits = 3\n[layer loss]\ntype = softmax_cross_entropy\n")
    shape = (5, 3)

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 4, batch_first=True)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


class Multi(torch.nn.Module):
    # Two heads; the second loss reads the split's /coarse, so the model has two targets.
    config = ("[model]\ninput = 6\n[layer fc1]\ntype = dense\nunits = 8\n[layer act]\n"
              "type = tanh\n[layer fine_fc]\ntype = dense\nunits = 4\n[layer fine]\n"
              "type = softmax_cross_entropy\n[layer coarse_fc]\ntype = dense\nunits = 2\n"
              "input = act\n[layer coarse]\ntype = softmax_cross_entropy\ntarget = coarse\n")
    shape = (6,)
    head = "fine_fc"

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fine_fc = torch.nn.Linear(8, 4)
        self.coarse_fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return getattr(self, self.head)(torch.tanh(self.fc1(x)))


def lamina_state(module):
    # Lamina's lstm layer names its parameters without PyTorch's "_l0" suffix.
    return {k.replace("_l0", ""): v for k, v in module.state_dict().items()}


def probabilities(module, x32):
    activation = getattr(module, "activation", "softmax")
    with torch.no_grad():
        logits = module.double().eval()(x32.double())
        module.float()
    if activation == "sigmoid":
        return torch.sigmoid(logits).numpy()
    return torch.softmax(logits, dim=1).numpy()


def top3(p):
    # The order `lamina predict` prints: decreasing probability, the lower class first on ties.
    return np.argsort(-p, axis=1, kind="stable")[:, :3].astype(np.int32)


def write_checkpoint(path, module, x32, data):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "lamina-checkpoint"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["lamina_version"] = "fixture"
        f["config"] = module.config + TAIL
        for key, value in lamina_state(module).items():
            layer, param = key.split(".", 1)
            f[f"model/{layer}/{param}"] = value.detach().float().numpy()
        g = f.create_group("data")
        for key, value in data.items():
            g.attrs[key] = value
        f["test/x"] = x32.numpy()
        f["expected"] = probabilities(module, x32)
        f["top3"] = top3(f["expected"][:])
        if isinstance(module, Multi):
            module.head = "coarse_fc"
            f["expected_coarse"] = probabilities(module, x32)


def save(img, name, **kwargs):
    path = os.path.join(IMAGES, name)
    img.save(path, **kwargs)
    return path


def make_images(rng):
    os.makedirs(IMAGES, exist_ok=True)
    grey = Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (12, 12, 4), dtype=np.uint8), "RGBA")
    big = Image.fromarray(rng.integers(0, 256, (17, 29, 3), dtype=np.uint8), "RGB")
    small = Image.fromarray(rng.integers(0, 256, (7, 5), dtype=np.uint8), "L")
    # Smooth images, so the JPEGs are not all noise.
    ramp = np.add.outer(np.arange(12) * 20, np.arange(12) * 3).astype(np.uint8)
    jgrey = Image.fromarray(ramp, "L")
    jrgb = Image.fromarray(np.stack([ramp, ramp[::-1], ramp.T], axis=2), "RGB")
    names = {
        "grey.png": save(grey, "grey.png"),
        "rgb.png": save(rgb, "rgb.png"),
        "rgba.png": save(rgba, "rgba.png"),
        "big.png": save(big, "big.png"),
        "small.png": save(small, "small.png"),
        "grey.jpg": save(jgrey, "grey.jpg", quality=90),
        "rgb.jpg": save(jrgb, "rgb.jpg", quality=90),
        "big.jpg": save(big, "big.jpg", quality=85),
    }
    # A PNG whose image data is damaged (its CRC no longer matches) and a JPEG cut in half.
    raw = bytearray(open(names["grey.png"], "rb").read())
    at = raw.index(b"IDAT") + 10
    raw[at:at + 4] = bytes(b ^ 0x5A for b in raw[at:at + 4])
    open(os.path.join(IMAGES, "corrupt.png"), "wb").write(bytes(raw))
    data = open(names["rgb.jpg"], "rb").read()
    open(os.path.join(IMAGES, "truncated.jpg"), "wb").write(data[:len(data) // 2])
    # A PNG whose header claims 60000 x 60000 RGBA pixels (14 GB) over a few bytes of data.
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    huge = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    open(os.path.join(IMAGES, "huge.png"), "wb").write(huge)
    return names


def pil_pixels(path, mode, size=None):
    img = Image.open(path).convert(mode)
    if size is not None:
        img = img.resize(size, Image.NEAREST)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def main():
    rng = np.random.default_rng(7)
    names = make_images(rng)
    with h5py.File(os.path.join(FIXTURES, "predict-images.h5"), "w") as f:
        for name, path in names.items():
            for c, mode in ((1, "L"), (3, "RGB")):
                f[f"pixels/{name}/c{c}"] = pil_pixels(path, mode)
                f[f"resized/{name}/c{c}"] = pil_pixels(path, mode, (12, 12))

    plain = {"scale": 1.0, "x_dtype": "float", "source": "absent.h5:/train"}
    for seed, (name, cls) in enumerate((("mlp", Mlp), ("bce", Bce), ("lenet", Lenet),
                                        ("resnet", Resnet), ("lstm", Lstm),
                                        ("multi", Multi))):
        torch.manual_seed(seed + 1)
        module = cls()
        x32 = torch.rand(7, *cls.shape, dtype=torch.float32) * 2 - 1
        data = dict(plain)
        if name == "lenet":
            data = {"scale": 1 / 255, "mean": np.array([0.5]), "std": np.array([0.25]),
                    "x_dtype": "uint8", "source": "absent.h5:/train",
                    "classes": np.array(CLASSES, dtype=h5py.string_dtype())}
        path = os.path.join(FIXTURES, f"predict-{name}.h5")
        write_checkpoint(path, module, x32, data)
        if name == "lenet":
            with h5py.File(path, "a") as f:
                for img in ("grey.png", "rgb.png", "rgba.png", "grey.jpg", "rgb.jpg",
                            "big.png", "big.jpg", "small.png"):
                    size = None if img in names and Image.open(names[img]).size == (12, 12) \
                        else (12, 12)
                    p = pil_pixels(names[img], "L", size).astype(np.float64)
                    x = ((p * (1 / 255) - 0.5) / 0.25).astype(np.float32)
                    f[f"images/{img}"] = probabilities(module, torch.from_numpy(x[None]))
        print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
