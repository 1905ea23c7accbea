"""Integer-array indexing (x[idx], x[np.arange(n), labels], np.take, np.take_along_axis): values against
NumPy's, gradients (scatter-adds, repeated indices adding up) against central differences, both backends."""
import re

import numpy as np
import pytest

import symbackprop as sb
from symbackprop import ir
from symbackprop.primitives import gather as gathering
from gradcheck import assert_gradients_match


def r(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape)


def rows(x, idx):
    return np.sum(np.sin(x[idx]) ** 2)


def columns(x, idx):
    return np.sum(x[:, idx] * x[:, idx])


def middle_axis(x, idx):
    return np.sum(np.cos(x[:, idx, 1:]))


def picked(x, labels):
    return -np.mean(x[np.arange(x.shape[0]), labels])


def non_adjacent(x, i, j):
    return np.sum(x[i, :, j] ** 3)


def broadcast_pairs(x, i, j):
    return np.sum(np.tanh(x[i[:, None], j]))


def reversed_and_strided(x, idx):
    return np.sum(x[::-1, idx] ** 2) + np.sum(x[1::2, idx] * 3.0) + np.sum(x[idx, ::-2])


def static_lists(x):
    return np.sum(x[[0, 2, 2, -1]] ** 2) + np.sum(x[1, [3, 0]])


def takes(x, idx):
    return (np.sum(np.take(x, idx) ** 2) + np.sum(np.take(x, idx, axis=1) ** 3) + np.sum(np.take(x, 2, axis=0))
            + np.sum(np.take(x, idx[:2], axis=-2) * 2.0))


def along(x, idx):
    return np.sum(np.exp(np.take_along_axis(x, idx, axis=1))) + np.sum(np.take_along_axis(x, idx[:, :1], 1) ** 2)


def along_3d(x, idx):
    return np.sum(np.take_along_axis(x, idx, axis=0) ** 2)


def gather_in_a_loop(x, idx):
    total = 0.0
    for i in range(3):
        total = total + np.sum(x[idx] * i)
    return total


def gather_of_gather(x, idx):
    return np.sum(x[idx][idx] ** 2)


def gather_plus_dense(x, idx):
    y = np.tanh(x)
    return np.sum(y[idx] ** 2) + np.sum(y * x) + np.sum(x[:, idx[:2]])


def two_gathers(x, i, j):
    return np.sum(np.sin(x[i])) + np.sum(x[j] ** 2) - np.sum(x[np.arange(3), np.take(i, [2, 0, 1])] * 0.5)


def sorts(x, w):
    return (np.sum(np.sort(x) * w) + np.sum(np.sort(x, axis=0) ** 2 * w) + np.sum(np.sort(x, axis=None)[:3])
            + np.sum(x[0][np.argsort(x[1])] * w[0]) + np.sum(np.sort(x[:, 1:], kind="stable") * w[:, :3]))


def sort_3d(x, w):
    return np.sum(np.sort(x, axis=1) * w) + np.sum(np.sort(x[:, ::-1], axis=-3)[0] ** 3)


def computed_index(x, labels):
    return np.sum(x[labels + 1] ** 2)


