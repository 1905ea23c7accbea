"""np.arcsinh (and math.asinh): the worked example of adding a scalar function.

It is one row in primitives/scalar.py's table and one implementation in vecmath; these tests check
what that row reaches: the gradient on both backends, the printed code, explain, and the
accuracy of the LLVM implementation.
"""
import ctypes
import functools
import math

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match
from symbackprop.backends.llvm import jit, vecmath


def layer(x, w):
    return np.sum(np.arcsinh(x * w) * w + np.asinh(3.0 * x))


def arcsinh_sum(x):
    return np.sum(np.arcsinh(x))


def scalar_model(x: float):
    return math.asinh(x) * math.asinh(2.0 * x)


def _args():
    rng = np.random.default_rng(0)
    # both signs, small and large: asinh is odd and grows like log 2|x|
    return [rng.normal(size=(4, 3)) * np.array([0.01, 1.0, 50.0]), rng.normal(size=(4, 3))]


def test_gradient_matches_finite_differences(backend):
    args = _args()
    value, grads = sb.value_and_grad(layer, wrt=(0, 1), backend=backend)(*args)
    np.testing.assert_allclose(value, layer(*args), rtol=1e-13)
    assert_gradients_match(layer, grads, args, (0, 1))


def test_gradient_of_math_asinh_on_python_floats(backend):
    for x in (0.3, -2.5, 1e-3):
        value, grad = sb.value_and_grad(scalar_model, backend=backend)(x)
        assert value == pytest.approx(scalar_model(x), rel=1e-14)
        assert_gradients_match(scalar_model, [grad], [x], (0,))


def test_the_derivative_is_one_over_sqrt_of_one_plus_x_squared(backend):
    x = np.array([-1e6, -1.0, 0.0, 0.5, 3e200])
    with np.errstate(over="ignore"):
        want = 1 / np.sqrt(1 + x * x)
    np.testing.assert_allclose(sb.grad(arcsinh_sum, backend=backend)(x), want, rtol=1e-15)


def test_numpy_code_calls_np_arcsinh_and_math_code_math_asinh():
    g = sb.value_and_grad(layer, wrt=(0, 1))
    g(*_args())
    assert "np.arcsinh(" in g.source
    assert "np.asinh" not in g.source
    h = sb.value_and_grad(scalar_model)
    h(0.3)
    assert "math.asinh(" in h.source        # the Python-float path
    assert "np.arcsinh(" in h.source        # and its NumPy fallback


def test_explain_names_it_arcsinh():
    g = sb.value_and_grad(arcsinh_sum)
    text = g.explain(np.array([0.5, -1.0]))
    assert "arcsinh(x)" in text
    assert "1/sqrt(1 + x**2)" in text


# ---- the LLVM implementation (vecmath.arcsinh) --------------------------------

@functools.cache
def _kernel(dtype, lanes):
    module = jit.compile_module(vecmath.elementwise_kernel("arcsinh", dtype, lanes=lanes))
    signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return module, signature(module.address("kernel"))


def _run(x, lanes=None):
    _, compiled = _kernel(x.dtype.name, lanes)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    compiled(x.ctypes.data, out.ctypes.data, x.size)
    return out


def _ulps(ours, truth, dtype):
    """|ours - truth| in ulps of the rounded truth; NaNs, infinities and signed zeros must match exactly."""
    rounded = truth.astype(dtype)
    with np.errstate(all="ignore"):
        error = (np.abs(ours.astype(truth.dtype) - truth) / np.spacing(np.abs(rounded)).astype(truth.dtype))
    error = error.astype(np.float64)
    same = (ours == rounded) & (np.signbit(ours) == np.signbit(rounded))
    error[same | (np.isnan(ours) & np.isnan(rounded))] = 0
    error[(np.isnan(ours) != np.isnan(rounded)) | (np.isinf(rounded) & ~same)] = np.inf
    return error


def _steps_apart(a, b):
    """How many representable values lie between a and b (0 for two NaNs)."""
    bits = np.int64 if a.dtype == np.float64 else np.int32
    ordered = [np.where(v.view(bits) < 0, np.iinfo(bits).min - v.view(bits).astype(np.int64),
                        v.view(bits).astype(np.int64)) for v in (a, b)]
    distance = np.abs(ordered[0] - ordered[1]).astype(np.float64)
    distance[np.isnan(a) & np.isnan(b)] = 0
    distance[np.isnan(a) != np.isnan(b)] = np.inf
    return distance


EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, 2.0 ** -28, 2.0 ** -28 * 1.0000001,
         1e-8, 0.5, 1.0, -1.0, 0.881373587019543, 2.0 ** 28, 2.0 ** 28 * (1 - 2.0 ** -53), 1e8, 1.3e154,
         1.4e154, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308]


def _sample(dtype):
    rng = np.random.default_rng(17)
    n = 60_000
    wide = np.exp(rng.uniform(np.log(1e-320), np.log(1.7e308), n))     # every binade
    middle = np.exp(rng.uniform(np.log(1e-9), np.log(1e9), n))         # where both formulas work
    x = np.concatenate([wide, middle, rng.uniform(0.0, 3.0, n)]) * rng.choice([-1.0, 1.0], 3 * n)
    with np.errstate(over="ignore"):
        return np.concatenate([EDGES, x]).astype(dtype)


@pytest.mark.parametrize("dtype, max_ulp", [(np.float64, 1.0), (np.float32, 0.55)])
def test_llvm_arcsinh_against_true_values(dtype, max_ulp):
    x = _sample(dtype)
    wide = np.longdouble if dtype == np.float64 else np.float64
    error = _ulps(_run(x), np.arcsinh(x.astype(wide)), dtype)
    worst = int(np.argmax(error))
    assert error[worst] <= max_ulp, f"{error[worst]:.3f} ulp at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_llvm_arcsinh_within_two_ulp_of_numpy(dtype):
    x = _sample(dtype)
    apart = _steps_apart(_run(x), np.arcsinh(x))
    worst = int(np.argmax(apart))
    assert apart[worst] <= 2, f"{apart[worst]} ulp from np.arcsinh at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_llvm_arcsinh_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30], dtype)
    ours = _run(x)
    theirs = np.arcsinh(x)
    assert np.array_equal(ours, theirs, equal_nan=True), (ours, theirs)
    numbers = ~np.isnan(theirs)
    assert np.array_equal(np.signbit(ours[numbers]), np.signbit(theirs[numbers]))


def test_llvm_arcsinh_vectorised_equals_scalar():
    x = _sample(np.float64)[:4096]
    np.testing.assert_array_equal(_run(x, lanes=4), _run(x))
