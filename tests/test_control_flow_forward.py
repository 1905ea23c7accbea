"""Forward mode and higher order through value-dependent control flow (issue 14 x issue 16): sb.jvp,
sb.jacobian (both ways), sb.hvp and sb.hessian of models with `if`, `while` and `break` on array values,
against central finite differences in float64, at points away from the branch boundaries and the
tolerances the iterations stop at.

Every test runs on both backends. The LLVM backend does not lower regions yet: until it does, each LLVM
case must raise the region CompileError at the model's line (LLVM_LOWERS_REGIONS below is the one
place that says so; set it to True when the lowering lands, and the same cases check the numbers).
"""
import re

import numpy as np
import pytest

import symbackprop as sb
from test_control_flow import CASES
from test_control_flow import (W3, X3, break_out_of_for, fixed_point, if_inside_while, if_on_reduction, matrix_loop,
                               newton_sqrt, power_iteration)

#: whether backend="llvm" compiles `if`/`while` on array values (the lead's lowering); False: it must refuse
LLVM_LOWERS_REGIONS = False

H = 1e-6
RNG = np.random.default_rng(1416)


def compiled(backend, entry, model, **options):
    """sb.<entry>(model, backend=backend, **options), or None after checking the refusal an LLVM build
    gives while regions are not lowered there (the caller then has nothing more to check)."""
    fn = getattr(sb, entry)(model, backend=backend, **options)
    if backend == "llvm" and not LLVM_LOWERS_REGIONS:
        return _Refused(fn)
    return fn


