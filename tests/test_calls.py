"""Call-time safety on both backends (extends tests/test_api.py; nothing here repeats it).

Wrong calls get a TypeError or ValueError naming the parameter (or, for shapes,
the model line); any memory layout numpy can hand us gives the same numbers; inputs
are never written; threads share one compilation per signature; the cache is an LRU.
"""
import threading

import numpy as np
import pytest

import symbackprop as sb
from symbackprop import api
from symbackprop.pipeline import specialiser
import models
from test_gradients import CASES


def two_inputs(a, b, W):
    return np.sum(np.tanh(a @ W) * b) + np.sum(a * a)


def _args(rng):
    return [rng.normal(size=(4, 3)), rng.normal(size=(4, 2)), rng.normal(size=(3, 2))]


# ---- wrong calls ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda f, a: f(a[0], a[1]), r"two_inputs\(\).*missing.*W"),
    (lambda f, a: f(*a, np.ones(3)), r"two_inputs\(\).*too many"),
    (lambda f, a: f(*a, c=1.0), r"two_inputs\(\).*unexpected keyword.*c"),
    (lambda f, a: f(a[0], a[1], a[2], W=a[2]), r"two_inputs\(\).*multiple values.*W"),
    (lambda f, a: f(np.full((4, 3), "x"), a[1], a[2]), r"`a`.*dtype"),
    (lambda f, a: f(a[0], np.array([[None] * 2] * 4), a[2]), r"`b`.*object"),
    (lambda f, a: f(a[0].astype(np.complex128), a[1], a[2]), r"`a`.*complex"),
    (lambda f, a: f(a[0], a[1], {"W": object()}), r"`W` holds a object at `W_W`"),  # a tree (docs/trees.md)
    (lambda f, a: f(a[0], a[1], [[1.0, 2.0], [3.0]]), r"`W`.*ragged"),
    (lambda f, a: f(a[0], a[1], a[2].tolist()), r"`W`.*list"),
    (lambda f, a: f(a[0].astype(np.int32), a[1], a[2]), r"`a`.*int32"),
    (lambda f, a: f(True, a[1], a[2]), r"`a`.*bool"),
    (lambda f, a: f("a", a[1], a[2]), r"`a`.*str"),
    (lambda f, a: f(None, a[1], a[2]), r"`a`.*NoneType"),
    (lambda f, a: f(a[0].astype(">f8"), a[1], a[2]), r"`a`.*byte order"),
    (lambda f, a: f(1j, a[1], a[2]), r"`a`.*complex"),
])
def test_wrong_calls_are_type_errors_naming_the_parameter(backend, call, match):
    f = sb.value_and_grad(two_inputs, wrt=("a", "W"), backend=backend)
    args = _args(np.random.default_rng(0))
    with pytest.raises(TypeError, match=match):
        call(f, args)
    assert f.compilations == 0
    f(*args)  # a failed call leaves the function usable
    assert f.compilations == 1


@pytest.mark.parametrize("shapes, match, line", [
    (((4, 3), (4, 2), (2, 2)), "matmul: inner dimensions", "return np.sum(np.tanh(a @ W)"),
    (((4, 3), (5, 2), (3, 2)), "do not broadcast", "return np.sum(np.tanh(a @ W)"),
    (((4, 3), (4, 2), (3,)), r"shapes \(4,\) and \(4, 2\) of the `\*` do not broadcast", "return np.sum(np.tanh(a @ W)"),
])
def test_shapes_that_do_not_fit_are_value_errors_naming_the_line(backend, shapes, match, line):
    f = sb.value_and_grad(two_inputs, wrt=("a", "W"), backend=backend)
    args = [np.ones(s) for s in shapes]
    with pytest.raises(ValueError, match=match) as info:
        f(*args)
    assert not isinstance(info.value, sb.CompileError)
    lineno = two_inputs.__code__.co_firstlineno + 1
    assert str(info.value).startswith(f"{__file__}:{lineno}: "), str(info.value)
    f(*_args(np.random.default_rng(0)))
    assert f.compilations == 1


# ---- memory layouts -----------------------------------------------------------------------------

def _layouts(x):
    """The same values as `x` in every layout numpy can make."""
    fortran = np.asfortranarray(x)
    strided = np.zeros((x.shape[0] * 2,) + x.shape[1:])[::2]
    strided[...] = x
    reversed_ = x[::-1].copy()[::-1]
    transposed = x.T.copy().T
    unaligned = np.zeros(x.size * 8 + 1, np.uint8)[1:].view(np.float64).reshape(x.shape)
    unaligned[...] = x
    readonly = x.copy()
    readonly.flags.writeable = False
    zero_stride = np.broadcast_to(x[:1], x.shape)            # read-only, stride 0 on axis 0
    return {"fortran": fortran, "strided": strided, "reversed": reversed_, "transposed": transposed,
            "unaligned": unaligned, "readonly": readonly}, zero_stride


