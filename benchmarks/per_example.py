"""Per-example gradients of W4's MLP (784-256-10, batch 128, float64, softmax cross-entropy; issue 20).

`sb.per_example_grad(mlp, wrt=("W1", "b1", "W2", "b2"))` (one generated program: the batched forward is
one product per layer, the per-example weight gradients outer products) against
  - a Python loop of 128 single-example `sb.grad` calls (the data sliced i:i+1), stacked,
  - hand-written NumPy per-example gradients (the same math, written once by hand),
  - `jax.jit(jax.vmap(jax.grad(...)))` of the same model on one example, in float64, when JAX imports.
Each is checked against the loop first (to 1e-12 relative), then timed in alternating rounds, best of
each; one thread everywhere (benchmarks.THREAD_ENV). Run: `python -m benchmarks.per_example` (with JAX
on the path for the JAX row); writes benchmarks/results/per_example.txt.
"""
import os

from benchmarks import THREAD_ENV

for _k, _v in THREAD_ENV.items():
    os.environ.setdefault(_k, _v)

import platform  # noqa: E402
import timeit  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import symbackprop as sb  # noqa: E402
from benchmarks.workloads import mlp, mlp_inputs  # noqa: E402

RESULT = Path(__file__).parent / "results" / "per_example.txt"
WRT = ("W1", "b1", "W2", "b2")


def loop_of_single_example_grads(grad):
    def run(W1, b1, W2, b2, X, y):
        rows = [grad(W1, b1, W2, b2, X[i:i + 1], y[i:i + 1]) for i in range(X.shape[0])]
        return tuple(np.stack([r[k] for r in rows]) for k in range(4))
    return run


def hand_written(W1, b1, W2, b2, X, y):
    """Per-example gradients of the MLP by hand: example i's loss is -sum(y_i * log softmax(z_i))."""
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    d_z = e * (y.sum(axis=1) / e.sum(axis=1))[:, None] - y      # p * sum(y) - y, per example
    d_a = (d_z @ W2.T) * (1.0 - h * h)
    return (X[:, :, None] * d_a[:, None, :], d_a, h[:, :, None] * d_z[:, None, :], d_z)


def jax_version(args):
    """jax.jit(jax.vmap(jax.grad(loss of one example))) in float64, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None, "not installed"
    jax.config.update("jax_enable_x64", True)

    def one(W1, b1, W2, b2, x, y):
        h = jnp.tanh(x @ W1 + b1)
        z = h @ W2 + b2
        m = jnp.max(z)
        lse = m + jnp.log(jnp.sum(jnp.exp(z - m)))
        return -jnp.sum(y * (z - lse))

    f = jax.jit(jax.vmap(jax.grad(one, argnums=(0, 1, 2, 3)), in_axes=(None, None, None, None, 0, 0)))
    dev = [jnp.asarray(a) for a in args]

    def run(*_):
        return tuple(np.asarray(g) for g in jax.block_until_ready(f(*dev)))
    return run, jax.__version__


def paired(fns, number, rounds):
    """Best seconds per call of each, one timeit loop of each per round in turn (the load is shared)."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timeit.timeit(fn, number=number) / number)
    return {name: min(t) for name, t in times.items()}


def main():
    args = mlp_inputs()  # W1 784x256, b1, W2 256x10, b2, X 128x784, one-hot y 128x10
    n = args[4].shape[0]
    impls = {}
    for backend in ("numpy", "llvm"):
        f = sb.per_example_grad(mlp, wrt=WRT, backend=backend)
        f(*args)
        impls[f"sb.per_example_grad ({backend})"] = f
    loop = loop_of_single_example_grads(sb.grad(mlp, wrt=WRT))
    impls["loop of sb.grad (numpy)"] = loop
    impls["loop of sb.grad (llvm)"] = loop_of_single_example_grads(sb.grad(mlp, wrt=WRT, backend="llvm"))
    impls["hand-written NumPy"] = hand_written
    jax_run, jax_note = jax_version(args)
    if jax_run is not None:
        impls[f"jax.jit(jax.vmap(jax.grad)) {jax_note}"] = jax_run
    reference = loop(*args)
    agreement = {}
    for name, fn in impls.items():
        got = fn(*args)
        agreement[name] = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(got, reference))
        assert agreement[name] < 1e-12, (name, agreement[name])
    calls = {name: (lambda fn=fn: fn(*args)) for name, fn in impls.items()}
    best = paired(calls, number=3, rounds=7)
    base = best["sb.per_example_grad (numpy)"]
    (d, hidden), classes = args[0].shape, args[2].shape[1]
    lines = [f"Per-example gradients of W4's MLP {d}-{hidden}-{classes}, batch {n}, float64 ({n} x {d} x {hidden} "
             f"entries of d_W1); "
             f"seconds per call, best of 7 alternating rounds of 3 calls, one thread; machine shared with other "
             f"sessions; {platform.processor() or platform.machine()}, NumPy {np.__version__}",
             f"{'implementation':45s} {'ms':>9s} {'/ sb numpy':>10s}  max rel. difference to the loop"]
    for name, t in best.items():
        lines.append(f"{name:45s} {t * 1e3:9.2f} {t / base:10.2f}  {agreement[name]:.1e}")
    if jax_run is None:
        lines.append(f"jax.jit(jax.vmap(jax.grad)): {jax_note}")
    text = "\n".join(lines) + "\n"
    RESULT.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
