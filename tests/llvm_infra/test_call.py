"""Calling JIT kernels from Python: the fastcall builtin and the ctypes fallback give the same answers."""
import gc
import sys

import numpy as np
import pytest

from symbackprop.backends.llvm import call, jit
from symbackprop.backends.llvm.call import Array, Scalar

# double affine(double* x, double* out, double a, double b): out = a*x + b, returns sum(out); x has 4 elements
AFFINE = """
define double @affine(ptr %x, ptr %out, double %a, double %b) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %sum = phi double [0.0, %entry], [%total, %loop]
  %p = getelementptr double, ptr %x, i64 %i
  %v = load double, ptr %p
  %w = call double @llvm.fma.f64(double %v, double %a, double %b)
  %q = getelementptr double, ptr %out, i64 %i
  store double %w, ptr %q
  %total = fadd double %sum, %w
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, 4
  br i1 %more, label %loop, label %done
done:
  ret double %total
}
define void @nothing() {
  ret void
}
define double @mixed(ptr %m, float %s, i64 %k) {
  %first = load float, ptr %m
  %last.p = getelementptr float, ptr %m, i64 5
  %last = load float, ptr %last.p
  %sum = fadd float %first, %last
  %scaled = fmul float %sum, %s
  %wide = fpext float %scaled to double
  %kd = sitofp i64 %k to double
  %r = fadd double %wide, %kd
  ret double %r
}
declare double @llvm.fma.f64(double, double, double)
"""
AFFINE_PARAMS = [Array("float64", (4,)), Array("float64", (4,), writable=True), Scalar(), Scalar()]
ROUTES = ["fastcall", "ctypes"]


@pytest.fixture(scope="module")
def module():
    return jit.compile_module(AFFINE)


def test_struct_layout_probe_succeeds_here():
    assert call.LAYOUT is not None


@pytest.mark.parametrize("route", ROUTES)
def test_right_numbers(module, route):
    affine = call.make_caller(module, "affine", AFFINE_PARAMS, "float64", route=route)
    x, out = np.arange(4.0), np.zeros(4)
    assert affine(x, out, 2.0, 1.0) == 16.0
    np.testing.assert_array_equal(out, [1.0, 3.0, 5.0, 7.0])
    assert affine(x, out, 3, np.float64(-1.0)) == 14.0          # ints and NumPy scalars are numbers too


@pytest.mark.parametrize("route", ROUTES)
def test_float32_int64_and_two_dimensional(module, route):
    mixed = call.make_caller(module, "mixed", [Array("float32", (2, 3)), Scalar("float32"), Scalar("int64")],
                             "float64", route=route)
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert mixed(m, 0.5, 10) == 12.5


@pytest.mark.parametrize("route", ROUTES)
def test_void_returns_none(module, route):
    assert call.make_caller(module, "nothing", [], None, route=route)() is None


@pytest.mark.parametrize("route", ROUTES)
def test_inputs_are_converted_when_safe(module, route):
    affine = call.make_caller(module, "affine", AFFINE_PARAMS, "float64", route=route)
    out = np.zeros(4)
    assert affine([0, 1, 2, 3], out, 2.0, 1.0) == 16.0                       # list of ints
    assert affine(np.arange(8.0)[::2], out, 1.0, 0.0) == 12.0                # non-contiguous view
    assert affine(np.arange(4, dtype=np.float32), out, 1.0, 0.0) == 6.0      # float32 widens safely
    assert affine(np.arange(4.0).view(Subclass), out, 1.0, 0.0) == 6.0       # subclasses take the fallback


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("arguments, message", [
    (lambda x, out: (x, out, 1.0), "takes 4 arguments"),
    (lambda x, out: (x, out, "a", 1.0), "argument 3 must be a number"),
    (lambda x, out: (x[:3], out, 1.0, 1.0), r"argument 1 must be .* shape \(4,\)"),
    (lambda x, out: (x.astype(np.complex128), out, 1.0, 1.0), "argument 1 must be"),
    (lambda x, out: (x, out.astype(np.float32), 1.0, 1.0), "argument 2 is written to"),
    (lambda x, out: (x, np.zeros(8)[::2], 1.0, 1.0), "non-contiguous"),
    (lambda x, out: (x, read_only(out), 1.0, 1.0), "read-only"),
])
def test_wrong_arguments_raise_clear_errors(module, route, arguments, message):
    affine = call.make_caller(module, "affine", AFFINE_PARAMS, "float64", route=route)
    with pytest.raises(TypeError, match=message):
        affine(*arguments(np.arange(4.0), np.zeros(4)))


class Subclass(np.ndarray):
    pass


def read_only(array):
    array.flags.writeable = False
    return array


def test_fastcall_does_not_leak_references(module):
    affine = call.make_caller(module, "affine", AFFINE_PARAMS, "float64", route="fastcall")
    nothing = call.make_caller(module, "nothing", [], None, route="fastcall")
    x, out = np.arange(4.0), np.zeros(4)
    before = sys.getrefcount(None), sys.getrefcount(x), sys.getrefcount(out)
    for _ in range(1000):
        nothing()
        affine(x, out, 1.0, 2.0)
    assert (sys.getrefcount(None), sys.getrefcount(x), sys.getrefcount(out)) == before


def test_caller_keeps_the_code_alive():
    affine = call.make_caller(jit.compile_module(AFFINE), "affine", AFFINE_PARAMS, "float64", route="fastcall")
    gc.collect()
    assert affine(np.ones(4), np.zeros(4), 1.0, 0.0) == 4.0


def test_unsupported_signatures_are_rejected(module):
    with pytest.raises(ValueError, match="dtype"):
        call.make_caller(module, "affine", [Array("complex128", (4,))])
    with pytest.raises(ValueError, match="return"):
        call.make_caller(module, "nothing", [], "int8")
