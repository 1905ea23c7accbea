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
