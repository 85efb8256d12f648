#!/usr/bin/env python3
"""Checks an ONNX model written by `lamina export` and evaluates it against Lamina's outputs.

usage: onnx-check.py MODEL.onnx INPUT.f32 EXPECTED_DIR [--tol T]

- onnx.checker.check_model(full_check=True) and strict shape inference must pass, the input must
  be "input" with the symbolic batch dimension "N", and every output's inferred shape must be
  its declared one;
- the graph is evaluated on INPUT.f32 (raw little-endian float32, [N, input dims...]) by the small
  NumPy interpreter below, written from the ONNX operator specification (opset 13) and computing
  in float64: it is independent of Lamina, so it is the oracle.  Each graph output NAME is
  compared with EXPECTED_DIR/NAME.f32, Lamina's own evaluation-mode forward on the same input;
  the largest |onnx - lamina| per output is printed, and above T (default 1e-5) the check fails.

Prints "initializers: NAME ..." and "ops: OP ..." for the caller to check names and node types.
Exits 0 when everything agrees, 1 on a failure, 77 when the onnx module is missing (skipped).
"""
import math
import os
import sys

import numpy as np

try:
    import onnx
    from onnx import numpy_helper, shape_inference
except ImportError:
    print("onnx-check: python3-onnx is not installed", file=sys.stderr)
    sys.exit(77)


