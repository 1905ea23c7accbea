"""Forward mode and higher order (sb.jvp, vjp, jacobian, hvp, hessian) against central finite differences
in float64, on both backends, over the first-tier gradient models."""
import numpy as np
import pytest

import symbackprop as sb
from test_gradients import CASES

H = 1e-6


def _direction(args, wrt, seed=0):
    rng = np.random.default_rng(seed)
    return [float(rng.uniform(-1, 1)) if isinstance(args[i], float) else rng.uniform(-1, 1, np.shape(args[i]))
            for i in wrt]


def _moved(args, wrt, ts, h):
    call = list(args)
    for i, t in zip(wrt, ts):
        call[i] = args[i] + h * t if not isinstance(args[i], float) else float(args[i] + h * t)
    return call


def _directional_fd(f, args, wrt, ts):
    with np.errstate(all="ignore"):
        hi, lo = f(*_moved(args, wrt, ts, H)), f(*_moved(args, wrt, ts, -H))
    if isinstance(hi, tuple):
        return tuple((np.asarray(a, float) - np.asarray(b, float)) / (2 * H) for a, b in zip(hi, lo))
    return (np.asarray(hi, float) - np.asarray(lo, float)) / (2 * H)


def _close(a, b, rtol=1e-5, atol=1e-6):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jvp_matches_directional_finite_differences(name, backend):
    model, make_args, wrt = CASES[name]
    args = make_args()
    ts = _direction(args, wrt)
    value, t = sb.jvp(model, wrt=wrt, backend=backend)(*args, tangents=tuple(ts))
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-12)
    _close(t, _directional_fd(model, args, wrt, ts))
    # and the reverse mode's gradient dotted with the direction
    grads = sb.grad(model, wrt=wrt, backend=backend)(*args)
    _close(t, sum(np.sum(np.asarray(g) * np.asarray(d)) for g, d in zip(grads, ts)), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hvp_matches_finite_differences_of_the_gradient(name, backend):
    model, make_args, wrt = CASES[name]
    args = make_args()
    vs = _direction(args, wrt, seed=1)
    hv = sb.hvp(model, wrt=wrt, backend=backend)(*args, v=tuple(vs))
    grad = sb.grad(model, wrt=wrt, backend="numpy")
    fd = _directional_fd(lambda *a: tuple(grad(*a)), args, wrt, vs)
    assert len(hv) == len(wrt)
    for a, b, i in zip(hv, fd, wrt):
        assert np.shape(a) == np.shape(args[i])
        _close(a, b, rtol=1e-4, atol=1e-5)


def vector_model(x):
    return np.sum(np.tanh(x) * x ** 2) + np.prod(x[:2]) * np.sum(np.exp(x / 3))


def matrix_model(W, x):
    h = np.tanh(W @ x)
    return np.sum(h ** 2) + np.sum(W ** 3) / 5


def scalar_model(a, b):
    return a ** 3 * b + np.sin(a * b)


def tuple_model(W, b, x):
    z = x @ W + b
    return np.mean(np.log(1 + np.exp(z)) * z)


HESSIANS = {
    "scalar": (scalar_model, lambda: [0.7, -0.4], 0),
    "vector": (vector_model, lambda: [np.linspace(-1, 1.2, 5)], 0),
    "matrix": (matrix_model, lambda: [np.random.default_rng(2).normal(size=(3, 4)) * .5,
                                      np.random.default_rng(3).normal(size=4)], 0),
    "tuple": (tuple_model, lambda: [np.random.default_rng(4).normal(size=(3, 2)), np.array([0.1, -0.3]),
                                    np.random.default_rng(5).normal(size=(6, 3))], ("W", "b")),
    "tuple_floats": (scalar_model, lambda: [0.3, 1.1], (0, 1)),
}


def _fd_hessian(model, args, wrt):
    """H[i][j] = d grad_i / d x_j by central differences of the (numpy) gradient."""
    single = not isinstance(wrt, tuple)
    idx = [wrt] if single else list(wrt)
    names = list(model.__code__.co_varnames[:model.__code__.co_argcount])
    idx = [names.index(i) if isinstance(i, str) else i for i in idx]
    grad = sb.grad(model, wrt=tuple(idx))
    blocks = []
    for i in range(len(idx)):
        row = []
        for j in idx:
            x = np.asarray(args[j], float)
            cols = []
            for k in range(x.size):
                e = np.zeros(x.size)
                e[k] = 1.0
                e = e.reshape(x.shape) if x.shape else float(e[0])
                hi = grad(*_moved(args, [j], [e], H))[i]
                lo = grad(*_moved(args, [j], [e], -H))[i]
                cols.append((np.asarray(hi) - np.asarray(lo)) / (2 * H))
            gshape = np.shape(args[idx[i]])
            row.append(np.moveaxis(np.array(cols), 0, -1).reshape(gshape + x.shape))
        blocks.append(row)
    return blocks, idx


@pytest.mark.parametrize("name", sorted(HESSIANS))
def test_hessian_is_symmetric_and_finite_differences_of_the_gradient(name, backend):
    model, make_args, wrt = HESSIANS[name]
    args = make_args()
    H_ = sb.hessian(model, wrt=wrt, backend=backend)(*args)
    fd, idx = _fd_hessian(model, args, wrt)
    single = not isinstance(wrt, tuple)
    blocks = [[H_]] if single else H_
    assert len(blocks) == len(idx) and all(len(row) == len(idx) for row in blocks)
    sizes = [int(np.size(args[i])) for i in idx]
    for a in range(len(idx)):
        for b in range(len(idx)):
            shape = np.shape(args[idx[a]]) + np.shape(args[idx[b]])
            assert np.shape(blocks[a][b]) == shape
            _close(blocks[a][b], fd[a][b], rtol=1e-4, atol=1e-5)
            # symmetric: H[a][b] is H[b][a] transposed
            ab = np.reshape(blocks[a][b], (sizes[a], sizes[b]))
            ba = np.reshape(blocks[b][a], (sizes[b], sizes[a]))
            np.testing.assert_allclose(ab, ba.T, rtol=1e-10, atol=1e-12)
    # hvp == hessian @ v
    vs = _direction(args, idx, seed=7)
    hv = sb.hvp(model, wrt=wrt, backend=backend)(*args, v=vs[0] if single else tuple(vs))
    hv = [hv] if single else list(hv)
    for a in range(len(idx)):
        want = sum(np.reshape(blocks[a][b], (sizes[a], sizes[b])) @ np.reshape(vs[b], -1) for b in range(len(idx)))
        np.testing.assert_allclose(np.reshape(hv[a], -1), want, rtol=1e-10, atol=1e-12)


# ---- array-valued functions: jvp, vjp, jacobian ---------------------------------------------

def tanh_layer(W, b, x):
    return np.tanh(W @ x + b)


def softmax_rows(z):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def shapes_and_slices(x, y):
    z = np.concatenate([x[1:] * y, np.sin(x[:1])], axis=0)
    return z.T @ x


def reduce_wide(x):
    return np.sum(x ** 2, axis=0) + np.max(x, axis=0)


def rng_(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape)


ARRAY = {
    "tanh_layer": (tanh_layer, lambda: [rng_(4, 5), rng_(4, seed=1), rng_(5, seed=2)], ("W", "b", "x")),
    "tanh_layer_x": (tanh_layer, lambda: [rng_(6, 2), rng_(6, seed=1), rng_(2, seed=2)], "x"),
    "softmax_rows": (softmax_rows, lambda: [rng_(3, 4) * 2], 0),
    "shapes_and_slices": (shapes_and_slices, lambda: [rng_(3, 2), rng_(2, 2, seed=3)], (0, 1)),
    "reduce_wide": (reduce_wide, lambda: [rng_(5, 3)], 0),
}


def _fd_jacobian(f, args, i):
    x = np.asarray(args[i], float)
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = 1
        cols.append(_directional_fd(f, args, [i], [e.reshape(x.shape)]))
    out = np.shape(f(*args))
    return np.moveaxis(np.array(cols), 0, -1).reshape(out + x.shape)


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_jacobian_vjp_and_jvp_of_array_functions(name, backend):
    f, make_args, wrt = ARRAY[name]
    args = make_args()
    single = not isinstance(wrt, tuple)
    jac = sb.jacobian(f, wrt=wrt, backend=backend)
    J = jac(*args)
    Js = [J] if single else list(J)
    names = list(f.__code__.co_varnames[:f.__code__.co_argcount])
    idx = [names.index(w) if isinstance(w, str) else w for w in ([wrt] if single else wrt)]
    for Jk, i in zip(Js, idx):
        _close(Jk, _fd_jacobian(f, args, i))
    out = f(*args)
    u = rng_(*np.shape(out), seed=9)
    value, grads = sb.vjp(f, wrt=wrt, backend=backend)(*args, cotangent=u)
    np.testing.assert_allclose(value, out, rtol=1e-12, atol=1e-12)
    for g, Jk, i in zip([grads] if single else grads, Js, idx):
        want = np.tensordot(u, Jk, axes=np.ndim(out))
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12)
    ts = _direction(args, idx, seed=4)
    value, t = sb.jvp(f, wrt=wrt, backend=backend)(*args, tangents=ts[0] if single else tuple(ts))
    np.testing.assert_allclose(value, out, rtol=1e-12, atol=1e-12)
    want = sum(np.tensordot(Jk, d, axes=np.ndim(d)) for Jk, d in zip(Js, ts))
    np.testing.assert_allclose(t, want, rtol=1e-9, atol=1e-12)


