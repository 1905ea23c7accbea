"""Hessian-vector products and Jacobians: symbackprop against hand-written NumPy (and JAX when installed).

- hvp of W4 (MLP 784-256-10, batch 128) and W5 (16 tanh layers, width 32, batch 16) with respect
  to all their weights: sb.hvp on both backends, beside the same backend's value_and_grad, a
  hand-written NumPy forward-over-reverse, and JAX's jit(jvp(grad(f))) if jax is importable;
- the first call (compilation included) of sb.hvp against that of sb.value_and_grad;
- the Jacobian of a 64 -> 64 tanh layer with respect to its input: sb.jacobian (forward mode:
  the basis as a leading axis), the closed form (1 - h**2)[:, None] * W, jax.jacfwd / jacrev.

Medians of several rounds, each a batch of calls. Targets (issue 16): LLVM hvp at least as fast as
JAX on W4 and W5; NumPy hvp at most 3x NumPy value_and_grad; hvp's first call at most 3x
value_and_grad's.

Run: python benchmarks/hvp.py [--rounds 15]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import THREAD_ENV  # noqa: E402  (one thread everywhere, set before NumPy and JAX load)

for _k, _v in THREAD_ENV.items():
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402

import symbackprop as sb  # noqa: E402
from benchmarks import workloads  # noqa: E402

try:
    import jax  # optional peer (the `bench` extra)
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
except ImportError:
    jax = None


def median_time(fn, rounds, target=0.02):
    fn()
    calls, start = 1, time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(target / once))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def first_call(make, args, **kw):
    fn = make()
    start = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - start


# ---- hand-written forward over reverse -------------------------------------------------------

def mlp_hvp(W1, b1, W2, b2, X, y, v):
    tW1, tb1, tW2, tb2 = v
    B = X.shape[0]
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    ys = y.sum(axis=1)[:, None]
    s = 1 - h * h
    th = s * (X @ tW1 + tb1)
    tz = th @ W2 + h @ tW2 + tb2
    tp = p * (tz - (p * tz).sum(axis=1, keepdims=True))
    dz = (p * ys - y) / B
    tdz = tp * ys / B
    dh = dz @ W2.T
    tdh = tdz @ W2.T + dz @ tW2.T
    tda = tdh * s - 2 * h * th * dh
    return X.T @ tda, tda.sum(axis=0), th.T @ dz + h.T @ tdz, tdz.sum(axis=0)


def deep_tanh_hvp(Ws, bs, x, v):
    tWs, tbs = v
    hs, ts = [x], [np.zeros_like(x)]
    for i in range(len(Ws)):
        h = np.tanh(hs[-1] @ Ws[i] + bs[i])
        ts.append((1 - h * h) * (ts[-1] @ Ws[i] + hs[-1] @ tWs[i] + tbs[i]))
        hs.append(h)
    n = hs[-1].size
    dh, tdh = 2 * hs[-1] / n, 2 * ts[-1] / n
    dWs, dbs = np.empty_like(Ws), np.empty_like(bs)
    for i in range(len(Ws) - 1, -1, -1):
        h, t = hs[i + 1], ts[i + 1]
        s = 1 - h * h
        da, tda = dh * s, tdh * s - 2 * h * t * dh
        dWs[i] = ts[i].T @ da + hs[i].T @ tda
        dbs[i] = tda.sum(axis=0)
        dh, tdh = da @ Ws[i].T, tda @ Ws[i].T + da @ tWs[i].T
    return dWs, dbs


def jax_hvp(model, n_wrt):
    grad = jax.grad(model, argnums=tuple(range(n_wrt)))

    @jax.jit
    def hvp(params, data, v):
        return jax.jvp(lambda *p: grad(*p, *data), params, v)[1]
    return hvp


def jax_mlp(W1, b1, W2, b2, X, y):
    h = jnp.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z, axis=1), axis=1))


def jax_deep(Ws, bs, x):
    h = x
    for i in range(Ws.shape[0]):
        h = jnp.tanh(h @ Ws[i] + bs[i])
    return jnp.mean(h * h)


def tanh_layer(W, b, x):
    return np.tanh(W @ x + b)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    print("medians per call, one thread (BLAS and XLA), machine shared with other jobs\n")
    cases = [("W4", workloads.get("W4"), mlp_hvp, jax_mlp), ("W5", workloads.get("W5"), deep_tanh_hvp, jax_deep)]
    for name, w, hand, jmodel in cases:
        args = w.make_inputs()
        k = len(w.wrt)
        rng = np.random.default_rng(1)
        v = tuple(rng.normal(size=np.shape(args[i])) for i in w.wrt_indices)
        params, data = args[:k], args[k:]
        want = hand(*args, v)
        rows = []
        for backend in ("numpy", "llvm"):
            hvp = sb.hvp(w.model, wrt=w.wrt, backend=backend)
            vg = sb.value_and_grad(w.model, wrt=w.wrt, backend=backend)
            got = hvp(*args, v=v)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
            t_hvp = median_time(lambda: hvp(*args, v=v), rounds)
            t_vg = median_time(lambda: vg(*args), rounds)
            c_hvp = first_call(lambda: sb.hvp(w.model, wrt=w.wrt, backend=backend), args, v=v)
            c_vg = first_call(lambda: sb.value_and_grad(w.model, wrt=w.wrt, backend=backend), args)
            rows.append((f"sb.hvp {backend}", t_hvp, f"{t_hvp / t_vg:.2f}x value_and_grad ({t_vg * 1e6:.0f} us); "
                         f"first call {c_hvp:.3f}s = {c_hvp / c_vg:.2f}x value_and_grad's {c_vg:.3f}s"))
        rows.append(("hand-written NumPy", median_time(lambda: hand(*args, v), rounds), ""))
        if jax is not None:
            jh = jax_hvp(jmodel, k)
            jp, jd, jv = tuple(map(jnp.asarray, params)), tuple(map(jnp.asarray, data)), tuple(map(jnp.asarray, v))
            out = jh(jp, jd, jv)
            for a, b in zip(out, want):
                np.testing.assert_allclose(np.asarray(a), b, rtol=1e-8, atol=1e-10)
            rows.append(("JAX jit(jvp(grad))", median_time(lambda: jax.block_until_ready(jh(jp, jd, jv)), rounds), ""))
        print(f"{name} {w.title}: hvp wrt {', '.join(w.wrt)}")
        for label, t, note in rows:
            print(f"  {label:22s} {t * 1e6:10.1f} us  {note}")
        print()

    rng = np.random.default_rng(2)
    W, b, x = rng.normal(size=(64, 64)) / 8, rng.normal(size=64) * 0.1, rng.normal(size=64)
    h = np.tanh(W @ x + b)
    closed = (1 - h * h)[:, None] * W
    rows = []
    for backend in ("numpy", "llvm"):
        jac = sb.jacobian(tanh_layer, wrt="x", backend=backend)
        np.testing.assert_allclose(jac(W, b, x), closed, rtol=1e-12, atol=1e-14)
        rows.append((f"sb.jacobian {backend} ({jac._last.mode})", median_time(lambda: jac(W, b, x), rounds)))
    rows.append(("closed form NumPy", median_time(lambda: (1 - np.tanh(W @ x + b) ** 2)[:, None] * W, rounds)))
    if jax is not None:
        f = lambda W, b, x: jnp.tanh(W @ x + b)  # noqa: E731
        jW, jb, jx = map(jnp.asarray, (W, b, x))
        for label, make in (("jax.jacfwd (jit)", jax.jacfwd), ("jax.jacrev (jit)", jax.jacrev)):
            jf = jax.jit(make(f, argnums=2))
            np.testing.assert_allclose(np.asarray(jf(jW, jb, jx)), closed, rtol=1e-12, atol=1e-14)
            rows.append((label, median_time(lambda: jax.block_until_ready(jf(jW, jb, jx)), rounds)))
    print("jacobian of tanh(W @ x + b), 64 -> 64, wrt x")
    for label, t in rows:
        print(f"  {label:28s} {t * 1e6:10.1f} us")
    if jax is None:
        print("\n(JAX is not installed: pip install jax, or the `bench` extra, for its columns)")


if __name__ == "__main__":
    main()
