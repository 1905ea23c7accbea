"""CSE across a derivative program (passes/share.py): a tangent reuses the primal's values, and in a
Hessian-vector product the forward, backward and tangent kernels together compute each value once.

The expected forms come from the math: d tanh(z) = (1 - tanh(z)**2) dz, so with h = tanh(z) the
tangent is (1 - h**2)*t_z, reading h (no second tanh, no cosh); forward over reverse of a tanh layer
needs 1 - h**2 in the tangent of h and again in the tangent of the backward kernel d_z = d_h*(1 - h**2).
"""
import re

import numpy as np
import pytest
import sympy

import symbackprop as sb
from symbackprop.pipeline import stages
from symbackprop.primitives.elementwise import Kernel, arg, expand


def rng_(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape)


def tanh_layer(W, x):
    z = W @ x
    h = np.tanh(z)
    return h


def mlp(W1, b1, W2, x, y):
    h = np.tanh(x @ W1 + b1)
    o = h @ W2
    return np.mean((o - y) ** 2)


def mlp_args():
    return [rng_(4, 5), rng_(5, seed=1), rng_(5, 3, seed=2), rng_(6, 4, seed=3), rng_(6, 3, seed=4)]


def exp_chain(W, x):
    y = np.sin(np.exp(W @ x))
    return np.sum(y * y)


def statement(source, name):
    """The right-hand side of `name = ...` in generated NumPy source (its comment dropped)."""
    (line,) = [ln for ln in source.splitlines() if ln.strip().startswith(f"{name} = ")]
    return line.split("=", 1)[1].split("#")[0].strip()


def test_tanh_jvp_tangent_is_one_minus_h_squared_times_t_z():
    j = sb.jvp(tanh_layer, wrt="W")
    W, x, tW = rng_(3, 4), rng_(4, seed=1), rng_(3, 4, seed=2)
    value, t = j(W, x, tangents=tW)
    np.testing.assert_allclose(t, (1 - np.tanh(W @ x) ** 2) * (tW @ x), rtol=1e-13)
    rhs = statement(j.source, "t_h")
    assert "np." not in rhs  # arithmetic on h and t_z only: no tanh, cosh or exp again
    h, t_z = sympy.symbols("h t_z")
    expr = sympy.sympify(rhs, locals={"h": h, "t_z": t_z})
    assert expr.free_symbols == {h, t_z}
    assert sympy.expand(expr - (1 - h**2) * t_z) == 0
    assert j.source.count("np.tanh(") == 1


def _kernels(program):
    return [n for n in program.graph.nodes if n.prim is Kernel]


def _operations(program):
    """Elementwise operations per element, summed over the program's kernels (temps and outputs)."""
    return sum(sympy.count_ops(e) for n in _kernels(program)
               for e in [e for _, e in n.attrs["program"]] + list(n.attrs["outs"]))


def _repeated(program):
    """Subexpressions (at least one operation) that two kernels of the program both compute, written
    over the arrays they read; a kernel's outputs count as its own, reading them does not."""
    seen, repeated = {}, set()
    symbols = {}
    for node in _kernels(program):
        glob = {arg(i): symbols.setdefault(v, sympy.Symbol(f"v{len(symbols)}")) for i, v in enumerate(node.inputs)}
        found = set()
        for e in expand(node.attrs["program"], node.attrs["outs"]):
            for sub in sympy.preorder_traversal(e.xreplace(glob)):
                if not sub.is_Atom and sub.free_symbols and not sub.is_Number:
                    found.add(sub)
        for sub in found:
            if sub in seen:
                repeated.add(sub)
            seen[sub] = node
    return repeated


def _without_sharing(monkeypatch):
    monkeypatch.setattr(stages, "share_across_kernels", lambda graph, keep=(), worth=None: graph)


def test_hvp_of_a_tanh_mlp_computes_each_value_once(monkeypatch):
    """NumPy backend: no subexpression is computed by two kernels, 1 - h**2 once for the tangent of h
    and that of the backward kernel, fewer operations than the same program without sharing, and the
    same numbers (to round-off: the sharing reassociates)."""
    args, v = mlp_args(), (rng_(4, 5, seed=5), rng_(5, seed=6), rng_(5, 3, seed=7))
    wrt = ("W1", "b1", "W2")
    shared = sb.hvp(mlp, wrt=wrt)
    got = shared(*args, v=v)
    program = shared._last
    assert not _repeated(program)
    assert len(re.findall(r"\bh\*\*2\b", shared.source)) == 1
    _without_sharing(monkeypatch)
    baseline = sb.hvp(mlp, wrt=wrt)
    want = baseline(*args, v=v)
    assert _repeated(baseline._last)  # the test can fail: the program built without sharing repeats work
    assert _operations(program) < _operations(baseline._last)
    assert len(_kernels(program)) <= len(_kernels(baseline._last))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_hvp_of_a_deep_tanh_net_reuses_every_layers_derivative(monkeypatch):
    """16 tanh layers: the backward pass's 1 - h_i**2 is the one the tangents read, layer by layer."""
    from benchmarks import workloads
    w = workloads.get("W5")
    args = w.make_inputs()
    f = sb.hvp(w.model, wrt=w.wrt)
    program = f.specialise(*args)
    assert not _repeated(program)
    _without_sharing(monkeypatch)
    base = sb.hvp(w.model, wrt=w.wrt).specialise(*args)
    assert _operations(program) < 0.85 * _operations(base)


