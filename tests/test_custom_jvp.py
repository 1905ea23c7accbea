"""sb.custom_jvp: helpers with tangent rules of the user's, used by forward mode (jvp, hvp, hessian) and, by
the rule's transpose, by reverse mode; against central differences in float64, both backends."""
import inspect

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


@sb.custom_jvp
def softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))      # log(1 + e^x) without overflow


@softplus.defjvp
def softplus_jvp(x, out, t_x):
    return t_x / (1 + np.exp(-x))                                   # the sigmoid: finite for every x


@sb.custom_jvp
def scaled_tanh(x, a, p):
    return a * np.tanh(x) ** p


@scaled_tanh.defjvp
def scaled_tanh_jvp(x, a, p, out, t_x, t_a, t_p):
    # p is a number (t_p is 0.0); a's tangent scales the value
    return t_x * a * p * np.tanh(x) ** (p - 1) * (1 - np.tanh(x) ** 2) + t_a * out / a


@sb.custom_jvp
def softplus_wrong(x):
    return np.log1p(np.exp(x))


@softplus_wrong.defjvp
def softplus_wrong_jvp(x, out, t_x):
    return 2 * t_x / (1 + np.exp(-x))                               # twice the derivative


@sb.custom_jvp
def wrong_shape(x):
    return x * x


@wrong_shape.defjvp
def wrong_shape_jvp(x, out, t_x):
    return np.sum(2 * x * t_x, axis=0)                              # not the value's shape


@sb.custom_jvp
def no_rule(x):
    return x * x


def model(w, x):
    h = softplus(w * x)
    return np.sum(h * h) + np.sum(scaled_tanh(w, x, 3))


def plain(w, x):
    h = np.log1p(np.exp(w * x))
    return np.sum(h * h) + np.sum(x * np.tanh(w) ** 3)


def wrong_model(w, x):
    return np.sum(softplus_wrong(w * x) ** 2)


W = np.array([-1.5, -0.3, 0.4, 1.1, 2.0])
X = np.array([0.7, 1.3, -0.9, 0.5, 1.6])
T = np.array([0.3, -1.0, 0.5, 0.2, -0.7])
H = 1e-6


def _line(fn, text):
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, l in enumerate(lines) if text in l)


def test_jvp_uses_the_rule(backend):
    value, tangent = sb.jvp(model, wrt="w", backend=backend)(W, X, tangents=T)
    assert value == pytest.approx(plain(W, X), rel=1e-13)
    fd = (plain(W + H * T, X) - plain(W - H * T, X)) / (2 * H)
    assert tangent == pytest.approx(fd, rel=1e-6)
    _, (tw, tx) = (None, sb.jvp(model, wrt=("w", "x"), backend=backend)(W, X, tangents=(T, -T)))
    fd = (plain(W + H * T, X - H * T) - plain(W - H * T, X + H * T)) / (2 * H)
    assert tx == pytest.approx(fd, rel=1e-6)


def test_grad_uses_the_rules_transpose(backend):
    grads = sb.grad(model, wrt=(0, 1), backend=backend)(W, X)
    assert_gradients_match(plain, grads, [W, X], (0, 1))


def test_hvp_and_hessian_through_the_rule(backend):
    hv = sb.hvp(model, wrt="w", backend=backend)(W, X, v=T)
    g = sb.grad(plain, wrt="w")
    fd = (g(W + H * T, X) - g(W - H * T, X)) / (2 * H)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-6)
    hessian = sb.hessian(model, wrt="w", backend=backend)(W, X)
    np.testing.assert_allclose(hessian @ T, fd, rtol=1e-5, atol=1e-6)


def test_the_rule_runs_where_the_helpers_own_derivative_would_overflow(backend):
    big = np.array([800.0, -800.0])
    _, tangent = sb.jvp(lambda_model, backend=backend)(big, tangents=np.ones(2))
    assert np.isfinite(tangent) and tangent == pytest.approx(1.0)
    assert np.all(np.isfinite(sb.grad(lambda_model, backend=backend)(big)))


def lambda_model(x):
    return np.sum(softplus(x))


def test_per_example_gradients_through_a_custom_jvp_helper():
    def loss(w, x):
        return np.mean(softplus(x @ w))

    rng = np.random.default_rng(0)
    w, x = rng.normal(size=3), rng.normal(size=(4, 3))
    got = sb.per_example_grad(loss)(w, x)
    g = sb.grad(loss)
    np.testing.assert_allclose(got, np.stack([g(w, x[i:i + 1]) for i in range(4)]), rtol=1e-12, atol=1e-12)


def test_check_grad_reports_a_wrong_rule(backend):
    assert sb.check_grad(model, W, X, wrt=(0, 1), backend=backend)
    assert not sb.check_grad(wrong_model, W, X, backend=backend)


def test_a_tangent_of_the_wrong_shape_is_rejected_at_the_rules_return():
    with pytest.raises(sb.CompileError) as e:
        sb.jvp(shape_model)(np.ones((2, 3)), tangents=np.ones((2, 3)))
    assert e.value.loc.line == _line(wrong_shape_jvp, "return np.sum")
    assert "tangent of shape (3,) for the value of `wrong_shape`, of shape (2, 3)" in str(e.value)


def shape_model(x):
    return np.sum(wrong_shape(x))


def test_a_helper_without_a_rule_is_rejected_at_its_call():
    with pytest.raises(sb.CompileError) as e:
        sb.jvp(no_rule_model)(X, tangents=X)
    assert e.value.loc.line == _line(no_rule_model, "no_rule(x)")
    assert "@no_rule.defjvp" in str(e.value) and "def no_rule_jvp(x, out, t_x)" in str(e.value)


def no_rule_model(x):
    return np.sum(no_rule(x))


def test_a_rule_with_the_wrong_parameters_is_refused_when_registered():
    helper = sb.custom_jvp(square)
    with pytest.raises(TypeError, match=r"def rule\(x, out, t_x\)"):
        helper.defjvp(rule)
    with pytest.raises(TypeError, match="decorates a function"):
        sb.custom_jvp(3)


def square(x):
    return x * x


def rule(x, out):
    return out