def test_any_memory_layout_gives_the_contiguous_answer(backend):
    rng = np.random.default_rng(3)
    args = _args(rng)
    f = sb.value_and_grad(two_inputs, wrt=(0, 1, 2), backend=backend)
    for i in range(3):
        layouts, zero_stride = _layouts(args[i])
        layouts["zero-stride"] = zero_stride
        for name, x in layouts.items():
            called = list(args)
            called[i] = x
            want_args = [np.ascontiguousarray(a) for a in called]
            value, grads = f(*called)
            want_value, want = sb.value_and_grad(two_inputs, wrt=(0, 1, 2), backend="numpy")(*want_args)
            np.testing.assert_allclose(value, want_value, rtol=1e-12, err_msg=name)
            for g, w, a in zip(grads, want, called):
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=name)
                assert g.flags.c_contiguous and g.flags.writeable and not np.shares_memory(g, a)
    assert f.compilations == 1  # the layout is not part of the signature


def test_0d_arrays_and_numpy_scalars_are_accepted(backend):
    f = sb.value_and_grad(models.binary_broadcast, wrt=(0, 1), backend=backend)
    b = np.linspace(-1, 1, 3)
    want = f(np.array(0.5), b)
    for a in (np.float64(0.5), np.array(0.5)[()], np.array([0.5])[0]):
        value, (ga, gb) = f(a, b)
        assert value == pytest.approx(want[0]) and ga == pytest.approx(want[1][0])
        np.testing.assert_allclose(gb, want[1][1])


# ---- inputs are never written -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_inputs_are_never_modified(backend, name):
    model, make_args, wrt = CASES[name]
    args = make_args()
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    for a in arrays:
        a.flags.writeable = False      # a write would raise (NumPy) or go through the pointer (LLVM) ...
    sb.value_and_grad(model, wrt=wrt, backend=backend)(*args)
    for a, b in zip(arrays, before):    # ... which this catches
        np.testing.assert_array_equal(a, b)


# ---- one array for two parameters ---------------------------------------------------------------

def shared(a, b):
    return np.sum(a * np.tanh(b)) + np.sum((a - 2 * b) ** 2)


def test_the_same_array_for_two_parameters(backend):
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    value, (ga, gb) = sb.value_and_grad(shared, wrt=(0, 1), backend=backend)(x, x)
    want_value, (wa, wb) = sb.value_and_grad(shared, wrt=(0, 1), backend="numpy")(x.copy(), x.copy())
    assert value == pytest.approx(want_value)
    np.testing.assert_allclose(ga, wa, rtol=1e-12)
    np.testing.assert_allclose(gb, wb, rtol=1e-12)
    assert not np.shares_memory(ga, gb) and not np.shares_memory(ga, x)
    # the array and a view of it
    value, (ga, gb) = sb.value_and_grad(shared, wrt=(0, 1), backend=backend)(x, x[:, ::-1])
    want = sb.value_and_grad(shared, wrt=(0, 1), backend="numpy")(x.copy(), x[:, ::-1].copy())
    np.testing.assert_allclose(ga, want[1][0], rtol=1e-12)
    np.testing.assert_allclose(gb, want[1][1], rtol=1e-12)


# ---- threads ----------------------------------------------------------------------------------------

def threaded(W, b, x):
    h = np.tanh(x @ W + b)
    return np.mean(h * h)


def test_threads_compile_each_signature_once(backend):
    """8 threads call a new gradient function at once, with two signatures: two compilations, right answers."""
    rng = np.random.default_rng(5)
    args64 = [rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(6, 4))]
    args32 = [a.astype(np.float32) for a in args64]
    want64 = sb.value_and_grad(threaded, wrt=(0, 1), backend="numpy")(*args64)
    want32 = sb.value_and_grad(threaded, wrt=(0, 1), backend="numpy")(*args32)
    f = sb.value_and_grad(threaded, wrt=(0, 1), backend=backend)
    barrier, results, errors = threading.Barrier(8), {}, []

    def work(i):
        try:
            barrier.wait()
            for k in range(3):
                args = args64 if (i + k) % 2 else args32
                results[(i, k)] = (args is args64, f(*args))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert f.compilations == 2
    for is64, (value, grads) in results.values():
        want = want64 if is64 else want32
        assert np.asarray(value).dtype == np.asarray(want[0]).dtype
        np.testing.assert_allclose(value, want[0], rtol=1e-12 if is64 else 1e-5)
        for g, w in zip(grads, want[1]):
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-12 if is64 else 1e-4, atol=1e-6)


# ---- the specialisation cache -------------------------------------------------------------------------

def test_the_cache_drops_the_least_recently_used_signature(backend, monkeypatch):
    monkeypatch.setattr(specialiser, "CACHE_SIZE", 3)
    f = sb.grad(models.binary_broadcast, backend=backend)
    sizes = [1, 2, 3]
    for n in sizes:
        f(np.ones(n), np.ones(n))
    assert f.compilations == 3
    f(np.ones(1), np.ones(1))               # touch the oldest: now 2 is the least recently used
    assert f.compilations == 3
    f(np.ones(4), np.ones(4))               # evicts 2
    assert f.compilations == 4 and len(f._cache) == 3
    f(np.ones(1), np.ones(1))
    f(np.ones(3), np.ones(3))
    assert f.compilations == 4              # 1 and 3 stayed
    np.testing.assert_allclose(f(np.ones(2), np.full(2, 2.0)), sb.grad(models.binary_broadcast)(
        np.ones(2), np.full(2, 2.0)))
    assert f.compilations == 5 and len(f._cache) == 3   # 2 came back and pushed out 4
    f(np.ones(4), np.ones(4))
    assert f.compilations == 6
