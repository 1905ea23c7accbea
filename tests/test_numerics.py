"""Numerics on both backends: the kink convention, where-guarded singularities, extreme logits, float32.

docs/language.md ("Conventions") states what a gradient is at a kink and through
np.where; these tests hold both backends to it, with answers derived by hand.
"""
import math

import numpy as np
import pytest

import symbackprop as sb
import models
from gradcheck import numerical_gradient


# ---- kinks: the mean of the one-sided derivatives ---------------------------------------------

def relu_sum(x):
    return np.sum(np.maximum(x, 0.0))


def min_sum(x):
    return np.sum(np.minimum(x, 1.0))


def max_of_two(a, b):
    return np.sum(np.maximum(a, b) * 3.0 + np.minimum(a, b))


def abs_sum(x):
    return np.sum(np.abs(x) * 2.0)


def clip_sum(x):
    return np.sum(np.clip(x, -0.5, 0.7) * 4.0)


def sign_model(x):
    return np.sum(np.sign(x) * 5.0 + x)


def row_max(x):
    return np.sum(np.max(x, axis=1) * 3.0)


def column_min(x):
    return np.sum(np.min(x, axis=0, keepdims=True))


def where_relu(x):
    return np.sum(np.where(x > 0, x, 0.0))


def test_maximum_and_minimum_split_the_gradient_at_a_tie(backend):
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(sb.grad(relu_sum, backend=backend)(x), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(sb.grad(min_sum, backend=backend)(np.array([0.0, 1.0, 3.0])), [1.0, 0.5, 0.0])
    a, b = np.array([1.0, 2.0, -1.0]), np.array([1.0, 0.0, 3.0])
    ga, gb = sb.grad(max_of_two, wrt=(0, 1), backend=backend)(a, b)
    np.testing.assert_array_equal(ga, [0.5 * 3 + 0.5, 3.0, 1.0])
    np.testing.assert_array_equal(gb, [0.5 * 3 + 0.5, 1.0, 3.0])


def test_abs_clip_and_sign_at_their_kinks(backend):
    np.testing.assert_array_equal(sb.grad(abs_sum, backend=backend)(np.array([-2.0, 0.0, 3.0])), [-2.0, 0.0, 2.0])
    x = np.array([-0.5, -0.2, 0.7, 0.9, -3.0])
    np.testing.assert_array_equal(sb.grad(clip_sum, backend=backend)(x), [2.0, 4.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(sb.grad(sign_model, backend=backend)(np.array([-1.0, 0.0, 2.0])), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("model, x", [
    (relu_sum, np.array([0.0, -1.0, 0.0])),
    (abs_sum, np.array([0.0, 1.5])),
    (clip_sum, np.array([-0.5, 0.7, 0.1])),
    (max_of_two, None),
])
def test_the_convention_is_what_a_central_difference_measures(backend, model, x):
    """At each kink the documented value equals tests/gradcheck.py's central difference."""
    args = [np.array([0.3, -0.2]), np.array([0.3, 0.5])] if x is None else [x]
    got = sb.grad(model, backend=backend)(*args)
    want, _ = numerical_gradient(model, args, 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_tied_extrema_share_the_gradient_equally(backend):
    x = np.array([[2.0, 2.0, 2.0], [1.0, 0.0, 1.0]])
    g = sb.grad(row_max, backend=backend)(x)
    np.testing.assert_allclose(g, [[1.0, 1.0, 1.0], [1.5, 0.0, 1.5]])       # 3 * (1/3 each, 1/2 each)
    y = np.array([[0.0, 4.0], [0.0, 5.0], [1.0, 4.0]])
    np.testing.assert_allclose(sb.grad(column_min, backend=backend)(y), [[0.5, 0.5], [0.5, 0.0], [0.0, 0.5]])
    # moving every tied element together moves the extremum one for one
    assert np.sum(g[0]) == pytest.approx(3.0)


def test_where_takes_the_derivative_of_the_branch_taken(backend):
    np.testing.assert_array_equal(sb.grad(where_relu, backend=backend)(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])


# ---- where-guarded singularities ------------------------------------------------------------------

def guarded_sqrt(x):
    return np.sum(np.where(x > 0, np.sqrt(x), 0.0))


def guarded_log(x):
    return np.sum(np.where(x > 0, np.log(x), x * 0.5))


def guarded_reciprocal(x):
    return np.sum(np.where(x != 0, 1 / x, 0.0))


def guarded_sinc(x):
    return np.sum(np.where(x != 0, np.sin(x) / x, 1.0))


def guarded_power(x):
    return np.sum(np.where(x > 0, x ** 0.5 + np.log(x) * x, 0.0))


def guarded_chain(x, w):
    y = x * w
    return np.sum(np.where(y > 0, np.sqrt(y) * np.log(y), y) ** 2)


def guarded_in_helper(x):
    return np.sum(np.where(x > 1e-12, safe_part(x), 0.0))


def safe_part(x):
    return np.sqrt(x) / x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_guarded_singularities_have_finite_gradients(backend, dtype):
    x = np.array([-1.0, 0.0, 4.0, 0.25], dtype=dtype)
    cases = [
        (guarded_sqrt, [0.0, 0.0, 0.25, 1.0]),
        (guarded_log, [0.5, 0.5, 0.25, 4.0]),
        (guarded_reciprocal, [-1.0, 0.0, -1 / 16, -16.0]),
        (guarded_sinc, [math.sin(1.0) - math.cos(1.0), 0.0, (4 * math.cos(4) - math.sin(4)) / 16,
                        (0.25 * math.cos(0.25) - math.sin(0.25)) / 0.0625]),
        (guarded_power, [0.0, 0.0, 0.25 + math.log(4) + 1, 1.0 + math.log(0.25) + 1]),
        (guarded_in_helper, [0.0, 0.0, -0.5 * 4 ** -1.5, -0.5 * 0.25 ** -1.5]),
    ]
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for model, want in cases:
        g = sb.grad(model, backend=backend)(x)
        assert g.dtype == np.dtype(dtype)
        assert np.all(np.isfinite(g)), (model.__name__, g)
        np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol, err_msg=model.__name__)


def test_a_guarded_chain_through_a_product(backend):
    x, w = np.array([-2.0, 0.0, 1.5, 3.0]), np.array([1.0, 2.0, 2.0, -1.0])
    gx, gw = sb.grad(guarded_chain, wrt=(0, 1), backend=backend)(x, w)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
    y = x * w
    # d/dy (sqrt(y) log y)^2 = 2 f f' with f' = log(y)/(2 sqrt y) + 1/sqrt(y); 2y on the other branch
    f = np.where(y > 0, np.sqrt(np.abs(y)) * np.log(np.abs(y) + (y == 0)), y)
    df = np.where(y > 0, 2 * f * (np.log(np.abs(y) + (y == 0)) / (2 * np.sqrt(np.abs(y) + (y == 0)))
                                  + 1 / np.sqrt(np.abs(y) + (y == 0))), 2 * y)
    np.testing.assert_allclose(gx, df * w, rtol=1e-12)
    np.testing.assert_allclose(gw, df * x, rtol=1e-12)


# ---- extreme logits: logsumexp, softmax, log-softmax cross-entropy --------------------------------

def logsumexp_mean(z):
    m = np.max(z, axis=1, keepdims=True)
    return np.mean(m[:, 0] + np.log(np.sum(np.exp(z - m), axis=1)))


def softmax_weighted(z, w):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    return np.sum(p * w)


def _softmax(z):
    """By hand, in float64 with math, row by row."""
    out = []
    for row in np.asarray(z, dtype=np.float64):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        s = math.fsum(e)
        out.append([v / s for v in e])
    return np.array(out)


def _logsumexp(z):
    return np.array([max(row) + math.log(math.fsum(math.exp(v - max(row)) for v in row))
                     for row in np.asarray(z, dtype=np.float64)])


LOGITS = {"float64": 1000.0, "float32": 80.0}


def _extreme_logits(dtype):
    big = LOGITS[dtype]
    return np.array([[big, -big, 0.0, big - 1.0],
                     [-big, -big, -big + 2.0, -big],
                     [0.5, big, -big, 0.0]], dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logsumexp_of_extreme_logits(backend, dtype):
    z = _extreme_logits(dtype)
    value, g = sb.value_and_grad(logsumexp_mean, backend=backend)(z)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert np.isfinite(value) and np.all(np.isfinite(g)) and g.dtype == np.dtype(dtype)
    np.testing.assert_allclose(value, np.mean(_logsumexp(z)), rtol=rtol)
    np.testing.assert_allclose(g, _softmax(z) / 3, rtol=rtol, atol=1e-30)   # d mean(lse) / dz = p / n


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_of_extreme_logits(backend, dtype):
    z = _extreme_logits(dtype)
    y = np.eye(4, dtype=dtype)[[1, 2, 1]]         # targets the softmax gives almost no mass to
    value, g = sb.value_and_grad(models.log_softmax_ce, backend=backend)(z, y)
    p = _softmax(z)
    want = np.mean(_logsumexp(z) - np.sum(y * z.astype(np.float64), axis=1))
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert np.isfinite(value) and np.all(np.isfinite(g))
    np.testing.assert_allclose(value, want, rtol=rtol)
    np.testing.assert_allclose(g, (p - y) / 3, rtol=rtol, atol=1e-7 if dtype == "float32" else 1e-16)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_of_extreme_logits(backend, dtype):
    z = _extreme_logits(dtype)
    w = np.linspace(-1.0, 2.0, 12).reshape(3, 4).astype(dtype)
    value, (gz, gw) = sb.value_and_grad(softmax_weighted, wrt=(0, 1), backend=backend)(z, w)
    p = _softmax(z)
    w64 = w.astype(np.float64)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(value, np.sum(p * w64), rtol=rtol)
    np.testing.assert_allclose(gw, p, rtol=rtol, atol=1e-30)
    # d sum(p w) / dz = p (w - sum(p w)) row by row
    np.testing.assert_allclose(gz, p * (w64 - np.sum(p * w64, axis=-1, keepdims=True)), rtol=rtol,
                               atol=1e-7 if dtype == "float32" else 1e-15)


# ---- float32 agrees with float64 --------------------------------------------------------------

def _mlp_args(rng):
    return [rng.normal(size=(6, 5)) * .5, rng.normal(size=5) * .1, rng.normal(size=(5, 3)) * .5,
            rng.normal(size=3) * .1, rng.normal(size=(4, 6)), np.eye(3)[[0, 2, 1, 1]]]


FLOAT32_CASES = {
    "mlp": (models.mlp, _mlp_args, (0, 1, 2, 3)),
    "layernorm": (models.layernorm, lambda r: [r.normal(size=(3, 6)), r.normal(size=6), r.normal(size=6)],
                  (0, 1, 2)),
    "softmax_attention": (models.softmax_attention, lambda r: [r.normal(size=(5, 3)), r.normal(size=(5, 3)),
                                                              r.normal(size=(5, 2))], (0, 1, 2)),
    "loop_stacked": (models.loop_stacked, lambda r: [r.normal(size=(4, 3, 3)) * .5, r.normal(size=(4, 3)),
                                                     r.normal(size=(5, 3))], (0, 1, 2)),
    "reductions": (models.reductions, lambda r: [r.normal(size=(3, 4, 5))], (0,)),
    "sigmoid_loss": (models.sigmoid_loss, lambda r: [r.normal(size=5), r.normal(size=(8, 5)),
                                                     (r.normal(size=8) > 0) * 1.0], (0,)),
    "transpose_reshape": (models.transpose_reshape, lambda r: [r.normal(size=(2, 3, 4))], (0,)),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_agrees_with_float64(backend, name):
    model, make, wrt = FLOAT32_CASES[name]
    args = make(np.random.default_rng(7))
    f = sb.value_and_grad(model, wrt=wrt, backend=backend)
    v64, g64 = f(*args)
    args32 = [a.astype(np.float32) for a in args]
    v32, g32 = f(*args32)
    # NumPy's own dtype: float32, except where a NumPy scalar widens it (Q @ K.T / np.sqrt(d) is float64, NEP 50)
    assert np.asarray(v32).dtype == np.asarray(model(*args32)).dtype
    np.testing.assert_allclose(v32, v64, rtol=2e-5, atol=1e-5)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5 * max(1.0, float(np.max(np.abs(b)))))


def scaled_sum(x, s):
    return np.sum(x * s)


def test_a_python_float_keeps_a_float32_model_float32(backend):
    """NumPy treats a Python float as weak: float32 * 0.5 is float32, and so is the loss."""
    x = np.ones((2, 3), np.float32)
    value, (gx, gs) = sb.value_and_grad(scaled_sum, wrt=(0, 1), backend=backend)(x, 0.5)
    assert type(value) is np.float32 and gx.dtype == np.float32 and type(gs) is float


def times_numpy_exp(x):
    return np.sum(x * np.exp(0.5))


def times_math_exp(x):
    return np.sum(x * math.exp(0.5))


def weak_times_numpy_scalar(x, s):
    return np.sum(x * (s * np.float64(2.0)))


def relu_at_numpy_float32(x):
    return np.sum(np.maximum(x, np.float32(0.5)) * np.sqrt(2.0))


@pytest.mark.parametrize("model,extra", [(times_numpy_exp, ()), (times_math_exp, ()),
                                         (weak_times_numpy_scalar, (1.5,)), (relu_at_numpy_float32, ())])
def test_numpy_scalars_are_strong_as_in_numpy(backend, model, extra):
    """np.exp(0.5) is a float64 NumPy scalar: float32 * it is float64 (NEP 50); math.exp(0.5) is a
    Python float and keeps float32. The loss has NumPy's dtype and value; gradients their parameter's dtype."""
    x = np.linspace(-0.4, 1.3, 7, dtype=np.float32)
    args = (x,) + extra
    value, grads = sb.value_and_grad(model, wrt=tuple(range(len(args))), backend=backend)(*args)
    expected = model(*args)
    assert np.asarray(value).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(value, expected, rtol=1e-14 if np.asarray(expected).dtype == np.float64 else 1e-6)
    assert grads[0].dtype == np.float32


def tilde_of_a_float_comparison(x, s):
    return np.sum(np.where((x > 0.3) | ~(s > 0), x, 0.0))


def logical_not_of_a_float_comparison(x, s):
    return np.sum(np.where((x > 0.3) | np.logical_not(s > 0), x, 0.0))


def test_tilde_on_a_python_float_comparison_is_rejected(backend):
    """For a Python float s, (s > 0) is a Python bool and ~True is -2: not the logical not it looks like."""
    x = np.array([-1.0, 0.5, 2.0])
    with pytest.raises(sb.CompileError, match=r"np\.logical_not") as info:
        sb.value_and_grad(tilde_of_a_float_comparison, backend=backend)(x, 0.5)
    assert info.value.line == tilde_of_a_float_comparison.__code__.co_firstlineno + 1
    value, g = sb.value_and_grad(logical_not_of_a_float_comparison, backend=backend)(x, 0.5)
    assert value == logical_not_of_a_float_comparison(x, 0.5) == 2.5 and list(g) == [0.0, 1.0, 1.0]
