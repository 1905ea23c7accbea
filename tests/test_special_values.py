"""Zero bases of powers, and the constants SymPy folds a body to: the limits the math gives, valid code.

`d/dy x**y = x**y*log(x)` is 0*(-inf) at x == 0, and `d/dx x**y = y*x**y/x` is 0/0 there: the
compiler selects the limits instead (docs/language.md, "Powers at a zero base"). Folding an
expression can leave SymPy atoms that are no Python name (nan, zoo, I, EulerGamma): generated code
spells each as a number, on both backends.
"""
import math

import numpy as np
import pytest
import sympy

import symbackprop as sb
from symbackprop.backends.numpy.printer import MathPrinter, NumpyPrinter, float_literal

INF = np.inf


def power_of_zero(y):
    return np.sum(np.power(0.0, y))


def power(x, y):
    return np.sum(x ** y)


def weighted_power(x, y, w):
    return np.sum(w * x ** y)


def cube(x):
    return np.sum(x ** 3)


def power_2_5(x):
    return np.sum(x ** 2.5)


def root(x):
    return np.sum(x ** 0.5)


def power_0(x):
    return np.sum(x ** 0)


def exponential_base_2(y):
    return np.sum(2.0 ** y)


def negative_base(y):
    return np.sum((-2.0) ** y)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_zero_base_differentiated_by_the_exponent(backend, dtype):
    """The issue's case: d/dy 0**y is 0 for y > 0 (0**y is 0 there); at y == 0 both one-sided
    difference quotients go to -inf."""
    y = np.array([0.5, 1.0, 2.0, 3.0, 0.0], dtype=dtype)
    value, g = sb.value_and_grad(power_of_zero, backend=backend)(y)
    assert value == 1.0
    np.testing.assert_array_equal(g, np.array([0, 0, 0, 0, -INF], dtype=dtype))
    assert g.dtype == np.dtype(dtype)


def test_zero_base_in_x_to_the_y(backend):
    """x**y at x == 0 for integer and non-integer y, 0**0 included, with respect to each argument."""
    y = np.array([0.5, 1.0, 2.0, 3.0, 2.5, 0.0, -1.0])
    x = np.zeros_like(y)
    f = sb.value_and_grad(power, wrt=("x", "y"), backend=backend)
    value, (dx, dy) = f(x[:-1], y[:-1])
    assert value == 1.0  # 0**0 is 1, the other powers 0
    # d/dx x**y = y*x**(y - 1): inf for 0 < y < 1, 1 at y == 1, 0 for y > 1; x**0 is constant 1
    np.testing.assert_array_equal(dx, [INF, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(dy, [0, 0, 0, 0, 0, -INF])
    value, (dx, dy) = f(x, y)  # 0**-1 is inf: so are the value and both derivatives
    assert value == INF
    assert dx[-1] == -INF and dy[-1] == -INF


def test_zero_base_powers_away_from_zero_are_the_usual_derivatives(backend):
    x = np.array([0.5, 2.0, 3.0, 0.0])
    y = np.array([1.5, -1.0, 0.0, 2.0])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    _, (dx, dy, _) = sb.value_and_grad(weighted_power, wrt=(0, 1, 2), backend=backend)(x, y, w)
    with np.errstate(all="ignore"):
        want_dx = w * y * x ** (y - 1)
        want_dy = w * x ** y * np.log(x)
    want_dx[2], want_dy[3] = 0.0, 0.0  # y == 0 (x**0 is 1) and x == 0 with y > 0: the limits
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12)
    np.testing.assert_allclose(dy, want_dy, rtol=1e-12)


@pytest.mark.parametrize("model, want", [
    (cube, 0.0), (power_2_5, 0.0), (root, INF), (power_0, 0.0),
])
def test_number_exponents_at_zero(backend, model, want):
    _, g = sb.value_and_grad(model, backend=backend)(np.zeros(3))
    np.testing.assert_array_equal(g, [want] * 3)


def test_number_bases(backend):
    y = np.array([0.0, 1.5, -2.0])
    _, g = sb.value_and_grad(exponential_base_2, backend=backend)(y)
    np.testing.assert_allclose(g, 2.0 ** y * np.log(2.0), rtol=1e-12)
    # a negative base has no real logarithm: nan, as np.log(-2.0), never a complex number in the code
    f = sb.value_and_grad(negative_base, backend=backend)
    value, g = f(np.array([2.0, 3.0]))
    assert value == 4.0 - 8.0
    assert np.isnan(g).all()


def test_python_float_arguments_take_the_same_limits(backend):
    f = sb.value_and_grad(power, wrt=("x", "y"), backend=backend)
    cases = {(0.0, 2.0): (0.0, 0.0), (0.0, 1.0): (1.0, 0.0), (0.0, 0.5): (INF, 0.0), (0.0, 0.0): (0.0, -INF),
             (2.0, 3.0): (12.0, 8 * math.log(2.0))}
    for (x, y), want in cases.items():
        value, grads = f(x, y)
        assert value == x ** y
        assert tuple(float(g) for g in grads) == pytest.approx(want, rel=1e-12), (x, y)
        assert all(type(g) is float for g in grads), (x, y, grads)


def test_the_numpy_code_names_what_it_uses():
    f = sb.value_and_grad(power_of_zero)
    f.specialise(np.ones(3))
    assert "np.where(" in f.source
    assert "nan" not in f.source.replace("np.nan", "")


# ---- constants in bodies --------------------------------------------------------------

CONSTANTS = [sympy.nan, sympy.oo, -sympy.oo, sympy.zoo, sympy.I, sympy.E, sympy.pi, sympy.EulerGamma,
             sympy.Catalan, sympy.GoldenRatio, sympy.TribonacciConstant, sympy.S.Half, sympy.Rational(-1, 3),
             sympy.Float(0.1), sympy.Integer(-7), sympy.log(-2), 2 * sympy.I + 1]


def _real(c):
    """What a real-valued program computes for `c`: the float, or nan where there is none."""
    value = complex(sympy.N(c)) if c not in (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) else None
    if c is sympy.nan or c is sympy.zoo:
        return math.nan
    if c in (sympy.oo, -sympy.oo):
        return float(c)
    return value.real if value.imag == 0 else math.nan


@pytest.mark.parametrize("printer", [NumpyPrinter, MathPrinter])
@pytest.mark.parametrize("constant", CONSTANTS, ids=str)
def test_every_sympy_constant_prints_as_a_number(printer, constant):
    x = sympy.Symbol("a0", real=True)
    text = printer({x: "x"}).doprint(constant * x)
    value = eval(text, {"np": np, "math": math, "x": 1.0})  # noqa: S307 - our own printed code
    want = _real(constant)
    assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want), text


