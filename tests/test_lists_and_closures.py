"""Local lists (hs = [], hs.append(h), np.stack(hs)), comprehensions, nested defs and lambdas, on both backends."""
import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def rnn_states(W, U, xs):
    hs = []
    h = np.zeros(W.shape[0])
    for t in range(xs.shape[0]):
        h = np.tanh(W @ h + U @ xs[t])
        hs.append(h)
    H = np.stack(hs)                        # (T, n)
    return np.sum(H[-1] * H[0]) + np.mean(np.concatenate(hs)) + len(hs) * np.sum(hs[-1])


def list_methods(x, y):
    parts = [x]
    parts.extend([y, x * y])
    parts.insert(1, np.tanh(x))
    last = parts.pop()
    copied = parts.copy()
    copied.append(last)                     # parts itself keeps three
    return np.sum(np.stack(parts)) + np.sum(np.stack(copied) ** 2) + sum(np.sum(p) for p in parts)


def comprehensions(x, w):
    powers = [x ** k for k in range(1, 4)]
    odd = np.stack([w[i] * powers[i] for i in range(3) if i % 2 == 0])
    pairs = [a * b for a in powers for b in (w[0], w[1])]
    return np.sum(odd) + sum(np.sum(p) for p in pairs) + np.sum(np.stack([np.tanh(p) for p in powers]))


def nested_def(x, W, scale=0.5):
    def layer(h, bias=0.1):
        return np.tanh(W @ h * scale + bias)  # W and scale read from the enclosing model

    def twice(f, h):                        # a function passed to a function
        return f(f(h))

    return np.sum(twice(layer, x)) + np.sum(layer(x, bias=-0.2))


def lambdas(x, y):
    sq = lambda t: t * t
    mix = lambda a, b=y: a * b + sq(a)
    return np.sum(mix(x)) + np.sum(sq(y)) + np.sum(np.stack(list(map_each(sq, [x, y]))))


def map_each(f, xs):                        # a module-level helper taking a closure
    return [f(v) for v in xs]


def late_binding(x):
    k = 1.0
    f = lambda t: t * k                     # reads k when called, as Python does
    k = 3.0
    return np.sum(f(x))


def shadowing(x):
    t = 2.0
    ys = [t * t for t in (x, 2 * x)]        # the comprehension's t is its own
    return np.sum(ys[1]) + t


def r(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape)


CASES = {
    "rnn_states": (rnn_states, lambda: [0.5 * r(4, 4), r(4, 3, seed=1), r(5, 3, seed=2)], ("W", "U", "xs")),
    "list_methods": (list_methods, lambda: [r(3), r(3, seed=1)], ("x", "y")),
    "comprehensions": (comprehensions, lambda: [r(2, 3), r(3, seed=1)], ("x", "w")),
    "nested_def": (nested_def, lambda: [r(3), r(3, 3, seed=1), 0.7], ("x", "W", "scale")),
    "lambdas": (lambdas, lambda: [r(4), r(4, seed=1)], ("x", "y")),
    "late_binding": (late_binding, lambda: [r(3)], ("x",)),
    "shadowing": (shadowing, lambda: [r(3)], ("x",)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name, backend):
    model, make, wrt = CASES[name]
    args = make()
    value, grads = sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
    np.testing.assert_allclose(value, model(*args), rtol=1e-12)
    params = list(model.__code__.co_varnames[:model.__code__.co_argcount])
    assert_gradients_match(model, grads, args, [params.index(p) for p in wrt])


@pytest.mark.parametrize("name", sorted(CASES))
def test_backends_agree(name):
    model, make, wrt = CASES[name]
    args = make()
    v1, g1 = sb.value_and_grad(model, wrt=wrt, backend="numpy")(*args)
    v2, g2 = sb.value_and_grad(model, wrt=wrt, backend="llvm")(*args)
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def collect(h, into):
    into.append(np.tanh(h))                 # a helper appending to its caller's list, as in Python
    return len(into)


def collects_through_a_helper(x):
    hs = []
    n = collect(x, hs) + collect(2 * x, hs)
    return np.sum(np.stack(hs)) * n


def appends_to_a_default(h, into=[]):
    into.append(h)
    return len(into)


def uses_a_default_list(x):
    return np.sum(x) * appends_to_a_default(x)


def test_a_helper_changes_its_callers_list(backend):
    x = r(3)
    value, grad = sb.value_and_grad(collects_through_a_helper, backend=backend)(x)
    np.testing.assert_allclose(value, collects_through_a_helper(x), rtol=1e-12)
    assert_gradients_match(collects_through_a_helper, [grad], [x], [0])


def test_changing_a_default_list_is_a_compile_error():
    with pytest.raises(sb.CompileError, match=r"`.append` on a default list") as info:
        sb.grad(uses_a_default_list)(r(3))
    assert f"{__file__}:{appends_to_a_default.__code__.co_firstlineno + 1}" in str(info.value)