class _Refused:
    """Calls the LLVM build and checks it raises the region CompileError at the model's line."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        with pytest.raises(sb.CompileError) as info:
            self.fn(*args, **kwargs)
        message = str(info.value)
        assert "on an array value is not yet on the LLVM backend; use backend='numpy'" in message, message
        assert re.search(r"test_control_flow(_forward)?\.py:\d+", message), message
        return None


# ---- models beyond test_control_flow's: array results, for Jacobians both ways ------------------------

def newton_roots(a):
    """The square roots of a, by Newton steps until every update is below the tolerance."""
    x = np.ones_like(a)
    step = np.ones_like(a)
    while np.max(np.abs(step)) > 1e-13:
        step = (x * x - a) / (2 * x)
        x = x - step
    return x


def fixed_point_vector(a, x0):
    x = x0
    while True:
        x_new = np.cos(a * x)
        if np.max(np.abs(x_new - x)) < 1e-14:
            break
        x = x_new
    return x_new * a


def branch_on_norm(x, w):
    s = np.sum(x * w)
    if s > 0:
        y = x * s
    else:
        y = np.sin(x) * w
    return y


def break_for_state(W, h):
    for i in range(8):
        h = np.tanh(W @ h)
        if np.sum(h * h) < 0.05:
            break
    return h * 2.0


def if_in_while_vector(x, w):
    y = x * w
    k = 0
    while np.sum(y) < 10.0 and k < 50:
        if np.max(y) > 2.0:
            y = y * 1.5
        else:
            y = y + w * w
        k += 1
    return y


# ---- the cases: model, arguments, wrt -------------------------------------------------------------------

A3 = np.array([2.0, 3.0, 0.5])
SCALAR = {
    "if_on_reduction": (if_on_reduction, (X3, W3), (0, 1)),
    "if_on_reduction_else": (if_on_reduction, (X3, -W3), (0, 1)),
    "newton": (newton_sqrt, (A3, np.array([1.0, 1.5, 1.0])), (0, 1)),
    "fixed_point": (fixed_point, (np.array([0.6, 0.9]), np.array([0.1, 0.4])), (0, 1)),
    "break_for": (break_out_of_for, (RNG.normal(size=(3, 3)) * 0.4, np.array([0.3, -0.2, 0.4])), (0, 1)),
    "break_for_late": (break_out_of_for, (np.random.default_rng(14).normal(size=(3, 3)) * 1.5,
                                          np.array([0.9, -0.7, 0.8])), (0, 1)),
    "if_inside_while": (if_inside_while, (X3, W3), (0, 1)),
    "matrix_loop": (matrix_loop, (np.array([[1.1, 0.2], [0.1, 0.9]]), np.array([0.3, 0.4])), (0, 1)),
}
#: test_control_flow's gradient cases but its power iteration: its stop, |lam - lam_old| > 1e-13, is near
#: enough to a change of trip count that a finite-difference step of 1e-6 along some directions crosses it
#: (22 trips on one side, 23 on the other; at 1e-7 both sides run 23 and the hvp agrees to 5e-9)
GRADIENT_CASES = [c for c in CASES if c[0] is not power_iteration]

#: (model, arguments, wrt, the way sb.jacobian goes: forward when the wrt entries are no more than the result's)
ARRAY = {
    "newton_roots": (newton_roots, (A3,), 0, "forward"),
    "fixed_point_vector": (fixed_point_vector, (np.array([0.6, 0.9]), np.array([0.1, 0.4])), (0, 1), "reverse"),
    "fixed_point_vector_a": (fixed_point_vector, (np.array([0.6, 0.9]), np.array([0.1, 0.4])), 0, "forward"),
    "branch_on_norm": (branch_on_norm, (X3, W3), "x", "forward"),
    "branch_on_norm_else": (branch_on_norm, (X3, -W3), ("x", "w"), "reverse"),
    "break_for_state": (break_for_state, (RNG.normal(size=(3, 3)) * 0.4, np.array([0.3, -0.2, 0.4])),
                        ("W", "h"), "reverse"),
    "break_for_state_h": (break_for_state, (RNG.normal(size=(3, 3)) * 0.4, np.array([0.3, -0.2, 0.4])), "h",
                          "forward"),
    "if_in_while_vector": (if_in_while_vector, (X3, W3), (0, 1), "reverse"),
}


def _indices(model, wrt):
    names = model.__code__.co_varnames[:model.__code__.co_argcount]
    wrt = wrt if isinstance(wrt, tuple) else (wrt,)
    return [names.index(i) if isinstance(i, str) else i for i in wrt]


def _direction(args, idx, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, np.shape(args[i])) for i in idx]


def _moved(args, idx, ds, h):
    call = list(args)
    for i, d in zip(idx, ds):
        call[i] = args[i] + h * d
    return call


def _directional(f, args, idx, ds, h=H):
    hi, lo = f(*_moved(args, idx, ds, h)), f(*_moved(args, idx, ds, -h))
    if isinstance(hi, (tuple, list)):
        return [(np.asarray(a, float) - np.asarray(b, float)) / (2 * h) for a, b in zip(hi, lo)]
    return (np.asarray(hi, float) - np.asarray(lo, float)) / (2 * h)


def _close(got, want, rtol=1e-5, atol=1e-6):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


def _numpy_grad(model, wrt):
    grad = sb.grad(model, wrt=wrt, backend="numpy")
    single = not isinstance(wrt, tuple)
    return lambda *a: [grad(*a)] if single else list(grad(*a))


# ---- jvp ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCALAR))
def test_jvp_is_the_directional_derivative(name, backend):
    model, args, wrt = SCALAR[name]
    idx = _indices(model, wrt)
    ts = _direction(args, idx, seed=0)
    f = compiled(backend, "jvp", model, wrt=wrt)
    got = f(*args, tangents=tuple(ts))
    if got is None:
        return
    value, t = got
    assert value == pytest.approx(model(*args), rel=1e-12, abs=1e-14)
    _close(t, _directional(model, args, idx, ts))
    # and the reverse mode's gradient dotted with the direction
    grads = sb.grad(model, wrt=wrt, backend="numpy")(*args)
    _close(t, sum(np.sum(g * d) for g, d in zip(grads, ts)), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_jvp_of_array_results(name, backend):
    model, args, wrt, _ = ARRAY[name]
    idx = _indices(model, wrt)
    ts = _direction(args, idx, seed=2)
    f = compiled(backend, "jvp", model, wrt=wrt)
    got = f(*args, tangents=ts[0] if len(ts) == 1 and not isinstance(wrt, tuple) else tuple(ts))
    if got is None:
        return
    value, t = got
    np.testing.assert_allclose(value, model(*args), rtol=1e-12, atol=1e-14)
    _close(t, _directional(model, args, idx, ts))


@pytest.mark.parametrize("case", range(len(GRADIENT_CASES)),
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(GRADIENT_CASES)])
def test_jvp_and_hvp_of_every_control_flow_model(case):
    """test_control_flow's gradient cases (elif chains, nested loops, continue, a while in a for, a for in a
    while, swapped carried values, zero trips...): the jvp is the gradient along a direction, the hvp the
    finite-difference derivative of the gradient along it."""
    model, args, wrt = GRADIENT_CASES[case]
    ds = _direction(args, wrt, seed=11)
    value, t = sb.jvp(model, wrt=wrt)(*args, tangents=tuple(ds))
    grads = sb.grad(model, wrt=wrt)(*args)
    _close(t, sum(np.sum(g * d) for g, d in zip(grads, ds)), rtol=1e-9, atol=1e-10)
    _close(t, _directional(model, args, wrt, ds))
    hv = sb.hvp(model, wrt=wrt)(*args, v=tuple(ds))
    for got, want in zip(hv, _directional(_numpy_grad(model, wrt), args, wrt, ds)):
        _close(got, want, rtol=1e-4, atol=1e-5)


# ---- Jacobians: forward mode along the basis, or reverse mode then forward along the cotangent's --------------

def _fd_jacobian(model, args, i):
    x = np.asarray(args[i], float)
    columns = [_directional(model, args, [i], [e.reshape(x.shape)]) for e in np.eye(x.size)]
    return np.moveaxis(np.array(columns), 0, -1).reshape(np.shape(model(*args)) + x.shape)


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_jacobian_both_ways(name, backend):
    model, args, wrt, way = ARRAY[name]
    idx = _indices(model, wrt)
    jac = compiled(backend, "jacobian", model, wrt=wrt)
    J = jac(*args)
    if J is None:
        return
    assert jac._last.mode == way
    blocks = list(J) if isinstance(wrt, tuple) else [J]
    for block, i in zip(blocks, idx):
        _close(block, _fd_jacobian(model, args, i))


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_jacobian_of_a_scalar_is_the_gradient(name, backend):
    model, args, wrt = SCALAR[name]
    jac = compiled(backend, "jacobian", model, wrt=wrt)
    J = jac(*args)
    if J is None:
        return
    assert jac._last.mode == "reverse"
    for block, g in zip(J, sb.grad(model, wrt=wrt, backend="numpy")(*args)):
        np.testing.assert_allclose(block, g, rtol=1e-10, atol=1e-12)


def test_a_batched_tangent_runs_the_primal_trip_count_once():
    """The Jacobian's basis is a leading axis of one tangent through one loop: one `while`, its trip count the
    primal's, no loop over the directions and nothing recorded."""
    jac = sb.jacobian(newton_roots)
    J = jac(A3)
    np.testing.assert_allclose(J, np.diag(0.5 / np.sqrt(A3)), rtol=1e-10)
    src = jac.source
    assert len(re.findall(r"^\s+while ", src, re.M)) == 1, src
    assert not re.search(r"^\s+for ", src, re.M) and ".append(" not in src, src
    assert re.search(r"^\s+t_x(_\d+)? = t_x(_\d+)? - .*# test_control_flow_forward\.py:\d+$", src, re.M), src


