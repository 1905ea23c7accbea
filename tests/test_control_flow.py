"""Value-dependent control flow: `if`/`elif`/`else`, `while`, `break` and `continue` on array values.

Each model's gradient is checked against central differences at points away from the branch
boundaries (and away from the tolerances the iterations stop at), and the generated code is a
Python `if`/`while` with the branch taken and the trip count recorded, never unrolled or masked.
"""
import re

import numpy as np
import pytest

import symbackprop as sb
from gradcheck import assert_gradients_match


# ---- models -----------------------------------------------------------------------------

def if_on_reduction(x, w):
    s = np.sum(x * w)
    if s > 0:
        y = s * s
    else:
        y = -np.sin(s)
    return y


def elif_chain(x):
    m = np.mean(x)
    if m > 1.0:
        y = np.sum(np.tanh(x))
    elif m > 0.0:
        y = np.sum(x * x)
    else:
        y = np.sum(np.exp(x))
    return y


def if_without_else(x, w):
    y = x * w
    if np.max(y) > 0.5:
        y = y * 2.0
    return np.sum(y * y)


def conditions(x, w):
    a = np.sum(x)
    b = np.sum(w)
    y = a * b
    if a > 0 and not b > 5.0:
        y = y + a
    if np.any(x > 2.5) or np.all(w < 0):
        y = y * 3.0
    return y


def if_expression(x):
    s = np.sum(x)
    return s * s if s > 0 else -s


def newton_sqrt(a, x0):
    x = x0
    dx = x0
    while np.max(np.abs(dx)) > 1e-12:
        dx = (x * x - a) / (2 * x)
        x = x - dx
    return np.sum(x)


def power_iteration(A, v):
    lam, lam_old = 1.0, 0.0
    k = 0
    while np.abs(lam - lam_old) > 1e-13 and k < 500:
        w = A @ v
        lam_old = lam
        lam = np.sum(v * w)
        v = w / np.sqrt(np.sum(w * w))
        k += 1
    return lam


def fixed_point(a, x0):
    x = x0
    while True:
        x_new = np.cos(a * x)
        if np.max(np.abs(x_new - x)) < 1e-13:
            break
        x = x_new
    return np.sum(x_new * x_new)


def break_out_of_for(W, h):
    for i in range(8):
        h = np.tanh(W @ h)
        if np.sum(h * h) < 0.05:
            break
    return np.sum(h)


def continue_in_for(x, w):
    total = 0.0
    for i in range(4):
        z = x[i] * w
        if np.sum(z) < 0:
            continue
        total = total + np.sum(z * z)
    return total


def if_inside_while(x, w):
    s = np.sum(x * w)
    k = 0
    while s < 10.0 and k < 50:
        if s > 2.0:
            s = s * 1.5
        else:
            s = s + np.sum(w * w)
        k += 1
    return s


def while_inside_for(W, x):
    h = x
    for t in range(3):
        n = 0
        while np.sum(h * h) > 0.5 and n < 20:
            h = 0.9 * np.tanh(W @ h)
            n += 1
        h = h + x
    return np.sum(h)


def scalar_newton(a, x):
    while abs(x * x - a) > 1e-12:
        x = x - (x * x - a) / (2 * x)
    return x


def batched_newton(W, b, x, y):
    """Newton steps on a batch until every update is below the tolerance, then a loss."""
    z = x @ W + b
    u = np.zeros_like(z)
    step = np.ones_like(z)
    k = 0
    while np.max(np.abs(step)) > 1e-10 and k < 100:
        f = u + np.tanh(u) - z
        step = f / (2.0 - np.tanh(u) ** 2)
        u = u - step
        k += 1
    return np.mean((u - y) ** 2)


def overwrite_then_read(W, x):
    """The new `a` (c) is computed before the product reads the old one: it must not go into a's buffer."""
    a, b = x, x * 0.5
    k = 0
    while np.sum(b * b) < 20.0 and k < 50:
        c = np.tanh(b) * 1.5
        b = W @ a + c * 0.1 + b
        a = c
        k += 1
    return np.sum(a * b)


