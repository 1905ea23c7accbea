"""NumPy functions the language writes with its primitives (frontend/compositions.py): each one's value
against NumPy's and its gradient against central differences, over the arguments users write, on both
backends."""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def weighted(y, w):
    return np.sum(y * w)


def var_all(x):
    return np.var(x) + np.std(x)


def var_axis(x, w):
    return weighted(np.var(x, axis=1, keepdims=True) + np.std(x, axis=0, ddof=1)[None, :], w)


def var_method(x):
    return x.var() * x.std(ddof=1)


def prod_all(x):
    return np.prod(x) + np.prod(x, axis=0)[1] + x.prod(axis=(0, 1))


def prod_keepdims(x, w):
    return weighted(np.prod(x, axis=1, keepdims=True), w)


def cumsum_axis(x, w):
    return weighted(np.cumsum(x, axis=1), w) + np.sum(np.cumsum(x) * np.cumsum(x))


def diff_twice(x, w):
    return weighted(np.diff(x, axis=0), w[1:]) + np.sum(np.diff(x, n=2, axis=0) ** 2)


def norms(x, v):
    return (np.linalg.norm(x) + np.sum(np.linalg.norm(x, axis=1)) + np.linalg.norm(v, ord=1)
            + np.linalg.norm(v, np.inf) + np.linalg.norm(x, "fro") + np.sum(np.linalg.norm(x, axis=0, keepdims=True)))


def elementwise_forms(a, b):
    return np.sum(np.logaddexp(a, b) + np.logaddexp2(a, 2 * b) + np.hypot(a, b) + np.log2(a * a + 1)
                  + np.log10(b * b + 2) + np.exp2(a))


def logaddexp_at_ties(a):
    return np.sum(np.logaddexp(a, a))


def axes(x, w):
    y = np.swapaxes(x, 0, 2)                        # (3, 4, 2)
    z = np.moveaxis(x, 0, -1)                       # (3, 4, 2)
    s = np.squeeze(x[:, :1, :], axis=1)             # (2, 4)
    return weighted(y, w) + np.sum(z * z) + np.sum(s * np.atleast_2d(s[0])) + np.sum(x.swapaxes(1, 2) ** 2)


def at_least(v):
    a = np.atleast_1d(v[0])
    b = np.atleast_2d(v)
    c = np.atleast_3d(v)
    return np.sum(a) + np.sum(b @ b.T) + np.sum(c * c)


def broadcast_and_flip(v, w):
    return weighted(np.broadcast_to(v, (3, 4)), w) + np.sum(np.flip(w, axis=1) * w) + np.sum(np.flip(v) * v)


def rolled(x, w):
    return weighted(np.roll(x, 1, axis=1), w) + weighted(np.roll(x, -2), w) + weighted(np.roll(x, (1, 2), (0, 1)), w)


def repeated_tiled(v, w):
    return (weighted(np.repeat(v, 2), w[:8]) + weighted(np.tile(v, 2), w[8:16])
            + np.sum(np.tile(v, (2, 1)) ** 2) + np.sum(v.repeat(3) ** 3))


def split_parts(x):
    a, b = np.split(x, 2, axis=1)
    p, q, r = np.array_split(x, 3)
    return np.sum(a * b) + np.sum(p) - np.sum(q * q) + np.sum(np.tanh(r))


def padded(x, w):
    return weighted(np.pad(x, ((1, 0), (2, 1)), constant_values=0.5), w) + np.sum(np.pad(x, 1) ** 2)


def einsums(a, b, c):
    return (np.sum(np.einsum("ij,jk->ik", a, b) ** 2) + np.einsum("ij,ij->", a, a)
            + np.sum(np.einsum("ij,jk,k->i", a, b, c)) + np.sum(np.einsum("ij->ji", a) * a.T)
            + np.sum(np.einsum("ij,jk", a, b)) + np.sum(np.einsum("i,j->ij", c, c) ** 2))


def batched_einsum(q, k):
    return np.sum(np.tanh(np.einsum("bqd,bkd->bqk", q, k)))


def contractions(a, b, v):
    return (np.sum(np.tensordot(a, b, axes=1) ** 2) + np.sum(np.tensordot(a, a, axes=([0, 1], [0, 1])))
            + np.sum(np.inner(a, a)) + np.inner(v, v) + np.trace(a @ b) + np.trace(b @ a, offset=1)
            + np.sum(np.kron(v, v[:2]) ** 2) + np.sum(np.kron(a, b[:2, :2]) ** 2))


