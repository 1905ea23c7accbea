"""Element and slice assignment into arrays the model makes (y[i] = v, y[:, j] += v), on both backends."""
import re

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def regions(x, w):
    y = np.zeros((3, 4))
    y[0] = x[0] * 2                      # a row
    y[:, 1] += x[:, 1]                   # a column, accumulated
    y[1:, 2:] = w                        # a block
    y[2, 0] = np.sum(w)                  # an element, from a 0-d value
    y[::2, 3] *= 3.0                     # a strided slice, scaled
    return np.sum(np.tanh(y) * y)


def overwritten(x):
    y = x.copy()
    y[1] = 5.0                           # x[1] is overwritten: no gradient reaches it
    y[2:] = y[2:] * y[0]
    return np.sum(y * y)


def built_in_a_loop(W, x):
    T = 4
    h = np.zeros((T, x.shape[0]))
    h[0] = np.tanh(x)
    for t in range(1, T):
        h[t] = np.tanh(W @ h[t - 1])
    return np.sum(h[1:] * h[:-1])


def convolution(w, x):
    n = x.shape[0] - w.shape[0] + 1
    out = np.zeros(n)
    for i in range(n):
        out[i] = np.sum(w * x[i:i + w.shape[0]])
    return np.sum(out ** 2)


def broadcast_values(x, b):
    y = np.ones((2, 3))
    y[:] = b                             # (3,) into every row
    y[1] = 2.0                           # a number into a row
    return np.sum(y * x)


def through_a_closure(x):
    y = np.zeros(3)

    def put(i, v):
        y[i] = v                         # changes the enclosing y, as in Python
        return 0.0

    put(0, x[0] * x[1])
    put(2, np.tanh(x[2]))
    return np.sum(y * x)


def list_entries(x):
    hs = [x, 2 * x, 3 * x]
    hs[1] = np.tanh(x)
    return np.sum(np.stack(hs) ** 2)


def r(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape)


