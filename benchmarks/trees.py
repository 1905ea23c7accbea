"""Parameter trees against flat arguments (issue 20, docs/trees.md).

The same 3-layer MLP (784-256-128-10, batch 128, float64) written with `params = {"layers": [(W, b), ...]}`
and with six named arrays: the generated code's matrix products are counted (they must be equal), and
sb.value_and_grad and sb.train_step (SGD) are timed on both backends, interleaved, best of several
repeats. The tree's extra cost is the general path's flattening (the flat model takes the fast path).
Run: `python -m benchmarks.trees`; writes benchmarks/results/trees.txt.
"""
import re
import timeit
from pathlib import Path

import numpy as np

import symbackprop as sb

RESULT = Path(__file__).parent / "results" / "trees.txt"
SIZES = (784, 256, 128, 10)
BATCH = 128


def mlp_tree(params, x, y):
    h = x
    for W, b in params["layers"]:
        h = np.tanh(h @ W + b)
    return np.mean((h - y) ** 2)


def mlp_flat(W0, b0, W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W0 + b0)
    h = np.tanh(h @ W1 + b1)
    h = np.tanh(h @ W2 + b2)
    return np.mean((h - y) ** 2)


def products(text):
    return len(re.findall(r"np\.dot\(|np\.matmul\(| @ |np\.einsum\(|call [^\n]*@\"?(?:matmul_|symbackprop_cblas_)",
                          text))


def best(fn, number, repeat=7):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def paired(a, b, number, rounds=15):
    """Best seconds per call of a and of b, alternating one timeit loop of each per round (the shared
    machine's load changes within seconds, so that the two see the same load)."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timeit.timeit(a, number=number) / number)
        tb.append(timeit.timeit(b, number=number) / number)
    return min(ta), min(tb)


def main():
    rng = np.random.default_rng(0)
    params = {"layers": [(rng.normal(size=(m, n)) / np.sqrt(m), np.zeros(n)) for m, n in zip(SIZES[:-1], SIZES[1:])]}
    flat = [a for t in params["layers"] for a in t]
    x, y = rng.normal(size=(BATCH, SIZES[0])), rng.normal(size=(BATCH, SIZES[-1]))
    lines = [f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float64; seconds per call, best of 15 alternating "
             "loops (machine shared with other sessions)"]
    for backend in ("numpy", "llvm"):
        tree = sb.value_and_grad(mlp_tree, backend=backend)
        plain = sb.value_and_grad(mlp_flat, wrt=tuple(range(6)), backend=backend)
        tree(params, x, y)
        plain(*flat, x, y)
        pt, pf = products(tree.source), products(plain.source)
        assert pt == pf, (pt, pf)
        number = 20
        tt, tf = paired(lambda: tree(params, x, y), lambda: plain(*flat, x, y), number)
        lines.append(f"{backend:5s} value_and_grad: tree {tt * 1e3:.3f} ms, flat {tf * 1e3:.3f} ms, "
                     f"tree/flat {tt / tf:.3f}; matrix products in the generated code: {pt} and {pf}")
        ptree = {"layers": [tuple(a.copy() for a in t) for t in params["layers"]]}
        pflat = [a.copy() for a in flat]
        step_tree = sb.train_step(mlp_tree, sb.optim.SGD(lr=1e-4), backend=backend)
        step_flat = sb.train_step(mlp_flat, sb.optim.SGD(lr=1e-4), wrt=tuple(range(6)), backend=backend)
        step_tree(ptree, x, y)
        step_flat(*pflat, x, y)
        st, sf = paired(lambda: step_tree(ptree, x, y), lambda: step_flat(*pflat, x, y), number)
        lines.append(f"{backend:5s} train_step:     tree {st * 1e3:.3f} ms, flat {sf * 1e3:.3f} ms, tree/flat {st / sf:.3f}")
    small = sb.value_and_grad(mlp_tree)
    sp = {"layers": [(np.ones((2, 2)), np.ones(2))]}
    sx, sy = np.ones((1, 2)), np.ones((1, 2))
    small(sp, sx, sy)
    small_flat = sb.grad(lambda_free_flat, wrt=(0, 1))
    small_flat(np.ones((2, 2)), np.ones(2), sx, sy)
    lines.append(f"the flattening's own cost (a 1-layer 2x2 tree, numpy): tree "
                 f"{best(lambda: small(sp, sx, sy), 2000) * 1e6:.1f} us, flat "
                 f"{best(lambda: small_flat(np.ones((2, 2)), np.ones(2), sx, sy), 2000) * 1e6:.1f} us per call "
                 "(the flat one includes making its two arrays)")
    text = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(text)
    print(text, end="")


def lambda_free_flat(W, b, x, y):
    return np.mean((np.tanh(x @ W + b) - y) ** 2)


if __name__ == "__main__":
    main()
