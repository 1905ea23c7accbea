"""Timings of the LLVM backend's infrastructure against NumPy: vector math, matmul, call overhead.

Run: python benchmarks/llvm_infra.py [function ...]. Best of several runs; the ratio is NumPy / ours.
"""
import ctypes
import sys
import timeit

import numpy as np
from llvmlite import ir

from symbackprop.backends.llvm import blas, call, jit, vecmath
from symbackprop.backends.llvm.call import Array, Scalar

N = 1_000_000
NUMPY = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
         "sinh": np.sinh, "cosh": np.cosh, "sin": np.sin, "cos": np.cos, "tan": np.tan, "arctan": np.arctan,
         "arcsin": np.arcsin, "arccos": np.arccos, "sqrt": np.sqrt}


def best(function, number=1, repeat=7):
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def numpy_sigmoid(x, out):
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)


def vector_math(functions):
    print(f"vector math on {N:.0e} elements (ms)")
    print(f"  {'function':16s} {'dtype':8s} {'ours':>7s} {'numpy':>7s} {'ratio':>6s}")
    rng = np.random.default_rng(0)
    for function in functions:
        for dtype in ("float64", "float32"):
            unit = function in ("arcsin", "arccos", "log", "log1p", "sqrt", "pow")
            x = (rng.uniform(0.01, 0.99, N) if unit else rng.uniform(-5, 5, N)).astype(dtype)
            y = rng.uniform(0.5, 2.0, N).astype(dtype)
            out = np.empty_like(x)
            ours = _kernel_time(function, dtype, x, y, out)
            if function == "pow":
                theirs = best(lambda: np.power(x, y, out=out))
            elif function == "sigmoid":
                theirs = best(lambda: numpy_sigmoid(x, out))
            else:
                theirs = best(lambda: NUMPY[function](x, out=out))
            print(f"  {function:16s} {dtype:8s} {ours * 1e3:7.2f} {theirs * 1e3:7.2f} {theirs / ours:5.2f}x")
        if function in ("sin", "cos", "tan"):
            x = rng.uniform(-5, 5, N)
            ours = _kernel_time(function, "float64", x, None, np.empty_like(x), wide_range=False)
            print(f"  {function + ' |x|<2^28':16s} {'float64':8s} {ours * 1e3:7.2f}")


def _kernel_time(function, dtype, x, y, out, **options):
    module = jit.compile_module(vecmath.elementwise_kernel(function, dtype, **options))
    inputs = [x, y] if function == "pow" else [x]
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(inputs) + 1), ctypes.c_int64)
    kernel = signature(module.address("kernel"))
    pointers = [a.ctypes.data for a in inputs] + [out.ctypes.data]
    return best(lambda: kernel(*pointers, N))


def matmul():
    print("matmul C = A @ B, float64, through the fastcall caller (us)")
    print(f"  {'n':>4s} {'numpy':>8s} {'blas':>8s} {'inline':>8s}")
    rng = np.random.default_rng(1)
    for n in (4, 8, 16, 32, 64, 128, 256):
        a, b, c = rng.standard_normal((3, n, n))
        c = np.ascontiguousarray(c)
        params = [Array("float64", (n, n)), Array("float64", (n, n)), Array("float64", (n, n), writable=True)]
        times = {"numpy": best(lambda: np.matmul(a, b, out=c), number=20)}
        for kind in ("blas", "inline"):
            if kind == "blas" and blas.find_cblas() is None:
                times[kind] = float("nan")
                continue
            product = call.make_caller(jit.compile_module(_product_ir(n, kind), blas.cblas_symbols()),
                                       "product", params)
            times[kind] = best(lambda: product(a, b, c), number=20)
        print(f"  {n:4d} " + " ".join(f"{times[k] * 1e6:8.1f}" for k in ("numpy", "blas", "inline")))


def _product_ir(n, kind):
    module = ir.Module()
    if kind == "inline":
        blas.emit_matmul(module, "product", n, n, n, linkage="external")
    else:
        function = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.PointerType()] * 3), "product")
        builder = ir.IRBuilder(function.append_basic_block())
        blas.emit_cblas_gemm(builder, *function.args, n, n, n)
        builder.ret_void()
    return str(module)


def call_overhead():
    print("call overhead of an empty kernel (us per call)")
    module = jit.compile_module("""
define double @four(double %a, double %b, double %c, double %d) {
  ret double %a
}
define double @arrays(ptr %x, ptr %y, double %a, double %b) {
  ret double %a
}
""")
    x, y = np.zeros(4), np.zeros((3, 3))
    four = [Scalar()] * 4
    arrays = [Array("float64", (4,)), Array("float64", (3, 3), writable=True), Scalar(), Scalar()]
    raw = ctypes.CFUNCTYPE(ctypes.c_double, *[ctypes.c_double] * 4)(module.address("four"))
    raw_arrays = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double,
                                  ctypes.c_double)(module.address("arrays"))

    def python(a, b, c, d):
        return a

    rows = [
        ("plain Python function, 4 floats", lambda: python(1.0, 2.0, 3.0, 4.0)),
        ("fastcall, 4 floats", _caller(module, "four", four, "fastcall", 1.0, 2.0, 3.0, 4.0)),
        ("fastcall, 2 arrays + 2 floats", _caller(module, "arrays", arrays, "fastcall", x, y, 1.0, 2.0)),
        ("ctypes route, 4 floats", _caller(module, "four", four, "ctypes", 1.0, 2.0, 3.0, 4.0)),
        ("ctypes route, 2 arrays + 2 floats", _caller(module, "arrays", arrays, "ctypes", x, y, 1.0, 2.0)),
        ("raw ctypes, 4 floats", lambda: raw(1.0, 2.0, 3.0, 4.0)),
        ("raw ctypes, x.ctypes.data per array", lambda: raw_arrays(x.ctypes.data, y.ctypes.data, 1.0, 2.0)),
    ]
    for label, thunk in rows:
        print(f"  {label:38s} {best(thunk, number=100_000) * 1e6:7.3f}")


def _caller(module, name, params, route, *arguments):
    function = call.make_caller(module, name, params, "float64", route=route)
    return lambda: function(*arguments)


if __name__ == "__main__":
    print(f"host {jit.host_cpu_name()}, BLAS: {blas.find_cblas() and blas.find_cblas().library}, "
          f"fastcall layout: {call.LAYOUT is not None}\n")
    vector_math(sys.argv[1:] or list(vecmath.UNARY) + ["pow"])
    print()
    matmul()
    print()
    call_overhead()
