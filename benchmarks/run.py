"""Run every benchmark: `python -m benchmarks [--quick] [--workloads W1,W4] [--rounds N]`.

Checks the hand-written experts (benchmarks/check.py), then times hand-written, the installed
peers and symbackprop (when it imports) on each workload, and writes benchmarks/results/.
"""

# Threads are limited before anything imports NumPy, JAX or PyTorch: they read this once, at load.
import os
import sys

from benchmarks import THREAD_ENV

if any(name in sys.modules for name in ("numpy", "jax", "torch")):
    print("warning: numpy/jax/torch was imported before benchmarks.run; thread settings may "
          "not apply", file=sys.stderr)
os.environ.update(THREAD_ENV)

# XLA_FLAGS alone still let jaxlib 0.10 use 1.75 cores on W4 (it overlaps independent ops), so
# the process is also pinned to one core. Only threads started later inherit the pin, so this
# too must come first, and `--no-pin` is read from the command line here.
PINNED_CORE = None
if hasattr(os, "sched_setaffinity") and "--no-pin" not in sys.argv:
    PINNED_CORE = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {PINNED_CORE})

import argparse  # noqa: E402  (after the thread settings, on purpose)
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import check, harness, peers  # noqa: E402
from benchmarks.workloads import WORKLOADS, get  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def keep_freed_memory():
    """Ask glibc's malloc never to hand freed memory back to the OS; False if it cannot."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 1 << 30)
                and libc.mallopt(m_mmap_threshold, 32 << 20))     # 32 MiB: glibc's maximum


def implementations(workload, names=None):
    """Hand-written (always: the ratios' denominator), the peers, then symbackprop.

    `names`, a set, keeps only those listed; "symbackprop" stands for both of its backends.
    """
    def wanted(name):
        return names is None or name in names or name.split("-")[0] in names

    impls = [harness.hand_written_impl(workload)]
    if names is None or names & {"jax", "torch", "autograd"}:
        impls += [impl for impl in peers.peer_impls(workload) if wanted(impl.name)]
    if names is None or any(name.startswith("symbackprop") for name in names):
        impls += [impl for impl in harness.symbackprop_impls(workload) if wanted(impl.name)]
    return impls


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS),
                        help="comma-separated names, e.g. W1,W4 (default: all)")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved timing rounds")
    parser.add_argument("--batch-ms", type=float, default=20.0,
                        help="target length of one timed batch of calls, in ms")
    parser.add_argument("--impls", default=None,
                        help="comma-separated implementations to time besides hand-written: "
                        "jax, torch, autograd, symbackprop (both backends), symbackprop-numpy, "
                        "symbackprop-llvm (default: all)")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 5 ms batches")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the process to one core (thread variables still apply)")
    parser.add_argument("--keep-memory", action="store_true",
                        help="glibc malloc keeps freed memory: NumPy temporaries then stop "
                        "page-faulting, which otherwise costs up to ~100 µs per 256 KiB array "
                        "on these VMs and varies with allocation history (default: off, as a "
                        "user's process runs)")
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.batch_ms = 5, 5.0
    keep_memory = options.keep_memory and keep_freed_memory()
    if options.keep_memory and not keep_memory:
        print("--keep-memory: this libc has no mallopt; memory is handled as usual")

    if check.main() != 0:
        print("hand-written gradients fail their check: not timing", file=sys.stderr)
        return 1
    names = set(options.impls.split(",")) if options.impls else None
    started = time.perf_counter()
    settings = {"rounds": options.rounds, "target_seconds": options.batch_ms / 1e3,
                "pinned_core": PINNED_CORE, "keep_memory": keep_memory}
    results = []
    for workload in (get(name) for name in options.workloads.split(",")):
        measurements = harness.measure_workload(workload, implementations(workload, names),
                                                options.rounds, settings["target_seconds"])
        results.append((workload, measurements))
    for path in harness.write_report(results, options.out, settings):
        print(f"wrote {path}")
    print(f"timed in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