CASES = {
    "regions": (regions, lambda: [r(3, 4), r(2, 2, seed=1)]),
    "overwritten": (overwritten, lambda: [r(5)]),
    "built_in_a_loop": (built_in_a_loop, lambda: [0.5 * r(3, 3), r(3, seed=1)]),
    "convolution": (convolution, lambda: [r(3), r(8, seed=1)]),
    "broadcast_values": (broadcast_values, lambda: [r(2, 3), r(3, seed=1)]),
    "through_a_closure": (through_a_closure, lambda: [r(3)]),
    "list_entries": (list_entries, lambda: [r(4)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name, backend):
    model, make = CASES[name]
    args = make()
    n = model.__code__.co_argcount
    value, grads = sb.value_and_grad(model, wrt=tuple(range(n)), backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    assert_gradients_match(model, grads, args, list(range(n)))


def test_overwritten_entries_get_no_gradient(backend):
    x = r(5)
    grad = sb.grad(overwritten, backend=backend)(x)
    assert grad[1] == 0.0


def test_the_callers_array_is_unchanged(backend):
    x = r(5)
    before = x.copy()
    sb.value_and_grad(overwritten, backend=backend)(x)
    np.testing.assert_array_equal(x, before)


def float32_target(x):
    y = np.zeros(3, dtype=np.float32)
    y[0] = np.sum(x) * np.float64(1.5)   # a float64 value, cast into the float32 array as NumPy does
    return np.sum(y * x)


def test_assigned_values_take_the_arrays_dtype(backend):
    x = r(3).astype(np.float32)
    value, grad = sb.value_and_grad(float32_target, backend=backend)(x)
    assert np.asarray(value).dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(value, float32_target(x), rtol=1e-6)


def put_into(y, v):
    y[0] = v
    return y


def through_a_helper(x):
    y = np.zeros(3)
    z = put_into(y, x[0])                # NumPy changes the caller's y too: refused, not differed from
    return np.sum(z + y)


def wrong_shape(x):
    y = np.zeros((2, 3))
    y[0] = x                             # x has 4 entries
    return np.sum(y)


def test_a_helper_writing_into_its_callers_array_is_refused():
    with pytest.raises(sb.CompileError, match=r"`y` is shared: `y` holds it too") as info:
        sb.grad(through_a_helper)(r(3))
    assert f"{__file__}:{put_into.__code__.co_firstlineno + 1}" in str(info.value)


def test_a_value_of_the_wrong_shape_is_a_shape_error_naming_the_line():
    with pytest.raises(ValueError, match=r"cannot assign a value of shape \(4,\) to y\[0\] of shape \(3,\)") as info:
        sb.grad(wrong_shape)(r(4))
    assert f"{__file__}:{wrong_shape.__code__.co_firstlineno + 2}" in str(info.value)


@pytest.mark.parametrize("name", ["built_in_a_loop", "regions", "convolution"])
def test_under_a_memory_budget_the_numbers_are_the_same_bit_for_bit(name, backend):
    model, make = CASES[name]
    args = make()
    wrt = tuple(range(model.__code__.co_argcount))
    v0, g0 = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
    with pytest.raises(sb.CompileError, match=r"the smallest that works is (\d+) bytes") as info:
        sb.value_and_grad(model, wrt=wrt, backend=backend, memory_budget=1)(*args)
    smallest = int(re.search(r"the smallest that works is (\d+) bytes", str(info.value)).group(1))
    v1, g1 = sb.value_and_grad(model, wrt=wrt, backend=backend, memory_budget=smallest)(*args)
    assert v0 == v1
    for a, b in zip(g0, g1):
        np.testing.assert_array_equal(a, b)


def aliased_then_added(x):
    y = x * 1.0
    z = y
    y += 1.0                             # NumPy changes z too
    return np.sum(z)


def view_then_added(x):
    y = x * 2.0
    z = y[1:]
    y -= x                               # NumPy changes the view z too
    return np.sum(z * z)


def argument_added(x):
    x += 1.0                             # NumPy changes the caller's array
    return np.sum(x * x)


def widened_in_place(x, A):
    y = x * 1.0
    y += A                               # (4,) += (4, 4): NumPy refuses
    return np.sum(y)


def comparison_added(x):
    m = x > 0
    m += 0.5                             # a float result into a bool array: NumPy refuses
    return np.sum(x * m)


def test_an_augmented_assignment_writes_into_the_array_as_numpy_does():
    """`y += v` on an array is NumPy's np.add(y, v, out=y): everything sharing y sees it, y keeps its shape and
    dtype. Sharing refused as for `y[...] += v` (it returned the unchanged z: 10.0 where NumPy gives 14.0)."""
    x = np.arange(1.0, 5.0)
    for model, message in [(aliased_then_added, r"`y` is shared: `z` holds it too"),
                           (view_then_added, r"`y` is shared: `z` holds a view of it"),
                           (argument_added, r"`x`, an argument of the model, would change the caller's array")]:
        with pytest.raises(sb.CompileError, match=message) as info:
            sb.grad(model)(x)
        assert f"{__file__}:" in str(info.value)
    with pytest.raises(ValueError, match=r"`y` has shape \(4,\) and the result of the augmented assignment "
                                         r"\(4, 4\).*write `y = y \+ A`") as info:
        sb.grad(widened_in_place)(x, np.ones((4, 4)))
    assert f"{__file__}:{widened_in_place.__code__.co_firstlineno + 2}" in str(info.value)
    with pytest.raises(sb.CompileError, match=r"into `m`, a bool array, which NumPy refuses"):
        sb.grad(comparison_added)(x)


def accumulated(x):
    acc = np.zeros_like(x)               # value numbering makes both zeros_like one Value
    other = np.zeros_like(x)
    for k in range(3):
        acc += x ** (k + 1)
        other = acc + x                  # the same Value as the next `acc + x`
        acc += x
    return np.sum(acc * acc) + np.sum(other)


def test_augmented_assignments_in_a_loop_match_numpy(backend):
    x = r(4)
    value, grad = sb.value_and_grad(accumulated, backend=backend)(x)
    np.testing.assert_allclose(value, accumulated(x.copy()), rtol=1e-12)
    assert_gradients_match(accumulated, (grad,), [x], (0,))


def grown_in_a_while(x):
    acc = x * 2.0
    k = 0.0
    while np.sum(acc) < 10.0 and k < 5:
        acc += x                         # the array from before the loop, carried: the loop's own
        acc[0] += x[0]
        k = k + 1.0
    return np.sum(acc * acc)


def shared_into_a_while(x):
    acc = x * 2.0
    z = acc
    while np.sum(acc) < 10.0:
        acc += x                         # NumPy changes z too
    return np.sum(acc * z)


def test_assigning_into_a_carried_array_in_a_while_loop_on_values():
    """A `while` body's carried value is the array from before the loop: assigning into it was refused as
    assigning into an argument of the model; it is checked as that array."""
    x = r(4) + 1.5
    value, grad = sb.value_and_grad(grown_in_a_while, backend="numpy")(x)
    np.testing.assert_allclose(value, grown_in_a_while(x.copy()), rtol=1e-12)
    assert_gradients_match(grown_in_a_while, (grad,), [x], (0,))
    with pytest.raises(sb.CompileError, match=r"`acc` is shared: `z` holds it too") as info:
        sb.grad(shared_into_a_while, backend="numpy")(x)
    assert f"{__file__}:{shared_into_a_while.__code__.co_firstlineno + 4}" in str(info.value)
