"""Bugs the fuzzer (tests/fuzzgen.py) found, each reduced to the smallest model that showed it."""
import math
import re

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


def cancelling_input(x, y):
    z = np.where(y > 0.1, y, 0.5 * y) + (x - x)
    return np.sum(z * z)


def test_an_input_that_cancels_gets_a_zero_gradient(backend):
    """Value numbering handed back a zero fill that dead-code elimination had dropped (NameError)."""
    x, y = np.ones((3, 4)), np.linspace(-1, 1, 4)
    value, (gx, gy) = sb.value_and_grad(cancelling_input, wrt=(0, 1), backend=backend)(x, y)
    np.testing.assert_array_equal(gx, np.zeros((3, 4)))
    assert_gradients_match(cancelling_input, (gx, gy), [x, y], (0, 1))


def row_of_a_concatenation(x):
    return np.sum(np.concatenate([x, -x], axis=-1)[-2] ** 2) + np.sum(x)


def test_a_row_view_of_a_temporary_outlives_nothing(backend):
    """LLVM freed the concatenation while the view x[-2] into it was still to be read."""
    x = np.random.default_rng(0).uniform(-1, 1, (3, 4))
    value, g = sb.value_and_grad(row_of_a_concatenation, backend=backend)(x)
    np.testing.assert_allclose(value, row_of_a_concatenation(x), rtol=1e-12)
    assert_gradients_match(row_of_a_concatenation, (g,), [x], (0,))


def mixed_product(p, W):
    return np.sum(np.tanh(p @ W))


def test_products_of_float64_and_float32_arrays(backend):
    """LLVM read the float32 operand of a float64 product as float64 (garbage, and past its end)."""
    rng = np.random.default_rng(1)
    for shapes in [((4, 3), (3, 3)), ((2, 4, 3), (3, 5)), ((3,), (3, 5)), ((7, 9), (9, 8))]:
        p, W = rng.uniform(-1, 1, shapes[0]), rng.uniform(-1, 1, shapes[1]).astype(np.float32)
        value, (gp, gW) = sb.value_and_grad(mixed_product, wrt=(0, 1), backend=backend)(p, W)
        np.testing.assert_allclose(value, mixed_product(p, W), rtol=1e-12)
        assert gp.dtype == np.float64 and gW.dtype == np.float32
        want = sb.value_and_grad(mixed_product, wrt=(0, 1), backend="numpy")(p.astype(np.float64),
                                                                             W.astype(np.float64))[1]
        np.testing.assert_allclose(gp, want[0], rtol=1e-10)
        np.testing.assert_allclose(gW, want[1], rtol=1e-5)


def max_of_product(p, W):
    return np.max(p @ W) + np.min(p)


def test_the_max_gradient_stays_float32(backend):
    """g / (an integer tie count) made the max gradient float64 in a float32 model (and LLVM then fed it to a
    float32 product as float64)."""
    rng = np.random.default_rng(0)
    p, W = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (3, 3))
    want = sb.grad(max_of_product, wrt=(0, 1))(p, W)
    got = sb.grad(max_of_product, wrt=(0, 1), backend=backend)(p.astype(np.float32), W.astype(np.float32))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def difference_with_itself(x):
    zero = x - x
    return np.sum(zero) + np.sum(x * x)


def test_a_body_that_folds_to_a_constant_keeps_the_float32_dtype(backend):
    """x - x became a float64 fill in a float32 model: the value came back float64."""
    x = np.linspace(-1, 1, 6).astype(np.float32).reshape(2, 3)
    value, g = sb.value_and_grad(difference_with_itself, backend=backend)(x)
    assert np.asarray(value).dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x, rtol=1e-6)


def leaky_where(x, mask):
    v = np.where(mask & (x > 0), x, 0.0)
    w = np.where(v > 0.1, v, 0.5 * v)
    return np.sum(w) + np.sum(x * x)


def test_where_between_two_numbers_is_an_array_of_their_dtype(backend):
    """np.where(mask, 1, 0.5) is a float64 array, not a weak scalar: a float32 gradient came back float64."""
    x = np.array([-0.5, 0.05, 0.3, 0.9], dtype=np.float32)
    mask = np.array([True, True, True, False])
    g = sb.grad(leaky_where, backend=backend)(x, mask)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 2 * x + np.array([0.0, 0.5, 1.0, 0.0]), rtol=1e-6)


