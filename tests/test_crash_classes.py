"""Two crash classes found from outside the project (issue 19), each with the variants that reach it.

(a) NumPy backend: loop-indexed scalar weights scaling slices that move with the loop index. The
    stacking pass batched each iteration's weight gradient (the sum of one vector) into
    `np.ones(n) @ stacks`, which contracts the stack's layer axis when each layer is a vector:
    a core-dimension mismatch at call time, or, when the lengths agree, a silently wrong sum.
(b) LLVM backend: see the models below `shared_vector`.
"""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def conv1d(w, x):
    out = 0.0 * x[:6]
    for j in range(3):
        out = out + w[j] * x[j:j + 6]
    return np.sum(out * out)


def conv1d_as_long_as_its_taps(w, x):
    """k == n: `np.ones(3) @ stacks` ran and summed over the wrong axis (a wrong number, no error)."""
    out = 0.0 * x[:3]
    for j in range(3):
        out = out + w[j] * x[j:j + 3]
    return np.sum(out * out)


def moving_rows(w, X):
    out = 0.0 * X[:4]
    for j in range(3):
        out = out + w[j] * X[j:j + 4, :]
    return np.sum(np.tanh(out))


def columns(w, X):
    out = 0.0 * X[:, 0]
    for j in range(3):
        out += w[j] * X[:, j]
    return np.sum(out ** 2)


def subtracted(w, x):
    out = x[:5] * 1.0
    for j in range(3):
        out -= w[j] * x[j:j + 5]
    return np.sum(out * out)


def nested(W, x):
    out = 0.0 * x[:4]
    for i in range(2):
        for j in range(3):
            out = out + W[i, j] * x[i + j:i + j + 4]
    return np.sum(out * out)


def moving_planes(W, X):
    """Each layer's weight gradient sums a 3-d slice over its first axis: `ones @` took the middle one."""
    out = 0.0 * X[:2]
    for j in range(3):
        out = out + W[j] * X[j:j + 2]
    return np.sum(out * out)


LOOP_WEIGHTS = [(conv1d, [(3,), (8,)]), (conv1d_as_long_as_its_taps, [(3,), (5,)]), (moving_rows, [(3,), (6, 5)]),
                (columns, [(3,), (4, 3)]), (subtracted, [(3,), (7,)]), (nested, [(2, 3), (7,)]),
                (moving_planes, [(3, 4, 5), (4, 4, 5)])]


@pytest.mark.parametrize("model, shapes", LOOP_WEIGHTS, ids=[m.__name__ for m, _ in LOOP_WEIGHTS])
def test_loop_indexed_weights_of_moving_slices(backend, model, shapes):
    rng = np.random.default_rng(0)
    args = [rng.uniform(-1, 1, s) for s in shapes]
    value, grads = sb.value_and_grad(model, wrt=(0, 1), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    assert_gradients_match(model, grads, args, (0, 1))
    other = sb.value_and_grad(model, wrt=(0, 1), backend="llvm" if backend == "numpy" else "numpy")(*args)[1]
    for g, h in zip(grads, other):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-14)


def test_a_vector_layer_sums_its_own_axis():
    """The batched sum of vector layers reduces each layer (axis 1), not across layers."""
    f = sb.grad(conv1d, wrt=(0,))
    f.specialise(np.ones(3), np.ones(8))
    source = f.source
    assert "np.ones(6) @" not in source and "sum(axis=1)" in source
