"""memory_budget=: residuals dropped and recomputed under a budget, the same numbers bit for bit; .memory()."""
import ctypes
import pickle
import re
import tracemalloc

import numpy as np
import pytest

import symbackprop as sb
from symbackprop.transforms.recompute import parse_budget
from test_gradients import CASES

LAYERS, WIDTH = 16, 64


def deep_tanh(Ws, x):
    h = x
    for i in range(Ws.shape[0]):
        h = np.tanh(h @ Ws[i])
    return np.mean(h * h)


def mlp(W1, b1, W2, b2, x, y):
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def deep_mlp(W1, W2, W3, W4, b, x, y):
    h1 = np.tanh(x @ W1 + b)
    h2 = np.maximum(h1 @ W2, 0.0)
    h3 = np.tanh(h2 @ W3) + h1
    logits = h3 @ W4
    m = np.max(logits, axis=1, keepdims=True)
    z = logits - m
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(y * logp, axis=1))


def deep_mlp_inputs():
    rng = np.random.default_rng(2)
    y = np.eye(10)[rng.integers(0, 10, 64)]
    return [rng.standard_normal((8, 32)), rng.standard_normal((32, 32)), rng.standard_normal((32, 32)),
            rng.standard_normal((32, 10)), rng.standard_normal(32), rng.standard_normal((64, 8)), y]


def deep_inputs(layers=LAYERS, width=WIDTH, batch=WIDTH):
    rng = np.random.default_rng(0)
    return rng.standard_normal((layers, width, width)) / np.sqrt(width), rng.standard_normal((batch, width))


def mlp_inputs():
    rng = np.random.default_rng(1)
    y = np.eye(5)[rng.integers(0, 5, 32)]
    return [rng.standard_normal((8, 16)), rng.standard_normal(16), rng.standard_normal((16, 5)),
            rng.standard_normal(5), rng.standard_normal((32, 8)), y]


def bitwise_equal(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(bitwise_equal(x, y) for x, y in zip(a, b))
    return np.asarray(a).tobytes() == np.asarray(b).tobytes() and np.asarray(a).dtype == np.asarray(b).dtype


# ---- the option ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, size", [(4096, 4096), ("64MB", 64 * 10**6), ("1.5GiB", 3 * 2**29),
                                        ("512kB", 512000), ("2 KiB", 2048), ("100", 100), ("7B", 7),
                                        ("1.5 mib", 1572864), (2.0**20, 2**20)])
def test_budget_sizes_in_si_and_iec_units(text, size):
    assert parse_budget(text) == size


@pytest.mark.parametrize("text", ["abc", "-1MB", "64XB", "1.5", "MB", "", "0", 0, -5, 1.5, float("inf"), "1e3MB"])
def test_a_budget_that_is_not_a_size_is_a_value_error(text):
    with pytest.raises(ValueError, match="memory_budget"):
        parse_budget(text)
    with pytest.raises(ValueError, match="memory_budget"):
        sb.value_and_grad(deep_tanh, memory_budget=text)


def test_a_budget_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="memory_budget"):
        sb.grad(deep_tanh, memory_budget=True)
    with pytest.raises(TypeError, match="memory_budget"):
        sb.grad(deep_tanh, memory_budget=[1])


# ---- the report -----------------------------------------------------------------------------

def test_the_report_lists_each_residual_with_its_line_and_bytes(backend):
    Ws, x = deep_inputs()
    f = sb.value_and_grad(deep_tanh, backend=backend)
    report = f.memory(Ws, x)
    # backprop through the loop keeps each layer's tanh output (tanh' = 1 - h**2; the next layer's dW reads it)
    assert len(report.residuals) == LAYERS
    assert report.residual_bytes == LAYERS * x.nbytes == report.kept_bytes
    assert all(kept and size == x.nbytes for _, _, size, kept in report.residuals)
    assert not report.recomputed and report.extra_flops == 0
    # the forward pass: a product (2 n^3) and a tanh per layer, and the loss
    assert report.forward_flops >= LAYERS * 2 * WIDTH ** 3
    text = str(report)
    assert f"test_memory_budget.py:{deep_tanh.__code__.co_firstlineno + 3}" in text and str(x.nbytes) in text and "peak live bytes" in text