def product_scaled_by_a_0d_array(x, W, s):
    v = W @ x
    return np.mean(v * s / v.shape[0] + v.size * 0.01)


def test_a_residual_of_0d_inputs_has_the_kernel_shape(backend):
    """A kernel's saved s/2 (0-d inputs only) was printed as a 0-d value and fed to `@` (ValueError)."""
    x, W, s = np.linspace(0, 1, 3), np.ones((2, 3)), np.array(0.5)
    value, (gx, gW) = sb.value_and_grad(product_scaled_by_a_0d_array, wrt=(0, 1), backend=backend)(x, W, s)
    assert gx.shape == (3,) and gW.shape == (2, 3)
    assert_gradients_match(product_scaled_by_a_0d_array, (gx, gW), [x, W, s], (0, 1))


def comparison_of_a_constant(x):
    z = x - x
    v = np.where((z > 0) & (x < 0.5), z * 3.0, x)
    return np.sum(v * v) + np.sum(np.where(z >= 0, x, 0.0))


def test_a_comparison_that_folds_to_a_constant_stays_boolean(backend):
    """zeros > 0 folded to a float64 fill, so `&` rejected it as not a comparison (CompileError)."""
    x = np.linspace(-1, 1, 4)
    np.testing.assert_allclose(sb.grad(comparison_of_a_constant, backend=backend)(x), 2 * x + 1)


def log_of_a_number(x):
    s = np.sum(x, keepdims=True)
    return np.sum(np.power(0.5, s)) + np.sum(x * x)


def test_a_function_of_a_number_is_a_float64_scalar_in_numpy(backend):
    """np.log(2) in the printed gradient is a strong float64: the float32 gradient came back float64."""
    x = np.array([0.25, -0.5], dtype=np.float32)
    g = sb.grad(log_of_a_number, backend=backend)(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, -np.log(2) * 0.5 ** np.sum(x) + 2 * x, rtol=1e-6)


def static_string(x, mode):
    return np.sum(x) if mode == "sum" else np.sum(x * x)


def test_a_static_string_cannot_close_the_generated_docstring(tmp_path):
    """A static argument was written into the module docstring by repr(): '\"\"\"; code; \"\"\"' ran as code."""
    evil = '"""; raise SystemExit("a static argument ran as code"); _ = """'
    f = sb.grad(static_string)
    np.testing.assert_array_equal(f(np.ones(2), evil), [2.0, 2.0])
    path = f.export(tmp_path / "exported.py")
    namespace = {}
    exec(compile(open(path).read(), str(path), "exec"), namespace)
    assert evil in namespace["__doc__"]


def test_value_numbering_never_matches_a_freed_value():
    """The memo key holds input ids; once fusion rewired a node's inputs, the old input could be freed and a new
    Value born at its address matched the stale key: a compile handed back an unrelated node (wrong gradient
    code, seen as 'compiling twice gave different code' after ~2000 programs in one process)."""
    import gc
    import weakref

    from symbackprop.ir import Graph, Value, building, append
    from symbackprop.primitives.reduce import Sum

    graph = Graph()
    with building(graph):
        x = Value((3,), np.float64, None, "x")
        y = Value((3,), np.float64, None, "y")
        node_out = append(Sum, [x], {"axes": (0,), "keepdims": False})
        node_out.node.inputs = [y]            # what fusion or replace_uses does to a node
        watch = weakref.ref(x)
        del x
        gc.collect()
        assert watch() is not None            # the memo keeps the keyed input alive, so its id stays unique
        z = Value((3,), np.float64, None, "z")
        assert append(Sum, [z], {"axes": (0,), "keepdims": False}) is not node_out


def repeated_inputs(x, w):
    v = x * w
    first = np.concatenate([w, v, w], axis=0)
    second = np.concatenate([w, v, v], axis=0)
    return np.sum(first) + np.sum(second * second)


