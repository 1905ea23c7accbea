"""Accuracy of the inline vector math against high-precision references and against NumPy."""
import ctypes
import functools

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from symbackprop.backends.llvm import jit, vecmath

# Max error in ulps against the true value: float64 against long double (or mpmath), float32 against
# float64. float32 is evaluated in float64 and rounded once, hence nearly 0.5.
MAX_ULP = {"float64": 1.0, "float32": 0.55}
NUMPY_ULP = 2        # ours and NumPy's may differ by this much, or ours must be the closer one
POINTS = 60_000

REFERENCE = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sinh": np.sinh, "cosh": np.cosh, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "arctan": np.arctan, "arcsin": np.arcsin, "arccos": np.arccos, "sqrt": np.sqrt,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
}
# magnitude ranges sampled log-uniformly: (low, high, both signs)
RANGES = {
    "exp": [(1e-20, 760, True)], "expm1": [(1e-20, 760, True)], "tanh": [(1e-20, 40, True)],
    "sigmoid": [(1e-20, 800, True)], "sinh": [(1e-20, 712, True)], "cosh": [(1e-20, 712, True)],
    "log": [(1e-320, 1.7e308, False)], "log1p": [(1e-20, 1e300, False), (1e-20, 1, True)],
    "sqrt": [(1e-320, 1.7e308, False)], "arctan": [(1e-20, 1e300, True)],
    "arcsin": [(1e-20, 1, True)], "arccos": [(1e-20, 1, True)],
    "sin": [(1e-20, 1e4, True), (1e4, 1.7e308, True)], "cos": [(1e-20, 1e4, True), (1e4, 1.7e308, True)],
    "tan": [(1e-20, 1e4, True), (1e4, 1.7e308, True)],
}
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, -1e-310, 2.2250738585072014e-308,
           1.7976931348623157e308, -1.7976931348623157e308, 1.0, -1.0, 0.5, -0.5, 0.55, -0.55, 1e-8,
           0.34657359027997264, 0.6931471805599453, 709.782712893384, 709.79, 710.4758600739439, -708.4,
           -745.13, -745.14, 88.72, -87.3, -103.97, 0.4375, 0.6875, 1.1875, 2.4375, 0.999999, 1.0000001,
           3.141592653589793, 1.5707963267948966, 2.0 ** 28, 2.0 ** 28 - 1, 1e22, 6381956970095103 * 2.0 ** 797]


@functools.cache
def kernel(function, dtype, lanes=None, **options):
    module = jit.compile_module(vecmath.elementwise_kernel(function, dtype, lanes=lanes, **options))
    arity = 2 if function == "pow" and "exponent" not in options else 1
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (arity + 1), ctypes.c_int64)
    return module, signature(module.address("kernel"))


