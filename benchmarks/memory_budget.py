"""Peak memory and time of one value_and_grad under memory_budget= (gradient checkpointing).

A 64-layer tanh loop (width = batch = 256 by default, float64: one activation is 0.5 MiB).
For each backend and budget (none, 1/4 and 1/8 of the unbudgeted residual bytes) one
subprocess compiles, then measures one call's peak extra memory (tracemalloc on the NumPy
backend; the LLVM backend's buffers come from libc malloc, which tracemalloc does not see,
so there only the report's predicted peak is shown), then the median time of a few calls.
The gradient itself (as large as the weights) is left out of both peaks.

Run: python benchmarks/memory_budget.py [--layers 64] [--width 256] [--repeats 5]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import symbackprop as sb  # noqa: E402


def deep_tanh(Ws, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i])
    return np.mean(h * h)


def inputs(layers, width):
    rng = np.random.default_rng(0)
    return rng.standard_normal((layers, width, width)) / np.sqrt(width), rng.standard_normal((width, width))


def one(backend, fraction, layers, width, repeats):
    """Measure one configuration in this process; print one JSON line."""
    import tracemalloc

    Ws, x = inputs(layers, width)
    plain = sb.value_and_grad(deep_tanh, backend=backend)
    residuals = plain.memory(Ws, x).residual_bytes
    budget = None if fraction == 0 else int(residuals * fraction)
    f = sb.value_and_grad(deep_tanh, backend=backend, memory_budget=budget) if budget else plain
    start = time.perf_counter()
    f.specialise(Ws, x)
    compile_s = time.perf_counter() - start
    report = f.memory(Ws, x)
    if backend == "numpy":
        f(Ws, x)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        _, g = f(Ws, x)
        peak = tracemalloc.get_traced_memory()[1] - base - g.nbytes
        tracemalloc.stop()
    else:
        # the JIT code's buffers come from libc malloc, which tracemalloc does not see, and the process's
        # peak resident set was already reached while compiling: only the report's accounting is shown
        _, g = f(Ws, x)
        peak = None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(Ws, x)
        times.append(time.perf_counter() - start)
    print(json.dumps({"backend": backend, "fraction": fraction, "budget": budget, "residuals": residuals,
                      "kept": report.kept_bytes, "residual_peak": report.residual_peak,
                      "predicted": report.peak_bytes - g.nbytes, "measured": peak, "seconds": statistics.median(times),
                      "compile": compile_s, "extra_flops": report.extra_flops / max(report.forward_flops, 1),
                      "activation": x.nbytes}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", nargs=2, metavar=("BACKEND", "FRACTION"))
    a = ap.parse_args()
    if a.one:
        one(a.one[0], float(a.one[1]), a.layers, a.width, a.repeats)
        return
    mib = 2 ** 20
    print(f"{a.layers}-layer tanh loop, width = batch = {a.width}, float64; medians of {a.repeats} calls, one run")
    print(f"{'backend':<7} {'budget':>9} {'kept':>9} {'predicted':>10} {'measured':>9} {'limit':>9} "
          f"{'time':>8} {'x plain':>8} {'recompute':>9}")
    for backend in ("numpy", "llvm"):
        plain_time = None
        for fraction in (0, 1 / 4, 1 / 8):
            out = subprocess.run([sys.executable, __file__, "--one", backend, str(fraction), "--layers",
                                  str(a.layers), "--width", str(a.width), "--repeats", str(a.repeats)],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                print(f"{backend:<7} {fraction:>9.3f} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            plain_time = plain_time or r["seconds"]
            budget = r["budget"] or r["residuals"]
            limit = 1.1 * budget + 4 * r["activation"] if r["budget"] else float("nan")
            name = "none" if not r["budget"] else f"1/{round(1 / fraction)}"
            print(f"{backend:<7} {name:>9} {r['kept'] / mib:>8.1f}M {r['predicted'] / mib:>9.1f}M "
                  f"{'n/a' if r['measured'] is None else format(r['measured'] / mib, '.1f'):>8}M {limit / mib:>8.1f}M {r['seconds'] * 1e3:>6.1f}ms "
                  f"{r['seconds'] / plain_time:>7.2f}x {r['extra_flops']:>8.2f}x")


if __name__ == "__main__":
    main()
