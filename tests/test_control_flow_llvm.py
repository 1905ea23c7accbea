"""What the LLVM backend adds to value-dependent control flow (tests/test_control_flow.py runs every
model there on both backends): tapes that grow by doubling and are freed before return, a loop inside
a loop, and `.so` export of such a model."""
import ctypes
import os
import subprocess

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match
from test_control_flow import nested_while, newton_sqrt, overwrite_then_read, view_then_overwrite


def long_loop(x, w):
    """Thousands of iterations: each of the tapes grows through many doublings."""
    h = x
    k = 0
    while np.sum(h * h) < 4.0 and k < 100000:
        h = h + 0.0001 * np.tanh(h * w)
        k += 1
    return np.sum(h * w)


def test_a_tape_of_thousands_of_entries_gives_the_gradient():
    x, w = np.linspace(0.1, 0.4, 32), np.linspace(0.5, 1.5, 32)
    llvm = sb.value_and_grad(long_loop, wrt=("x", "w"), backend="llvm")
    value, grads = llvm(x, w)
    h, trips = x, 0
    while np.sum(h * h) < 4.0:
        h, trips = h + 0.0001 * np.tanh(h * w), trips + 1
    assert trips > 2000  # 4, 8, ... 4096 entries: ten doublings of every tape
    v_np, g_np = sb.value_and_grad(long_loop, wrt=("x", "w"))(x, w)
    assert value == pytest.approx(v_np, rel=1e-12)
    for a, b in zip(grads, g_np):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert_gradients_match(long_loop, grads, (x, w), (0, 1), rtol=1e-5)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_calls_leak_nothing():
    """Every call mallocs its temporaries and reallocs its tapes (arrays of 40 doubles, past the
    allocas' 16): a leak of even one tape's words per call would be 24 MB here."""
    f = sb.value_and_grad(nested_while, wrt=("x", "w"), backend="llvm")
    g = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"), backend="llvm")
    x, w = np.full(40, 0.3 / 20), np.full(40, 1.0)
    a, x0 = np.linspace(1.0, 3.0, 40), np.ones(40)
    for _ in range(20000):
        f(x, w)
        g(a, x0)
    before = _rss_bytes()
    for _ in range(500000):
        f(x, w)
        g(a, x0)
    grown = _rss_bytes() - before
    assert grown < 4 * 2**20, f"resident memory grew by {grown} bytes over a million calls"
    value, grads = f(x, w)
    assert_gradients_match(nested_while, grads, (x, w), (0, 1))


def test_so_export_of_a_while_model_needs_nothing_new(tmp_path):
    a, x0 = np.array([2.0, 3.0, 0.5]), np.array([1.0, 1.5, 1.0])
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"), backend="llvm")
    lib = tmp_path / "libnewton.so"
    f.export(lib, a, x0)
    header = (tmp_path / "libnewton.h").read_text()
    assert header.count("int newton_sqrt_value_and_grad(") == 1
    assert "tape" not in header.lower() and "trips" not in header  # the tapes live and die inside one call
    deps = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    assert "python" not in deps and "numpy" not in deps, deps
    so = ctypes.CDLL(str(lib))
    fn = so.newton_sqrt_value_and_grad
    fn.restype = ctypes.c_int
    want_value, (want_da, want_dx0) = f(a, x0)
    for scale in (1.0, 40.0):  # a different trip count through the same library
        aa = a * scale
        value, da, dx0 = np.zeros(1), np.zeros(3), np.zeros(3)
        ptr = lambda v: v.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        assert fn(ptr(aa), ptr(x0), ptr(value), ptr(da), ptr(dx0)) == 0
        v_jit, (da_jit, dx0_jit) = f(aa, x0)
        assert value[0] == pytest.approx(v_jit, rel=1e-14)
        np.testing.assert_allclose(da, da_jit, rtol=1e-13)
        np.testing.assert_allclose(da, 0.5 / np.sqrt(aa), rtol=1e-9)
        np.testing.assert_allclose(dx0, dx0_jit, rtol=1e-13, atol=1e-300)


# ---- results computed straight into the carried buffers, residuals into their tape entries ----------

def step_overwritten(z):
    """`step` is not read by the body: its new value is computed straight into its buffer, and the
    residuals (u, f, r) into their tape entries."""
    u = np.zeros_like(z)
    step = np.ones_like(z)
    k = 0
    while np.max(np.abs(step)) > 1e-12 and k < 100:
        r = 1.0 / (3.0 * u ** 2 + 1.0)
        step = (u ** 3 + u - z) * r
        u = u - step
        k += 1
    return np.sum(np.sin(u) * z)


@pytest.mark.parametrize("model, args, wrt", [
    (overwrite_then_read, (np.array([[0.2, 0.1, 0.0], [0.0, 0.3, 0.1], [0.1, 0.0, 0.2]]),
                           np.array([0.3, 0.5, 0.7])), (0, 1)),
    (view_then_overwrite, (np.array([0.3, 0.5, 0.7]),), (0,)),
    (step_overwritten, (np.linspace(-3.0, 5.0, 40),), (0,)),
], ids=["overwrite_then_read", "view_then_overwrite", "step_overwritten"])
def test_buffers_given_to_body_results_keep_the_old_values_readable(model, args, wrt):
    llvm = sb.value_and_grad(model, wrt=wrt, backend="llvm")
    value, grads = llvm(*args)
    assert value == pytest.approx(model(*args), rel=1e-12)
    v_np, g_np = sb.value_and_grad(model, wrt=wrt)(*args)
    for a, b in zip(grads, g_np):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_gradients_match(model, grads, args, wrt)


def test_tapes_start_at_an_earlier_calls_capacity_and_still_grow():
    """A tape starts at the capacity it reached in an earlier call: calls with far fewer trips, then
    far more (growing past it), then fewer again, each give the NumPy backend's gradient."""
    w = np.linspace(0.5, 1.5, 32)
    llvm = sb.value_and_grad(long_loop, wrt=("x", "w"), backend="llvm")
    numpy = sb.value_and_grad(long_loop, wrt=("x", "w"))
    trips = []
    for scale in (1.0, 1.3, 0.5, 1.3, 1.0):
        x = np.linspace(0.1, 0.4, 32) * scale
        h, k = x, 0
        while np.sum(h * h) < 4.0:
            h, k = h + 0.0001 * np.tanh(h * w), k + 1
        trips.append(k)
        value, grads = llvm(x, w)
        v_np, g_np = numpy(x, w)
        assert value == pytest.approx(v_np, rel=1e-12)
        for a, b in zip(grads, g_np):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert trips[2] > trips[0] > trips[1] > 0 and llvm.compilations == 1


def test_threads_calling_one_while_model_with_different_trip_counts_agree_with_serial_calls():
    """Every call has its own tapes; only the starting-capacity hint is shared (atomically)."""
    from concurrent.futures import ThreadPoolExecutor
    w = np.linspace(0.5, 1.5, 32)
    inputs = [np.linspace(0.1, 0.4, 32) * s for s in (1.0, 1.3, 0.5, 1.2)]
    llvm = sb.value_and_grad(long_loop, wrt=("x", "w"), backend="llvm")
    serial = [llvm(x, w) for x in inputs]

    def run(k):
        got = [llvm(inputs[(k + i) % 4], w) for i in range(12)]
        return all(v == serial[(k + i) % 4][0] and all(np.array_equal(a, b) for a, b in zip(g, serial[(k + i) % 4][1]))
                   for i, (v, g) in enumerate(got))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(8)))
