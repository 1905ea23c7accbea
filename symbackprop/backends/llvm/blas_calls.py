"""Matrix products in generated code: a call into NumPy's own OpenBLAS, or loops.

JIT code calls the cblas gemm that NumPy's wheel bundles (found at run time);
tiny products, builds without that library and exported libraries (which must
need only libc and libm) use loops the vectoriser widens.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os

import numpy as np
from llvmlite import ir

from .loops import I64, Operand, load, loop_nest, store

I32 = ir.IntType(32)
PTR = ir.PointerType()
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
#: below this many multiply-adds a loop beats the call into BLAS
BLAS_MIN_WORK = 4096


@functools.lru_cache(maxsize=1)
def numpy_blas():
    """{"float64": (symbol, address), "float32": ...} for NumPy's bundled OpenBLAS, or {}."""
    here = os.path.dirname(np.__file__)
    found = {}
    for path in sorted(glob.glob(os.path.join(here, "..", "numpy.libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for dtype, names in (("float64", ("scipy_cblas_dgemm64_", "cblas_dgemm64_", "cblas_dgemm")),
                             ("float32", ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "cblas_sgemm"))):
            for name in names:
                fn = getattr(lib, name, None)
                if fn is not None:
                    # ILP64 interfaces carry the 64 suffix; anything else takes 32-bit ints
                    found[dtype] = (name, ctypes.cast(fn, ctypes.c_void_p).value, "64" in name)
                    break
        if found:
            break
    return found


def gemm(L, dtype, m, n, k, a, trans_a, b, trans_b, c):
    """C (m x n) = op(A) @ op(B), all row-major and contiguous."""
    dtype = np.dtype(dtype).name
    ty = ir.DoubleType() if dtype == "float64" else ir.FloatType()
    blas = (L.blas or {}).get(dtype)
    if blas is not None and m * n * k >= BLAS_MIN_WORK:
        name, _, ilp64 = blas
        it = I64 if ilp64 else I32
        fn = L.module.globals.get(name) or ir.Function(
            L.module, ir.FunctionType(ir.VoidType(), [I32, I32, I32, it, it, it, ty, PTR, it, PTR, it, ty, PTR, it]),
            name)
        lda = m if trans_a else k
        ldb = k if trans_b else n
        args = [ir.Constant(I32, ROW_MAJOR), ir.Constant(I32, TRANS if trans_a else NO_TRANS),
                ir.Constant(I32, TRANS if trans_b else NO_TRANS), ir.Constant(it, m), ir.Constant(it, n),
                ir.Constant(it, k), ir.Constant(ty, 1.0), a, ir.Constant(it, lda), b, ir.Constant(it, ldb),
                ir.Constant(ty, 0.0), c, ir.Constant(it, n)]
        L.b.call(fn, args)
        return
    _loop_gemm(L, ty, m, n, k, a, trans_a, b, trans_b, c)


def _loop_gemm(L, ty, m, n, k, a, trans_a, b, trans_b, c):
    """C = 0; for i, p: C[i, :] += A[i, p] * B[p, :]  (the inner loop runs along rows of B and C)."""
    C = Operand(c, ty, (n, 1))
    zero = ir.Constant(ty, 0.0)
    loop_nest(L.b, (m, n), [C], lambda bld, o: store(bld, zero, C, o[0]))
    A = Operand(a, ty, (1, 0, m) if trans_a else (k, 0, 1))     # dims (i, j, p)
    B = Operand(b, ty, (0, k, 1) if trans_b else (0, 1, n))
    Cd = Operand(c, ty, (n, 1, 0))
    # loop order (i, p, j): put p before j by permuting the strides
    order = (0, 2, 1)
    shape = tuple((m, n, k)[d] for d in order)
    ops = [Operand(op.pointer, op.etype, tuple(op.strides[d] for d in order)) for op in (A, B, Cd)]

    def body(bld, o):
        prod = bld.fmul(load(bld, ops[0], o[0]), load(bld, ops[1], o[1]))
        store(bld, bld.fadd(load(bld, ops[2], o[2]), prod), ops[2], o[2])

    loop_nest(L.b, shape, ops, body)
