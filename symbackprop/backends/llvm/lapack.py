"""numpy.linalg for JIT code: LAPACKE from NumPy's bundled OpenBLAS, found as blas.py finds its cblas.

JIT code calls the routines through fixed names (`symbackprop_lapacke_dgesv`, ...) bound to the library's
addresses by `lapack_symbols()`. Exported `.ll`/`.so` code needs only libc and libm, so it has no LAPACK:
lowering a decomposition there is a CompileError (lower.py).
"""
import ctypes
import functools
import glob
import os
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from .blas import find_cblas

ROUTINES = ("gesv", "getrf", "potrf", "syevd")
_ROW_MAJOR = 101
_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_PTR = ir.PointerType()
_SCALAR = {"float64": ("d", ir.DoubleType()), "float32": ("s", ir.FloatType())}


@dataclass(frozen=True)
class Lapacke:
    addresses: dict     # "dgesv" -> address, for each routine in double and single precision
    int_bits: int


def symbol(routine):
    return f"symbackprop_lapacke_{routine}"


@functools.cache
def find_lapacke() -> Lapacke | None:
    """LAPACKE's gesv/getrf/potrf/syevd (row-major C interface) in NumPy's BLAS library, checked on a 2x2 solve."""
    cblas = find_cblas()
    numpy_dir = os.path.dirname(np.__file__)
    candidates = ([cblas.library] if cblas is not None and cblas.library != "process" else []) + [
        path for folder in ("../numpy.libs", ".libs", ".dylibs")
        for path in sorted(glob.glob(os.path.join(numpy_dir, folder, "*blas*")))]
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, bits in (("scipy_LAPACKE_", "64_", 64), ("LAPACKE_", "64_", 64),
                                     ("scipy_LAPACKE_", "", 32), ("LAPACKE_", "", 32)):
            names = {p + r: prefix + p + r + suffix for p in "ds" for r in ROUTINES}
            if all(hasattr(library, n) for n in names.values()):
                found = Lapacke({k: ctypes.cast(getattr(library, n), ctypes.c_void_p).value
                                 for k, n in names.items()}, bits)
                if _works(found):
                    return found
    return None


def lapack_symbols() -> dict:
    found = find_lapacke()
    return {} if found is None else {symbol(k): a for k, a in found.addresses.items()}


def _works(found):
    integer = ctypes.c_int64 if found.int_bits == 64 else ctypes.c_int32
    gesv = ctypes.CFUNCTYPE(integer, ctypes.c_int, integer, integer, ctypes.c_void_p, integer, ctypes.c_void_p,
                            ctypes.c_void_p, integer)(found.addresses["dgesv"])
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    b = np.array([1.0, 2.0])
    ipiv = np.zeros(2, dtype=np.int64 if found.int_bits == 64 else np.int32)
    info = gesv(_ROW_MAJOR, 2, 1, a.ctypes.data, 2, ipiv.ctypes.data, b.ctypes.data, 1)
    return info == 0 and np.allclose(b, np.linalg.solve([[2.0, 1.0], [1.0, 3.0]], [1.0, 2.0]))


def integer_type():
    found = find_lapacke()
    return _I64 if found is None or found.int_bits == 64 else _I32


def _declare(module, routine, dtype):
    prefix, scalar = _SCALAR[dtype]
    name = symbol(prefix + routine)
    if name in module.globals:
        return module.globals[name]
    n = integer_type()
    arguments = {"gesv": [_I32, n, n, _PTR, n, _PTR, _PTR, n],
                 "getrf": [_I32, n, n, _PTR, n, _PTR],
                 "potrf": [_I32, _I8, n, _PTR, n],
                 "syevd": [_I32, _I8, _I8, n, _PTR, n, _PTR]}[routine]
    return ir.Function(module, ir.FunctionType(n, arguments), name)


def call(builder, routine, dtype, *arguments):
    """info = LAPACKE_<d|s><routine>(LAPACK_ROW_MAJOR, arguments...): ints given as Python ints."""
    function = _declare(builder.module, routine, dtype)
    types = function.function_type.args
    values = [ir.Constant(_I32, _ROW_MAJOR)]
    for t, a in zip(types[1:], arguments):
        values.append(ir.Constant(t, a) if isinstance(a, int) else a)
    return builder.call(function, values)
