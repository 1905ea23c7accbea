"""Compile time of a `while` loop on values against the same code without the loop (issue 14).

Two models share one 40-operation chain (8 times: a matrix product, tanh, a scale, a shift, sin):
`straight` runs it once; `looped` runs it as the body of a `while` whose condition reads the
chain's values (`while np.sum(h * h) > 1e-3 and k < 3`). Compiling the loop adds a region, a tape
per residual and a replayed backward body, but every operation of the chain is still compiled once,
so its compile time should stay within 2x of the straight chain's.

Compile time = first call of a fresh `sb.value_and_grad` minus a warm call of it (the first call
compiles, the warm one only runs); median over several fresh compilations, after one untimed
compilation of each model (imports and SymPy's derivative cache, as in any session). Both
backends; LLVM's figure includes LLVM's own compilation. The two backends' value and gradient of
the looped model are checked against each other first.

Run: nice -n 10 python -m benchmarks.compile_while [--repeats 7]
"""
import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import THREAD_ENV

if __name__ == "__main__":
    os.environ.update(THREAD_ENV)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import symbackprop as sb  # noqa: E402

CHAIN = ["h = h @ W", "h = np.tanh(h)", "h = h * 0.9", "h = h + 0.1", "h = np.sin(h)"] * 8

SOURCE = '''"""Models of benchmarks/compile_while.py (written out so that the compiler can read them)."""
import numpy as np


def straight(W, x):
    h = x
{straight}
    return np.sum(h * h)


def looped(W, x):
    h = x
    k = 0
    while np.sum(h * h) > 1e-3 and k < 3:
{looped}
        k += 1
    return np.sum(h * h)
'''


def load_models():
    """The two models, from a module written to a temporary folder (the frontend reads source)."""
    text = SOURCE.format(straight="\n".join("    " + line for line in CHAIN),
                         looped="\n".join("        " + line for line in CHAIN))
    path = Path(tempfile.mkdtemp(prefix="sb_compile_while_")) / "chain_models.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("chain_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.straight, module.looped


def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 16)) / 4, rng.normal(size=(8, 16))


def compile_seconds(model, backend, args):
    """First call minus a warm call of a fresh value_and_grad."""
    f = sb.value_and_grad(model, wrt=("W", "x"), backend=backend)
    start = time.perf_counter()
    f(*args)
    first = time.perf_counter() - start
    warm = min(_once(f, args) for _ in range(3))
    return first - warm


def _once(f, args):
    start = time.perf_counter()
    f(*args)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_while")
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args(argv).repeats
    straight, looped = load_models()
    args = inputs()
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores shared with other sessions, one thread; python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"chain of {len(CHAIN)} operations (8 x: h @ W, tanh, * 0.9, + 0.1, sin), W 16x16, "
          f"x 8x16; value_and_grad wrt W, x; compile = first call - warm call, median of "
          f"{repeats} fresh compilations\n")
    loss_np, grads_np = sb.value_and_grad(looped, wrt=("W", "x"))(*args)
    loss_llvm, grads_llvm = sb.value_and_grad(looped, wrt=("W", "x"), backend="llvm")(*args)
    assert np.isclose(loss_np, loss_llvm, rtol=1e-12) and np.isclose(loss_np, looped(*args), rtol=1e-12)
    assert all(np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads_np, grads_llvm))
    ratios = {}
    for backend in ("numpy", "llvm"):
        for model in (straight, looped):
            compile_seconds(model, backend, args)               # untimed warm-up
        times = {m.__name__: [] for m in (straight, looped)}
        for _ in range(repeats):                              # alternate the two models
            for model in (straight, looped):
                times[model.__name__].append(compile_seconds(model, backend, args))
        t_straight, t_looped = (statistics.median(times[n]) for n in ("straight", "looped"))
        ratios[backend] = t_looped / t_straight
        print(f"{backend}:")
        print(f"  straight chain    {t_straight * 1e3:8.1f} ms   "
              f"(min {min(times['straight']) * 1e3:.1f}, max {max(times['straight']) * 1e3:.1f})")
        print(f"  chain in a while  {t_looped * 1e3:8.1f} ms   "
              f"(min {min(times['looped']) * 1e3:.1f}, max {max(times['looped']) * 1e3:.1f})")
        print(f"  while / straight = {ratios[backend]:.2f}x   (target: at most 2x)")
    return ratios


if __name__ == "__main__":
    main()