# ---- hvp and Hessians: forward over reverse, through the tapes and the replay ----------------------------

@pytest.mark.parametrize("name", sorted(SCALAR))
def test_hvp_is_the_directional_derivative_of_the_gradient(name, backend):
    model, args, wrt = SCALAR[name]
    idx = _indices(model, wrt)
    vs = _direction(args, idx, seed=1)
    f = compiled(backend, "hvp", model, wrt=wrt)
    hv = f(*args, v=tuple(vs))
    if hv is None:
        return
    fd = _directional(_numpy_grad(model, wrt), args, idx, vs, h=H)
    assert len(hv) == len(idx)
    for got, want, i in zip(hv, fd, idx):
        assert np.shape(got) == np.shape(args[i])
        _close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_hessian_is_finite_differences_of_the_gradient(name, backend):
    model, args, wrt = SCALAR[name]
    idx = _indices(model, wrt)
    f = compiled(backend, "hessian", model, wrt=wrt)
    blocks = f(*args)
    if blocks is None:
        return
    grad = _numpy_grad(model, wrt)
    sizes = [np.size(args[i]) for i in idx]
    for b, j in enumerate(idx):
        x = np.asarray(args[j], float)
        columns = [_directional(grad, args, [j], [e.reshape(x.shape)], h=H) for e in np.eye(x.size)]
        for a, i in enumerate(idx):
            want = np.moveaxis(np.array([c[a] for c in columns]), 0, -1).reshape(np.shape(args[i]) + x.shape)
            _close(blocks[a][b], want, rtol=1e-4, atol=1e-5)
    for a in range(len(idx)):  # symmetric
        for b in range(len(idx)):
            np.testing.assert_allclose(np.reshape(blocks[a][b], (sizes[a], sizes[b])),
                                       np.reshape(blocks[b][a], (sizes[b], sizes[a])).T, rtol=1e-8, atol=1e-10)
    vs = _direction(args, idx, seed=7)  # and the hvp is the Hessian times v
    hv = sb.hvp(model, wrt=wrt, backend="numpy")(*args, v=tuple(vs))
    for a in range(len(idx)):
        want = sum(np.reshape(blocks[a][b], (sizes[a], sizes[b])) @ np.reshape(vs[b], -1) for b in range(len(idx)))
        np.testing.assert_allclose(np.reshape(hv[a], -1), want, rtol=1e-9, atol=1e-10)


