"""Resident memory over many calls: a compiled gradient (both backends) and a train step.

Each case compiles once, warms up, then calls `calls` times and reads the process's resident set
(/proc/self/statm) at ten points. Flat means the growth from the first reading after warm-up to
the last stays within a few pages of allocator noise, whatever the number of calls.

Run: python benchmarks/memory_flat.py [--calls 1000000]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import symbackprop as sb  # noqa: E402

PAGE = 4096


def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def mlp(W1, b1, W2, X, Y):
    h = np.tanh(X @ W1 + b1)
    return np.mean((h @ W2 - Y) ** 2)


def inputs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((8, 16)) * 0.3, np.zeros(16), rng.standard_normal((16, 2)) * 0.3,
            rng.standard_normal((32, 8)), rng.standard_normal((32, 2))]


def cases():
    """(name, a function of no arguments doing one call)."""
    args = inputs()
    for backend in ("numpy", "llvm"):
        f = sb.value_and_grad(mlp, wrt=(0, 1, 2), backend=backend)
        yield f"value_and_grad {backend}", lambda f=f: f(*args)
    step_args = [a.copy() for a in args]
    step = sb.train_step(mlp, sb.optim.Adam(lr=1e-4), wrt=(0, 1, 2))
    yield "train_step numpy (Adam)", lambda: step(*step_args)


def readings(call, calls, points=10, warmup=2000):
    for _ in range(warmup):
        call()
    out = [resident_bytes()]
    for _ in range(points):
        for _ in range(calls // points):
            call()
        out.append(resident_bytes())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    options = parser.parse_args(argv)
    print(f"{options.calls:,} calls per case; resident set in KiB at ten points after 2,000 warm-up calls")
    for name, call in cases():
        r = readings(call, options.calls)
        print(f"{name:28s} growth {(r[-1] - r[0]) / 1024:+8.0f} KiB   " + " ".join(f"{x // 1024}" for x in r))


if __name__ == "__main__":
    main()
