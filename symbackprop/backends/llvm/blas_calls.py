"""Matrix products in generated code: NumPy's own OpenBLAS from JIT code, register-blocked loops otherwise.

JIT code calls the cblas gemm that NumPy's wheel bundles (blas.py finds and checks
it); small products, builds without that library and exported libraries (which must
need only libc and libm) use blas.emit_matmul's blocked kernels, one per shape.
"""
from __future__ import annotations

import numpy as np

from . import blas


def gemm(L, dtype, m, n, k, a, trans_a, b, trans_b, c):
    """C (m x n) = op(A) @ op(B), all row-major and contiguous."""
    dtype = np.dtype(dtype).name
    if L.blas and blas.blas_worthwhile(m, k, n):
        blas.emit_cblas_gemm(L.b, a, b, c, m, k, n, dtype, trans_a, trans_b)
        return
    name = f"matmul_{dtype}_{m}x{k}x{n}{'_ta' if trans_a else ''}{'_tb' if trans_b else ''}"
    fn = L.module.globals.get(name)
    if fn is None:
        fn = blas.emit_matmul(L.module, name, m, k, n, dtype, trans_a, trans_b)
        fn.attributes.add("noinline")  # one copy per shape, however many layers call it
    L.b.call(fn, [a, b, c])