def crossed(u, v):
    return np.sum(np.cross(u, v) ** 2) + np.sum(np.cross(u[0], v[1]))


def constants(x, v):
    n = x.shape[0]
    ramp = np.arange(n)                             # 0, 1, 2, ... as float64
    grid = np.linspace(-1.0, 1.0, x.shape[1])
    return (np.sum(x * ramp[:, None] * grid) + np.sum((x @ np.eye(x.shape[1], 2, k=1)) ** 2)
            + np.sum(v * np.arange(1.0, 2.0, 0.25)) + np.sum(np.identity(n) @ x) + np.sum(np.tri(n, 3) * x[:, :3]))


def triangles(x, v):
    return (np.sum(np.tril(x) ** 2) + np.sum(np.triu(x, 1) * x) + np.sum(np.tril(x, -1) * np.triu(x.T))
            + np.sum(np.diag(v) @ x) + np.sum(np.diag(v, 1) ** 2) + np.sum(np.diag(v, -2) * 3.0)
            + np.sum(np.diag(x) * v[:3]) + np.sum(np.diagonal(x, 1) ** 2) + np.sum(np.diag(x, -1)))


def float32_constants(x):
    return np.sum(x * np.arange(x.shape[0], dtype=np.float32))


def remainders(x, y):
    return (np.sum(np.remainder(x, y) ** 2) + np.sum((x % 0.3) * y) + np.sum(np.fmod(x, y) * x)
            + np.sum(np.mod(3.0 * x, y)) + np.sum(np.cumprod(x) * y) + np.sum(np.cumprod(np.stack([x, y]), axis=0))
            + np.sum(np.heaviside(x, 0.5) * y) + np.sum(np.deg2rad(x) * np.rad2deg(y)))


def angles(y, x):
    return np.sum(np.arctan2(y, x) * np.arange(1.0, y.size + 1).reshape(y.shape)) + np.sum(np.arctan2(y, 2.0) ** 2)


def zero_derivatives(x, w):
    return (np.sum(x * np.argmax(x, axis=1)[:, None]) + np.sum(w * np.argmin(x, axis=0))
            + np.sum(x * np.argmax(x)) + np.sum(x.argmin(axis=1, keepdims=True) * x)
            + np.sum(np.sign(x) * x) + np.sum(np.floor(3 * x) * x) + np.sum(np.ceil(x) + np.round(2 * x) * w)
            + np.sum((x > 0.2) * x) + np.sum(np.where(x <= w, 1.0, 0.0) * w))


def rolled_axes(x, w):
    return (np.sum(np.rollaxis(x, 2) * w) + np.sum(np.rollaxis(x, 0, 3) * np.transpose(w, (2, 0, 1)))
            + np.sum(np.rollaxis(x, -1, 1) ** 2) + np.sum(np.expand_dims(x, (0, 2)) ** 3))


def matrix_powers(a):
    return (np.sum(np.linalg.matrix_power(a, 5)) + np.sum(np.linalg.matrix_power(a, 0) * a)
            + np.sum(np.linalg.matrix_power(a, 1) ** 2) + np.sum(np.linalg.matrix_power(np.stack([a, a.T]), 2)))


def r(*shape, seed=0, low=-1.0):
    return np.random.default_rng(seed).uniform(low, 1.0, shape)


