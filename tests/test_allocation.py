"""Arrays made inside a model: np.zeros/ones/full of a shape known at specialisation, np.array of parts."""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def running_sum(w, x):
    out = np.zeros(x.shape[1])                    # an accumulator, built up in the loop
    for j in range(x.shape[0]):
        out = 0.5 * out + np.tanh(x[j] * w)
    return np.sum(out * out)


def filled(x, b):
    ones = np.ones((2, x.shape[0]))
    return np.sum(np.tanh(x * ones + np.full((2, 1), b)) ** 2) + np.sum(np.zeros(3) + b)


def full_of_a_row(x, r):
    return np.sum(np.full((4, 3), r) * x)         # r, of shape (3,), broadcast to every row


def vector_of_scalars(a, b):
    v = np.array([a, b, a * b, 2.0])
    return np.sum(v * v * np.array([1.0, 2.0, 3.0, 4.0]))


def matrix_of_rows(x, y):
    m = np.array([x, y, x + y])
    c = np.array([[1.0, -2.0], [0.5, 3.0]])
    return np.sum(np.tanh(m @ c))


def float32_accumulator(x):
    acc = np.zeros(x.shape, dtype=np.float32)
    return np.sum((acc + x) ** 2)


def float64_zeros(x):
    return np.sum(np.zeros(x.shape[0]) + x * x)   # np.zeros is float64, as in NumPy: the float32 x widens


def r(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape)


CASES = {
    "running_sum": (running_sum, lambda: [r(3), r(5, 3, seed=1)], ("w", "x")),
    "filled": (filled, lambda: [r(3), 0.4], ("x", "b")),
    "full_of_a_row": (full_of_a_row, lambda: [r(4, 3), r(3, seed=2)], ("x", "r")),
    "vector_of_scalars": (vector_of_scalars, lambda: [0.3, -0.7], ("a", "b")),
    "matrix_of_rows": (matrix_of_rows, lambda: [r(2), r(2, seed=3)], ("x", "y")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name, backend):
    model, make, wrt = CASES[name]
    args = make()
    f = sb.value_and_grad(model, wrt=wrt, backend=backend)
    value, grads = f(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    params = list(model.__code__.co_varnames[:model.__code__.co_argcount])
    assert_gradients_match(model, grads, args, [params.index(p) for p in wrt])


@pytest.mark.parametrize("model", [float32_accumulator, float64_zeros])
def test_dtypes_follow_numpy(model, backend):
    x = r(4).astype(np.float32)
    value, grad = sb.value_and_grad(model, backend=backend)(x)
    expected = model(x)
    assert np.asarray(value).dtype == np.asarray(expected).dtype
    assert grad.dtype == np.float32                     # a gradient has its parameter's dtype
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-6)


def zeros_of_a_value_shape(x):
    return np.sum(np.zeros(np.sum(x)))


def zeros_of_int_dtype(x):
    return np.sum(np.zeros(3, dtype="int64") + x)


def ragged_array(x):
    return np.sum(np.array([x, 1.0]))


def full_that_does_not_broadcast(x):
    return np.sum(np.full((2, 3), x))


@pytest.mark.parametrize("model, args, message", [
    (zeros_of_a_value_shape, [r(3)], r"np.zeros's shape must be known at specialisation"),
    (zeros_of_int_dtype, [r(3)], r"dtype=.*float arrays"),
    (ragged_array, [r(3)], r"parts of an array must have one shape"),
])
def test_what_cannot_be_made_is_a_compile_error_naming_the_line(model, args, message):
    with pytest.raises(sb.CompileError, match=message) as info:
        sb.value_and_grad(model)(*args)
    assert f"{__file__}:{model.__code__.co_firstlineno + 1}" in str(info.value)


def full_of_a_larger_value(x):
    return np.sum(np.full((3,), x))


@pytest.mark.parametrize("model, args, message", [
    (full_that_does_not_broadcast, [r(4)], r"shapes \(2, 3\) and \(4,\) of the `\*` do not broadcast"),
    (full_of_a_larger_value, [r(2, 3)], r"np.full\(\(3,\), v\): v of shape \(2, 3\) does not broadcast"),
])
def test_a_fill_value_of_the_wrong_shape_is_a_shape_error_naming_the_line(model, args, message):
    with pytest.raises(ValueError, match=message) as info:
        sb.value_and_grad(model)(*args)
    assert f"{__file__}:{model.__code__.co_firstlineno + 1}" in str(info.value)


def filled_empty(x, W):
    """np.empty, every element written before it is read: NumPy's numbers."""
    h = np.empty((3, 4))
    for i in range(3):
        h[i] = np.tanh(W[i] * x)
    g = np.empty_like(x)
    g[:] = x * x
    return np.sum(h * h) + np.sum(g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_filled_element_by_element(backend, dtype):
    x, W = r(4).astype(dtype), r(3, 4).astype(dtype)
    value, grads = sb.value_and_grad(filled_empty, wrt=(0, 1), backend=backend)(x, W)
    assert np.asarray(value).dtype == np.asarray(filled_empty(x, W)).dtype
    np.testing.assert_allclose(value, filled_empty(x, W), rtol=1e-12 if dtype == np.float64 else 1e-5)
    if dtype == np.float64:
        assert_gradients_match(filled_empty, grads, [x, W], (0, 1))
