"""Peak memory and time of one value_and_grad under memory_budget= (gradient checkpointing).

A 64-layer tanh loop (width = batch = 256 by default, float64: one activation is 0.5 MiB; also
--width 512: 2 MiB) and the transformer block W6. For each backend and budget (none, 1/4 and 1/8
of the unbudgeted residual bytes; for W6 1/4 and the smallest budget that works) one subprocess
compiles, then measures one call's peak extra memory two ways:

- resident: the kernel's high-water mark of the process (VmHWM) over one call, after free heap
  pages went back to the OS (malloc_trim) and the mark was reset (/proc/self/clear_refs); this sees
  the LLVM code's malloc'ed buffers, which tracemalloc does not;
- traced (NumPy backend): tracemalloc's peak over one call.

then the median time of a few calls. The gradient itself (as large as the weights) is left out of
both peaks; "predicted" is the memory report's peak by the generated code's own accounting.
The issue's rule: peak at most 1.1 x budget + 4 activations, time at most 1.4x (1/4) and 1.8x (1/8).

Run: python benchmarks/memory_budget.py [--layers 64] [--widths 256 512] [--repeats 5]
"""
import argparse
import ctypes
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import symbackprop as sb  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402


def deep_tanh(Ws, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i])
    return np.mean(h * h)


def inputs(layers, width):
    rng = np.random.default_rng(0)
    return rng.standard_normal((layers, width, width)) / np.sqrt(width), rng.standard_normal((width, width))


def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def resident_peak(f, args):
    """Peak resident bytes one call adds (its gradients left out)."""
    f(*args)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current resident set
    base = _status("VmRSS:")
    _, grads = f(*args)
    return _status("VmHWM:") - base - _nbytes(grads)


def traced_peak(f, args):
    import tracemalloc

    f(*args)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _, grads = f(*args)
    peak = tracemalloc.get_traced_memory()[1] - base - _nbytes(grads)
    tracemalloc.stop()
    return peak


def _nbytes(grads):
    return sum(g.nbytes for g in grads) if isinstance(grads, tuple) else grads.nbytes


def case(name, layers, width):
    """(model, args, wrt, one activation's bytes)."""
    if name == "W6":
        w = next(w for w in WORKLOADS if w.name == "W6")
        args = w.make_inputs()
        return w.model, args, w.wrt, args[-1].nbytes
    Ws, x = inputs(layers, width)
    return deep_tanh, (Ws, x), None, x.nbytes


def one(name, backend, fraction, layers, width, repeats):
    """Measure one configuration in this process; print one JSON line."""
    model, args, wrt, activation = case(name, layers, width)
    plain = sb.value_and_grad(model, wrt=wrt, backend=backend)
    residuals = plain.memory(*args).residual_bytes
    budget = None if fraction == 0 else int(residuals * fraction)
    row = {"case": name, "backend": backend, "fraction": fraction, "budget": budget, "residuals": residuals,
           "activation": activation}
    if budget is not None and fraction < 0:  # the smallest budget that works
        budget = row["budget"] = _smallest(model, wrt, backend, args)
    f = sb.value_and_grad(model, wrt=wrt, backend=backend, memory_budget=budget) if budget else plain
    start = time.perf_counter()
    try:
        f.specialise(*args)
    except sb.CompileError as e:
        row["error"] = str(e).splitlines()[0].split(": ", 1)[-1]
        print(json.dumps(row))
        return
    row["compile"] = time.perf_counter() - start
    report = f.memory(*args)
    _, grads = f(*args)
    row.update(kept=report.kept_bytes, residual_peak=report.residual_peak,
               predicted=report.peak_bytes - _nbytes(grads),
               extra_flops=report.extra_flops / max(report.forward_flops, 1))
    row["resident"] = resident_peak(f, args)
    row["traced"] = traced_peak(f, args) if backend == "numpy" else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - start)
    row["seconds"] = statistics.median(times)
    print(json.dumps(row))


def _smallest(model, wrt, backend, args):
    try:
        sb.value_and_grad(model, wrt=wrt, backend=backend, memory_budget=1).specialise(*args)
    except sb.CompileError as e:
        return int(re.search(r"the smallest that works is (\d+) bytes", str(e)).group(1))
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-w6", action="store_true")
    ap.add_argument("--one", nargs=4, metavar=("CASE", "BACKEND", "FRACTION", "WIDTH"))
    a = ap.parse_args()
    if a.one:
        one(a.one[0], a.one[1], float(a.one[2]), a.layers, int(a.one[3]), a.repeats)
        return
    mib = 2 ** 20
    print(f"medians of {a.repeats} calls, one run; peaks in MiB, the gradient left out; limit = 1.1 x budget "
          "+ 4 activations")
    cases = [(f"{a.layers}-layer tanh loop, width = batch = {w}, float64", "loop", w, (0, 1 / 4, 1 / 8))
             for w in a.widths]
    if not a.no_w6:
        cases.append(("W6 transformer block (seq 64, width 128, MLP 512)", "W6", 0, (0, 1 / 4, -1)))
    for title, name, width, fractions in cases:
        print(f"\n{title}")
        print(f"{'backend':<7} {'budget':>9} {'kept':>7} {'predicted':>9} {'resident':>9} {'traced':>7} "
              f"{'limit':>7} {'time':>9} {'x plain':>7} {'recompute':>9}")
        for backend in ("numpy", "llvm"):
            plain_time = None
            for fraction in fractions:
                out = subprocess.run([sys.executable, __file__, "--one", name, backend, str(fraction), str(width),
                                      "--layers", str(a.layers), "--repeats", str(a.repeats)],
                                     capture_output=True, text=True, cwd=ROOT)
                label = {0: "none", -1: "smallest"}.get(fraction) or f"1/{round(1 / fraction)}"
                if out.returncode:
                    print(f"{backend:<7} {label:>9} failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if "error" in r:
                    print(f"{backend:<7} {label:>9} CompileError: {r['error']}")
                    continue
                plain_time = plain_time or r["seconds"]
                if fraction == -1:
                    label = f"{r['budget'] / r['residuals']:.2f}"
                limit = 1.1 * r["budget"] + 4 * r["activation"] if r["budget"] else float("nan")
                traced = "n/a" if r["traced"] is None else format(r["traced"] / mib, ".2f")
                print(f"{backend:<7} {label:>9} {r['kept'] / mib:>7.2f} {r['predicted'] / mib:>9.2f} "
                      f"{r['resident'] / mib:>9.2f} {traced:>7} {limit / mib:>7.2f} {r['seconds'] * 1e3:>7.1f}ms "
                      f"{r['seconds'] / plain_time:>6.2f}x {r['extra_flops']:>8.2f}x")


if __name__ == "__main__":
    main()
