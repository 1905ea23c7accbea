"""LLVM: X @ w, its elementwise chain and X.T @ r in one pass over the rows of X (backends/llvm/rowpass.py)."""
import numpy as np
import pytest

import symbackprop as sb
from symbackprop.backends.llvm import blas
from symbackprop.backends.llvm.lower import Lowering
from gradcheck import assert_gradients_match


def logistic(w, b, X, y):
    z = X @ w + b
    return np.mean(np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z)


def linear_mse(w, b, X, y):
    r = X @ w + b - y
    return np.mean(r * r)


def centred(w, X):
    """The chain reads a sum of z (its mean): that part cannot run in the row loop."""
    z = X @ w
    c = z - np.mean(z)
    return np.sum(np.tanh(c) ** 2)


def centred_by_its_sum(w, X):
    """The chain reads sum(z) itself, a total known only after every row."""
    z = X @ w
    return np.sum(np.tanh(z - np.sum(z) * 0.01) ** 2) + np.sum(z * z)


def with_max(w, X, y):
    r = np.tanh(X @ w) - y
    return np.mean(r * r) + np.max(r)


def data(n, d, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    w = (0.3 * rng.normal(size=d)).astype(dtype)
    return w, 0.1, X, y


def row_passes(f, args):
    return Lowering(f.specialise(*args), "probe", True).row_passes


@pytest.mark.parametrize("model", [logistic, linear_mse])
@pytest.mark.parametrize("n", [1000, 4096, 7])  # a remainder block, whole blocks, fewer rows than a block
def test_row_pass_gradients(model, n):
    args = data(n, 24)
    f = sb.value_and_grad(model, wrt=(0, 1), backend="llvm")
    value, grads = f(*args)
    assert len(row_passes(f, args)) == 1
    reference = sb.value_and_grad(model, wrt=(0, 1))(*args)  # NumPy: X @ w and X.T @ r as two products
    np.testing.assert_allclose(value, reference[0], rtol=1e-12)
    for a, b in zip(grads, reference[1]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-15)
    assert_gradients_match(model, grads, args, (0, 1))


def test_row_pass_without_blas(monkeypatch):
    """Exported libraries use their own loops for the block products: the same numbers."""
    args = data(700, 40)
    expected = sb.value_and_grad(logistic, wrt=(0, 1))(*args)
    monkeypatch.setattr(blas, "find_cblas", lambda: None)
    f = sb.value_and_grad(logistic, wrt=(0, 1), backend="llvm")
    value, (d_w, d_b) = f(*args)
    lowering = Lowering(f.specialise(*args), "probe", False)
    assert len(lowering.row_passes) == 1 and "gemm" not in lowering.run()
    np.testing.assert_allclose(value, expected[0], rtol=1e-12)
    np.testing.assert_allclose(d_w, expected[1][0], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(d_b, expected[1][1], rtol=1e-11, atol=1e-15)


def test_row_pass_float32():
    args = data(1000, 16, np.float32)
    value, (d_w, d_b) = sb.value_and_grad(logistic, wrt=(0, 1), backend="llvm")(*args)
    expected = sb.value_and_grad(logistic, wrt=(0, 1))(*args)
    assert d_w.dtype == np.float32
    np.testing.assert_allclose(d_w, expected[1][0], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(value, expected[0], rtol=1e-5)


def test_chain_reading_a_sum_of_z_is_not_a_row_pass():
    rng = np.random.default_rng(3)
    args = [0.3 * rng.normal(size=8), rng.normal(size=(500, 8))]
    f = sb.value_and_grad(centred, wrt=(0,), backend="llvm")
    value, (d_w,) = f(*args)
    assert row_passes(f, args) == []
    np.testing.assert_allclose(d_w, sb.value_and_grad(centred, wrt=(0,))(*args)[1][0], rtol=1e-11)
    assert_gradients_match(centred, [d_w], args, (0,))


def test_chain_reading_a_max_of_its_rows_is_not_a_row_pass():
    """max(r)'s gradient is a mask comparing every r_i with the max: known only after all rows."""
    args = list(data(300, 12))
    del args[1]
    f = sb.value_and_grad(with_max, wrt=(0,), backend="llvm")
    value, (d_w,) = f(*args)
    assert row_passes(f, args) == []
    expected = sb.value_and_grad(with_max, wrt=(0,))(*args)
    np.testing.assert_allclose(value, expected[0], rtol=1e-12)
    np.testing.assert_allclose(d_w, expected[1][0], rtol=1e-11, atol=1e-15)
    assert_gradients_match(with_max, [d_w], args, (0,))


def test_chain_reading_its_own_sum_is_not_a_row_pass():
    rng = np.random.default_rng(4)
    args = [0.3 * rng.normal(size=8), rng.normal(size=(600, 8))]
    f = sb.value_and_grad(centred_by_its_sum, wrt=(0,), backend="llvm")
    value, (d_w,) = f(*args)
    assert row_passes(f, args) == []
    expected = sb.value_and_grad(centred_by_its_sum, wrt=(0,))(*args)
    np.testing.assert_allclose(value, expected[0], rtol=1e-12)
    np.testing.assert_allclose(d_w, expected[1][0], rtol=1e-11, atol=1e-15)
    assert_gradients_match(centred_by_its_sum, [d_w], args, (0,))


def test_train_step_with_a_row_pass_matches_numpy():
    """Adam on logistic regression: the LLVM step (row pass, then the update kernels) equals the NumPy step."""
    runs = {}
    for backend in ("numpy", "llvm"):
        w, b, X, y = data(1000, 12)
        b = np.array(b)
        step = sb.train_step(logistic, sb.optim.Adam(lr=0.05), wrt=(0, 1), backend=backend)
        runs[backend] = ([step(w, b, X, y) for _ in range(5)], w, b)
    (l_np, w_np, b_np), (l_ll, w_ll, b_ll) = runs["numpy"], runs["llvm"]
    np.testing.assert_allclose(l_ll, l_np, rtol=1e-12)
    assert l_np[-1] < l_np[0]
    np.testing.assert_allclose(w_ll, w_np, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(b_ll, b_np, rtol=1e-11, atol=1e-14)
