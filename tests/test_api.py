"""The public contract: wrt, decorators, the per-signature cache, dtypes, call-time errors."""
import threading

import numpy as np
import pytest

import symbackprop as sb
import models


def test_wrt_by_name_index_and_tuple():
    args = (0.5, -0.3, 2.0, 1.0)
    r = 2 * (0.5 * 2.0 - 0.3 - 1.0)  # d loss / d y_hat = 2 (y_hat - y)
    assert sb.grad(models.line)(*args) == pytest.approx(r * 2.0)            # default: first parameter
    assert sb.grad(models.line, wrt="b")(*args) == pytest.approx(r)
    assert sb.grad(models.line, wrt=2)(*args) == pytest.approx(r * 0.5)
    assert sb.grad(models.line, wrt=-1)(*args) == pytest.approx(-r)
    gw, gb = sb.grad(models.line, wrt=("w", "b"))(*args)
    assert (gw, gb) == (pytest.approx(r * 2.0), pytest.approx(r))
    value, (gb2,) = sb.value_and_grad(models.line, wrt=["b"])(*args)
    assert value == pytest.approx(models.line(*args)) and gb2 == pytest.approx(r)


def test_decorator_forms():
    @sb.grad
    def f(x):
        return x * x

    @sb.value_and_grad(wrt=("x",))
    def g(x, y):
        return x * y

    assert f(3.0) == 6.0
    assert g(2.0, 5.0) == (10.0, (5.0,))
    assert f.__name__ == "f" and "symbackprop" in repr(f)


def test_bad_wrt_is_rejected_at_decoration():
    with pytest.raises(ValueError, match="not a parameter"):
        sb.grad(models.line, wrt="z")
    with pytest.raises(ValueError, match="out of range"):
        sb.grad(models.line, wrt=7)
    with pytest.raises(ValueError, match="repeats"):
        sb.grad(models.line, wrt=("w", 0))
    with pytest.raises(ValueError, match="backend"):
        sb.grad(models.line, backend="cuda")


def test_cache_compiles_once_per_signature(backend):
    f = sb.value_and_grad(models.matmul_2d, wrt=(0, 1), backend=backend)
    a, b = np.ones((3, 4)), np.ones((4, 2))
    for _ in range(3):
        f(a, b)
    assert f.compilations == 1
    f(np.ones((5, 4)), b)
    assert f.compilations == 2
    f(a.astype(np.float32), b.astype(np.float32))
    assert f.compilations == 3
    f(a, b)
    assert f.compilations == 3


def test_static_arguments_steer_control_flow_and_key_the_cache():
    f = sb.grad(models.loop_with_helpers, wrt=("W", "b"))
    args = [np.ones((3, 2)), np.ones(2), np.ones((4, 3)), np.zeros((4, 2))]
    f(*args, 2)
    f(*args, n=2)
    assert f.compilations == 1
    g2 = f(*args, 2)
    g3 = f(*args, 3)
    assert f.compilations == 2 and not np.allclose(g2[0], g3[0])


def test_float32_in_float32_out(backend):
    f = sb.value_and_grad(models.mlp, wrt=(0, 1), backend=backend)
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(5, 4)), np.zeros(4), rng.normal(size=(4, 3)), np.zeros(3), rng.normal(size=(2, 5)),
            np.eye(3)[[0, 2]]]
    value64, grads64 = f(*args)
    value32, grads32 = f(*[a.astype(np.float32) for a in args])
    assert all(g.dtype == np.float32 for g in grads32) and np.asarray(value32).dtype == np.float32
    for g32, g64 in zip(grads32, grads64):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_python_floats_give_python_floats_and_0d_arrays_too(backend):
    value, grads = sb.value_and_grad(models.line, wrt=(0, 1), backend=backend)(0.5, 1.0, 2.0, 3.0)
    assert type(value) is float and all(type(g) is float for g in grads)
    g = sb.grad(models.binary_broadcast, backend=backend)(np.array(0.5), np.ones(3))
    assert type(g) is float


def test_gradients_are_fresh_arrays_never_views_of_inputs(backend):
    f = sb.grad(models.matmul_vectors, wrt=(0, 1, 2), backend=backend)
    A, v, u = np.ones((3, 3)), np.ones(3), np.ones(3)
    grads = f(A, v, u)
    for g, x in zip(grads, (A, v, u)):
        assert not np.shares_memory(g, x)


def test_inputs_are_not_mutated_and_strided_or_readonly_inputs_work(backend):
    f = sb.grad(models.loop_stacked, wrt=(0, 1, 2), backend=backend)
    rng = np.random.default_rng(1)
    Ws, bs, x = rng.normal(size=(3, 4, 4)), rng.normal(size=(3, 4)), rng.normal(size=(8, 4))
    copies = [a.copy() for a in (Ws, bs, x)]
    expected = f(Ws, bs, x)
    for a, c in zip((Ws, bs, x), copies):
        np.testing.assert_array_equal(a, c)
    x_strided = np.asfortranarray(rng.normal(size=(16, 4)))[::2]
    np.testing.assert_allclose(f(Ws, bs, x_strided)[0], f(Ws, bs, np.ascontiguousarray(x_strided))[0])
    for a in (Ws, bs, x):
        a.flags.writeable = False
    for got, want in zip(f(Ws, bs, x), expected):
        np.testing.assert_array_equal(got, want)


