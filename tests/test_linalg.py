"""numpy.linalg with adjoints (primitives/linalg.py): values against NumPy's, gradients against central
differences and, for least squares and a Gaussian log-likelihood, against their closed forms. The NumPy
backend calls numpy.linalg; the LLVM backend calls the LAPACKE NumPy's OpenBLAS carries (solve, inv, det,
slogdet, cholesky) and rejects eigh and pinv, and exported .ll/.so code all of them, with a CompileError."""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def r(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape)


def spd(n, seed=0):
    b = r(n, n, seed=seed)
    return b @ b.T + n * np.eye(n)


def solves(a, b, c):
    return np.sum(np.linalg.solve(a, b) ** 2) + np.sum(np.linalg.solve(a, c) * c)


def inverses(a, w):
    return np.sum(np.linalg.inv(a) * w) + np.sum(np.linalg.inv(a.T @ a + np.eye(3)) ** 2)


def determinants(a):
    sign, logdet = np.linalg.slogdet(a)
    return np.linalg.det(a) + 2.0 * logdet + sign * 0.5 + np.linalg.slogdet(-a)[1] ** 2


def choleskys(a, w):
    L = np.linalg.cholesky(a)
    return np.sum(L * w) + np.sum(np.log(np.diag(L)))


def cholesky_of_product(b, w):
    L = np.linalg.cholesky(b @ b.T + 3.0 * np.eye(b.shape[0]))
    return np.sum(L * w)


def eighs(a, w):
    vals, vecs = np.linalg.eigh(a)
    return np.sum(vals * np.arange(1.0, 1.0 + vals.size)) + np.sum((vecs * vecs) * w) + np.sum(np.linalg.eigvalsh(a) ** 2)


def eigh_sign_free(b):
    """A loss that does not depend on the eigenvectors' signs: v v^T of each vector."""
    vals, vecs = np.linalg.eigh(b + b.T)
    return np.sum(vecs[:, 0:1] @ vecs[:, 0:1].T * np.arange(9.0).reshape(3, 3)) + vals[-1]


def pinvs(a, w):
    return np.sum(np.linalg.pinv(a) * w) + np.sum(np.linalg.pinv(a.T) ** 2)


def negative_powers(a):
    return np.sum(np.linalg.matrix_power(a, -2)) + np.sum(np.linalg.matrix_power(a, -1) * a)


def least_squares(X, y, lam):
    """The ridge solution w = (X^T X + lam I)^-1 X^T y, then its fit."""
    d = X.shape[1]
    w = np.linalg.solve(X.T @ X + lam * np.eye(d), X.T @ y)
    return np.sum((X @ w - y) ** 2)


def gaussian_nll(mu, S, X):
    """Negative log-likelihood of the rows of X under N(mu, S)."""
    n, d = X.shape
    D = X - mu
    sign, logdet = np.linalg.slogdet(S)
    quad = np.sum(D * np.linalg.solve(S, D.T).T)
    return 0.5 * quad + 0.5 * n * logdet + 0.5 * n * d * np.log(2 * np.pi)


CASES = {
    "solves": (solves, lambda: [spd(3) + r(3, 3, seed=1), r(3, seed=2), r(3, 2, seed=3)]),
    "inverses": (inverses, lambda: [spd(3) + r(3, 3, seed=1), r(3, 3, seed=2)]),
    "determinants": (determinants, lambda: [r(3, 3) + 2 * np.eye(3)]),
    "determinants_negative": (determinants, lambda: [r(4, 4, seed=5) - 2 * np.eye(4)]),
    "choleskys": (choleskys, lambda: [spd(4), r(4, 4, seed=1)]),
    "cholesky_of_product": (cholesky_of_product, lambda: [r(3, 3), r(3, 3, seed=1)]),
    "eighs": (eighs, lambda: [spd(3) + np.diag([0.0, 1.0, 3.0]), r(3, 3, seed=1)]),
    "eigh_sign_free": (eigh_sign_free, lambda: [r(3, 3, seed=4)]),
    "pinvs": (pinvs, lambda: [r(4, 2), r(2, 4, seed=1)]),
    "negative_powers": (negative_powers, lambda: [spd(3) + r(3, 3, seed=1)]),
    "least_squares": (least_squares, lambda: [r(8, 3), r(8, seed=1), 0.3]),
    "gaussian_nll": (gaussian_nll, lambda: [r(3, seed=1), spd(3), r(6, 3, seed=2)]),
}


NUMPY_ONLY = {"pinvs"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients(name, backend):
    if backend == "llvm" and name in NUMPY_ONLY:
        return  # pinv is a CompileError on LLVM: test_llvm_says_it_has_no_pinv
    model, make = CASES[name]
    args = make()
    n = model.__code__.co_argcount
    wrt = tuple(range(n))
    value, grads = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-12)
    assert_gradients_match(model, grads, args, list(wrt), rtol=1e-5, atol=1e-6)


