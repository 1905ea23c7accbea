"""has_aux=True and memory_budget= on sb.jvp, vjp, jacobian, hessian and hvp (issue 16 item 7): the same
contract as sb.grad's. The aux is what the model computes beside its result, never differentiated; the
derivative is the one the entry point gives without has_aux; under a budget the numbers are the same,
bit for bit, and what does not fit is recomputed."""
import importlib.util
import pickle

import numpy as np
import pytest

import symbackprop as sb


def rng_(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape)


def layer(W, x):
    h = np.tanh(W @ x)
    return 2.0 * h, {"h": h, "n": np.sum(h), "k": 3}


def layer_plain(W, x):
    h = np.tanh(W @ x)
    return 2.0 * h


def energy(W, x):
    h = np.tanh(W @ x)
    return np.sum(h ** 2), (h, 1.5)


def energy_plain(W, x):
    h = np.tanh(W @ x)
    return np.sum(h ** 2)


def deep(W, x):
    h = x
    for i in range(W.shape[0]):
        h = np.tanh(W[i] @ h)
    return np.sum(h ** 2), h


def deep_plain(W, x):
    h = x
    for i in range(W.shape[0]):
        h = np.tanh(W[i] @ h)
    return np.sum(h ** 2)


W, X = rng_(3, 4), rng_(4, seed=1)


def _check_aux(aux, want_h, pair):
    if pair:
        h, c = aux
        assert c == 1.5
    else:
        h = aux["h"]
        assert aux["k"] == 3
        np.testing.assert_allclose(aux["n"], np.sum(want_h), rtol=1e-14)
    np.testing.assert_allclose(h, want_h, rtol=1e-14)


def test_jvp_and_vjp_return_the_value_with_aux_then_the_derivative(backend):
    h = np.tanh(W @ X)
    tW, u = rng_(3, 4, seed=2), rng_(3, seed=3)
    (value, aux), tangent = sb.jvp(layer, has_aux=True, backend=backend)(W, X, tangents=tW)
    want_value, want_tangent = sb.jvp(layer_plain, backend=backend)(W, X, tangents=tW)
    np.testing.assert_allclose(value, want_value, rtol=1e-14)
    np.testing.assert_allclose(tangent, want_tangent, rtol=1e-14)
    np.testing.assert_allclose(tangent, 2 * (1 - h ** 2) * (tW @ X), rtol=1e-12)
    _check_aux(aux, h, pair=False)
    (value, aux), (dW, dx) = sb.vjp(layer, wrt=("W", "x"), has_aux=True, backend=backend)(W, X, cotangent=u)
    _, (wW, wx) = sb.vjp(layer_plain, wrt=("W", "x"), backend=backend)(W, X, cotangent=u)
    np.testing.assert_allclose(dW, wW, rtol=1e-14)
    np.testing.assert_allclose(dx, wx, rtol=1e-14)
    _check_aux(aux, h, pair=False)


def test_jacobian_hessian_and_hvp_return_the_derivative_then_aux(backend):
    h = np.tanh(W @ X)
    J, aux = sb.jacobian(layer, wrt="x", has_aux=True, backend=backend)(W, X)
    np.testing.assert_allclose(J, sb.jacobian(layer_plain, wrt="x", backend=backend)(W, X), rtol=1e-14)
    np.testing.assert_allclose(J, 2 * (1 - h ** 2)[:, None] * W, rtol=1e-12)
    _check_aux(aux, h, pair=False)
    H, aux = sb.hessian(energy, wrt="x", has_aux=True, backend=backend)(W, X)
    np.testing.assert_allclose(H, sb.hessian(energy_plain, wrt="x", backend=backend)(W, X), rtol=1e-14)
    _check_aux(aux, h, pair=True)
    v = rng_(3, 4, seed=4)
    Hv, aux = sb.hvp(energy, has_aux=True, backend=backend)(W, X, v=v)
    np.testing.assert_allclose(Hv, sb.hvp(energy_plain, backend=backend)(W, X, v=v), rtol=1e-14)
    _check_aux(aux, h, pair=True)


def test_aux_is_never_differentiated_nor_a_result():
    """The aux of an hvp adds no tangent of its own: the aux h is returned as the forward computes it."""
    f = sb.hvp(energy, has_aux=True)
    f(W, X, v=rng_(3, 4, seed=4))
    assert "return loss, ((t_d_W,), (h, 1.5))" in f.source


def test_a_model_not_returning_a_pair_under_has_aux_is_rejected():
    with pytest.raises(sb.CompileError, match="test_higher_options.py"):
        sb.jvp(layer_plain, has_aux=True)(W, X, tangents=W)
    with pytest.raises(TypeError, match="has_aux is True or False"):
        sb.hvp(energy, has_aux=1)


