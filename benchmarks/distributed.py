"""Data-parallel gradient on Dask: an MLP 784-256-10 over 256k rows, one process vs a LocalCluster.

The one-process gradient runs in a subprocess with one BLAS thread (and, for reference, with the default
threads); the cluster has 2 worker processes of 1 thread each (Dask's nanny sets their BLAS threads to 1),
the data generated on the workers as a Dask array in 2 row chunks (float32). Reports the median step time
of each, the speedup, the per-step overhead (a step over 2 rows per shard: the fixed cost of shipping the
parameters, scheduling and the reduction) and the bytes moved per step.

Run: python -m benchmarks.distributed [--rows 256000] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# run as a script, this file's folder would come first on sys.path and hide Dask's `distributed` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
import symbackprop as sb  # noqa: E402

WRT = ("W1", "b1", "W2", "b2")


def mlp(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    z = z - np.max(z, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def params():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((784, 256)) / 28).astype(np.float32), np.zeros(256, np.float32),
            (rng.standard_normal((256, 10)) / 16).astype(np.float32), np.zeros(10, np.float32)]


def data(rows, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]
    return x, y


def median_time(fn, repeats):
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_process(rows, repeats):
    """This process alone: print one JSON line."""
    f = sb.value_and_grad(mlp, wrt=WRT)
    p, (x, y) = params(), data(rows)
    print(json.dumps({"seconds": median_time(lambda: f(*p, x, y), repeats)}))


def measured_one_process(rows, repeats, threads):
    env = dict(os.environ)
    if threads is not None:
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-m", "benchmarks.distributed", "--one", "--rows", str(rows),
                          "--repeats", str(repeats)], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def cluster(rows, repeats):
    import dask.array as da
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as lc, Client(lc) as client:
        rng = da.random.default_rng(1)
        chunks = (rows // 2, rows - rows // 2)
        x = rng.standard_normal((rows, 784), dtype=np.float32, chunks=(chunks, 784))
        labels = rng.integers(0, 10, rows, chunks=(chunks,))
        y = (labels[:, None] == da.arange(10)[None, :]).astype(np.float32)
        p = params()
        f = sb.distributed.value_and_grad(mlp, wrt=WRT, client=client)
        start = time.perf_counter()
        f(*p, x, y)
        setup = time.perf_counter() - start
        step = median_time(lambda: f(*p, x, y), repeats)
        moved = dict(f.bytes_per_step)
        tiny = sb.distributed.value_and_grad(mlp, wrt=WRT, client=client)
        xs, ys = data(4)
        overhead = median_time(lambda: tiny(*p, xs, ys), max(repeats, 5))
        return step, setup, overhead, moved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return one_process(a.rows, a.repeats)
    single = measured_one_process(a.rows, a.repeats, 1)
    threaded = measured_one_process(a.rows, a.repeats, None)
    step, setup, overhead, moved = cluster(a.rows, a.repeats)
    param_bytes = sum(q.nbytes for q in params())
    print(f"MLP 784-256-10 gradient over {a.rows} rows, float32, median of {a.repeats} (shared 2-core machine)")
    print(f"  1 process, 1 BLAS thread        {single * 1e3:9.1f} ms")
    print(f"  1 process, default BLAS threads {threaded * 1e3:9.1f} ms")
    print(f"  LocalCluster, 2 workers x 1     {step * 1e3:9.1f} ms   speedup {single / step:.2f}x over 1 thread, "
          f"{threaded / step:.2f}x over default threads")
    print(f"  first distributed call (persist the data, compile, ship the modules) {setup:.2f} s")
    print(f"  per-step overhead (4 rows, 2 shards)  {overhead * 1e3:.1f} ms")
    print(f"  bytes per step: parameters {param_bytes} B, sent to 2 workers = {moved['parameters']} B; "
          f"gradients back <= {moved['gradients']} B (one shard result per shard, then the sum to the client)")


if __name__ == "__main__":
    main()