def test_same_array_for_two_parameters(backend):
    a = np.linspace(-1, 1, 6).reshape(2, 3)
    ga, gb = sb.grad(models.binary_broadcast, wrt=(0, 1), backend=backend)(a, a)
    assert ga.shape == gb.shape == (2, 3)


def test_call_time_errors_name_the_parameter():
    f = sb.grad(models.matmul_2d)
    with pytest.raises(TypeError, match="matmul_2d"):
        f(np.ones((2, 2)))
    with pytest.raises(TypeError, match="`A`.*dtype"):
        f(np.array([["a", "b"]]), np.ones((2, 2)))
    with pytest.raises(TypeError, match="`A`.*object"):
        f(np.array([[object()]]), np.ones((1, 2)))
    with pytest.raises(TypeError, match="integer|int64"):
        f(np.ones((2, 2), dtype=np.int64), np.ones((2, 2)))
    with pytest.raises(ValueError, match="inner dimensions"):
        f(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="do not broadcast"):
        sb.grad(models.binary_broadcast)(np.ones((2, 3)), np.ones(4))
    with pytest.raises(TypeError, match="list"):
        f([[1.0]], np.ones((1, 1)))


def test_source_before_any_call_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not been called"):
        sb.grad(models.line).source


def test_threads_share_one_compilation(backend):
    f = sb.value_and_grad(models.mlp, wrt=(0, 2), backend=backend)
    rng = np.random.default_rng(2)
    args = [rng.normal(size=(5, 4)), np.zeros(4), rng.normal(size=(4, 3)), np.zeros(3), rng.normal(size=(2, 5)),
            np.eye(3)[[0, 2]]]
    results, barrier = [None] * 8, threading.Barrier(8)

    def work(i):
        barrier.wait()
        results[i] = f(*args)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert f.compilations == 1
    for value, grads in results:
        assert value == results[0][0]
        for g, g0 in zip(grads, results[0][1]):
            np.testing.assert_array_equal(g, g0)


def test_cache_is_bounded():
    from symbackprop import api
    f = sb.grad(models.binary_broadcast)
    for n in range(1, api.CACHE_SIZE + 6):
        f(np.ones(n), np.ones(n))
    assert len(f._cache) == api.CACHE_SIZE


def test_fast_path_checks_the_signature_and_falls_back(backend):
    """__call__ is generated for the last signature; anything else takes the general path."""
    f = sb.value_and_grad(models.binary_broadcast, wrt=(0, 1), backend=backend)
    a, b = np.ones((2, 3)), np.full(3, 2.0)
    first = f(a, b)
    assert f(a, b=b)[0] == first[0] and f.compilations == 1
    f(a.astype(np.float32), b.astype(np.float32))          # compiles, becomes the fast path
    again = f(a, b)                                          # general path: cached, no compile
    assert f.compilations == 2 and again[0] == first[0]
    for g_again, g_first in zip(again[1], first[1]):
        np.testing.assert_array_equal(g_again, g_first)
    with pytest.raises(TypeError):
        f(a)


def test_allocator_tuning_happens_once_and_can_be_turned_off():
    import subprocess
    import sys
    script = ("import numpy as np, symbackprop as sb, symbackprop.runtime as rt, sys; sys.path.insert(0, 'tests');"
              "import models; sb.grad(models.matmul_2d)(np.ones((2, 2)), np.ones((2, 2))); print(rt._done)")
    on = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    off = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "SYMBACKPROP_MALLOC_TUNING": "0"})
    assert on.stdout.strip() == "True" and off.stdout.strip() == "False"


def test_compiled_forward_gives_the_models_value(backend):
    f = sb.value_and_grad(models.mlp, wrt=(0, 2), backend=backend)
    rng = np.random.default_rng(3)
    args = [rng.normal(size=(5, 4)), np.zeros(4), rng.normal(size=(4, 3)), np.zeros(3), rng.normal(size=(2, 5)),
            np.eye(3)[[0, 2]]]
    assert f.forward(*args) == pytest.approx(models.mlp(*args), rel=1e-12)
    assert f.compilations == 0  # the forward pass has its own cache
    assert sb.grad(models.where_safe_log, backend=backend).forward(-1.0) == -1.0


def test_a_model_defined_in_a_notebook_cell():
    """IPython keeps a cell's source in linecache under a file name that is not on disk."""
    import linecache
    cell = "/tmp/ipykernel_0000/does-not-exist-123.py"
    text = ("import numpy as np\n\n\ndef cell_model(w, x):\n    h = np.tanh(w * x)\n"
            "    return np.sum(h * h)\n\n\ndef cell_bad(x):\n    while True:\n        pass\n")
    linecache.cache[cell] = (len(text), None, text.splitlines(True), cell)
    namespace = {}
    exec(compile(text, cell, "exec"), namespace)
    g = sb.grad(namespace["cell_model"])(0.5, 2.0)
    assert g == pytest.approx(2 * np.tanh(1.0) * (1 - np.tanh(1.0) ** 2) * 2.0)
    with pytest.raises(sb.CompileError) as info:
        sb.grad(namespace["cell_bad"])(1.0)
    assert info.value.file == cell and info.value.line == 10


def test_a_model_made_by_exec_without_source_is_a_clear_error():
    namespace = {}
    exec("def f(x):\n    return x * x\n", namespace)
    with pytest.raises(sb.CompileError, match="cannot read the source"):
        sb.grad(namespace["f"])(1.0)