def test_nodes_that_repeat_an_input_differently_do_not_share_code(backend):
    """LLVM shared one outlined concatenate between [w, v, w] and [w, v, v]: the second read v where w was."""
    rng = np.random.default_rng(0)
    x, w = rng.uniform(-1, 1, (1, 4)), rng.uniform(-1, 1, (1, 4))
    value, (gx, gw) = sb.value_and_grad(repeated_inputs, wrt=(0, 1), backend=backend)(x, w)
    np.testing.assert_allclose(value, repeated_inputs(x, w), rtol=1e-12)
    assert_gradients_match(repeated_inputs, (gx, gw), [x, w], (0, 1))


def minus_relu_of_a_mean(x, s):
    m = np.mean(x)
    r = np.maximum(m, 0.0)
    t = np.tanh(s) * m
    return t - r


def test_a_negated_half_comparison_prints_as_numpy_arithmetic(backend):
    """-(m == 0)/2 was printed with a unary minus on a boolean, which NumPy refuses (TypeError)."""
    f = sb.grad(minus_relu_of_a_mean, backend=backend)
    t = np.tanh(0.3)
    np.testing.assert_allclose(f(np.array([0.5, 1.0]), 0.3), [(t - 1) / 2] * 2)
    np.testing.assert_allclose(f(np.array([-0.5, 0.5]), 0.3), [(t - 0.5) / 2] * 2)   # the kink: half


def unpacked_scalars(x, w):
    a, b = w
    return np.sum((b + x) ** 2) + np.tanh(a)


def test_a_scalar_part_of_a_gradient_is_added_not_written_with_out(backend):
    """d_w[1] = sum(...) was written as `.sum(out=t[1])`: t[1] of a vector is a number, not a view."""
    rng = np.random.default_rng(2)
    for dtype in (np.float64, np.float32):
        x, w = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=2).astype(dtype)
        value, (gx, gw) = sb.value_and_grad(unpacked_scalars, wrt=(0, 1), backend=backend)(x, w)
        assert gw.dtype == dtype
        if dtype == np.float64:
            assert_gradients_match(unpacked_scalars, (gx, gw), [x, w], (0, 1))
        else:
            np.testing.assert_allclose(gw[1], 2 * np.sum(w[1] + x, dtype=np.float64), rtol=1e-5)


def cancelling_loss(w):
    v = np.tanh(np.mean(w))
    return np.subtract(v, v)


def cancelling_sums(w):
    return np.sum(w) - np.sum(w)


def test_a_loss_that_cancels_keeps_the_float32_dtype(backend):
    """v - v folds to the constant 0.0, which the NumPy backend returned as a Python float (float64) in a
    float32 model; plain NumPy and the LLVM backend give float32."""
    w = np.linspace(-1, 1, 4).astype(np.float32)
    for f in (cancelling_loss, cancelling_sums):
        value, g = sb.value_and_grad(f, backend=backend)(w)
        assert np.asarray(value).dtype == np.float32 and value == 0
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, np.zeros(4, np.float32))
    value, g = sb.value_and_grad(cancelling_loss, backend=backend)(w.astype(np.float64))
    assert type(value) is float or np.asarray(value).dtype == np.float64


def subtract_a_float64_in_place(x, A):
    v = A * 1.5
    v -= np.tanh(A @ np.full((4,), 0.5))   # A @ (a float64 array) is float64; v stays float32 in NumPy
    w = x * 2.0
    w += np.zeros(x.shape)                 # np.zeros is float64 too
    return np.sum(v * v) + np.sum(w * x)


