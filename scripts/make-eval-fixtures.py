#!/usr/bin/python3
"""Records class probabilities, labels and NumPy's classification metrics of them, for
tests/core/test-metrics.c (include/lamina/metrics.h, `lamina eval`).

Writes tests/fixtures/eval-metrics.h5 (or the path given as the only argument):

  /CASE/probs        float32 [M, N, C]: M members' probabilities of N samples over C classes
  /CASE/labels       int32 [N]
  /CASE/mean         float32 [N, C]: the members' mean, summed in float64, rounded to float32
  /CASE/topk_hits    int64 [C]: element k-1 is the number of samples of `mean` whose label is
                     among the k largest scores, ties broken by the lower class index
  /CASE/confusion    int64 [C, C]: rows = true class, columns = predicted (the first maximum)
  /CASE/precision, recall, f1   float64 [C], 0/0 defined as 0
  /CASE/support      int64 [C]
  /CASE/macro        float64 [3]: the means of precision, recall and F1 over the C classes

The cases: "ties" (one member, scores rounded to eighths so that many rows tie, a class that is
never predicted and a class without samples), "ensemble" (three members, softmax of random
logits) and "binary" (one member, two classes).  Top-K is computed from a stable sort of the
negated scores (the first K indices), the confusion matrix from np.argmax, and P/R/F1 with
explicit 0/0 handling: implementations independent of the C code's rank counting.

Run with Debian's Python (python3-numpy, python3-h5py):
    /usr/bin/python3 scripts/make-eval-fixtures.py
"""
import sys

import h5py
import numpy as np


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def metrics(mean, labels):
    n, c = mean.shape
    order = np.argsort(-mean, axis=1, kind="stable")
    topk = np.array([int(np.sum(np.any(order[:, :k] == labels[:, None], axis=1)))
                     for k in range(1, c + 1)], dtype=np.int64)
    pred = np.argmax(mean, axis=1)
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    macro = np.array([precision.mean(), recall.mean(), f1.mean()])
    return dict(topk_hits=topk, confusion=confusion, precision=precision, recall=recall, f1=f1,
                support=support.astype(np.int64), macro=macro)


def write_case(f, name, probs, labels):
    probs = probs.astype(np.float32)
    mean = (probs.astype(np.float64).sum(axis=0) / probs.shape[0]).astype(np.float32)
    g = f.create_group(name)
    g["probs"] = probs
    g["labels"] = labels.astype(np.int32)
    g["mean"] = mean
    for k, v in metrics(mean, labels).items():
        g[k] = v


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/eval-metrics.h5"
    rng = np.random.default_rng(20261202)
    with h5py.File(out, "w") as f:
        # Ties: scores in eighths; class 3 never scores highest, class 4 has no samples.
        n, c = 97, 5
        s = np.floor(rng.random((n, c)) * 8) / 8
        # (a tie with an earlier class goes to that class)
        s[:, 3] = np.minimum(s[:, 3], s[:, :3].max(axis=1))
        labels = rng.integers(0, 4, n)
        assert not np.any(np.argmax(s, axis=1) == 3)
        write_case(f, "ties", s[None], labels)
        # An ensemble of three softmax members.
        n, c = 64, 7
        labels = rng.integers(0, c, n)
        z = rng.normal(size=(3, n, c)) + 1.5 * np.eye(c)[labels][None]
        write_case(f, "ensemble", softmax(z), labels)
        n = 31
        labels = rng.integers(0, 2, n)
        write_case(f, "binary", softmax(rng.normal(size=(1, n, 2))), labels)


if __name__ == "__main__":
    main()