def test_the_report_of_a_budget_shows_what_is_recomputed():
    Ws, x = deep_inputs()
    budget = LAYERS * x.nbytes // 2
    f = sb.value_and_grad(deep_tanh, memory_budget=budget)
    report = f.memory(Ws, x)
    assert report.budget == budget
    assert report.kept_bytes <= report.residual_peak <= budget
    assert report.recomputed and report.extra_flops > 0
    assert sum(not kept for *_, kept in report.residuals) > 0
    assert "recomputed" in str(report) and "extra flops" in str(report)


def test_explain_ends_with_the_memory_report_under_a_budget():
    Ws, x = deep_inputs(layers=8, width=4, batch=3)
    plain = sb.value_and_grad(deep_tanh).explain(Ws, x)
    assert "memory" not in plain.split("gradients")[-1]
    text = sb.value_and_grad(deep_tanh, memory_budget=8 * x.nbytes // 2).explain(Ws, x)
    assert text.startswith(plain)
    assert "memory: memory of one call (numpy backend, memory_budget=" in text and "recomputed" in text


# ---- without a budget nothing changes ---------------------------------------------------------

def test_a_budget_every_residual_fits_in_changes_no_code(backend):
    Ws, x = deep_inputs()
    plain = sb.value_and_grad(deep_tanh, backend=backend)
    roomy = sb.value_and_grad(deep_tanh, backend=backend, memory_budget="1GiB")
    assert bitwise_equal(plain(Ws, x), roomy(Ws, x))
    assert plain.source == roomy.source
    assert roomy.memory().recomputed == []


# ---- the numbers are the same, bit for bit ------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_deep_tanh_under_a_budget_gives_the_same_bits(backend, fraction):
    Ws, x = deep_inputs()
    plain = sb.value_and_grad(deep_tanh, backend=backend)
    expected = plain(Ws, x)
    budget = int(plain.memory(Ws, x).residual_bytes * fraction)
    f = sb.value_and_grad(deep_tanh, backend=backend, memory_budget=budget)
    assert bitwise_equal(f(Ws, x), expected)
    report = f.memory(Ws, x)
    assert report.kept_bytes <= budget and report.residual_peak <= budget and report.recomputed


@pytest.mark.parametrize("name", [n for n in CASES if n != "math_scalar"])
def test_every_model_under_half_its_residual_bytes_gives_the_same_bits(backend, name):
    fn, make, wrt = CASES[name]
    args = make()
    plain = sb.value_and_grad(fn, wrt=wrt, backend=backend)
    expected = plain(*args)
    total = plain.memory(*args).residual_bytes
    if total < 2:
        return  # nothing to drop
    f = sb.value_and_grad(fn, wrt=wrt, backend=backend, memory_budget=total // 2)
    try:
        got = f(*args)
    except sb.CompileError as e:  # half is below what any schedule reaches: the smallest that does must work
        smallest = int(re.search(r"the smallest that works is (\d+) bytes", str(e)).group(1))
        assert total // 2 < smallest <= total
        f = sb.value_and_grad(fn, wrt=wrt, backend=backend, memory_budget=smallest)
        got = f(*args)
    assert bitwise_equal(got, expected)
    assert f.memory(*args).residual_peak <= f.memory_budget


def test_a_one_layer_mlp_has_nothing_to_save():
    # h is its one large residual, and computing it again needs x @ W1, as large: no schedule keeps less
    args = mlp_inputs()
    plain = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2", "b2"))
    total = plain.memory(*args).residual_bytes
    f = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2", "b2"), memory_budget=total - 1)
    with pytest.raises(sb.CompileError, match=f"the smallest that works is {total} bytes"):
        f(*args)


def test_a_deeper_mlp_with_softmax_under_a_budget(backend):
    args = deep_mlp_inputs()
    wrt = ("W1", "W2", "W3", "W4", "b")
    plain = sb.value_and_grad(deep_mlp, wrt=wrt, backend=backend)
    expected = plain(*args)
    budget = plain.memory(*args).residual_bytes * 3 // 4
    f = sb.value_and_grad(deep_mlp, wrt=wrt, backend=backend, memory_budget=budget)
    assert bitwise_equal(f(*args), expected)
    assert f.memory().recomputed and f.memory().residual_peak <= budget
    g = sb.grad(deep_mlp, wrt=wrt, backend=backend, memory_budget=budget)
    assert bitwise_equal(g(*args), expected[1])


def test_a_train_step_under_a_budget_updates_the_same_bits(backend):
    Ws, x = deep_inputs()
    budget = LAYERS * x.nbytes // 4
    results = []
    for options in ({}, {"memory_budget": budget}):
        W = Ws.copy()
        step = sb.train_step(deep_tanh, sb.optim.Adam(lr=1e-2), wrt="Ws", backend=backend, **options)
        losses = [step(W, x) for _ in range(3)]
        results.append((losses, W))
    assert results[0][0] == results[1][0] and results[0][1].tobytes() == results[1][1].tobytes()
    assert step.memory().recomputed


# ---- a budget too small, and pickling -------------------------------------------------------------

def test_a_budget_below_every_schedule_names_the_smallest_that_works(backend):
    Ws, x = deep_inputs()
    f = sb.value_and_grad(deep_tanh, backend=backend, memory_budget=x.nbytes)
    with pytest.raises(sb.CompileError, match=r"the smallest that works is (\d+) bytes") as info:
        f(Ws, x)
    assert "test_memory_budget.py" in str(info.value) and "memory_budget=" in str(info.value)
    smallest = int(re.search(r"the smallest that works is (\d+) bytes", str(info.value)).group(1))
    assert x.nbytes < smallest < LAYERS * x.nbytes
    ok = sb.value_and_grad(deep_tanh, backend=backend, memory_budget=smallest)
    assert bitwise_equal(ok(Ws, x), sb.value_and_grad(deep_tanh, backend=backend)(Ws, x))


def test_a_budgeted_function_pickles_with_its_budget():
    f = sb.value_and_grad(deep_tanh, memory_budget="100KiB")
    g = pickle.loads(pickle.dumps(f))
    assert g.memory_budget == 100 * 1024
    Ws, x = deep_inputs()
    assert bitwise_equal(g(Ws, x), f(Ws, x))


# ---- the generated code ----------------------------------------------------------------------------

def test_numpy_source_recomputes_under_a_comment_naming_the_checkpoint():
    Ws, x = deep_inputs(layers=8, width=4, batch=3)
    f = sb.value_and_grad(deep_tanh, memory_budget=8 * x.nbytes * 3 // 4)
    f(Ws, x)
    src = f.source
    backward = src.split("# backward")[1]
    assert re.search(r"# recomputed from checkpoint h(_\d+)? \(dropped under memory_budget\): t\d+, h_\d+", backward)
    # the recomputation is the forward statement again, under a fresh name
    assert re.search(r"\n\s+t\d+ = np\.dot\(h(_\d+)?, Ws_\d+\)", backward)
    assert "\n    del " in src


# ---- what a memory profiler measures ---------------------------------------------------------------------

def _peak_extra(f, *args):
    """Traced bytes allocated at once during one call, beyond its arguments and the gradient it returns."""
    f(*args)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        value, grad = f(*args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak - grad.nbytes, (value, grad)


def test_measured_peak_under_a_quarter_budget():
    Ws, x = deep_inputs()
    activation = x.nbytes
    plain = sb.value_and_grad(deep_tanh)
    _, expected = _peak_extra(plain, Ws, x)
    budget = plain.memory(Ws, x).residual_bytes // 4
    f = sb.value_and_grad(deep_tanh, memory_budget=budget)
    peak, got = _peak_extra(f, Ws, x)
    report = f.memory(Ws, x)
    assert report.kept_bytes <= budget
    assert peak <= 1.1 * budget + 4 * activation, (peak / activation, budget / activation)
    # the report's own accounting predicts it (the gradient's bytes are in its peak)
    assert abs(report.peak_bytes - Ws.nbytes - peak) <= 2 * activation
    assert bitwise_equal(got, expected)


# ---- without a budget: one activation per layer (issue 17) ----------------------------------------

def test_without_a_budget_the_numpy_code_keeps_one_activation_per_layer():
    # 128 x 128 float64 activations (128 KiB) are large values: each is freed at its last use and the
    # layers are not stacked (a stack of their gradients, 1 - h**2 for every layer, would be a second copy)
    layers = 24
    Ws, x = deep_inputs(layers=layers, width=128, batch=128)
    activation = x.nbytes
    f = sb.value_and_grad(deep_tanh)
    peak, _ = _peak_extra(f, Ws, x)
    report = f.memory(Ws, x)
    assert report.residual_bytes == layers * activation
    assert peak <= 1.1 * layers * activation + 4 * activation, peak / activation
    assert abs(report.peak_bytes - Ws.nbytes - peak) <= 2 * activation, (report.peak_bytes, peak)
    source = f.source
    assert "del h_" in source and "d_ts" not in source and "np.empty((25," not in source
    assert f.source == sb.value_and_grad(deep_tanh).specialise(Ws, x).artifact.source  # deterministic


def test_small_layers_are_still_stacked_and_not_deleted():
    Ws, x = deep_inputs(layers=4, width=8, batch=8)
    source = sb.value_and_grad(deep_tanh).specialise(Ws, x).artifact.source
    assert "d_Ws = np.matmul(hs[:4].transpose(0, 2, 1), d_ts)" in source and "del " not in source


@pytest.mark.parametrize("fraction, extra", [(1 / 4, 1.0), (1 / 8, 1.6)])
def test_binomial_checkpointing_on_a_64_layer_loop(fraction, extra):
    # sqrt(n) checkpoints cannot reach an eighth (8 of 64 activations): held once, a segment and its
    # checkpoints take 16; recomputed per use it costs 4 extra forward passes. Binomial checkpointing
    # (Griewank's revolve) holds a few values of each sweep, and costs about 1.5.
    Ws, x = deep_inputs(layers=64, width=32, batch=32)
    activation = x.nbytes
    plain = sb.value_and_grad(deep_tanh)
    expected = plain(Ws, x)
    budget = int(plain.memory(Ws, x).residual_bytes * fraction)
    f = sb.value_and_grad(deep_tanh, memory_budget=budget)
    peak, got = _peak_extra(f, Ws, x)
    report = f.memory(Ws, x)
    assert bitwise_equal(got, expected)
    assert report.residual_peak <= budget
    assert report.extra_flops <= extra * report.forward_flops, report.extra_flops / report.forward_flops
    assert peak <= 1.1 * budget + 4 * activation, (peak / activation, budget / activation)
    assert abs(report.peak_bytes - Ws.nbytes - peak) <= 2 * activation


def _resident_peak_extra(f, *args):
    """The peak resident bytes one call adds, the gradient left out: the LLVM code's buffers come from libc
    malloc, which tracemalloc does not see. Free heap pages go back to the OS first, and the kernel's
    high-water mark is reset (/proc/self/clear_refs), so that the mark is this call's."""
    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

    f(*args)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = status("VmRSS:")
    value, grad = f(*args)
    return status("VmHWM:") - base - grad.nbytes, (value, grad)


@pytest.mark.parametrize("fraction", [None, 1 / 4])
def test_resident_peak_of_the_llvm_code(fraction):
    # each layer's weight gradient is written into its row of d_Ws (no buffer per part until a scatter-add
    # at the end: that was the whole gradient twice)
    layers = 24
    Ws, x = deep_inputs(layers=layers, width=128, batch=128)
    activation = x.nbytes
    plain = sb.value_and_grad(deep_tanh, backend="llvm")
    residuals = plain.memory(Ws, x).residual_bytes
    budget = residuals if fraction is None else int(residuals * fraction)
    f = plain if fraction is None else sb.value_and_grad(deep_tanh, backend="llvm", memory_budget=budget)
    peak, got = _resident_peak_extra(f, Ws, x)
    assert peak <= 1.1 * budget + 4 * activation, (peak / activation, budget / activation)
    assert abs(f.memory(Ws, x).peak_bytes - Ws.nbytes - peak) <= 2 * activation
    assert bitwise_equal(got, plain(Ws, x))