def run(function, *arrays, lanes=None, **options):
    _, compiled = kernel(function, arrays[0].dtype.name, lanes, **options)
    arrays = [np.ascontiguousarray(a) for a in arrays]
    out = np.empty_like(arrays[0])
    compiled(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
    return out


def ulp_error(ours, reference, dtype):
    """|ours - reference| in ulps of the true result; NaN, infinities and signed zeros must match exactly."""
    wide = np.longdouble if dtype == np.float64 else np.float64
    with np.errstate(all="ignore"):
        rounded = reference.astype(dtype)
        error = np.abs(ours.astype(wide) - reference.astype(wide)) / np.spacing(np.abs(rounded)).astype(wide)
    same = (ours == rounded) & (np.signbit(ours) == np.signbit(rounded))
    error[same | (np.isnan(ours) & np.isnan(rounded))] = 0
    error[(np.isnan(ours) != np.isnan(rounded)) | (np.isinf(rounded) & ~same)] = np.inf
    error[(rounded == 0) & (ours == 0) & (np.signbit(ours) != np.signbit(rounded))] = np.inf
    return error.astype(np.float64)


def ulp_distance(a, b):
    """Number of representable values between a and b (0 for two NaNs)."""
    bits = np.int64 if a.dtype == np.float64 else np.int32
    ordered = [np.where(v.view(bits) < 0, np.iinfo(bits).min - v.view(bits).astype(np.int64),
                        v.view(bits).astype(np.int64)) for v in (a, b)]
    distance = np.abs(ordered[0] - ordered[1]).astype(np.float64)
    distance[np.isnan(a) & np.isnan(b)] = 0
    distance[np.isnan(a) != np.isnan(b)] = np.inf
    return distance


def sample(function, dtype, rng):
    parts = [np.array(SPECIAL, dtype=np.float64)]
    for low, high, signed in RANGES[function]:
        magnitude = np.exp(rng.uniform(np.log(low), np.log(high), POINTS))
        parts.append(magnitude * (rng.choice([-1.0, 1.0], POINTS) if signed else 1.0))
    with np.errstate(over="ignore"):
        return np.concatenate(parts).astype(dtype)


def true_values(function, x):
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    with np.errstate(all="ignore"):
        return REFERENCE[function](x.astype(wide))


def report(error, x):
    worst = int(np.argmax(error))
    return f"max {error[worst]:.3f} ulp at x={x[worst]!r}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("function", sorted(REFERENCE))
def test_accuracy_against_true_values(function, dtype):
    x = sample(function, np.dtype(dtype).type, np.random.default_rng(7))
    error = ulp_error(run(function, x), true_values(function, x), np.dtype(dtype).type)
    assert error.max() <= MAX_ULP[dtype], report(error, x)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("function", sorted(set(REFERENCE) - {"sigmoid"}))
def test_within_two_ulp_of_numpy_or_closer(function, dtype):
    x = sample(function, np.dtype(dtype).type, np.random.default_rng(11))
    ours = run(function, x)
    with np.errstate(all="ignore"):
        theirs = REFERENCE[function](x)
    truth = true_values(function, x)
    dtype = np.dtype(dtype).type
    near = ulp_distance(ours, theirs) <= NUMPY_ULP
    closer = ulp_error(ours, truth, dtype) <= ulp_error(theirs, truth, dtype)
    assert np.all(near | closer), report(np.where(near | closer, 0, ulp_distance(ours, theirs)), x)


@pytest.mark.parametrize("function, x, expected", [
    ("exp", [np.inf, -np.inf, 709.79, -745.14, -0.0], [np.inf, 0.0, np.inf, 0.0, 1.0]),
    ("expm1", [np.inf, -np.inf, -0.0, -40.0], [np.inf, -1.0, -0.0, -1.0]),
    ("log", [0.0, -0.0, -1.0, np.inf, -np.inf, 1.0], [-np.inf, -np.inf, np.nan, np.inf, np.nan, 0.0]),
    ("log1p", [-1.0, -2.0, -0.0, np.inf], [-np.inf, np.nan, -0.0, np.inf]),
    ("tanh", [np.inf, -np.inf, 40.0, -20.0, -0.0], [1.0, -1.0, 1.0, -1.0, -0.0]),
    ("sigmoid", [np.inf, -np.inf, 0.0, 40.0], [1.0, 0.0, 0.5, 1.0]),
    ("sinh", [np.inf, -np.inf, 711.0, -0.0], [np.inf, -np.inf, np.inf, -0.0]),
    ("cosh", [np.inf, -np.inf, 711.0, -0.0], [np.inf, np.inf, np.inf, 1.0]),
    ("sin", [np.inf, -np.inf, -0.0], [np.nan, np.nan, -0.0]),
    ("cos", [np.inf, 0.0], [np.nan, 1.0]),
    ("tan", [np.inf, -0.0], [np.nan, -0.0]),
    ("arctan", [np.inf, -np.inf, -0.0], [np.pi / 2, -np.pi / 2, -0.0]),
    ("arcsin", [1.0, -1.0, 1.5, -0.0], [np.pi / 2, -np.pi / 2, np.nan, -0.0]),
    ("arccos", [1.0, -1.0, -1.5], [0.0, np.pi, np.nan]),
    ("sqrt", [-1.0, -0.0, np.inf], [np.nan, -0.0, np.inf]),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values(function, x, expected, dtype):
    ours = run(function, np.array(x, dtype))
    expected = np.array(expected, dtype)
    assert np.array_equal(ours, expected, equal_nan=True), (ours, expected)
    numbers = ~np.isnan(expected)                       # the sign of a NaN carries no meaning
    assert np.array_equal(np.signbit(ours[numbers]), np.signbit(expected[numbers])), (ours, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nan_propagates_everywhere(dtype):
    nan = np.full(8, np.nan, dtype)
    for function in REFERENCE:
        assert np.isnan(run(function, nan)).all(), function


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_against_mpmath(dtype):
    rng = np.random.default_rng(3)
    limit = 700.0 if dtype == np.float64 else 85.0
    # x^y spanning the whole range, where log errors are amplified most
    x = np.exp(rng.uniform(-limit, limit, 1500)).astype(dtype)
    y = (rng.uniform(-1.05 * limit, limit, 1500) / np.log(x.astype(np.float64))).astype(dtype)
    x = np.concatenate([x, rng.uniform(-4, 4, 300).astype(dtype), rng.uniform(0.999, 1.001, 200).astype(dtype)])
    y = np.concatenate([y, rng.integers(-30, 30, 300).astype(dtype), rng.uniform(-1e5, 1e5, 200).astype(dtype)])
    ours = run("pow", x, y)
    mpmath.mp.prec = 200
    truth = np.array([float(_mp_pow(a, b)) for a, b in zip(x.tolist(), y.tolist())], dtype=np.float64)
    reference = truth.astype(np.longdouble) if dtype == np.float64 else truth
    # mpmath rounded to float64 is exact enough for float32; for float64 the rounding costs up to 0.5 ulp
    bound = MAX_ULP["float32"] if dtype == np.float32 else MAX_ULP["float64"] + 0.5
    error = ulp_error(ours, reference, dtype)
    assert error.max() <= bound, report(error, x)


def _mp_pow(a, b):
    if a < 0:
        return -(mpmath.mpf(-a) ** b) if int(b) % 2 else mpmath.mpf(-a) ** b
    return mpmath.mpf(a) ** b


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pow_special_cases_match_numpy(dtype):
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0,
                       np.finfo(dtype).tiny / 8, np.finfo(dtype).max / 4, 2.5, -2.5], dtype)
    x, y = (v.ravel() for v in np.meshgrid(values, values))
    ours = run("pow", x, y)
    with np.errstate(all="ignore"):
        theirs = np.power(x, y)
    exact = (ulp_distance(ours, theirs) == 0) & ((np.signbit(ours) == np.signbit(theirs)) | np.isnan(ours))
    finite_close = np.isfinite(theirs) & (ulp_distance(ours, theirs) <= 1)
    assert np.all(exact | finite_close), list(zip(x[~exact], y[~exact], ours[~exact], theirs[~exact]))


@pytest.mark.parametrize("exponent", [2, 3, -1, -2, 5, 10, 33, -64, 0, 1, 0.5, 1.7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_constant_exponents(exponent, dtype):
    rng = np.random.default_rng(5)
    x = np.concatenate([np.exp(rng.uniform(-30, 30, 2000)) * rng.choice([-1, 1], 2000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0]]).astype(dtype)
    ours = run("pow", x, exponent=exponent)
    with np.errstate(all="ignore"):
        theirs = x ** dtype(exponent)                   # NumPy's own operator: 0.5 means sqrt
    mpmath.mp.prec = 200
    e = mpmath.mpf(float(dtype(exponent)))
    truth = np.array([float(mpmath.mpf(v) ** e) if np.isfinite(v) and v != 0 and (v > 0 or e == int(e))
                      else np.nan for v in x.tolist()])
    finite = np.isfinite(truth) & (x != 0)
    reference = truth[finite].astype(np.longdouble if dtype == np.float64 else np.float64)
    error = ulp_error(ours[finite], reference, dtype)
    bound = MAX_ULP["float64"] + 0.5 if dtype == np.float64 else MAX_ULP["float32"]
    assert error.max() <= bound, report(error, x[finite])
    rest = ~finite & ~np.isnan(theirs)
    assert np.array_equal(ours[~finite], theirs[~finite], equal_nan=True)
    assert np.array_equal(np.signbit(ours[rest]), np.signbit(theirs[rest]))


@pytest.mark.parametrize("lanes", [4, 8])
def test_explicit_vectors_match_scalar_code(lanes):
    rng = np.random.default_rng(9)
    for function in REFERENCE:
        for dtype in (np.float64, np.float32):
            x = sample(function, dtype, rng)[: 1024]
            assert np.array_equal(run(function, x), run(function, x, lanes=lanes), equal_nan=True), function
    x, y = rng.uniform(0.1, 10, (2, 1024))
    assert np.array_equal(run("pow", x, y), run("pow", x, y, lanes=lanes))


def test_every_kernel_vectorises():
    for function in list(REFERENCE) + ["pow"]:
        for dtype, element in (("float64", "double"), ("float32", "float")):
            optimized = kernel(function, dtype)[0].optimized_ir
            assert f"x {element}>" in optimized, (function, dtype)


@pytest.mark.parametrize("function", ["sin", "cos", "tan"])
def test_narrow_range_trigonometry(function):
    x = np.concatenate([np.linspace(-2.0 ** 28 + 1, 2.0 ** 28 - 1, 5001), [2.0 ** 28, -1e30, np.inf]])
    out = run(function, x, wide_range=False)
    assert ulp_error(out[:-3], true_values(function, x[:-3]), np.float64).max() <= MAX_ULP["float64"]
    assert np.isnan(out[-3:]).all()


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_any_double_is_accurate(value):
    x = np.array([value])
    for function in REFERENCE:
        error = ulp_error(run(function, x), true_values(function, x), np.float64)
        assert error[0] <= MAX_ULP["float64"], (function, value, error[0])


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_any_float_is_accurate(value):
    x = np.array([value], dtype=np.float32)
    for function in REFERENCE:
        error = ulp_error(run(function, x), true_values(function, x), np.float32)
        assert error[0] <= MAX_ULP["float32"], (function, value, error[0])