QUADRANTS = np.array([[1.0, -1.0, 0.5, 0.0], [-0.3, 0.7, -2.0, 1.5]])
CASES = {
    "angles": (angles, lambda: [QUADRANTS, np.array([[0.4, -0.2, -1.0, 0.5], [-0.9, 0.0, 0.3, -0.1]])]),
    "zero_derivatives": (zero_derivatives, lambda: [r(3, 4), r(3, 4, seed=1)]),
    "rolled_axes": (rolled_axes, lambda: [r(2, 3, 4), r(4, 2, 3, seed=1)]),
    "matrix_powers": (matrix_powers, lambda: [r(3, 3) * 0.8]),
    "var_all": (var_all, lambda: [r(3, 4)]),
    "var_axis": (var_axis, lambda: [r(3, 4), r(3, 4, seed=1)]),
    "var_method": (var_method, lambda: [r(5)]),
    "prod_all": (prod_all, lambda: [r(2, 3)]),
    "prod_with_a_zero": (prod_all, lambda: [np.array([[0.0, 0.5, -1.5], [2.0, 0.7, 1.1]])]),
    "prod_keepdims": (prod_keepdims, lambda: [r(3, 4), r(3, 1, seed=1)]),
    "cumsum_axis": (cumsum_axis, lambda: [r(3, 4), r(3, 4, seed=1)]),
    "diff_twice": (diff_twice, lambda: [r(5, 2), r(5, 2, seed=1)]),
    "norms": (norms, lambda: [r(3, 4), r(5, seed=1)]),
    "elementwise_forms": (elementwise_forms, lambda: [r(4), r(4, seed=1)]),
    "logaddexp_at_ties": (logaddexp_at_ties, lambda: [r(4)]),
    "axes": (axes, lambda: [r(2, 4, 3), r(3, 4, 2, seed=1)]),
    "at_least": (at_least, lambda: [r(3)]),
    "broadcast_and_flip": (broadcast_and_flip, lambda: [r(4), r(3, 4, seed=1)]),
    "rolled": (rolled, lambda: [r(3, 4), r(3, 4, seed=1)]),
    "repeated_tiled": (repeated_tiled, lambda: [r(4), r(16, seed=1)]),
    "split_parts": (split_parts, lambda: [r(7, 4)]),
    "padded": (padded, lambda: [r(2, 3), r(3, 6, seed=1)]),
    "einsums": (einsums, lambda: [r(3, 4), r(4, 2, seed=1), r(2, seed=2)]),
    "batched_einsum": (batched_einsum, lambda: [r(2, 3, 4), r(2, 5, 4, seed=1)]),
    "contractions": (contractions, lambda: [r(3, 3), r(3, 3, seed=1), r(3, seed=2)]),
    "crossed": (crossed, lambda: [r(2, 3), r(2, 3, seed=1)]),
    "constants": (constants, lambda: [r(3, 4), r(4, seed=1)]),
    "triangles": (triangles, lambda: [r(3, 3), r(3, seed=1)]),
    "remainders": (remainders, lambda: [r(5) * 2, r(5, seed=1, low=0.4) * np.array([1, -1, 1, -1, 1])]),
}


def test_constants_print_as_the_calls_that_make_them_and_keep_their_dtype(backend):
    f = sb.value_and_grad(constants, wrt=(0, 1), backend=backend)
    f(r(3, 4), r(4, seed=1))
    if backend == "numpy":
        assert "np.arange(3, dtype=np.float64)" in f.source and "np.eye(4, 2, k=1, dtype=np.float64)" in f.source
    x = r(5).astype(np.float32)
    value, grad = sb.value_and_grad(float32_constants, backend=backend)(x)
    assert grad.dtype == np.float32 and np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(grad, np.arange(5, dtype=np.float32))


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients(name, backend):
    model, make = CASES[name]
    args = make()
    n = model.__code__.co_argcount
    value, grads = sb.value_and_grad(model, wrt=tuple(range(n)), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-12)
    assert_gradients_match(model, grads, args, list(range(n)))


def test_einsum_products_are_matrix_products():
    f = sb.value_and_grad(batched_einsum, wrt=(0, 1))
    f(r(2, 3, 4), r(2, 5, 4, seed=1))
    assert "np.matmul(" in f.source or " @ " in f.source


def bad_einsum(a):
    return np.sum(np.einsum("ii->i", a))


def uneven_split(x):
    a, b = np.split(x, 2)
    return np.sum(a) + np.sum(b)


def reflect_pad(x):
    return np.sum(np.pad(x, 1, mode="reflect"))


@pytest.mark.parametrize("model, args, kind, message", [
    (bad_einsum, [r(3, 3)], sb.CompileError, r"repeated index within one operand \('ii'\)"),
    (uneven_split, [r(5)], ValueError, r"5 entries along axis 0 do not split into 2 equal parts"),
    (reflect_pad, [r(3)], sb.CompileError, r"np.pad\(..., mode='reflect'\) is not supported"),
])
def test_what_is_outside_names_the_line(model, args, kind, message):
    with pytest.raises(kind, match=message) as info:
        sb.value_and_grad(model)(*args)
    assert f"{__file__}:{model.__code__.co_firstlineno + 1}" in str(info.value)


def argmax_rows(x):
    return np.sum(np.argmax(x, axis=1) * 10.0 + np.argmin(x, axis=1))


def test_argmax_of_ties_is_the_first_index_and_has_no_gradient(backend):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    value, grad = sb.value_and_grad(argmax_rows, backend=backend)(x)
    assert value == argmax_rows(x)
    assert np.array_equal(grad, np.zeros_like(x))