def test_hvp_pushes_each_tangent_tape_beside_its_tape():
    f = sb.hvp(newton_sqrt, wrt=("a", "x0"))
    f(A3, np.ones(3), v=(A3, A3))
    forward_part, backward_part = f.source.split("for _ in range(trips):")
    pushed = re.findall(r"(\w+)_tape\.append\((\w+)\)", forward_part)
    popped = re.findall(r"(\w+) = (\w+)_tape\.pop\(\)", backward_part)
    assert pushed and sorted(t for t, _ in pushed) == sorted(t for _, t in popped)
    names = {t for t, _ in pushed}
    assert all(("t_" + t) in names for t in names if not t.startswith("t_t")), names  # each residual's tangent


def test_jvp_records_nothing():
    f = sb.jvp(if_inside_while, wrt=("x", "w"))
    f(X3, W3, tangents=(W3, X3))
    src = f.source
    assert ".append(" not in src and "trips" not in src, src
    assert re.search(r"^\s+if s_\d+ > 2|^\s+if \w+:", src, re.M)
    assert re.search(r"^\s+t_s = ", src, re.M), src


def test_jvp_writes_the_branch_tangents_in_the_branches():
    f = sb.jvp(if_on_reduction, wrt=("x", "w"))
    f(X3, W3, tangents=(X3, W3))
    src = f.source
    then, other = src.split("else:")
    assert re.search(r"^\s+t_y = 2\*s\*t_s\s+# test_control_flow\.py:\d+$", then, re.M), src
    assert re.search(r"^\s+t_y = -t_s\*np\.cos\(s\)\s+# test_control_flow\.py:\d+$", other, re.M), src
    assert src.count("if cond:") == 1


def test_trip_count_differs_between_calls_without_recompiling():
    f = sb.jvp(newton_roots)
    for a in (A3, np.array([100.0, 0.01, 7.0]), np.array([1.0, 1.0, 1.0])):
        value, t = f(a, tangents=np.ones(3))
        np.testing.assert_allclose(value, np.sqrt(a), rtol=1e-12)
        np.testing.assert_allclose(t, 0.5 / np.sqrt(a), rtol=1e-9)
    assert f.compilations == 1


# ---- derivatives of derivative functions called inside a model ------------------------------------------

hessian_of_branch = sb.hessian(if_on_reduction, wrt="x")
grad_of_newton = sb.grad(newton_sqrt, wrt="a")
jvp_of_branch = sb.jvp(if_on_reduction, wrt="x")


def hessian_penalty(x, w):
    H_ = hessian_of_branch(x, w)
    return np.sum(H_ * H_) + np.sum(x * w)


def newton_gradient_norm(a):
    g = grad_of_newton(a, np.ones_like(a))
    return np.sum(g * g)


def tangent_squared(x, w):
    value, t = jvp_of_branch(x, w, tangents=w)
    return t * t + value


