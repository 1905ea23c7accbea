"""sb.custom_vjp: helpers with derivative rules of the user's, inlined into the backward pass, both backends."""
import inspect

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


# ---- helpers and their rules -----------------------------------------------------------

@sb.custom_vjp
def softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))     # log(1 + e^x) without overflow


@softplus.defvjp
def softplus_vjp(x, out, g):
    return g / (1 + np.exp(-x))                                     # the sigmoid: finite for every x


@sb.custom_vjp
def round_ste(x):
    return np.round(x)


@round_ste.defvjp
def round_ste_vjp(x, out, g):
    return g                                                        # straight through


@sb.custom_vjp
def clip_gradient(x):
    return x


@clip_gradient.defvjp
def clip_gradient_vjp(x, out, g):
    return np.clip(g, -0.25, 0.25)


@sb.custom_vjp
def scaled_power(x, a, p):
    return a * x ** p


@scaled_power.defvjp
def scaled_power_vjp(x, a, p, out, g):
    return g * a * p * x ** (p - 1), np.sum(g * out) / a, None    # p is a number: no gradient


@sb.custom_vjp
def softplus_wrong(x):
    return np.log1p(np.exp(x))


@softplus_wrong.defvjp
def softplus_wrong_vjp(x, out, g):
    return 2 * g / (1 + np.exp(-x))                                 # twice the derivative


@sb.custom_vjp
def too_many(x):
    return x * x


@too_many.defvjp
def too_many_vjp(x, out, g):
    return g * 2 * x, g                                             # two gradients for one input


@sb.custom_vjp
def wrong_shape(x):
    return x * x


@wrong_shape.defvjp
def wrong_shape_vjp(x, out, g):
    return np.sum(g * 2 * x)                                        # a number's shape for an array


@sb.custom_vjp
def no_rule(x):
    return x * x


# ---- models ----------------------------------------------------------------------------

def softplus_model(w, x):
    h = softplus(w * x)
    return np.sum(h * h)


def ste_model(w, x):
    q = round_ste(w * x)
    return np.sum((q - 1.5) ** 2)


def clipped_model(w, x):
    return np.sum(clip_gradient(w * x) ** 2)


def power_model(x, a):
    return np.sum(np.tanh(scaled_power(x, a, 3)))


def wrong_model(w, x):
    return np.sum(softplus_wrong(w * x))


def too_many_model(x):
    return np.sum(too_many(x))


def wrong_shape_model(x):
    return np.sum(wrong_shape(x))


def no_rule_model(x):
    return np.sum(no_rule(x))


W = np.array([-1.5, -0.3, 0.4, 1.1, 2.0])
X = np.array([0.7, 1.3, -0.9, 0.5, 1.6])


def _line(fn, text):
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, l in enumerate(lines) if text in l)


# ---- values and gradients ------------------------------------------------------------------

def test_a_correct_rule_matches_finite_differences(backend):
    f = sb.value_and_grad(softplus_model, wrt=(0, 1), backend=backend)
    value, grads = f(W, X)
    assert value == pytest.approx(softplus_model(W, X), rel=1e-13)
    assert_gradients_match(softplus_model, grads, [W, X], (0, 1))


def test_the_rule_is_what_runs_where_the_built_in_derivative_would_overflow(backend):
    x = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    value, d = sb.value_and_grad(softplus_model, wrt=0, backend=backend)(x, np.ones(5))
    h = softplus(x)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(d, 2 * h / (1 + np.exp(-x)), rtol=1e-13)
    assert np.all(np.isfinite(d)) and np.isfinite(value)


def test_straight_through_rule_passes_the_gradient_unchanged(backend):
    value, (dw, dx) = sb.value_and_grad(ste_model, wrt=(0, 1), backend=backend)(W, X)
    q = np.round(W * X)
    assert value == pytest.approx(np.sum((q - 1.5) ** 2), rel=1e-14)
    np.testing.assert_allclose(dw, 2 * (q - 1.5) * X, rtol=1e-14)    # the rule's formula, not round' = 0
    np.testing.assert_allclose(dx, 2 * (q - 1.5) * W, rtol=1e-14)


def test_clipped_gradient_rule_clips(backend):
    dw = sb.grad(clipped_model, backend=backend)(W, X)
    np.testing.assert_allclose(dw, np.clip(2 * W * X, -0.25, 0.25) * X, rtol=1e-14)