def test_least_squares_against_the_closed_form(backend):
    """At the ridge solution the fit's gradient in y is 2 (r - X dw/dy^T ...): compare with the formula
    d/dy |X w(y) - y|^2 = 2 (H - I)^T (H - I) y, H = X (X^T X + lam I)^-1 X^T, and in lam with
    d/dlam = 2 (X w - y)^T X dw/dlam, dw/dlam = -(X^T X + lam I)^-1 w."""
    X, y, lam = r(8, 3), r(8, seed=1), 0.3
    _, (d_y, d_lam) = sb.value_and_grad(least_squares, wrt=("y", "lam"), backend=backend)(X, y, lam)
    A = X.T @ X + lam * np.eye(3)
    H = X @ np.linalg.solve(A, X.T)
    M = H - np.eye(8)
    np.testing.assert_allclose(d_y, 2 * M.T @ M @ y, rtol=1e-10)
    w = np.linalg.solve(A, X.T @ y)
    np.testing.assert_allclose(d_lam, 2 * (X @ w - y) @ X @ -np.linalg.solve(A, w), rtol=1e-10)


def test_gaussian_log_likelihood_against_the_closed_form(backend):
    """d/dmu = -S^-1 sum(x - mu); d/dS = 0.5 (n S^-1 - S^-1 D^T D S^-1) (symmetric S)."""
    mu, S, X = r(3, seed=1), spd(3), r(6, 3, seed=2)
    _, (d_mu, d_S) = sb.value_and_grad(gaussian_nll, wrt=("mu", "S"), backend=backend)(mu, S, X)
    D = X - mu
    Si = np.linalg.inv(S)
    np.testing.assert_allclose(d_mu, -Si @ D.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(d_S, 0.5 * (6 * Si - Si @ D.T @ D @ Si).T, rtol=1e-10, atol=1e-13)


def test_generated_code_calls_numpy_linalg():
    f = sb.value_and_grad(gaussian_nll, wrt=("mu", "S"))
    f(r(3, seed=1), spd(3), r(6, 3, seed=2))
    assert "np.linalg.slogdet(S)" in f.source and "np.linalg.solve(" in f.source


def test_llvm_says_it_has_no_pinv():
    with pytest.raises(sb.CompileError, match=r"np\.linalg\.pinv is not on the LLVM backend yet") as info:
        sb.value_and_grad(pinvs, backend="llvm")(r(4, 2), r(2, 4, seed=1))
    assert "backend='numpy'" in str(info.value)


def eigenvectors(a, w):
    vals, vecs = np.linalg.eigh(a)
    return np.sum(vecs * w) + np.sum(vals * w[0])


def test_llvm_eigenvectors_have_numpys_signs():
    """The same LAPACK routine on the same column-major matrix: the eigenvectors as NumPy signs them."""
    for seed in range(5):
        a, w = spd(4, seed) + np.diag(np.arange(4.0)), r(4, 4, seed=seed + 10)
        v_numpy, g_numpy = sb.value_and_grad(eigenvectors, wrt=(0, 1))(a, w)
        v_llvm, g_llvm = sb.value_and_grad(eigenvectors, wrt=(0, 1), backend="llvm")(a, w)
        np.testing.assert_allclose(v_llvm, eigenvectors(a, w), rtol=1e-10)
        for x, y in zip(g_llvm, g_numpy):
            np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-10)


def solve_sum(a, b):
    return np.sum(np.linalg.solve(a, b))


def cholesky_sum(a):
    return np.sum(np.linalg.cholesky(a))


def test_llvm_gives_nan_where_numpy_raises_linalgerror():
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    value, grad = sb.value_and_grad(solve_sum, backend="llvm")(singular, np.ones(2))
    assert np.isnan(value)
    with pytest.raises(np.linalg.LinAlgError):
        sb.value_and_grad(solve_sum)(singular, np.ones(2))
    value, _ = sb.value_and_grad(cholesky_sum, backend="llvm")(-np.eye(3))
    assert np.isnan(value)


def test_float32_on_both_backends(backend):
    a, b = (spd(3) + r(3, 3, seed=1)).astype(np.float32), r(3, seed=2).astype(np.float32)
    value, (d_a, d_b) = sb.value_and_grad(solve_sum, wrt=(0, 1), backend=backend)(a, b)
    want, (w_a, w_b) = sb.value_and_grad(solve_sum, wrt=(0, 1))(a.astype(np.float64), b.astype(np.float64))
    assert d_a.dtype == np.float32 and d_b.dtype == np.float32
    np.testing.assert_allclose(d_a, w_a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(value, want, rtol=1e-5)


def stacked_inverse(a):
    return np.sum(np.linalg.inv(a))


def test_stacks_of_matrices_are_outside():
    with pytest.raises(ValueError, match=r"np.linalg.inv takes one square matrix \(2-d\), got a stack"):
        sb.value_and_grad(stacked_inverse)(np.stack([spd(2), spd(2, 1)]))


def test_a_shared_library_export_says_it_needs_the_numpy_backend(tmp_path):
    args = [r(8, 3), r(8, seed=1), 0.3]
    f = sb.value_and_grad(least_squares, wrt="X")
    f(*args)
    with pytest.raises(sb.CompileError, match=r"np\.linalg\.solve is not on the LLVM backend in exported "
                                              r"\.ll/\.so code \(it would need LAPACK.*\n.*\.py rather than \.ll/\.so"):
        f.export(tmp_path / "least_squares.so", *args)
    f.export(tmp_path / "least_squares.py", *args)
    assert "np.linalg.solve(" in (tmp_path / "least_squares.py").read_text()