IDX = np.array([3, 0, 3, 4, -1])
CASES = {
    "rows_repeated": (rows, lambda: [r(5, 3), IDX]),
    "rows_2d_index": (rows, lambda: [r(5, 3), np.array([[0, 4], [4, 4], [1, -2]])]),
    "rows_int32": (rows, lambda: [r(5, 3), IDX.astype(np.int32)]),
    "rows_0d_index": (rows, lambda: [r(5, 3), np.array(2)]),
    "columns": (columns, lambda: [r(3, 5), IDX]),
    "middle_axis": (middle_axis, lambda: [r(2, 5, 3), IDX]),
    "picked": (picked, lambda: [r(6, 4), np.array([0, 3, 3, 1, 2, 0])]),
    "non_adjacent": (non_adjacent, lambda: [r(4, 2, 3), np.array([0, 3, 3]), np.array([2, 2, -3])]),
    "broadcast_pairs": (broadcast_pairs, lambda: [r(4, 3), np.array([0, 3, 3]), np.array([2, 0])]),
    "reversed_and_strided": (reversed_and_strided, lambda: [r(5, 5), IDX]),
    "static_lists": (static_lists, lambda: [r(4, 5)]),
    "takes": (takes, lambda: [r(4, 5), np.array([1, 3, 3, 0])]),
    "along": (along, lambda: [r(3, 4), np.array([[0, 3, 3], [1, 1, 2], [3, 2, 0]])]),
    "along_3d": (along_3d, lambda: [r(3, 2, 2), np.array([[[0, 2]], [[2, 2]]])]),
    "gather_in_a_loop": (gather_in_a_loop, lambda: [r(5, 2), IDX]),
    "gather_plus_dense": (gather_plus_dense, lambda: [r(5, 5), IDX]),
    "two_gathers": (two_gathers, lambda: [r(4, 3), np.array([1, 1, 0]), np.array([3, 2, 0, 0, 1])]),
    "sorts": (sorts, lambda: [r(3, 4), r(3, 4, seed=1)]),
    "sort_3d": (sort_3d, lambda: [r(2, 5, 3), r(2, 5, 3, seed=1)]),
    "computed_index": (computed_index, lambda: [r(4), np.array([0, 2, -2])]),
    "gather_of_gather": (gather_of_gather, lambda: [r(6), np.array([5, 1, 1, 0, 4, 2])]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients(name, backend):
    model, make = CASES[name]
    args = make()
    f = sb.value_and_grad(model, wrt=0, backend=backend)
    value, grad = f(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-12)
    assert_gradients_match(model, [grad], args, [0])


def test_the_scatters_adjoint_is_the_gather():
    """Gather and scatter-add at the same indices are each other's transposes:
    and the scatter's adjoint rule builds the gather with the same key."""
    g = ir.Graph()
    with ir.building(g):
        x, i = ir.Value((5, 3), np.float64, None, "x"), ir.Value((4,), np.int64, None, "i")
        y = gathering.gather(x, (slice(None, None, -1), i))
        d_x, none = gathering.Gather.adjoint(y.node, [y], [True, False])
        (d_y, d_i) = gathering.ScatterAddAt.adjoint(d_x.node, [x], [True, False])
    assert d_x.node.prim is gathering.ScatterAddAt and d_x.shape == x.shape and d_i is None and none is None
    assert d_y.node.prim is gathering.Gather and d_y.node.attrs["key"] == y.node.attrs["key"]
    assert y.shape == (5, 4)


def argsort_value(x):
    return np.sum(np.argsort(x, axis=1) * np.arange(1.0, 1.0 + x.shape[1])) + np.sum(np.sort(x, axis=1)[:, :2])


def test_argsort_is_numpys_stable_order_with_nans_last(backend):
    x = np.array([[3.0, np.nan, 1.0, 1.0, -2.0, 1.0], [0.0, -0.0, 2.0, 2.0, np.nan, np.nan],
                  [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    value = sb.value_and_grad(argsort_value, backend=backend)(x)[0]
    assert value == argsort_value(x)
    y = np.array([[1.0, 2.0, 1.0, 0.5]])
    grad = sb.grad(sorts_first_two, backend=backend)(y)
    want = np.zeros_like(y)
    want[0, np.argsort(y[0], kind="stable")[:2]] = [1.0, 2.0]  # at ties the gradient follows the stable order
    np.testing.assert_array_equal(grad, want)


def sorts_first_two(x):
    s = np.sort(x, axis=1)
    return s[0, 0] + 2.0 * s[0, 1]


def test_float32(backend):
    x = r(5, 3).astype(np.float32)
    value, grad = sb.value_and_grad(rows, backend=backend)(x, IDX)
    assert grad.dtype == np.float32
    want = np.zeros_like(x)
    np.add.at(want, IDX, 2 * np.sin(x[IDX]) * np.cos(x[IDX]))
    np.testing.assert_allclose(grad, want, rtol=1e-5)


def mlp_labels(W1, b1, W2, b2, x, labels):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(x.shape[0]), labels])


def mlp_onehot(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def mlp_args(n=8):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, n)
    return [r(6, 5), r(5, seed=1), r(5, 4, seed=2), r(4, seed=3), r(n, 6, seed=4)], labels


def test_label_cross_entropy_is_the_one_hot_one(backend):
    params, labels = mlp_args()
    wrt = (0, 1, 2, 3)
    v1, g1 = sb.value_and_grad(mlp_labels, wrt=wrt, backend=backend)(*params, labels)
    v2, g2 = sb.value_and_grad(mlp_onehot, wrt=wrt)(*params, np.eye(4)[labels])
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_gradients_match(mlp_labels, g1, params + [labels], list(wrt))


def test_label_cross_entropy_code_scatters_at_the_labels():
    """The backward pass is the softmax over n with -1/n added at the labels by np.add.at: no one-hot
    matrix (no dense scatter, no comparison with the labels), and still the 5 matrix products of the
    one-hot version."""
    params, labels = mlp_args(128)
    f = sb.value_and_grad(mlp_labels, wrt=(0, 1, 2, 3))
    f(*params, labels)
    src = f.source
    backward = src.split("# backward")[1]
    assert re.search(r"d_z = p/128 .*\n *np\.add\.at\(d_z, \(t\d+, labels\), d_\w+\)", backward), src
    assert "np.zeros" not in backward and "np.full((128, 4)" not in backward
    assert "np.arange(128)" in src and "np.eye" not in src and "==" not in src
    assert src.count("np.dot(") + src.count(" @ ") + src.count("np.matmul(") == 5
    one_hot = sb.value_and_grad(mlp_onehot, wrt=(0, 1, 2, 3))
    one_hot(*params, np.eye(4)[labels])
    assert one_hot.source.count("np.dot(") == 5


def test_llvm_out_of_bounds_is_nan_and_numpy_raises():
    x, idx = r(5, 3), np.array([0, 5])
    value, grad = sb.value_and_grad(rows, backend="llvm")(x, idx)
    assert np.isnan(value)
    with pytest.raises(IndexError):
        sb.value_and_grad(rows)(x, idx)


def float_index(x, w):
    return np.sum(x[w])



def mask_index(x):
    return np.sum(x[x > 0])


def static_out_of_bounds(x):
    return np.sum(x[[0, 7]])


@pytest.mark.parametrize("model, args, kind, message", [
    (float_index, [r(4), r(2)], sb.CompileError, r"indexing with a float64 array: index arrays must be integers"),
    (mask_index, [r(4)], sb.CompileError, r"boolean-mask indexing"),
    (static_out_of_bounds, [r(4)], ValueError, r"index 7 is out of bounds for axis 0 with size 4"),
])
def test_what_is_outside_names_the_line(model, args, kind, message):
    with pytest.raises(kind, match=message) as info:
        sb.value_and_grad(model)(*args)
    assert f"{__file__}:{model.__code__.co_firstlineno + 1}" in str(info.value)
