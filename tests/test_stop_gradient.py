"""sb.stop_gradient and the rounding functions (np.rint/round, np.floor, np.ceil) on both backends."""
import numpy as np
import pytest

import symbackprop as sb
from symbackprop import stop_gradient
from gradcheck import assert_gradients_match


def straight_through(x, w):
    q = x + sb.stop_gradient(np.round(x) - x)     # rounds forward, passes the gradient straight through
    return np.sum((q * w - 1.0) ** 2)


def detached_square(x):
    y = stop_gradient(x * x)                      # imported by name
    return np.sum(x * y)


def scaled_by_a_stopped_norm(x, y):
    n = sb.stop_gradient(np.sqrt(np.sum(y * y)))  # a constant as far as the gradient of x is concerned
    return np.sum(np.tanh(x) * n) + np.sum(x * x * n)


def returns_a_stopped_value(x):
    return sb.stop_gradient(np.sum(x * x))


def roundings(x, w):
    return np.sum(np.rint(3 * x) * w + np.floor(x) * w * w - np.ceil(x) + np.round(x) * x)


X = np.array([0.2, 0.6, 1.4, -0.8, 2.5])
W = np.array([1.0, 2.0, -0.5, 0.3, 0.7])


def test_straight_through_rounding_gives_the_identity_gradient(backend):
    value, (dx, dw) = sb.value_and_grad(straight_through, wrt=(0, 1), backend=backend)(X, W)
    q = np.round(X)                               # halves to even, as NumPy: 2.5 -> 2
    assert value == pytest.approx(np.sum((q * W - 1) ** 2), rel=1e-14)
    np.testing.assert_allclose(dx, 2 * (q * W - 1) * W, rtol=1e-14)   # dq/dx = 1 through the stop
    np.testing.assert_allclose(dw, 2 * (q * W - 1) * q, rtol=1e-14)


def test_a_stopped_value_is_a_constant_for_the_gradient(backend):
    g = sb.grad(detached_square, backend=backend)(X)
    np.testing.assert_allclose(g, X ** 2, rtol=1e-14)                   # not 3 x**2


def test_stopped_values_match_finite_differences_where_they_are_constants(backend):
    y = np.array([0.3, -1.2, 0.5])
    x = np.array([0.1, -0.4, 0.9])
    g = sb.grad(scaled_by_a_stopped_norm, wrt=0, backend=backend)(x, y)
    assert_gradients_match(scaled_by_a_stopped_norm, [g], [x, y], (0,))
    # and with respect to y nothing flows: the norm is stopped
    np.testing.assert_array_equal(sb.grad(scaled_by_a_stopped_norm, wrt=1, backend=backend)(x, y), 0.0)


def test_a_returned_stopped_value_has_zero_gradient(backend):
    value, g = sb.value_and_grad(returns_a_stopped_value, backend=backend)(X)
    assert float(value) == pytest.approx(np.sum(X * X))
    np.testing.assert_array_equal(g, np.zeros_like(X))


def test_forward_and_train_step_see_through_it(backend):
    f = sb.value_and_grad(straight_through, wrt=(0, 1), backend=backend)
    assert f.forward(X, W) == pytest.approx(straight_through(X, W), rel=1e-14)
    w = W.copy()
    step = sb.train_step(straight_through, sb.optim.SGD(lr=0.1), wrt="w", backend=backend)
    loss = step(X, w)
    q = np.round(X)
    assert loss == pytest.approx(np.sum((q * W - 1) ** 2), rel=1e-14)
    np.testing.assert_allclose(w, W - 0.1 * 2 * (q * W - 1) * q, rtol=1e-14)


def test_outside_a_model_it_returns_its_argument():
    assert sb.stop_gradient(X) is X and sb.stop_gradient(2.5) == 2.5


def test_no_backend_sees_it_and_explain_names_it():
    f = sb.value_and_grad(straight_through, wrt=(0, 1))
    f(X, W)
    code = [line.split("#")[0] for line in f.source.split('"""', 2)[2].splitlines()]
    assert not any("stop_gradient" in line for line in code)        # the generated code reads x itself
    text = f.explain()
    assert "sb.stop_gradient(" in text and "no gradient flows back through it" in text


def test_rounding_functions_compute_what_numpy_computes_with_zero_derivative(backend):
    x = np.array([0.5, 1.5, -0.5, -1.7, 2.2, 0.0, -0.0])
    w = np.linspace(-1, 1, x.size)
    value, (dx, dw) = sb.value_and_grad(roundings, wrt=(0, 1), backend=backend)(x, w)
    assert value == pytest.approx(roundings(x, w), rel=1e-14)
    np.testing.assert_allclose(dx, np.round(x), rtol=0, atol=0)        # only np.round(x) * x's x survives
    np.testing.assert_allclose(dw, np.rint(3 * x) + 2 * w * np.floor(x), rtol=1e-14)


def test_rounding_on_python_floats_stays_float():
    def f(a, b):
        return np.round(a) * b + np.floor(b) - np.ceil(a)
    value, (da, db) = sb.value_and_grad(f, wrt=(0, 1))(2.5, 1.7)
    assert value == pytest.approx(f(2.5, 1.7)) and type(db) is float and db == 2.0 and da == 0.0
