"""Compile time against program length and against array size (numpy backend).

A deep tanh MLP written as a loop over stacked weights: compile time should grow
linearly with depth (160 layers at most 20x the time of 10) and not at all with
the batch size. Run: python benchmarks/compile_scaling.py
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import symbackprop as sb  # noqa: E402


def deep_mlp(Ws, bs, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i] + bs[i])
    return np.mean(h ** 2)


def compile_seconds(layers, batch, width=32, repeats=3):
    times = []
    for _ in range(repeats):
        f = sb.value_and_grad(deep_mlp, wrt=("Ws", "bs"))
        args = (np.zeros((layers, width, width)), np.zeros((layers, width)), np.zeros((batch, width)))
        start = time.perf_counter()
        f.specialise(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    compile_seconds(4, 8)  # warm the derivative cache and imports, as in any real session
    print("depth scaling (batch 8, width 32), median of 3 compiles:")
    depth = {}
    for layers in (10, 20, 40, 80, 160):
        depth[layers] = compile_seconds(layers, 8)
        print(f"  {layers:4d} layers: {depth[layers] * 1e3:8.1f} ms   ({depth[layers] / layers * 1e3:.2f} ms/layer)")
    ratio = depth[160] / depth[10]
    print(f"  160 layers / 10 layers = {ratio:.1f}x   (target: at most 20x)")
    print("batch scaling (16 layers, width 32):")
    small, large = compile_seconds(16, 8), compile_seconds(16, 8192)
    print(f"  batch 8: {small * 1e3:.1f} ms   batch 8192: {large * 1e3:.1f} ms   ratio {large / small:.2f}")
    return ratio, large / small


if __name__ == "__main__":
    main()