def view_then_overwrite(x):
    """A view of the old `a` is read after the new `a` is computed (the NumPy backend wrote `a[:2]` where
    it is read, after `a` was rebound: fixed)."""
    a, b = x, x * 0.5
    k = 0
    while np.sum(b) < 10.0 and k < 40:
        top = a[:2]
        a = np.tanh(b) + 1.0
        b = b + 0.3 * np.sum(top) + 0.1
        k += 1
    return np.sum(a * b)


def newton_cube(z):
    """`step` is overwritten, never read, by the body: its adjoint is zero at every step back."""
    u = np.zeros_like(z)
    step = np.ones_like(z)
    k = 0
    while np.max(np.abs(step)) > 1e-12 and k < 100:
        step = (u ** 3 + u - z) / (3.0 * u ** 2 + 1.0)
        u = u - step
        k += 1
    return np.sum(np.sin(u) * z)


def last_write_read(x):
    """`g` is written, never read, by the body, and the loss reads its last value: its adjoint starts as
    ones (a fill, like the zeros it is set to by each step back, but another value)."""
    h = x
    g = np.zeros_like(x)
    k = 0
    while np.sum(h * h) < 10.0 and k < 50:
        g = np.sin(h) * 2.0
        h = h * 1.2 + 0.1
        k += 1
    return np.sum(g) + np.sum(h)


def fib_swap(x):
    a, b = x, x * 0.5
    k = 0
    while np.sum(b) < 50.0:
        a, b = b, a + b
        k += 1
    return np.sum(a * b)

def nested_while(x, w):
    s = np.sum(x * w)
    total = 0.0
    while s < 20.0:
        t = s
        while t < s * 3.0:
            t = t * 1.3 + 0.1
        total = total + t
        s = s + 1.7
    return total + s

def nested_taped(x, w):
    """The inner loop's derivative reads its values (sin): the outer loop tapes the inner loop's tapes."""
    s = np.sum(x * w)
    total = 0.0
    while s < 6.0:
        t = s
        while t < s * 2.0:
            t = t * 1.2 + np.sin(t) * 0.3
        total = total + t * t
        s = s + np.cos(s) * 0.5 + 0.9
    return total + s


def continue_while(x):
    s = 0.0
    i = 0.0
    while i < 6:
        i = i + 1
        if np.sum(x) * i > 3.0:
            continue
        s = s + np.sum(np.sin(x * i))
    return s

def break_depth0(x):
    h = x
    while True:
        h = h * 1.2 + 0.1
        if np.max(h) > 3.0:
            break
        h = np.sin(h) + h
    return np.sum(h * h)

def static_for_in_while(W, x):
    h = x
    while np.sum(h * h) < 9.0:
        for i in range(2):
            h = np.tanh(W @ h) + h
    return np.sum(h)

def param_carried(x, w):
    while np.sum(x) < 5.0:
        x = x * w + 0.3
    return np.sum(x * x)

def zero_trips(x):
    y = x * 2.0
    while np.sum(y) > 1e6:
        y = y * 0.5
    return np.sum(y * y)

def if_in_if(x):
    s = np.sum(x)
    y = s
    if s > 0:
        if np.max(x) > 1.0:
            y = y * np.exp(s)
        else:
            y = y + 1.0
    else:
        y = np.cos(y)
    return y * s

def reads_before_and_updates(x, w):
    z = x * w
    base = z
    while np.sum(z) < 8.0:
        z = z + base * 0.5
    return np.sum(z * base)

def while_in_if(x, w):
    """The loop's tapes are made in a branch and read by the same branch of the backward `if`."""
    s = np.sum(x * w)
    if s > 0:
        h = x
        while np.sum(h * h) > 0.1:
            h = 0.8 * np.tanh(h * w)
        y = np.sum(h * w)
    else:
        y = np.sum(np.sin(x))
    return y


def matrix_loop(W, x):
    h = x
    n = 0
    while np.linalg.norm(h) < 10.0 and n < 30:
        h = W @ h + 0.5
        n += 1
    return np.sum(h)


# ---- gradients against central differences -------------------------------------------------

RNG = np.random.default_rng(14)
X3 = np.array([0.7, -0.2, 1.1])
W3 = np.array([0.5, 0.3, -0.4])
SPD = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])

