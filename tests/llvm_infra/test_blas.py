"""NumPy's OpenBLAS from JIT code, and the library-free blocked matmul kernel."""
import ctypes
import functools

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

from symbackprop.backends.llvm import blas, jit

SHAPES = [(1, 1, 1), (2, 3, 1), (3, 5, 7), (6, 8, 8), (7, 1, 33), (13, 17, 19), (1, 64, 1), (64, 64, 64)]
TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}
THREE_POINTERS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


@functools.cache
def product(m, k, n, dtype, trans_a, trans_b, accumulate, use_blas):
    module = ir.Module()
    if use_blas:
        function = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 3), "product")
        builder = ir.IRBuilder(function.append_basic_block())
        blas.emit_cblas_gemm(builder, *function.args, m, k, n, dtype, trans_a, trans_b, accumulate)
        builder.ret_void()
    else:
        blas.emit_matmul(module, "product", m, k, n, dtype, trans_a, trans_b, accumulate, linkage="external")
    compiled = jit.compile_module(str(module), blas.cblas_symbols())
    return compiled, THREE_POINTERS(compiled.address("product"))


def check(m, k, n, dtype, trans_a, trans_b, accumulate, use_blas):
    rng = np.random.default_rng(m * 10000 + k * 100 + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + (c if accumulate else 0)
    _, compiled = product(m, k, n, dtype, trans_a, trans_b, accumulate, use_blas)
    compiled(a.ctypes.data, b.ctypes.data, c.ctypes.data)
    scale = np.sqrt(k) * TOLERANCE[dtype]
    np.testing.assert_allclose(c, expected, rtol=TOLERANCE[dtype], atol=scale)


needs_blas = pytest.mark.skipif(blas.find_cblas() is None, reason="this NumPy build has no findable cblas")


@needs_blas
def test_numpy_openblas_is_found_and_verified():
    found = blas.find_cblas()
    assert found.dgemm and found.sgemm and found.int_bits in (32, 64)
    assert set(blas.cblas_symbols()) == {blas.DGEMM_SYMBOL, blas.SGEMM_SYMBOL}


def test_declarations_parse():
    module = llvm.parse_assembly(blas.cblas_declarations())
    assert {f.name for f in module.functions} == {blas.DGEMM_SYMBOL, blas.SGEMM_SYMBOL}


@needs_blas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_blas_call_matches_numpy(dtype, trans_a, trans_b, accumulate):
    for m, k, n in [(3, 5, 7), (64, 64, 64)]:
        check(m, k, n, dtype, trans_a, trans_b, accumulate, use_blas=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_blocked_kernel_matches_numpy(dtype, trans_a, trans_b, accumulate):
    for m, k, n in SHAPES:
        check(m, k, n, dtype, trans_a, trans_b, accumulate, use_blas=False)


def test_blocked_kernel_exports_without_blas():
    module = ir.Module()
    blas.emit_matmul(module, "product", 5, 6, 7, linkage="external")
    assert "cblas" not in str(module)
    assert jit.emit_object(str(module))[:4] == b"\x7fELF"


def test_blas_worthwhile_only_for_large_products():
    assert not blas.blas_worthwhile(4, 4, 4)
    assert blas.blas_worthwhile(256, 256, 256) == (blas.find_cblas() is not None)