def test_jacobian_takes_the_smaller_side():
    args = [rng_(8, 2), rng_(8, seed=1), rng_(2, seed=2)]
    fwd = sb.jacobian(tanh_layer, wrt="x")
    fwd(*args)
    assert fwd._last.mode == "forward"
    rev = sb.jacobian(tanh_layer, wrt="W")
    rev(*args)
    assert rev._last.mode == "reverse"


def test_tangent_names_read_t_name():
    def layer(W, x):
        z = W @ x
        h = np.tanh(z)
        return np.sum(h)
    j = sb.jvp(layer, wrt="x")
    j(rng_(3, 3), rng_(3, seed=1), tangents=rng_(3, seed=2))
    assert "t_h = t_z*(1 - h**2)" in j.source
    assert "def forward(W, x, t_x):" in j.source


# ---- source, export, explain, the command line, the call contract ----------------------------

def layer_loss(W, x):
    h = np.tanh(W @ x)
    return np.sum(h ** 2)


@pytest.mark.parametrize("entry", ["jvp", "vjp", "jacobian", "hessian", "hvp"])
def test_exported_py_module_returns_what_the_callable_returns(entry, tmp_path):
    import importlib.util
    W, x = rng_(3, 4), rng_(4, seed=1)
    fn = getattr(sb, entry)(layer_loss, wrt=("W", "x"))
    direction = {"jvp": {"tangents": (rng_(3, 4, seed=2), rng_(4, seed=3))}, "vjp": {"cotangent": np.asarray(1.5)},
                 "hvp": {"v": (rng_(3, 4, seed=2), rng_(4, seed=3))}}.get(entry, {})
    want = fn(W, x, **direction)
    path = fn.export(tmp_path / f"{entry}.py")
    spec = importlib.util.spec_from_file_location(f"exported_{entry}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    extra = [d for v in direction.values() for d in (v if isinstance(v, tuple) else (v,))]
    got = getattr(module, entry)(W, x, *extra)
    flat = lambda t: [np.asarray(a) for a in (t if isinstance(t, tuple) else (t,)) for a in (flat(a) if isinstance(a, tuple) else [a])]  # noqa: E731
    for a, b in zip(flat(got), flat(want)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        getattr(module, entry)(W[:2], x, *extra)


def test_cli_show_and_explain_modes(tmp_path, capsys):
    from symbackprop import cli
    model = tmp_path / "m.py"
    model.write_text("import numpy as np\n\ndef layer(W, x):\n    h = np.tanh(W @ x)\n    return np.sum(h ** 2)\n")
    args = [f"{model}:layer", "--arg", "W=float64[3,4]", "--arg", "x=float64[4]"]
    assert cli.main(["show", *args, "--mode", "hvp", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "def forward(W, x, t_W):" in out and "t_d_W = " in out
    assert cli.main(["explain", *args, "--mode", "jvp", "--wrt", "x"]) == 0
    assert "t_out = " in capsys.readouterr().out
    assert cli.main(["export", *args, "--mode", "hessian", "-o", str(tmp_path / "h.py")]) == 0
    assert cli.main(["show", *args, "--mode", "jvp", "--memory-budget", "1KB"]) == 2  # forward mode keeps nothing
    capsys.readouterr()
    assert cli.main(["show", *args, "--mode", "jvp", "--has-aux"]) == 1  # the model returns no (value, aux) pair
    assert "m.py:5: with has_aux=True the model returns (loss, aux)" in capsys.readouterr().err
    aux = tmp_path / "a.py"
    aux.write_text("import numpy as np\n\ndef layer(W, x):\n    h = np.tanh(W @ x)\n    return np.sum(h ** 2), h\n")
    args = [f"{aux}:layer", "--arg", "W=float64[3,4]", "--arg", "x=float64[4]"]
    assert cli.main(["show", *args, "--mode", "hvp", "--has-aux", "--memory-budget", "100", "--memory",
                     "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "return loss, ((t_d_W,), h)" in out and "memory_budget=100 bytes" in out
    assert cli.main(["explain", *args, "--mode", "hvp", "--has-aux", "--memory-budget", "100"]) == 0
    out = capsys.readouterr().out
    assert "tangents along t_W" in out and "\nmemory: " in out


def test_call_contract_and_cache(backend):
    j = sb.jvp(layer_loss, wrt="x", backend=backend)
    W, x = rng_(3, 4), rng_(4, seed=1)
    with pytest.raises(TypeError, match="tangents="):
        j(W, x)
    with pytest.raises(ValueError, match="shape"):
        j(W, x, tangents=np.ones(3))
    with pytest.raises(TypeError, match="numeric"):
        j(W, x, tangents=np.array(["a"] * 4))
    j(W, x, tangents=np.ones(4))
    j(W * 2, x, tangents=np.ones(4))
    assert j.compilations == 1
    # float32 in, float32 out
    W32, x32 = W.astype(np.float32), x.astype(np.float32)
    value, t = j(W32, x32, tangents=np.ones(4, np.float32))
    assert t.dtype == np.float32 and j.compilations == 2
    hv = sb.hvp(layer_loss, backend=backend)(W32, x32, v=np.ones((3, 4), np.float32))
    assert hv.dtype == np.float32
    H = sb.hessian(layer_loss, wrt="x", backend=backend)(W32, x32)
    assert H.dtype == np.float32 and H.shape == (4, 4)
    with pytest.raises(sb.CompileError):
        sb.hvp(lambda_free_array_result, backend=backend)(x, v=x)


def lambda_free_array_result(x):
    return np.tanh(x)


def test_entry_points_pickle_and_compile_again():
    import pickle
    W, x = rng_(3, 4), rng_(4, seed=1)
    h = sb.hvp(layer_loss, wrt="x")
    want = h(W, x, v=np.ones(4))
    copy = pickle.loads(pickle.dumps(h))
    assert copy.compilations == 0
    np.testing.assert_array_equal(copy(W, x, v=np.ones(4)), want)
    assert repr(copy) == repr(h)


def test_so_export_of_hvp_is_named_for_it_and_gives_the_callables_numbers(tmp_path):
    """The C function and header say what the entry point computes; called through ctypes it returns
    the same H @ v as the compiled callable."""
    import ctypes
    W, x, v = rng_(3, 4), rng_(4, seed=1), rng_(3, 4, seed=2)
    fn = sb.hvp(layer_loss, wrt="W", backend="llvm")
    want = fn(W, x, v=v)
    path = fn.export(tmp_path / "layer.so")
    header = (tmp_path / "layer.h").read_text()
    assert "int layer_loss_hvp(" in header and "hvp of `layer_loss`" in header and "double* hvp_W" in header
    assert "aux_0" not in header and "value_and_grad" not in header
    lib = ctypes.CDLL(str(path))
    value, out = np.zeros(()), np.zeros((3, 4))
    ptr = lambda a: np.ascontiguousarray(a).ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    args = [np.ascontiguousarray(a) for a in (W, x, v)]
    assert lib.layer_loss_hvp(*map(ptr, args), ptr(value), out.ctypes.data_as(ctypes.c_void_p)) == 0
    np.testing.assert_allclose(out, want[1] if isinstance(want, tuple) else want, rtol=1e-12)