@pytest.mark.parametrize("entry", ["jvp", "hvp"])
def test_a_transcendental_inside_a_fused_chain_is_computed_once(entry, backend):
    """sin(exp(z)) is one kernel; its tangent needs exp(z) again (cos(exp(z))*exp(z)*t_z): the forward
    kernel keeps exp(z) as an output and the tangent reads it, on both backends (a backend fusing loops
    shares what holds a transcendental)."""
    W, x, t = rng_(3, 4), rng_(4, seed=1), rng_(4, seed=2)
    f = getattr(sb, entry)(exp_chain, wrt="x", backend=backend)
    result = f(W, x, **({"tangents": t} if entry == "jvp" else {"v": t}))
    exps = sum(sum(1 for s in sympy.preorder_traversal(e) if isinstance(s, sympy.exp))  # as computed: temps once
               for n in _kernels(f._last) for e in [e for _, e in n.attrs["program"]] + list(n.attrs["outs"]))
    assert exps == 1
    grad = sb.grad(exp_chain, wrt="x")
    if entry == "jvp":
        np.testing.assert_allclose(result[1], grad(W, x) @ t, rtol=1e-10)
    else:
        h = 1e-6
        fd = (grad(W, x + h * t) - grad(W, x - h * t)) / (2 * h)
        np.testing.assert_allclose(result, fd, rtol=1e-6, atol=1e-8)


def test_value_and_grad_code_is_unchanged_by_the_pass(monkeypatch):
    """Only the derivative entry points run the pass: a gradient's generated code stays what it was."""
    args = mlp_args()
    before = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2"))
    before(*args)
    _without_sharing(monkeypatch)
    after = sb.value_and_grad(mlp, wrt=("W1", "b1", "W2"))
    after(*args)
    assert before.source == after.source


def tanh_energy(W, x):
    h = np.tanh(W @ x)
    return np.sum(h ** 2)


def test_hvp_tangents_read_the_primal_values(backend):
    """hvp of sum(tanh(W @ x)**2): with h = tanh(t1), d_h = 2*h and d_t1 = d_h*(1 - h**2), forward mode
    needs t_h = (1 - h**2)*t_t1 and t_d_t1 = t_d_h*(1 - h**2) - 2*d_h*h*t_h with t_d_h = 2*t_h. The
    generated NumPy code computes h**2 once (the loss's), 1 - h**2 once from it, and both tangents read
    that one array; the numbers are the finite differences of the gradient along v, on both backends."""
    W, x, v = rng_(3, 4), rng_(4, seed=1), rng_(3, 4, seed=2)
    f = sb.hvp(tanh_energy, backend=backend)
    hv = f(W, x, v=v)
    grad = sb.grad(tanh_energy)
    eps = 1e-6
    np.testing.assert_allclose(hv, (grad(W + eps * v, x) - grad(W - eps * v, x)) / (2 * eps), rtol=1e-6, atol=1e-9)
    if backend != "numpy":
        return
    src = sb.hvp(tanh_energy)
    src(W, x, v=v)
    source = src.source
    square = [ln.split("=")[0].strip() for ln in source.splitlines() if re.search(r"= h\*\*2\s", ln)]
    assert len(square) == 1 and len(re.findall(r"\bh\*\*2\b", source)) == 1  # h**2 computed once
    (one_minus,) = [ln.split("=")[0].strip() for ln in source.splitlines()
                    if re.fullmatch(rf"\s*\w+ = 1 - {square[0]}\s*#.*", ln)]
    t_h = sympy.sympify(statement(source, "t_h"))
    assert sympy.Symbol(one_minus) in t_h.free_symbols and "np." not in statement(source, "t_h")
    h, t_t1, s = sympy.symbols("h t_t1 " + one_minus)
    assert sympy.expand(t_h.subs(s, 1 - h**2) - (1 - h**2) * t_t1) == 0
    t_d_t1 = sympy.sympify(statement(source, "t_d_t1"))
    assert sympy.Symbol(one_minus) in t_d_t1.free_symbols  # the tangent of the backward kernel reads it too
    d_h, t_hs = sympy.symbols("d_h t_h")
    want = 2 * t_hs * (1 - h**2) - 2 * d_h * h * t_hs
    assert sympy.expand(t_d_t1.subs({s: 1 - h**2, d_h: 2 * h}) - want.subs(d_h, 2 * h)) == 0
