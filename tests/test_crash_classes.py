"""Two crash classes found from outside the project (issue 19), each with the variants that reach it.

(a) NumPy backend: loop-indexed scalar weights scaling slices that move with the loop index. The
    stacking pass batched each iteration's weight gradient (the sum of one vector) into
    `np.ones(n) @ stacks`, which contracts the stack's layer axis when each layer is a vector:
    a core-dimension mismatch at call time, or, when the lengths agree, a silently wrong sum.
(b) LLVM backend: a vector v feeding two matrix-vector products, A @ v and B @ v, whose results meet
    in one elementwise chain (one through tanh) and are reduced. Each product with its chain and
    its transposed product A.T @ r is a row pass (backends/llvm/rowpass.py); the planner gave both
    passes the shared chain, so it was lowered in two loops, each reading the values the other kept
    in registers: a KeyError at compile time. A node now belongs to one pass, and a pass is taken
    only if it runs after the passes it reads from and before those reading it.
"""
import numpy as np
import pytest

import symbackprop as sb
from symbackprop.backends.llvm.lower import Lowering
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


def shared_vector(A, B, v):
    return np.sum((A @ v) * np.tanh(B @ v))


def shared_vector_named(A, B, v):
    a = A @ v
    b = np.tanh(B @ v)
    return np.sum(a * b)


def shared_vector_three_ways(A, B, v):
    return np.sum(np.tanh(A @ v) + np.exp(B @ v) * (A @ v))


def shared_vector_and_its_matrix(A, v):
    return np.sum((A @ v) * np.tanh(A @ np.tanh(v)))


def shared_rows(v, A, B):
    return np.sum((v @ A) * np.tanh(v @ B))


def shared_matrix(A, B, V):
    return np.sum((A @ V) * np.tanh(B @ V))


SHARED = [(shared_vector, [(5, 3), (5, 3), (3,)]), (shared_vector_named, [(5, 3), (5, 3), (3,)]),
          (shared_vector_three_ways, [(5, 3), (5, 3), (3,)]), (shared_vector_and_its_matrix, [(5, 3), (3,)]),
          (shared_rows, [(3,), (3, 4), (3, 4)]), (shared_matrix, [(4, 3), (4, 3), (3, 5)]),
          (shared_vector, [(300, 7), (300, 7), (7,)])]   # more rows than one block of the row loop


@pytest.mark.parametrize("model, shapes", SHARED, ids=[f"{m.__name__}-{s[0][0]}" for m, s in SHARED])
def test_one_operand_shared_by_two_products(backend, model, shapes):
    rng = np.random.default_rng(1)
    args = [rng.uniform(-1, 1, s) for s in shapes]
    everything = tuple(range(len(args)))
    for wrt in [(i,) for i in everything] + [everything]:
        value, grads = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
        np.testing.assert_allclose(value, model(*args), rtol=1e-12)
        assert_gradients_match(model, grads, args, wrt)
        other = sb.value_and_grad(model, wrt=wrt, backend="llvm" if backend == "numpy" else "numpy")(*args)[1]
        for g, h in zip(grads, other):
            np.testing.assert_allclose(g, h, rtol=1e-11, atol=1e-13)


def test_the_shared_chain_runs_in_one_row_pass():
    """One of the two products keeps its row pass; no node is in two."""
    args = [np.ones((5, 3)), np.ones((5, 3)), np.ones(3)]
    passes = Lowering(sb.value_and_grad(shared_vector, wrt=2, backend="llvm").specialise(*args),
                      "probe", True).row_passes
    assert len(passes) == 1
    nodes = [n for p in passes for n in p.nodes]
    assert len(nodes) == len(set(nodes))