NESTED = {
    "hessian_penalty": (hessian_penalty, (X3, W3), 0),
    "tangent_squared": (tangent_squared, (X3, W3), 0),
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_forward_mode_over_an_inner_forward_mode(name):
    """A jvp and an hvp of a model whose inner derivative already carries tangents through the `if`: the outer
    pass differentiates the inner tangents too (third derivatives for the Hessian penalty)."""
    model, args, wrt = NESTED[name]
    ts = _direction(args, [wrt], seed=3)
    value, t = sb.jvp(model, wrt=wrt)(*args, tangents=ts[0])
    assert value == pytest.approx(model(*args), rel=1e-12)
    _close(t, _directional(model, args, [wrt], ts))
    hv = sb.hvp(model, wrt=wrt)(*args, v=ts[0])
    _close(hv, _directional(lambda *a: sb.grad(model, wrt=wrt)(*a), args, [wrt], ts, h=H), rtol=1e-4, atol=1e-5)


def test_jvp_of_a_gradient_through_a_while():
    """Forward mode over the inlined backward pass of a Newton loop (its replay and tapes)."""
    a = np.array([2.0, 3.0, 4.0])
    d = np.array([0.3, -0.5, 0.8])
    value, t = sb.jvp(newton_gradient_norm)(a, tangents=d)
    assert value == pytest.approx(np.sum(0.25 / a), rel=1e-9)  # the gradient of sum(sqrt(a)) is 1 / (2 sqrt(a))
    assert t == pytest.approx(np.sum(-0.25 / a ** 2 * d), rel=1e-8)
    _close(t, _directional(newton_gradient_norm, (a,), [0], [d]))


def test_reverse_mode_over_the_replay_says_what_to_use():
    with pytest.raises(sb.CompileError) as info:
        sb.grad(newton_gradient_norm)(np.array([2.0, 3.0]))
    message = str(info.value)
    assert "backward pass of a `while`" in message and "sb.hvp or sb.hessian" in message, message
    assert "test_control_flow.py:" in message, message  # the loop's line


# ---- what is refused ------------------------------------------------------------------------------------

def test_vmap_over_a_region_is_a_compile_error_at_its_line():
    with pytest.raises(sb.CompileError) as info:
        sb.vmap(if_on_reduction, in_axes=(0, None))(np.stack([X3, X3 * 2]), W3)
    message = str(info.value)
    assert "`if` has no batching rule" in message and "test_control_flow.py:" in message, message


@pytest.mark.parametrize("entry", ["hvp", "hessian", "jacobian"])
def test_memory_budget_is_refused(entry):
    f = getattr(sb, entry)(newton_sqrt, memory_budget="1MB")
    kwargs = {"v": (A3, A3)} if entry == "hvp" else {}
    with pytest.raises(sb.CompileError, match="memory_budget= is not yet supported with an `if` or `while`"):
        f(A3, np.ones(3), **kwargs)


@pytest.mark.parametrize("entry", ["jvp", "hvp", "hessian", "jacobian"])
def test_explain_reads_the_regions_tangents(entry):
    """explain tabulates the program right after forward mode: a region's adjoint record keeps step with the
    tangent ports its rule added (an IndexError before)."""
    text = str(getattr(sb, entry)(newton_sqrt, wrt=("a", "x0")).explain(A3, np.ones(3)))
    assert "tangents along" in text and "test_control_flow.py:" in text, text[:2000]
    assert "while" in text


@pytest.mark.parametrize("name", sorted(ARRAY))
def test_vjp_of_array_results(name, backend):
    """vjp seeds the backward pass with a cotangent: u @ J against the finite-difference Jacobian."""
    model, args, wrt, _ = ARRAY[name]
    idx = _indices(model, wrt)
    u = np.random.default_rng(5).uniform(-1, 1, np.shape(model(*args)))
    f = compiled(backend, "vjp", model, wrt=wrt)
    got = f(*args, cotangent=u)
    if got is None:
        return
    value, grads = got
    grads = list(grads) if isinstance(wrt, tuple) else [grads]
    for g, i in zip(grads, idx):
        J = _fd_jacobian(model, args, i)
        _close(g, np.tensordot(u, J, axes=u.ndim))


@pytest.mark.parametrize("entry", ["jvp", "jacobian", "hessian", "hvp"])
def test_exported_py_module_returns_what_the_callable_returns(entry, tmp_path):
    import importlib.util
    a, x0 = A3, np.array([1.0, 1.5, 1.0])
    fn = getattr(sb, entry)(newton_sqrt, wrt=("a", "x0"))
    direction = {"jvp": {"tangents": (W3, X3)}, "hvp": {"v": (W3, X3)}}.get(entry, {})
    want = fn(a, x0, **direction)
    path = fn.export(tmp_path / f"{entry}.py")
    spec = importlib.util.spec_from_file_location(f"exported_cf_{entry}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = getattr(module, entry)(a, x0, *[d for v in direction.values() for d in v])
    flat = lambda t: [np.asarray(x) for x in (t if isinstance(t, tuple) else (t,))  # noqa: E731
                      for x in (flat(x) if isinstance(x, tuple) else [x])]
    assert len(flat(got)) == len(flat(want))
    for g, w in zip(flat(got), flat(want)):
        np.testing.assert_array_equal(g, w)
    assert "while " in open(path).read()