def test_pickled_derivative_keeps_has_aux_and_budget():
    f = pickle.loads(pickle.dumps(sb.hvp(energy, has_aux=True, memory_budget="1KB")))
    assert f.has_aux and f.memory_budget == 1000
    Hv, aux = f(W, X, v=W)
    np.testing.assert_allclose(Hv, sb.hvp(energy_plain)(W, X, v=W), rtol=1e-14)
    assert "has_aux" in repr(f)


def _same(a, b):
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("entry", ["hvp", "vjp", "jvp"])
def test_exported_module_returns_what_the_callable_returns(entry, tmp_path):
    v = rng_(3, 4, seed=4)
    model, direction = {"hvp": (energy, v), "vjp": (layer, rng_(3, seed=5)), "jvp": (layer, v)}[entry]
    f = getattr(sb, entry)(model, has_aux=True)
    want = f(W, X, **{"hvp": {"v": v}, "vjp": {"cotangent": direction}, "jvp": {"tangents": v}}[entry])
    f.export(tmp_path / "m.py")
    spec = importlib.util.spec_from_file_location("m", tmp_path / "m.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    _same(getattr(m, entry)(W, X, direction), want)


@pytest.mark.parametrize("entry", ["hvp", "hessian", "vjp", "jacobian"])
def test_memory_budget_recomputes_and_keeps_the_numbers(entry, backend):
    """A budget below the residuals of 5 tanh layers: something is recomputed, the numbers are the same
    bit for bit (the recomputed statement is the forward one); far below, a CompileError naming the least
    budget that works."""
    Ws, x = 0.5 * rng_(5, 8, 8, seed=5), rng_(8, seed=6)
    kwargs = {"hvp": {"v": rng_(5, 8, 8, seed=7)}, "vjp": {"cotangent": 1.0}}.get(entry, {})
    wrt = "x" if entry in ("hessian", "jacobian") else "W"
    model = deep_plain
    full = getattr(sb, entry)(model, wrt=wrt, backend=backend)
    want = full(Ws, x, **kwargs)
    total = full.memory().residual_bytes
    assert total > 0
    least = None
    with pytest.raises(sb.CompileError, match=r"the smallest that works is (\d+) bytes") as e:
        getattr(sb, entry)(model, wrt=wrt, backend=backend, memory_budget=8)(Ws, x, **kwargs)
    least = int(e.value.args[0].split("the smallest that works is ")[1].split(" ")[0])
    assert least < total
    tight = getattr(sb, entry)(model, wrt=wrt, backend=backend, memory_budget=least)
    got = tight(Ws, x, **kwargs)
    report = tight.memory()
    assert report.recomputed and report.kept_bytes <= least
    for a, b in zip(np.atleast_1d(want) if entry != "vjp" else want[1:],
                    np.atleast_1d(got) if entry != "vjp" else got[1:]):
        np.testing.assert_array_equal(a, b)


def test_memory_budget_and_has_aux_together(backend):
    Ws, x, v = 0.5 * rng_(5, 8, 8, seed=5), rng_(8, seed=6), rng_(5, 8, 8, seed=7)
    want = sb.hvp(deep_plain, backend=backend)(Ws, x, v=v)
    got, h = sb.hvp(deep, has_aux=True, backend=backend, memory_budget="1KB")(Ws, x, v=v)
    np.testing.assert_array_equal(got, want)
    h_want = x
    for i in range(5):
        h_want = np.tanh(Ws[i] @ h_want)
    np.testing.assert_allclose(h, h_want, rtol=1e-13)


def test_jvp_takes_no_memory_budget():
    """Forward mode keeps nothing for a later pass: a budget would mean nothing, so it is refused."""
    with pytest.raises(TypeError, match="sb.jvp takes no memory_budget"):
        sb.jvp(energy_plain, memory_budget="1MB")
    with pytest.raises(TypeError, match="sb.jvp takes no memory_budget"):
        sb.jvp(memory_budget=100)


def test_a_bad_budget_raises_at_the_decorator():
    with pytest.raises((TypeError, ValueError)):
        sb.hvp(memory_budget="lots")


def test_shared_library_writes_the_model_aux_after_the_entry_points_outputs(tmp_path):
    import ctypes
    f = sb.hvp(energy, has_aux=True, backend="llvm")
    v = rng_(3, 4, seed=4)
    Hv, (h, _) = f(W, X, v=v)
    path = f.export(tmp_path / "energy.so")
    header = (tmp_path / "energy.h").read_text()
    assert header.index("double* hvp_W") < header.index("double* aux_0")
    assert "aux_0  /* the model's aux, not differentiated" in header
    lib = ctypes.CDLL(str(path))
    value, out, aux = np.zeros(()), np.zeros((3, 4)), np.zeros(3)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    args = [np.ascontiguousarray(a) for a in (W, X, v)]
    assert lib.energy_hvp(*map(ptr, args), ptr(value), ptr(out), ptr(aux)) == 0
    np.testing.assert_allclose(out, Hv, rtol=1e-12)
    np.testing.assert_allclose(aux, h, rtol=1e-13)
    np.testing.assert_allclose(value, np.sum(h ** 2), rtol=1e-13)