def attrs_of(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def window_view(x, kernel, strides, dilations, out_hw):
    """Yields (i, j, x[:, :, window offset (i, j) for every output pixel]) of a padded x."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilations, out_hw
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield i, j, x[:, :, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw]


def out_size(size, k, s, p0, p1, d):
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def spatial_params(a, shape):
    kernel = list(a["kernel_shape"]) if "kernel_shape" in a else list(shape)
    strides = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    dilations = list(a.get("dilations", [1, 1]))
    return kernel, strides, pads, dilations


def op_conv(x, w, b=None, **a):
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    kernel, strides, pads, dil = spatial_params(a, (kh, kw))
    g = a.get("group", 1)
    assert c == cg * g and oc % g == 0
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = out_size(h, kh, strides[0], pads[0], pads[2], dil[0])
    ow = out_size(wd, kw, strides[1], pads[1], pads[3], dil[1])
    y = np.zeros((n, oc, oh, ow))
    og = oc // g
    for i, j, win in window_view(xp, (kh, kw), strides, dil, (oh, ow)):
        for gi in range(g):
            xs = win[:, gi * cg:(gi + 1) * cg]
            ws = w[gi * og:(gi + 1) * og, :, i, j]
            y[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", xs, ws)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def op_conv_transpose(x, w, b=None, **a):
    n, c, h, wd = x.shape
    cin, og, kh, kw = w.shape
    kernel, strides, pads, dil = spatial_params(a, (kh, kw))
    opad = list(a.get("output_padding", [0, 0]))
    g = a.get("group", 1)
    assert c == cin and c % g == 0
    cg = c // g
    # The full output before the padding is cropped: every input pixel scatters its kernel.
    fh = strides[0] * (h - 1) + dil[0] * (kh - 1) + 1 + opad[0]
    fw = strides[1] * (wd - 1) + dil[1] * (kw - 1) + 1 + opad[1]
    full = np.zeros((n, og * g, fh, fw))
    for gi in range(g):
        xs = x[:, gi * cg:(gi + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                ws = w[gi * cg:(gi + 1) * cg, :, i, j]
                contrib = np.einsum("nchw,co->nohw", xs, ws)
                r0, c0 = i * dil[0], j * dil[1]
                full[:, gi * og:(gi + 1) * og,
                     r0:r0 + strides[0] * (h - 1) + 1:strides[0],
                     c0:c0 + strides[1] * (wd - 1) + 1:strides[1]] += contrib
    y = full[:, :, pads[0]:fh - pads[2], pads[1]:fw - pads[3]]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def op_pool(x, mode, **a):
    n, c, h, wd = x.shape
    kernel, strides, pads, dil = spatial_params(a, None)
    assert a.get("ceil_mode", 0) == 0
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=fill)
    oh = out_size(h, kernel[0], strides[0], pads[0], pads[2], dil[0])
    ow = out_size(wd, kernel[1], strides[1], pads[1], pads[3], dil[1])
    wins = [win for _, _, win in window_view(xp, kernel, strides, dil, (oh, ow))]
    if mode == "max":
        return np.max(np.stack(wins), axis=0)
    total = np.sum(np.stack(wins), axis=0)
    if a.get("count_include_pad", 0):
        # every window divides by its full size (floor mode keeps windows inside the padding)
        return total / (kernel[0] * kernel[1])
    # else by the number of its elements inside the image
    ones = np.pad(np.ones((1, 1, h, wd)), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    count = sum(win for _, _, win in window_view(ones, kernel, strides, dil, (oh, ow)))
    return total / count


def op_batchnorm(x, scale, bias, mean, var, **a):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    eps = a.get("epsilon", 1e-5)
    # epsilon is a float attribute: use its float32 value, as a runtime would.
    return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + np.float32(eps))
            * scale.reshape(shape) + bias.reshape(shape))


def op_softmax(x, **a):
    axis = a.get("axis", -1)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def op_gemm(a_, b_, c_=None, **a):
    a_ = a_.T if a.get("transA", 0) else a_
    b_ = b_.T if a.get("transB", 0) else b_
    y = a.get("alpha", 1.0) * (a_ @ b_)
    if c_ is not None:
        y = y + a.get("beta", 1.0) * c_
    return y


def op_reshape(x, shape, **a):
    shape = [x.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
    return x.reshape(shape)


def op_flatten(x, **a):
    axis = a.get("axis", 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def op_cast(x, **a):
    to = {onnx.TensorProto.INT64: np.int64, onnx.TensorProto.FLOAT: np.float64}[a["to"]]
    return x.astype(to)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def recurrent(kind, x, w, r, b=None, *rest, **a):
    """ONNX's RNN / LSTM / GRU, one forward direction, zero initial state, default activations;
    gate blocks in ONNX's order (LSTM i, o, f, c; GRU z, r, h)."""
    assert not rest or all(v is None for v in rest)
    assert a.get("direction", "forward") == "forward"
    hidden = a["hidden_size"]
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    w, r = w[0], r[0]
    b = np.zeros(2 * gates * hidden) if b is None else b[0]
    wb, rb = b[:gates * hidden], b[gates * hidden:]
    steps, batch = x.shape[0], x.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    ys = []

    def block(v, k):
        return v[..., k * hidden:(k + 1) * hidden]

    for t in range(steps):
        xw = x[t] @ w.T + wb
        hr = h @ r.T + rb
        if kind == "RNN":
            h = np.tanh(xw + hr)
        elif kind == "LSTM":
            i = sigmoid(block(xw, 0) + block(hr, 0))
            o = sigmoid(block(xw, 1) + block(hr, 1))
            f = sigmoid(block(xw, 2) + block(hr, 2))
            g = np.tanh(block(xw, 3) + block(hr, 3))
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            z = sigmoid(block(xw, 0) + block(hr, 0))
            rr = sigmoid(block(xw, 1) + block(hr, 1))
            if a.get("linear_before_reset", 0):
                n = np.tanh(block(xw, 2) + rr * block(hr, 2))
            else:
                rh = r[2 * hidden:3 * hidden]
                n = np.tanh(block(xw, 2) + (rr * h) @ rh.T + block(rb, 2))
            h = (1 - z) * n + z * h
        ys.append(h)
    y = np.stack(ys)[:, None]  # [T, 1, N, H]
    return y, h[None]


def op_squeeze(x, axes=None, **a):
    return np.squeeze(x, axis=tuple(int(v) for v in axes)) if axes is not None else np.squeeze(x)


OPS = {
    "Gemm": op_gemm,
    "Conv": op_conv,
    "ConvTranspose": op_conv_transpose,
    "MatMul": lambda x, y, **a: np.matmul(x, y),
    "MaxPool": lambda x, **a: op_pool(x, "max", **a),
    "AveragePool": lambda x, **a: op_pool(x, "avg", **a),
    "GlobalAveragePool": lambda x, **a: np.mean(x, axis=(2, 3), keepdims=True),
    "BatchNormalization": op_batchnorm,
    "Flatten": op_flatten,
    "Reshape": op_reshape,
    "Relu": lambda x, **a: np.maximum(x, 0),
    "Sigmoid": lambda x, **a: 1 / (1 + np.exp(-x)),
    "Tanh": lambda x, **a: np.tanh(x),
    "LeakyRelu": lambda x, **a: np.where(x >= 0, x, a.get("alpha", 0.01) * x),
    "Elu": lambda x, **a: np.where(x > 0, x, a.get("alpha", 1.0) * (np.exp(x) - 1)),
    "Softplus": lambda x, **a: np.log1p(np.exp(x)),
    "Erf": lambda x, **a: np.vectorize(math.erf)(x),
    "Add": lambda x, y, **a: x + y,
    "Sub": lambda x, y, **a: x - y,
    "Clip": lambda x, lo=None, hi=None, **a: np.clip(x, -np.inf if lo is None else lo,
                                                      np.inf if hi is None else hi),
    "LogSoftmax": lambda x, **a: np.log(op_softmax(x, **a)),
    "Mul": lambda x, y, **a: x * y,
    "Div": lambda x, y, **a: x / y,
    "Softmax": op_softmax,
    "Concat": lambda *xs, **a: np.concatenate(xs, axis=a["axis"]),
    "Gather": lambda x, idx, **a: np.take(x, idx, axis=a.get("axis", 0)),
    "Cast": op_cast,
    "Identity": lambda x, **a: x,
    "Transpose": lambda x, **a: np.transpose(x, a.get("perm")),
    "Squeeze": op_squeeze,
    "RNN": lambda *v, **a: recurrent("RNN", *v, **a),
    "LSTM": lambda *v, **a: recurrent("LSTM", *v, **a),
    "GRU": lambda *v, **a: recurrent("GRU", *v, **a),
}


def evaluate(model, x):
    values = {"input": x.astype(np.float64)}
    for init in model.graph.initializer:
        v = numpy_helper.to_array(init)
        values[init.name] = v.astype(np.float64) if v.dtype == np.float32 else v
    for node in model.graph.node:
        if node.op_type not in OPS:
            raise SystemExit(f"onnx-check: no NumPy implementation of {node.op_type}")
        args = [values[i] if i else None for i in node.input]
        result = OPS[node.op_type](*args, **attrs_of(node))
        results = result if isinstance(result, tuple) else (result,)
        for name, value in zip(node.output, results):
            if name:
                values[name] = value
    return {o.name: values[o.name] for o in model.graph.output}


def dims_of(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_structure(model):
    onnx.checker.check_model(model, full_check=True)
    inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    graph = model.graph
    assert [i.name for i in graph.input] == ["input"], [i.name for i in graph.input]
    assert dims_of(graph.input[0])[0] == "N", dims_of(graph.input[0])
    declared = {o.name: dims_of(o) for o in graph.output}
    found = {o.name: dims_of(o) for o in inferred.graph.output}
    for name, dims in declared.items():
        assert dims[0] == "N", (name, dims)
        assert found[name] == dims, f"output {name}: inferred {found[name]}, declared {dims}"
    ops = sorted({n.op_type for n in graph.node})
    print("opset:", model.opset_import[0].version)
    print("initializers:", " ".join(i.name for i in graph.initializer))
    print("ops:", " ".join(ops))


def main():
    args = sys.argv[1:]
    tol = 1e-5
    if "--tol" in args:
        k = args.index("--tol")
        tol = float(args[k + 1])
        del args[k:k + 2]
    if len(args) != 3:
        raise SystemExit(__doc__)
    model_path, input_path, expected_dir = args
    model = onnx.load(model_path)
    check_structure(model)
    dims = dims_of(model.graph.input[0])[1:]
    x = np.fromfile(input_path, dtype="<f4").reshape([-1] + dims)
    outputs = evaluate(model, x)
    ok = True
    for name, got in outputs.items():
        ref = np.fromfile(os.path.join(expected_dir, name + ".f32"), dtype="<f4")
        ref = ref.reshape(got.shape)
        diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
        print(f"{name}: max |onnx - lamina| = {diff:.3g} over {got.size} values")
        ok = ok and diff <= tol
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