CASES = [
    (if_on_reduction, (X3, W3), (0, 1)),
    (if_on_reduction, (X3, -W3), (0, 1)),
    (elif_chain, (X3 + 1.5,), (0,)),
    (elif_chain, (X3,), (0,)),
    (elif_chain, (X3 - 1.0,), (0,)),
    (if_without_else, (X3, W3), (0, 1)),
    (if_without_else, (X3 * 0.1, W3), (0, 1)),
    (conditions, (X3, W3), (0, 1)),
    (conditions, (X3 * 3, W3 - 1), (0, 1)),
    (if_expression, (X3,), (0,)),
    (if_expression, (-X3,), (0,)),
    (newton_sqrt, (np.array([2.0, 3.0, 0.5]), np.array([1.0, 1.5, 1.0])), (0, 1)),
    (power_iteration, (SPD, np.array([1.0, 0.3, -0.2])), (0, 1)),
    (fixed_point, (np.array([0.6, 0.9]), np.array([0.1, 0.4])), (0, 1)),
    (break_out_of_for, (RNG.normal(size=(3, 3)) * 0.4, np.array([0.3, -0.2, 0.4])), (0, 1)),
    (break_out_of_for, (RNG.normal(size=(3, 3)) * 1.5, np.array([0.9, -0.7, 0.8])), (0, 1)),
    (continue_in_for, (RNG.normal(size=(4, 3)), W3), (0, 1)),
    (if_inside_while, (X3, W3), (0, 1)),
    (while_inside_for, (RNG.normal(size=(3, 3)) * 0.5, np.array([0.8, -0.6, 0.5])), (0, 1)),
    (batched_newton, (RNG.normal(size=(3, 2)), RNG.normal(size=2), RNG.normal(size=(4, 3)),
                      RNG.normal(size=(4, 2))), (0, 1, 2)),
    (fib_swap, (np.array([0.3, 0.7]),), (0,)),
    (overwrite_then_read, (np.array([[0.2, 0.1, 0.0], [0.0, 0.3, 0.1], [0.1, 0.0, 0.2]]),
                           np.array([0.3, 0.5, 0.7])), (0, 1)),
    (view_then_overwrite, (np.array([0.3, 0.5, 0.7]),), (0,)),
    (newton_cube, (np.linspace(-3.0, 5.0, 7),), (0,)),
    (last_write_read, (np.array([0.3, 0.5, 0.7]),), (0,)),
    (nested_while, (np.array([0.3, 0.7]), np.array([1.0, 0.5])), (0, 1)),
    (nested_taped, (np.array([0.3, 0.7]), np.array([1.0, 0.5])), (0, 1)),
    (continue_while, (np.array([0.2, 0.25]),), (0,)),
    (break_depth0, (np.array([0.2, 0.5]),), (0,)),
    (static_for_in_while, (RNG.normal(size=(2, 2)) * 0.5, np.array([0.3, 0.4])), (0, 1)),
    (param_carried, (np.array([0.3, 0.7]), np.array([1.3, 1.2])), (0, 1)),
    (zero_trips, (np.array([0.3, 0.7]),), (0,)),
    (if_in_if, (np.array([0.3, 0.7]),), (0,)),
    (if_in_if, (np.array([0.3, 1.7]),), (0,)),
    (if_in_if, (np.array([-0.3, -1.7]),), (0,)),
    (reads_before_and_updates, (np.array([0.3, 0.7]), np.array([1.3, 1.2])), (0, 1)),
    (matrix_loop, (np.array([[1.1, 0.2], [0.1, 0.9]]), np.array([0.3, 0.4])), (0, 1)),
    (while_in_if, (np.array([0.9, 0.7]), np.array([1.2, 0.8])), (0, 1)),
    (while_in_if, (np.array([0.9, 0.7]), -np.array([1.2, 0.8])), (0, 1)),
]


