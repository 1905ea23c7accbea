"""MLP 784-256-10, batch 128: generated value_and_grad against hand-written NumPy backprop.

Both run in this process, interleaved, single-threaded BLAS; medians. Run:
python benchmarks/mlp_numpy.py
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import symbackprop as sb  # noqa: E402


def mlp(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def hand_forward(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(y * logp).sum() / x.shape[0]


def hand_value_and_grad(W1, b1, W2, b2, x, y):
    """What an expert writes: softmax minus one-hot, tanh' from the stored activation."""
    n = x.shape[0]
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = -(y * (z - np.log(s))).sum() / n
    d_logits = (e / s - y) / n
    d_W2 = h.T @ d_logits
    d_b2 = d_logits.sum(axis=0)
    d_pre = (d_logits @ W2.T) * (1 - h * h)
    d_W1 = x.T @ d_pre
    d_b1 = d_pre.sum(axis=0)
    return loss, (d_W1, d_b1, d_W2, d_b2)


def median_time(fn, args, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(batch=128, rounds=7, inner=15):
    rng = np.random.default_rng(0)
    args = (rng.normal(size=(784, 256)) * 0.05, np.zeros(256), rng.normal(size=(256, 10)) * 0.05, np.zeros(10),
            rng.normal(size=(batch, 784)), np.eye(10)[rng.integers(0, 10, batch)])
    ours = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2", "b2"))
    start = time.perf_counter()
    value, grads = ours(*args)
    first_call = time.perf_counter() - start
    want_value, want_grads = hand_value_and_grad(*args)
    assert np.isclose(value, want_value) and all(np.allclose(g, w) for g, w in zip(grads, want_grads))
    impls = {"symbackprop numpy": ours, "hand-written": hand_value_and_grad, "hand forward": hand_forward}
    samples = {k: [] for k in impls}
    for _ in range(rounds):  # interleaved rounds
        for name, fn in impls.items():
            samples[name].append(median_time(fn, args, inner))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"MLP 784-256-10, batch {batch}, single-threaded BLAS, medians of {rounds} interleaved rounds")
    for name, t in med.items():
        print(f"  {name:20s} {t * 1e6:9.1f} us")
    ratio = med["symbackprop numpy"] / med["hand-written"]
    print(f"  ours / hand-written value_and_grad = {ratio:.3f}   (target: at most 1.15)")
    print(f"  ours value_and_grad / hand forward = {med['symbackprop numpy'] / med['hand forward']:.2f}")
    print(f"  first call (compile + run): {first_call * 1e3:.1f} ms")
    return ratio


if __name__ == "__main__":
    main()