def test_several_inputs_and_a_number_input(backend):
    x, a = np.array([0.3, -0.6, 0.9]), 1.7
    value, (dx, da) = sb.value_and_grad(power_model, wrt=(0, 1), backend=backend)(x, a)
    assert value == pytest.approx(power_model(x, a), rel=1e-13)
    assert type(da) is float
    assert_gradients_match(power_model, (dx, da), [x, a], (0, 1))


def test_the_rule_replaces_the_helpers_derivative_in_the_generated_code():
    f = sb.value_and_grad(softplus_model)
    f(W, X)
    backward = f.source.split("# backward")[1]
    assert "np.exp(-t1)" in backward                                  # the rule's sigmoid
    assert "np.sign" not in backward and "np.abs" not in backward     # nothing of the body's own derivative
    assert "np.log1p" not in backward


def test_train_step_with_a_custom_rule(backend):
    w = W.copy()
    step = sb.train_step(softplus_model, sb.optim.SGD(lr=0.01), wrt=0, backend=backend)
    loss = step(w, X)
    _, d = sb.value_and_grad(softplus_model)(W, X)
    assert loss == pytest.approx(softplus_model(W, X), rel=1e-13)
    np.testing.assert_allclose(w, W - 0.01 * d, rtol=1e-13)


def test_forward_alone_and_the_exported_module(tmp_path):
    f = sb.value_and_grad(softplus_model)
    assert f.forward(W, X) == pytest.approx(softplus_model(W, X), rel=1e-13)
    path = f.export(tmp_path / "grad.py", W, X)
    namespace = {}
    exec(open(path).read(), namespace)
    value, d = namespace["value_and_grad"](W, X)
    np.testing.assert_allclose(d, f(W, X)[1], rtol=1e-15)
    text = open(path).read()
    assert "sb." not in text and "import symbackprop" not in text and "from symbackprop" not in text


def test_the_helper_is_plain_python_outside_a_model():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(softplus(x), np.log1p(np.exp(x)), rtol=1e-14)
    assert softplus.__name__ == "softplus" and softplus.rule is softplus_vjp
    assert softplus_model(W, X) == pytest.approx(np.sum(np.log1p(np.exp(W * X)) ** 2), rel=1e-13)


# ---- check_grad and explain -----------------------------------------------------------------

def test_check_grad_passes_a_correct_rule_and_reports_a_wrong_one(backend):
    assert sb.check_grad(softplus_model, W, X, wrt=(0, 1), backend=backend)
    report = sb.check_grad(wrong_model, W, X, backend=backend)
    assert not report
    assert "w[5]" in str(report)


def test_explain_names_the_rule_and_its_line():
    text = sb.value_and_grad(softplus_model).explain(W, X)
    line = _line(softplus_vjp, "def softplus_vjp")
    assert f"custom rule softplus_vjp (test_custom_vjp.py:{line}) of softplus" in text
    assert "h = softplus(t1)" in text and "custom_vjp" in text
    assert "g/(1 + exp(-t1))" in text


# ---- errors -------------------------------------------------------------------------------

def test_a_rule_returning_too_many_gradients_is_rejected_at_its_return():
    with pytest.raises(sb.CompileError) as e:
        sb.grad(too_many_model)(X)
    assert e.value.loc.line == _line(too_many_vjp, "return g * 2 * x, g")
    assert "returns 2 values" in str(e.value) and "one gradient per input of `too_many` (1: x)" in str(e.value)


def test_a_gradient_of_the_wrong_shape_is_rejected_at_the_rules_return():
    with pytest.raises(sb.CompileError) as e:
        sb.grad(wrong_shape_model, backend="numpy")(X)
    assert e.value.loc.line == _line(wrong_shape_vjp, "return np.sum")
    assert "shape () for `x`, which has shape (5,)" in str(e.value)


def test_a_helper_without_a_rule_is_rejected_at_its_call():
    with pytest.raises(sb.CompileError) as e:
        sb.grad(no_rule_model)(X)
    assert e.value.loc.line == _line(no_rule_model, "no_rule(x)")
    assert "@no_rule.defvjp" in str(e.value) and "def no_rule_vjp(x, out, g)" in str(e.value)


def test_a_rule_with_the_wrong_parameters_is_refused_when_registered():
    helper = sb.custom_vjp(lambda_free_square)
    with pytest.raises(TypeError, match=r"def rule\(x, out, g\)"):
        helper.defvjp(rule)
    with pytest.raises(TypeError, match="decorates a function"):
        sb.custom_vjp(3)


def lambda_free_square(x):
    return x * x


def rule(x, g):
    return g * 2 * x