@pytest.mark.parametrize("model, args, wrt", CASES, ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_gradient_matches_finite_differences(model, args, wrt, backend):
    f = sb.value_and_grad(model, wrt=wrt, backend=backend)
    value, grads = f(*args)
    assert np.isclose(value, model(*args), rtol=1e-12, atol=1e-14)
    assert_gradients_match(model, grads, args, wrt)


def test_scalar_model_is_math_code():
    f = sb.value_and_grad(scalar_newton, wrt=("a", "x"))
    value, (da, dx) = f(2.0, 1.0)
    assert value == pytest.approx(np.sqrt(2.0), rel=1e-15)
    assert da == pytest.approx(1 / (2 * np.sqrt(2.0)), rel=1e-12)
    assert isinstance(da, float)
    assert "while abs(" in f.source or "while math.fabs(" in f.source or "while " in f.source
    assert_gradients_match(scalar_newton, (da, dx), (2.0, 1.0), (0, 1))


# ---- what the generated code records -----------------------------------------------------------

def test_a_zero_adjoint_is_not_reset_every_step_back():
    """`step`'s adjoint is zeros before the backward loop and would be set to zeros by every step back:
    the NumPy backend leaves it (no np.full in the loop); when the loss reads the last value (`g`), the
    adjoint is ones at first, and the step back sets it to zeros."""
    z = np.linspace(-3.0, 5.0, 7)
    loop = lambda src: src[src.index("for _ in range(trips):"):src.index("return loss")]  # noqa: E731
    steady = sb.value_and_grad(newton_cube).specialise(z).source
    assert "np.full" not in loop(steady) and "d_step" in loop(steady)
    seeded = sb.value_and_grad(last_write_read).specialise(np.array([0.3, 0.5, 0.7])).source
    assert "np.full" in loop(seeded)


def test_if_is_a_python_if_replayed_backward():
    f = sb.value_and_grad(if_on_reduction, wrt=("x", "w"))
    src = f.specialise(X3, W3).source
    forward, backward = src.split("# backward")
    assert re.search(r"^\s+cond = \(?s > 0\)?", forward, re.M)
    assert re.search(r"^\s+if cond:\s+# test_control_flow.py:\d+$", forward, re.M)
    assert re.search(r"^\s+if cond:\s+# test_control_flow.py:\d+$", backward, re.M)
    assert "np.where" not in src  # never both branches masked
    assert src.count("np.sin") == 1 and "np.cos" in backward  # each branch computes only its own work


def test_while_records_a_tape_and_the_trip_count():
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"))
    src = f.specialise(np.array([2.0]), np.array([1.0])).source
    forward, backward = src.split("# backward")
    assert re.search(r"^\s+while .*:\s+# test_control_flow.py:\d+$", forward, re.M)
    assert re.search(r"^\s+trips = 0$", forward, re.M) and re.search(r"^\s+trips \+= 1$", forward, re.M)
    pushes = re.findall(r"(\w+_tape)\.append\((\w+)\)", forward)
    pops = re.findall(r"= (\w+_tape)\.pop\(\)", backward)
    assert pushes and sorted(t for t, _ in pushes) == sorted(pops)
    assert re.search(r"^\s+for _ in range\(trips\):", backward, re.M)


def test_tape_holds_only_what_the_adjoint_reads():
    def scaled(x, c):
        while np.sum(x) < 100.0:
            x = x * c
        return np.sum(x)

    f = sb.value_and_grad(scaled, wrt="c")
    src = f.specialise(np.array([1.0, 2.0]), 1.5).source
    # d(x*c)/dc reads x (the value before the step), d/dx reads c (the same every iteration): one tape
    assert len(re.findall(r"\.append\(", src)) == 1
    value, dc = f(np.array([1.0, 2.0]), 1.5)
    assert_gradients_match(scaled, (dc,), (np.array([1.0, 2.0]), 1.5), (1,))


def test_a_carried_value_the_step_overwrites_carries_no_adjoint():
    """Newton's `step` is recomputed from `u` every iteration and the loss does not read it: its adjoint is
    zero in every step back, so the backward loop neither carries nor adds it."""
    args = (RNG.normal(size=(3, 2)), RNG.normal(size=2), RNG.normal(size=(4, 3)), RNG.normal(size=(4, 2)))
    f = sb.value_and_grad(batched_newton, wrt=("W", "b", "x"))
    backward = f.specialise(*args).source.split("# backward")[1]
    loop = backward.split("for _ in range(trips):")[1]
    assert re.search(r"^\s+d_step = -d_u", loop, re.M), loop
    assert not re.search(r"d_step\w* \+ |\+ d_step", loop), loop
    assert_gradients_match(batched_newton, f(*args)[1], args, (0, 1, 2))


def test_swapped_carried_values_are_assigned_at_once():
    src = sb.value_and_grad(fib_swap).specialise(np.array([0.3, 0.7])).source
    assert re.search(r"^\s+a, b = b, b_1$", src, re.M)       # the forward: Python's parallel assignment
    assert re.search(r"^\s+d_a, d_b = d_b, d_b_1$", src, re.M)  # and its adjoint


def test_generated_code_is_deterministic():
    sources = {sb.value_and_grad(if_inside_while, wrt=("x", "w")).specialise(X3, W3).source for _ in range(3)}
    assert len(sources) == 1


def test_trip_count_differs_between_calls_without_recompiling(backend):
    f = sb.value_and_grad(newton_sqrt, wrt=("a", "x0"), backend=backend)
    trips = []
    for a in (np.array([2.0, 3.0]), np.array([100.0, 0.01]), np.array([1.0, 1.0])):
        x0 = np.array([1.0, 1.0])
        value, (da, dx0) = f(a, x0)
        np.testing.assert_allclose(value, np.sum(np.sqrt(a)), rtol=1e-12)
        np.testing.assert_allclose(da, 0.5 / np.sqrt(a), rtol=1e-9)
        x, dx, k = x0, x0, 0
        while np.max(np.abs(dx)) > 1e-12:
            dx = (x * x - a) / (2 * x)
            x, k = x - dx, k + 1
        trips.append(k)
    assert f.compilations == 1
    assert len(set(trips)) == 3, trips


def test_break_in_for_stops_early_and_records_the_branch(backend):
    W = np.eye(3) * 0.3
    h = np.array([0.3, -0.2, 0.4])
    f = sb.value_and_grad(break_out_of_for, wrt=("W", "h"), backend=backend)
    if backend == "numpy":
        src = f.specialise(W, h).source
        assert re.search(r"^\s+if go(_\d+)?:", src, re.M)  # each later iteration runs if no break did
    value, grads = f(W, h)
    assert value == pytest.approx(break_out_of_for(W, h), rel=1e-13)
    assert_gradients_match(break_out_of_for, grads, (W, h), (0, 1))


def test_value_and_grad_forward_and_grad_agree(backend):
    args = (X3, W3)
    g = sb.grad(if_inside_while, wrt=("x", "w"), backend=backend)(*args)
    v, g2 = sb.value_and_grad(if_inside_while, wrt=("x", "w"), backend=backend)(*args)
    for a, b in zip(g, g2):
        np.testing.assert_array_equal(a, b)
    fwd = sb.value_and_grad(if_inside_while, wrt=("x", "w"), backend=backend).forward(*args)
    assert fwd == pytest.approx(v, rel=1e-15)


def test_float32_stays_float32(backend):
    x, w = X3.astype(np.float32), W3.astype(np.float32)
    value, (dx, dw) = sb.value_and_grad(if_inside_while, wrt=("x", "w"), backend=backend)(x, w)
    assert dx.dtype == np.float32 and dw.dtype == np.float32
    np.testing.assert_allclose(value, if_inside_while(x, w), rtol=1e-5)


# ---- programs the rejected corpus held (tests/rejected/) until issue 14 ------------------------

def while_on_a_counter(x):  # was tests/rejected/while_loop.py: "a `while` loop is not supported"
    s = np.sum(x)
    i = 0
    while i < 3:
        s = s * 2
        i += 1
    return s


def test_formerly_rejected_while_loop_is_accepted():
    x = np.array([0.1, 0.5, 0.9])
    f = sb.value_and_grad(while_on_a_counter)
    value, g = f(x)
    assert value == pytest.approx(8 * np.sum(x), rel=1e-15)
    np.testing.assert_allclose(g, np.full(3, 8.0), rtol=1e-15)
    assert_gradients_match(while_on_a_counter, (g,), (x,), (0,))
    assert "while" not in f.source.split("# forward")[1]  # a Python int counter: decided at compile time


def while_on_a_sum(x):  # was the rejected model of tests/test_cli.py: "a `while` loop is not supported"
    while np.sum(x) > 0:
        x = x - 1
    return np.sum(x)


def test_formerly_rejected_while_on_a_sum_is_accepted():
    f = sb.value_and_grad(while_on_a_sum)
    for x in (np.array([0.3, 0.5, 0.9]), np.array([2.2, 1.4, 3.1])):
        k = int(np.ceil(np.sum(x) / 3))  # the steps until the sum is not positive, each taking 3 off it
        value, g = f(x)
        assert value == pytest.approx(np.sum(x) - 3 * k, rel=1e-13)
        assert_gradients_match(while_on_a_sum, (g,), (x,), (0,))
    assert f.compilations == 1


def float64_cotangent(w, s):
    """A float32 loop whose value reaches a float64 loss (np.ones is float64): the cotangent entering the
    loop's backward is float64, the carried adjoint float32 (fuzz seed 8000108, --regions)."""
    h = w * 1.0
    while np.sum(h * h) > 0.138529:
        h = 0.8 * np.tanh(h)
    v = np.tanh(s) * h
    y = np.ones((3,))
    y[0] = v[0] * 2.0
    return np.sum(y * y)


def test_a_float64_cotangent_of_a_float32_loop(backend):
    w, s = np.array([0.5, 0.6, 0.7], np.float32), np.full(3, 0.3, np.float32)
    _, g = sb.value_and_grad(float64_cotangent, wrt="w", backend=backend)(w, s)
    assert g.dtype == np.float32
    _, want = sb.value_and_grad(float64_cotangent, wrt="w")(w.astype(np.float64), s.astype(np.float64))
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)
    assert_gradients_match(float64_cotangent, (want,), (w.astype(np.float64), s.astype(np.float64)), (0,))