def test_an_augmented_assignment_keeps_the_arrays_dtype(backend):
    """`v -= u` on a float32 array v with a float64 u was traced as `v = v - u`, float64, where NumPy writes the
    result into v: a float32 model returned a float64 loss (python -m tests.fuzz --program-seed 304002296
    --backend llvm, and 304010420)."""
    rng = np.random.default_rng(3)
    x, A = rng.uniform(-1, 1, 4), rng.uniform(-1, 1, (4, 4))
    x32, A32 = x.astype(np.float32), A.astype(np.float32)
    want = subtract_a_float64_in_place(x32, A32)
    assert want.dtype == np.float32
    value, (gx, gA) = sb.value_and_grad(subtract_a_float64_in_place, wrt=(0, 1), backend=backend)(x32, A32)
    assert np.asarray(value).dtype == np.float32 and gx.dtype == gA.dtype == np.float32
    np.testing.assert_allclose(value, want, rtol=1e-5)
    ref = sb.value_and_grad(subtract_a_float64_in_place, wrt=(0, 1), backend=backend)(x, A)
    assert_gradients_match(subtract_a_float64_in_place, ref[1], [x, A], (0, 1))
    np.testing.assert_allclose(gx, ref[1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gA, ref[1][1], rtol=1e-4, atol=1e-5)


def zeros_of_zeros(x):
    v = np.sum(np.sin(x) - x, axis=1, keepdims=True)
    zero = np.tanh((v - v) * 0.25)         # a float32 zero fill
    again = np.tanh((zero - zero) * 0.25)  # a fill minus itself: a body with no input left
    return np.max(again) + np.sum(x)


def stacked_zeros(x, u):
    v = u - u
    w = np.sin(v) - v                      # sin of the zero fill is that fill: w is fill - fill
    return np.sum(np.stack((w, np.sin(w) + 1.0), axis=0) * x)


def test_a_body_that_cancels_all_its_inputs_keeps_their_dtype(backend):
    """A kernel whose inputs were constants and whose body cancelled them all (zero - zero) had no symbol
    left to type it: it became an int64 fill, a float64 loss in a float32 model (python -m tests.fuzz
    --program-seed 304004780 --backend llvm), and LLVM IR that did not parse, `fpext i64` into the stack
    (--program-seed 304005674)."""
    x = np.linspace(0.1, 0.9, 8).reshape(2, 4)
    for dtype in (np.float32, np.float64):
        for model, args in [(zeros_of_zeros, [x.astype(dtype)]), (stacked_zeros, [x.astype(dtype), x[0].astype(dtype)])]:
            value, grads = sb.value_and_grad(model, wrt=tuple(range(len(args))), backend=backend)(*args)
            want = model(*args)
            assert np.asarray(value).dtype == want.dtype == dtype
            assert all(g.dtype == dtype for g in grads)
            np.testing.assert_allclose(value, want, rtol=1e-6)
            if dtype == np.float64:
                assert_gradients_match(model, grads, args, tuple(range(len(args))))


def assigned_labels(x, idx):
    y = np.zeros(3)
    y[0:2] = idx                           # int64 into a float64 array
    return np.sum(y * x[:3])


def joined_labels(x, idx):
    k = idx * 2 - 7
    return np.sum(np.concatenate([x[:2], k]) ** 2) + np.sum(np.stack([x[:2], k + 1]) * x[:2])


def extremes_of_labels(x, idx):
    k = idx * 3 - 10
    return np.max(k) * np.sum(x) + np.min(k) + np.sum(np.max(k.reshape(1, 2), axis=0) * x[:2])


def extremes_of_a_mask(x, idx):
    m = x > 0.3
    return np.sum(np.max(m) * x) + np.sum(np.min(m) * x) + np.sum(m) * np.sum(x)


def test_llvm_converts_integer_and_boolean_elements(backend):
    """LLVM cast every element with fpext/fptrunc: an int64 array written into a float one, concatenated or
    stacked with floats was `fpext i64`, IR that did not parse (the int64 zero fill of fuzz seed 304005674),
    and max/min of integers called llvm.maximum.f32 on them and started from 0."""
    x = np.linspace(0.1, 0.9, 4)
    for idx in (np.array([1, -2]), np.array([-3, 2], dtype=np.int32)):
        for model in (assigned_labels, joined_labels, extremes_of_labels, extremes_of_a_mask):
            value, grad = sb.value_and_grad(model, backend=backend)(x, idx)
            np.testing.assert_allclose(value, model(x, idx), rtol=1e-13)
            assert_gradients_match(model, (grad,), [x, idx], (0,))


def where_of_a_python_float(x1, s):
    c = math.tanh(s) + math.exp(-s * s)    # a Python float
    v = np.where((c > 0.3) | ~(x1 > 0), c, 0.0)
    return np.sum(np.tanh(v)) + np.sum(x1 * c)


def mask_plus_a_float(x, s):
    m = x > 0
    k = m + 1.0                            # bool + Python float: float64 in NumPy
    return np.sum(k) * np.sum(x) + np.sum(np.tanh((x > 0.1) * 2.0 + x * s))


def test_a_python_float_among_booleans_is_float64(backend):
    """np.where(a bool array, a Python float c, 0.0) was typed int64 (the float is weak, the rest booleans):
    the NumPy code cast it to int64 (value 0) and both backends dropped the gradient of the float argument
    (python -m tests.fuzz --program-seed 304007293 --backend llvm). `mask + 1.0` was int64 too (1.0 is the
    SymPy integer 1): "the model returns a int64 value"."""
    x = np.array([0.6, -0.2, 0.3])
    for model in (where_of_a_python_float, mask_plus_a_float):
        for s in (-0.4935063020030055, 0.8):
            value, grads = sb.value_and_grad(model, wrt=(0, 1), backend=backend)(x, s)
            want = model(x, s)
            assert np.asarray(value).dtype == np.float64
            np.testing.assert_allclose(value, want, rtol=1e-12)
            assert_gradients_match(model, grads, [x, s], (0, 1))


def tilde_of_a_numpy_function_of_a_float(x, s):
    c = math.tanh(s) + math.exp(-s * s)    # a Python float
    v = np.tanh(c)                         # NumPy's float64 scalar: ~(v > 0) is NumPy's logical not
    return np.sum(np.where((x > 0.3) | ~(v > 0), x, 0.0)) + np.sum(x * np.tanh(s)) + np.sum(x * math.tanh(s))


def test_a_numpy_function_of_a_python_float_is_a_numpy_scalar(backend):
    """np.tanh(c) of a Python float c was traced as a Python float (weak): `~(np.tanh(c) > 0)` was refused as a
    bitwise not of a Python bool (python -m tests.fuzz --program-seed 304010622 --backend llvm), and LLVM
    returned float32 for x32 * np.tanh(s), which NumPy widens to float64 (math.tanh(s) stays a Python float)."""
    x64 = np.array([-1.0, 0.5, 2.0])
    for s in (-0.5, 0.7):
        for x in (x64, x64.astype(np.float32)):
            want = tilde_of_a_numpy_function_of_a_float(x, s)
            value, (gx, gs) = sb.value_and_grad(tilde_of_a_numpy_function_of_a_float, wrt=(0, 1), backend=backend)(x, s)
            assert np.asarray(value).dtype == want.dtype == np.float64 and gx.dtype == x.dtype
            np.testing.assert_allclose(value, want, rtol=1e-6 if x.dtype == np.float32 else 1e-12)
            if x.dtype == np.float64:
                assert_gradients_match(tilde_of_a_numpy_function_of_a_float, (gx, gs), [x, s], (0, 1))


# ---- value-dependent control flow (NumPy backend: LLVM does not lower regions yet) -------------------

def two_zero_gradients(w, b):
    v = w + b
    y = b * 1.0
    if np.max(v) < 0.5:
        u = w * 2.0
        if np.max(u) > 0.0:
            z = np.sin(u)
        else:
            z = u * 0.5 + np.tanh(v)
        y = np.tanh(b) + z
    return np.sum(y * y)


def test_one_zero_gradient_as_two_results_of_a_branch():
    """The untaken branch's backward gave w and v the same zeros; the NumPy writer assigned that value to the
    first result's name only, and reading the second raised UnboundLocalError."""
    b = np.array([0.1, 0.2])
    for w in (np.array([0.3, 0.4]), np.array([-0.3, -0.4]), np.array([-0.9, -0.8])):
        value, grads = sb.value_and_grad(two_zero_gradients, wrt=(0, 1), backend="numpy")(w, b)
        assert value == two_zero_gradients(w, b)
        assert_gradients_match(two_zero_gradients, grads, [w, b], (0, 1))


def temporary_of_a_loop_in_a_loop(x):
    h = x
    for i in range(3):
        k = 0
        while np.sum(h * h) > 0.5 and k < 5:
            t = h * 0.5
            h = 0.8 * np.tanh(h) + 0.1 * np.mean(t)
            k += 1
        h = h + 0.3
    return np.sum(h * h)


def test_a_while_temporary_in_the_next_iteration_of_a_for():
    """The second copy of the `while` saw its temporary `t` bound (Undefined, from the first copy) and refused
    it as a name that "changes inside the loop"; it is as unbound as it was before the first."""
    x = np.array([0.9, -0.7, 0.8])
    value, g = sb.value_and_grad(temporary_of_a_loop_in_a_loop, backend="numpy")(x)
    assert np.isclose(value, temporary_of_a_loop_in_a_loop(x), rtol=1e-13)
    assert_gradients_match(temporary_of_a_loop_in_a_loop, (g,), [x], (0,))

    def reads_it_after(x):
        for i in range(2):
            while np.sum(x) < 3.0:
                t = x * 2.0
                x = t
        return np.sum(t)

    with pytest.raises(sb.CompileError, match="`t` is assigned only inside the `while` loop"):
        sb.value_and_grad(reads_it_after, backend="numpy")(np.array([0.5, 0.2]))


def loop_inside_a_branch(x):
    if np.max(x) > 0.5:
        y = x * x
    else:
        h = x * 1.0
        k = 0
        while np.sum(h * h) > 0.2 and k < 3:
            h = 0.8 * np.tanh(h) + 0.3 * np.tanh(np.mean(np.cos(h * 0.25)))
            k += 1
        y = x * 0.5 + 0.1 * np.tanh(h)
    return np.sum(y * y)


def test_a_loop_in_a_branch_hands_its_tapes_to_the_backward_branch():
    """The branch's results named the loop's tapes (t3, an output of the `if`), then the loop named them again
    (t10_tape): the backward branch popped from t3, which the forward never made (NameError)."""
    f = sb.value_and_grad(loop_inside_a_branch, backend="numpy")
    for x in (np.array([0.3, -0.9, 0.4]), np.array([0.9, 0.2, 0.1])):
        value, g = f(x)
        assert np.isclose(value, loop_inside_a_branch(x), rtol=1e-13)
        assert_gradients_match(loop_inside_a_branch, (g,), [x], (0,))
    source = f.source
    for tape in re.findall(r"(\w+) = \1_?\w*\.pop\(\)|= (\w+)\.pop\(\)", source):
        name = tape[1] or tape[0]
        assert re.search(rf"^\s+{name} = \[\]$", source, re.M), name  # every tape popped was made


def softmax_in_a_loop(W):
    h = W * 1.0
    k = 0
    while True:
        m = np.max(h, axis=-1, keepdims=True)
        e = np.exp(h - m)
        p = e / np.sum(e, axis=-1, keepdims=True)
        h = 0.8 * np.tanh(h) + 0.3 * np.tanh(np.mean(p * W))
        k += 1
        if k >= 3 or np.max(h) > 0.95:
            break
    return np.sum(h * h) + np.sum(p)


def test_a_softmax_in_a_loop_body_is_its_carried_value():
    """The softmax pattern replaced `p` inside the loop body but not among the body's results (the carried
    p the loop hands on), which then named a value nothing computed (NameError)."""
    W = np.random.default_rng(0).uniform(-1, 1, (3, 2))
    value, g = sb.value_and_grad(softmax_in_a_loop, backend="numpy")(W)
    assert np.isclose(value, softmax_in_a_loop(W), rtol=1e-13)
    assert_gradients_match(softmax_in_a_loop, (g,), [W], (0,))


def peeled_while_true(w):
    h = w * 1.0
    k = 0
    while True:
        v = np.sum(h)
        h = 0.8 * np.tanh(h) + 0.3 * np.tanh(v)
        k += 1
        if k >= 6 or np.max(h) > 0.315542:
            break
    return np.mean(h)


def test_a_loop_does_not_take_the_name_of_a_value_the_backward_pass_reads():
    """`while True:` runs its first iteration before the loop (its `break` is the only way out); the loop's
    carried `v` took the name of that first `v`, which a backward statement, standing earlier in the graph's
    node list than the loop, still read: the gradient used the last iteration's v (wrong by 25%)."""
    f = sb.value_and_grad(peeled_while_true, backend="numpy")
    for w in (np.array([-0.75, 0.47]), np.array([-0.9, -0.5])):
        value, g = f(w)
        assert np.isclose(value, peeled_while_true(w), rtol=1e-13)
        assert_gradients_match(peeled_while_true, (g,), [w], (0,))
