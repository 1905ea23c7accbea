"""Gradient checkpointing: memory against time as the memory budget shrinks.

Backprop keeps every layer's activation from the forward pass until the backward
pass reads it. A 32-layer tanh network (width 128, batch 128) keeps 32 of them.
Under `memory_budget=` symbackprop keeps fewer (the checkpoints) and computes the
others again in the backward pass: less memory, more time, the same gradient to
the last bit. For budgets from every residual down to the smallest that works,
this prints and plots the peak memory of one gradient call (tracemalloc, the
gradient itself left out) and its time, beside what the compiler's report predicts.
Writes examples/out/checkpointing.png.
"""
import re
import time
import tracemalloc

import numpy as np

import symbackprop as sb
from _common import out_path, pyplot

LAYERS, WIDTH = 32, 128


def deep(Ws, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i])
    return np.mean(h * h)


def peak_and_time(f, Ws, x, repeats=5):
    f(Ws, x)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _, g = f(Ws, x)
    peak = tracemalloc.get_traced_memory()[1] - base - g.nbytes
    tracemalloc.stop()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(Ws, x)
        times.append(time.perf_counter() - start)
    return peak, float(np.median(times)), g


def main():
    rng = np.random.default_rng(0)
    Ws = rng.standard_normal((LAYERS, WIDTH, WIDTH)) / np.sqrt(WIDTH)
    x = rng.standard_normal((WIDTH, WIDTH))
    act = x.nbytes
    plain = sb.value_and_grad(deep)
    residuals = plain.memory(Ws, x).residual_bytes
    _, base_time, expected = peak_and_time(plain, Ws, x)
    rows = []
    print(f"{LAYERS} tanh layers, width = batch = {WIDTH}: one activation is {act / 2**10:.0f} KiB")
    print(f"{'budget':>12} {'kept':>6} {'predicted':>10} {'measured':>9} {'time':>8}   (in activations)")
    for fraction in (1.0, 1 / 2, 1 / 4, 1 / 8, 1 / 16):
        budget = int(residuals * fraction)
        f = sb.value_and_grad(deep, memory_budget=budget)
        try:
            f.specialise(Ws, x)
        except sb.CompileError as e:  # below every schedule: the error names the smallest that works
            budget = int(re.search(r"the smallest that works is (\d+) bytes", str(e)).group(1))
            f = sb.value_and_grad(deep, memory_budget=budget)
        report = f.memory(Ws, x)
        peak, seconds, g = peak_and_time(f, Ws, x)
        assert g.tobytes() == expected.tobytes()  # checkpointing changes no bit of the gradient
        predicted = report.peak_bytes - g.nbytes
        rows.append((budget / act, peak / act, predicted / act, seconds / base_time))
        print(f"{budget / act:>12.1f} {report.kept_bytes / act:>6.1f} {predicted / act:>10.1f} {peak / act:>9.1f} "
              f"{seconds / base_time:>7.2f}x")
    plt = pyplot()
    if plt is None:
        print("(install matplotlib, the `examples` extra, for the plot)")
        return
    budgets, peaks, predicted, times = map(np.array, zip(*rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(budgets, peaks, "o-", label="measured (tracemalloc)")
    left.plot(budgets, predicted, "x--", label="the report's prediction")
    left.plot(budgets, budgets, ":", color="grey", label="the budget")
    left.set_xlabel("memory_budget (activations)")
    left.set_ylabel("peak extra memory (activations)")
    left.legend()
    right.plot(peaks, times, "o-")
    right.set_xlabel("peak extra memory (activations)")
    right.set_ylabel("time / time without a budget")
    right.set_title("memory traded for recomputation")
    fig.tight_layout()
    path = out_path("checkpointing.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