@pytest.mark.parametrize("value, text", [(math.inf, "np.inf"), (-math.inf, "-np.inf"), (math.nan, "np.nan"),
                                         (0.25, "0.25"), (-0.0, "-0.0")])
def test_float_literals(value, text):
    assert float_literal(value) == text


def nan_constant(x):
    return np.sum(x + np.inf * 0.0)


def log_of_minus_one(x):
    return np.sum(x * np.log(x * 0.0 - 1.0))


def arccos_of_zero(x):
    return np.sum(x * np.arccos(x * 0.0))


def exp_of_one(x):
    return np.sum(x * np.exp(x * 0.0 + 1.0))


def log_of_exact_zero(x):
    return np.sum(np.log(x - x) + x)


def reciprocal_of_exact_zero(x):
    return np.sum((x - x) ** -1.0 + x)


def times_inf(x):
    return np.sum(x * np.inf)


def divided_by_zero(x, w):
    return np.sum(w * np.arctan(x / 0.0))


def divided_by_minus_zero(x, w):
    return np.sum(w * np.arctan(x / -0.0))


@pytest.mark.parametrize("model, value, grad", [
    # SymPy folds these bodies to constants; the value and gradient are what the math gives
    (nan_constant, math.nan, 0.0),
    (log_of_minus_one, math.nan, math.nan),    # SymPy: log(-1) = I*pi; NumPy: nan
    (arccos_of_zero, 3 * math.pi / 2, math.pi / 2),
    (exp_of_one, 3 * math.e, math.e),
    # x - x is an exact 0 to SymPy, which folds log(0) and 1/0 to zoo, an infinity of unknown sign: nan;
    # zoo + x is zoo, a constant, so no gradient reaches x
    (log_of_exact_zero, math.nan, 0.0),
    (reciprocal_of_exact_zero, math.nan, 0.0),
    (times_inf, INF, INF),
])
def test_bodies_folded_to_constants(backend, model, value, grad):
    x = np.array([1.0, 0.5, 1.5])
    v, g = sb.value_and_grad(model, backend=backend)(x)
    np.testing.assert_equal(float(v), value)
    np.testing.assert_equal(g, [grad] * 3)


def test_division_by_a_zero_constant_keeps_the_sign(backend):
    """x/0.0 is ±inf as in NumPy, not SymPy's sign-less zoo*x."""
    x, w = np.array([1.0, -2.0]), np.array([1.0, 10.0])
    for model in (divided_by_zero, divided_by_minus_zero):
        with np.errstate(all="ignore"):
            want = model(x, w)
        value, _ = sb.value_and_grad(model, backend=backend)(x, w)
        assert value == pytest.approx(want), model.__name__


def static_zero_to_a_negative_power(x):
    return np.sum(x * 0.0 ** -1.0)


def static_root_of_a_negative_number(x):
    return np.sum(x + (-8.0) ** (1 / 3))


def test_static_powers_follow_numpy(backend):
    """Python raises ZeroDivisionError for 0.0 ** -1.0 and makes a complex number of (-8.0) ** (1/3);
    computed at compile time, they are NumPy's inf and nan instead of a traceback from the compiler."""
    x = np.ones(2)
    value, g = sb.value_and_grad(static_zero_to_a_negative_power, backend=backend)(x)
    assert value == INF and (g == INF).all()
    value, _ = sb.value_and_grad(static_root_of_a_negative_number, backend=backend)(x)
    assert np.isnan(value)


def clipped(x, limits=(0.0, math.inf)):
    return np.sum(np.clip(x, limits[0], limits[1]))


def test_an_exported_module_spells_static_infinities(tmp_path):
    """A static tuple holding inf is checked by the exported module: written float('inf'), not a bare name."""
    import importlib.util

    from symbackprop.rendering import source_literal
    assert source_literal((0.0, math.inf, -math.inf)) == "(0.0, float('inf'), float('-inf'))"
    assert source_literal((math.nan,)) == "(float('nan'),)"
    assert source_literal("inf") == "'inf'"
    f = sb.value_and_grad(clipped)
    f.export(tmp_path / "clipped.py", np.ones(3))
    spec = importlib.util.spec_from_file_location("clipped_export", tmp_path / "clipped.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value, g = module.value_and_grad(np.array([-1.0, 2.0, 0.5]), (0.0, math.inf))
    assert value == 2.5 and list(g) == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="compiled for limits=\(0.0, inf\)"):
        module.value_and_grad(np.ones(3), (0.0, 1.0))
