"""Regressions for programs the long fuzz run found (issue 19), each reduced to its core.

(a) A kernel whose inputs all fold to constants (`v - v` is zeros) lost their dtype: its body had no
    symbol left, so it was typed as a float64 number, and a float32 model returned a float64 loss
    (python -m tests.fuzz --program-seed 202007712 --backend numpy).
(b) LLVM: a kernel computed in a row pass (A @ x, its chain and A.T @ r in one loop) was also the
    producer of a fused reduction (`np.sum(v, axis=0, keepdims=True)`), which then was never
    computed: "used before it was computed" at compile time
    (python -m tests.fuzz --program-seed 203001241 --backend llvm).
"""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def where_of_zeros(x):
    v = x - x
    return np.sum(np.where(v < 0.2, v ** 2, 1 / v)) + np.sum(x * x)


def reciprocal_of_zeros(x):
    v = np.mean(x, axis=-1, keepdims=True)
    w = v - v
    return np.sum(np.tanh(np.where(w < 0.2, w ** 2, 1 / w) * 0.08)) + np.sum(x)


def zeros_times_weak(x):
    v = x - x
    return np.sum((v + 1.0) * x)


@pytest.mark.parametrize("model", [where_of_zeros, reciprocal_of_zeros, zeros_times_weak])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_folded_constants_keep_the_dtype_numpy_gives(backend, model, dtype):
    x = np.random.default_rng(0).uniform(0.5, 1.5, (3, 4)).astype(dtype)
    with np.errstate(divide="ignore"):
        want = model(x)
    value, grad = sb.value_and_grad(model, backend=backend)(x)
    assert np.asarray(value).dtype == np.asarray(want).dtype and grad.dtype == dtype
    np.testing.assert_allclose(value, want, rtol=1e-6 if dtype == np.float32 else 1e-13)
    if dtype == np.float64:
        assert_gradients_match(model, [grad], [x], (0,))


def keepdims_sum_of_a_row_chain(x, A):
    z = A @ x
    v = x / (z * z + 0.5)
    return np.mean(np.sum(v, axis=0, keepdims=True))


def reversed_row_chain(x, A):
    z = A @ x
    u = np.tanh(x) * 0.5 + np.cos(x) * x
    v = u[::-1] / (z * z + 0.5)
    return np.mean(np.sum(v, axis=0, keepdims=True)) + np.exp(u).sum()


@pytest.mark.parametrize("model", [keepdims_sum_of_a_row_chain, reversed_row_chain])
@pytest.mark.parametrize("n", [1, 3, 40])
def test_a_reduction_of_a_row_pass_value_is_computed(backend, model, n):
    rng = np.random.default_rng(n)
    args = [rng.uniform(-1, 1, n), rng.uniform(-1, 1, (n, n))]
    for wrt in [(0,), (1,), (0, 1)]:
        value, grads = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
        np.testing.assert_allclose(value, model(*args), rtol=1e-12)
        assert_gradients_match(model, grads, args, wrt)


# (c) Value numbering made two arrays NumPy keeps apart one Value (`x - x` and np.zeros_like(x) are the same
#     constant; two `x * 2` or two `x.copy()` are one node), and the alias check refused to assign into one
#     of them as "shared" (python -m tests.fuzz --program-seed 301003551 --backend numpy, and two more).

def zeros_twice(x):
    v = x - x
    y = np.zeros_like(x)
    y[1] = np.tanh(x[1]) * 2.0
    y[0] += x[1] * x[0]
    return np.sum(y * y) + np.sum(v + x)


def same_product_twice(x):
    a = x * 2
    b = x * 2
    a[0] = 1.0
    return np.sum(a * b)


def two_copies(x):
    a = x.copy()
    b = x.copy()
    a[0] = np.sin(x[1])
    return np.sum(a * b)


def annotated_products(x):
    a: np.ndarray = x * 2
    b: np.ndarray = x * 2
    a[0] = 1.0
    return np.sum(a * b)


@pytest.mark.parametrize("model", [zeros_twice, same_product_twice, two_copies, annotated_products])
def test_equal_arrays_made_apart_are_not_shared(backend, model):
    x = np.random.default_rng(3).uniform(-1, 1, 3)
    value, grad = sb.value_and_grad(model, backend=backend)(x)
    np.testing.assert_allclose(value, model(x.copy()), rtol=1e-13)
    assert_gradients_match(model, [grad], [x], (0,))


def real_alias(x):
    a = x * 2
    b = a
    a[0] = 1.0
    return np.sum(a * b)


def test_a_real_alias_is_still_refused():
    with pytest.raises(sb.CompileError, match="`a` is shared: `b` holds it too"):
        sb.value_and_grad(real_alias)(np.ones(3))
