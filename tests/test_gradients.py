"""Every primitive's gradient against central finite differences (float64)."""
import numpy as np
import pytest

import symbackprop as sb
import models
from gradcheck import assert_gradients_match


def r(*shape, low=-1.0, high=1.0, seed=0):
    return np.random.default_rng(seed + sum(shape)).uniform(low, high, size=shape)


def pos(*shape, seed=0):
    return r(*shape, low=0.2, high=1.5, seed=seed)


def onehot(n, k, seed=0):
    return np.eye(k)[np.random.default_rng(seed).integers(0, k, n)]


CASES = {
    "unary_all": (models.unary_all, lambda: [pos(3, 4)], (0,)),
    "binary_broadcast": (models.binary_broadcast, lambda: [r(3, 4), r(4, seed=1)], (0, 1)),
    "binary_broadcast_keepdims": (models.binary_broadcast, lambda: [r(3, 1, 5), r(2, 1, seed=2)], (0, 1)),
    "binary_scalar_float": (models.binary_broadcast, lambda: [r(2, 3), 0.7], (0, 1)),
    "power_general": (models.power_general, lambda: [pos(3, 2), r(2)], (0, 1)),
    "sigmoid_loss": (models.sigmoid_loss, lambda: [r(5), r(8, 5, seed=3), (r(8, seed=4) > 0) * 1.0], (0,)),
    "max_min": (models.max_min, lambda: [r(4, 3), r(3, seed=5)], (0, 1)),
    "where_select": (models.where_select, lambda: [r(3, 4), r(3, 4, seed=6)], (0, 1)),
    "where_safe_sqrt": (models.where_safe_sqrt, lambda: [r(10)], (0,)),
    "where_safe_log": (models.where_safe_log, lambda: [r(10)], (0,)),
    "clip": (models.clip_model, lambda: [r(12)], (0,)),
    "comparison_mask": (models.comparison_mask, lambda: [r(6), r(6, seed=7)], (0, 1)),
    "math_scalar": (models.math_scalar, lambda: [0.3, -0.2, 1.5], (0, 1, 2)),
    "reductions": (models.reductions, lambda: [r(3, 4, 5)], (0,)),
    "max_all": (models.max_all, lambda: [r(4, 5)], (0,)),
    "matmul_2d": (models.matmul_2d, lambda: [r(3, 4), r(4, 2, seed=8)], (0, 1)),
    "matmul_vectors": (models.matmul_vectors, lambda: [r(3, 3), r(3, seed=9), r(3, seed=10)], (0, 1, 2)),
    "matmul_batched": (models.matmul_batched, lambda: [r(2, 3, 4), r(4, 2, seed=11), r(1, 4, 2, seed=12)],
                       (0, 1, 2)),
    "outer_dot": (models.outer_dot, lambda: [r(3), r(4, seed=13), r(3, 4, seed=14)], (0, 1, 2)),
    "transpose_reshape": (models.transpose_reshape, lambda: [r(2, 3, 4)], (0,)),
    "indexing": (models.indexing, lambda: [r(4, 5)], (0,)),
    "concat_stack": (models.concat_stack, lambda: [r(3, 2), r(3, 2, seed=15)], (0, 1)),
    "loop_stacked": (models.loop_stacked, lambda: [r(4, 3, 3) * 0.8, r(4, 3, seed=16), r(5, 3, seed=17)],
                     (0, 1, 2)),
    "loop_stacked_relu": (models.loop_stacked_relu, lambda: [r(4, 3, 3), r(4, 3, seed=50), r(5, 3, seed=51)],
                          (0, 1, 2)),
    "loop_stacked_residual": (models.loop_stacked_residual, lambda: [r(3, 4, 4), r(2, 4, seed=52)], (0, 1)),
    "loop_stacked_reversed": (models.loop_stacked_reversed, lambda: [r(3, 3, 3), r(3, 3, seed=53),
                                                                     r(4, 3, seed=54)], (0, 1, 2)),
    "loop_stacked_partial": (models.loop_stacked_partial, lambda: [r(4, 3, 3), r(4, 3, seed=55), r(2, 3, seed=56)],
                             (0, 1, 2)),
    "gelu_tanh": (models.gelu_tanh, lambda: [r(4, 3) * 3, r(3, 5, seed=57)], (0, 1)),
    "half_one_minus_tanh": (models.half_one_minus_tanh, lambda: [r(7) * 4], (0,)),
    "loop_with_helpers": (models.loop_with_helpers, lambda: [r(3, 2), r(2), r(4, 3), r(4, 2), 3], (0, 1)),
    "unpack_augassign": (models.unpack_and_augassign, lambda: [r(2, 3), r(2, 3, seed=18)], (0, 1)),
    "log_softmax_ce": (models.log_softmax_ce, lambda: [r(6, 4) * 3, onehot(6, 4)], (0,)),
    "logsumexp_loss": (models.logsumexp_loss, lambda: [r(6, 4) * 3, onehot(6, 4)], (0,)),
    "softmax_attention": (models.softmax_attention, lambda: [r(5, 3), r(5, 3, seed=19), r(5, 2, seed=20)],
                          (0, 1, 2)),
    "mlp": (models.mlp, lambda: [r(6, 5) * .5, r(5) * .1, r(5, 3, seed=21) * .5, r(3) * .1, r(4, 6, seed=22),
                                 onehot(4, 3)], (0, 1, 2, 3)),
    "layernorm": (models.layernorm, lambda: [r(3, 6), r(6, seed=23), r(6, seed=24)], (0, 1, 2)),
    "line": (models.line, lambda: [0.5, -0.3, 2.0, 1.0], (0, 1, 2, 3)),
    "boolean_arithmetic": (models.boolean_arithmetic, lambda: [r(5), r(5, seed=30)], (0, 1)),
    "float_scale_in_array_model": (models.float_scale_in_array_model, lambda: [r(3), r(3, seed=31), 1.5, 2],
                                   (0, 1, 2)),
    "negated_relu_in_a_sum": (models.negated_relu_in_a_sum, lambda: [r(3, 4), 0.4], (0, 1)),
    "stable_bce": (models.stable_bce, lambda: [r(4), 0.1, r(12, 4, seed=40) * 3, (r(12, seed=41) > 0) * 1.0],
                   (0, 1)),
    "stable_bce_scalar": (models.stable_bce_scalar, lambda: [0.4, -0.2, 1.5, 1.0], (0, 1, 2)),
    "reciprocal_scalar": (models.reciprocal_chain, lambda: [0.7, -1.3], (0, 1)),
    "reciprocal_array": (models.reciprocal_chain, lambda: [pos(3), r(3)], (0, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, backend):
    model, make_args, wrt = CASES[name]
    args = make_args()
    f = sb.value_and_grad(model, wrt=wrt, backend=backend)
    value, grads = f(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-12)
    assert len(grads) == len(wrt)
    for g, i in zip(grads, wrt):
        assert np.shape(g) == np.shape(args[i])
    assert_gradients_match(model, grads, args, wrt)


def test_where_safe_gradient_is_exact_on_the_taken_branch(backend):
    x = np.array([-1.0, 0.0, 4.0, 0.25])
    g = sb.grad(models.where_safe_sqrt, backend=backend)(x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.25, 1.0])
    g = sb.grad(models.where_safe_log, backend=backend)(x)
    np.testing.assert_array_equal(g, [1.0, 1.0, 0.25, 4.0])
    g = sb.grad(models.where_safe_division, backend=backend)(np.array([0.0, 1.0]))
    assert g[0] == 0.0 and np.isclose(g[1], np.cos(1.0) - np.sin(1.0))


def test_kinks_take_the_mean_of_one_sided_derivatives(backend):
    """relu, abs, max ties and clip bounds: what a central difference measures."""
    relu = sb.grad(models.max_min, wrt="a", backend=backend)
    # maximum(a, b)*2 ties: 2 * 0.5; minimum(a, 0.3*b) ties: 0.5
    np.testing.assert_allclose(relu(np.zeros((1, 3)), np.zeros(3)), [[1.5, 1.5, 1.5]])
    np.testing.assert_allclose(sb.grad(models.clip_model, backend=backend)(np.array([-0.5, 0.7, 0.0, 2.0])),
                               [0.5 * 2 * -0.5, 0.5 * 2 * 0.7, 0.0, 0.0])
    np.testing.assert_allclose(sb.grad(models.max_all, backend=backend)(np.array([[1.0, 1.0], [0.0, 0.0]])),
                               [[0.5, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(sb.grad(models.unary_all, backend=backend)(np.full((1, 1), 0.5))[0, 0],
                               _unary_all_derivative(0.5) + np.sign(0.0))


def _unary_all_derivative(x):
    """d/dx of unary_all at x, by hand, without the abs term."""
    a = np.exp(x) + np.log(x) + np.log1p(x) + np.expm1(x) + np.sqrt(x) + x * x
    da = np.exp(x) + 1 / x + 1 / (1 + x) + np.exp(x) + 0.5 / np.sqrt(x) + 2 * x
    b = np.sin(x) + np.cos(x) + np.tan(x) + np.tanh(x) + np.sinh(x) + np.cosh(x)
    db = np.cos(x) - np.sin(x) + 1 / np.cos(x) ** 2 + 1 - np.tanh(x) ** 2 + np.cosh(x) + np.sinh(x)
    dc = 1 / (1 + x * x) + 0.5 / np.sqrt(1 - x * x / 4) - 0.5 / np.sqrt(1 - x * x / 4)
    return da * b + a * db + dc


def test_returning_a_parameter_and_a_constant(backend):
    assert sb.grad(models.returns_param, backend=backend)(2.5) == 1.0
    g = sb.grad(models.constant_loss, backend=backend)(np.ones(3))
    np.testing.assert_array_equal(g, np.zeros(3))


@pytest.mark.parametrize("name", sorted(CASES))
def test_backends_agree_in_float64(name):
    """The LLVM backend and the NumPy backend give the same numbers to float64 round-off."""
    model, make_args, wrt = CASES[name]
    args = make_args()
    v_np, g_np = sb.value_and_grad(model, wrt=wrt, backend="numpy")(*args)
    v_ll, g_ll = sb.value_and_grad(model, wrt=wrt, backend="llvm")(*args)
    np.testing.assert_allclose(v_ll, v_np, rtol=1e-12, atol=1e-14)
    for a, b in zip(g_ll, g_np):
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13 * scale)
