"""An RNN keeping its hidden states in a list, stacked for the loss: compile time against the number of steps.

The model (issue 15): `hs.append(h)` in a loop over the steps, then `np.stack(hs)` and a readout. Loops
unroll, so compile time should grow linearly with the steps: 64 steps at most 10x the time of 8. Both
backends; the LLVM figure includes LLVM's own compilation. Run: python benchmarks/rnn_lists.py
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import symbackprop as sb  # noqa: E402


def rnn(Wx, Wh, b, Wo, xs, ys):
    h = np.zeros((xs.shape[1], Wh.shape[0]))
    hs = []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
    H = np.stack(hs)                      # (steps, batch, hidden)
    out = H @ Wo                          # (steps, batch, outputs)
    return np.mean((out - ys) ** 2)


def rnn_args(steps, batch=4, inputs=3, hidden=8, outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(inputs, hidden)) * 0.5, rng.normal(size=(hidden, hidden)) * 0.3,
            rng.normal(size=hidden) * 0.1, rng.normal(size=(hidden, outputs)) * 0.5,
            rng.normal(size=(steps, batch, inputs)), rng.normal(size=(steps, batch, outputs)))


def compile_seconds(steps, backend, repeats=3):
    times = []
    for _ in range(repeats):
        f = sb.value_and_grad(rnn, wrt=(0, 1, 2, 3), backend=backend)
        args = rnn_args(steps)
        start = time.perf_counter()
        f.specialise(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ratios = {}
    for backend in ("numpy", "llvm"):
        compile_seconds(2, backend, repeats=1)  # imports and the derivative cache, as in any session
        t = {steps: compile_seconds(steps, backend) for steps in (8, 16, 32, 64)}
        print(f"{backend}: compile time of value_and_grad, median of 3")
        for steps, s in t.items():
            print(f"  {steps:3d} steps: {s * 1e3:8.1f} ms   ({s / steps * 1e3:.2f} ms/step)")
        ratios[backend] = t[64] / t[8]
        print(f"  64 steps / 8 steps = {ratios[backend]:.2f}x   (target: at most 10x)")
    return ratios


if __name__ == "__main__":
    main()