def branch_gradient_dtypes(x):
    """One branch's gradient of x is float64 (x times a float64 array), the other's a float32 zero."""
    s = np.sum(x)
    if s > 0:
        y = x * np.ones(3)
    else:
        y = np.ones(3) * 2.0
    return np.sum(y * y) + s


def test_both_branches_hand_on_one_gradient_dtype(backend):
    for x in (np.array([0.5, 0.6, 0.7], np.float32), -np.array([0.5, 0.6, 0.7], np.float32)):
        _, g = sb.value_and_grad(branch_gradient_dtypes, backend=backend)(x)
        assert g.dtype == np.float32
        x64 = x.astype(np.float64)
        want = 2 * x64 + 1 if x64.sum() > 0 else np.ones(3)
        np.testing.assert_allclose(g, want, rtol=1e-6)
        assert_gradients_match(branch_gradient_dtypes, (want,), (x64,), (0,))


# ---- what is rejected ------------------------------------------------------------------------

def multi_element_condition(x):
    if x > 0:
        return np.sum(x)
    return -np.sum(x)


def multi_element_while(x):
    while x < 3.0:
        x = x * 2.0
    return np.sum(x)


def test_condition_on_many_elements_names_any_all_where():
    for model in (multi_element_condition, multi_element_while):
        with pytest.raises(sb.CompileError) as info:
            sb.value_and_grad(model)(X3)
        message = str(info.value)
        assert "np.any(" in message and "np.all(" in message and "np.where(" in message, message
        assert "has 3 elements" in message


def test_one_element_condition_is_its_truth_value():
    def one(x):
        y = np.sum(x * x)
        if x[:1] > 0:
            y = y * 2.0
        return y

    for x in (np.array([0.5, 1.0]), np.array([-0.5, 1.0])):
        v, g = sb.value_and_grad(one)(x)
        assert v == pytest.approx(one(x))
        assert_gradients_match(one, (g,), (x,), (0,))


def test_memory_budget_is_refused(backend):
    with pytest.raises(sb.CompileError, match="memory_budget= is not yet supported"):
        sb.value_and_grad(newton_sqrt, memory_budget="1MB", backend=backend)(np.array([2.0]), np.array([1.0]))


def test_name_left_unbound_after_a_while():
    def body_local(x):
        while np.sum(x) < 10.0:
            t = x * 2.0
            x = t
        return np.sum(t)

    with pytest.raises(sb.CompileError, match="`t` is assigned only inside the `while` loop"):
        sb.value_and_grad(body_local)(X3 + 1.0)
