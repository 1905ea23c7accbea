"""Benchmarks: six workloads (W7, a `while` on values, in control_flow.py), hand-written expert
baselines and peer implementations.

`python -m benchmarks` runs everything (see benchmarks/run.py). This module imports nothing
heavy on purpose: it is loaded before run.py, and BLAS/XLA read their thread settings once,
when NumPy, JAX or PyTorch is first imported.
"""

# One thread everywhere, so that every implementation is measured on the same footing.
# The XLA_FLAGS string is the one the JAX maintainers give for single-threaded CPU runs.
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
