"""explain for sb.jvp, vjp, jacobian, hessian and hvp (issue 16 item 6): a table like grad's, read off the
graph right after the entry point's differentiating stage. The expected rules come from the math:
d tanh(z) = (1 - tanh(z)**2) dz, d(W @ x) = dW @ x + W @ dx, d(2*h) = 2 dh; reverse mode seeded with
a cotangent u sends u*2 to h; forward over reverse differentiates the backward rule d_z = d_h*(1 - h**2)
as t_d_z = t_d_h*(1 - h**2) - 2*d_h*h*t_h."""
import re

import numpy as np
import pytest
import sympy

import symbackprop as sb


def layer(W, x):
    z = W @ x
    h = np.tanh(z)
    return 2.0 * h


def energy(W, x):
    z = W @ x
    h = np.tanh(z)
    return np.sum(h ** 2)


W, X = np.full((3, 4), 0.1), np.ones(4)


def rows(text, heading):
    """The table rows (split on 2+ spaces) of the section starting with `heading`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("  "):
            break
        out.append(re.split(r"\s{2,}", line.strip()))
    return out


def rule(text, name):
    """The right-hand side `name = ...` in the tangent column."""
    for row in rows(text, "tangents along"):
        for part in row[-1].split("; "):
            lhs, _, rhs = part.partition(" = ")
            if lhs == name:
                return rhs
    raise AssertionError(f"no tangent {name} in\n{text}")


def same(rhs, want, **symbols):
    got = sympy.sympify(rhs, locals={k: sympy.Symbol(k) for k in symbols})
    return sympy.expand(got - sympy.sympify(want, locals={k: sympy.Symbol(k) for k in symbols})) == 0


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_jvp_tabulates_each_operation_with_its_tangent_rule(backend):
    text = sb.jvp(layer, wrt="W", backend=backend).explain(W, X)
    assert "tangents along t_W (argument)" in text
    table = rows(text, "tangents along")
    assert [r[2] for r in table] == ["z = np.dot(W, x)", "h = tanh(z)", "out = 2*h"]
    assert rule(text, "t_z") == "np.dot(t_W, x)"
    assert same(rule(text, "t_h"), "t_z*(1 - h**2)", t_z=1, h=1)
    assert same(rule(text, "t_out"), "2*t_h", t_h=1)
    assert "the gradient, by reverse mode" not in text  # no reverse mode in a jvp
    assert "\ngenerated:\n" in text


def test_vjp_tabulates_reverse_mode_seeded_with_the_cotangent():
    f = sb.vjp(layer, wrt=("W", "x"))
    f(W, X, cotangent=np.ones(3))
    text = f.explain()
    assert "d_out @ J with respect to W, x" in text
    backward = rows(text, "backward pass")
    assert backward[0][2] == "d_out"  # the residual is the cotangent argument, not d_loss = 1
    assert "d_loss = 1" not in text.split("\n", 1)[1]  # (the title line says "instead of d_loss = 1")
    assert backward[0][-1] == "d_h = 2*d_out"
    assert "tangents along" not in text


def test_jacobian_by_reverse_mode_shows_the_backward_pass_and_its_tangents_along_the_basis():
    text = sb.jacobian(layer, wrt="x").explain(W, X)  # 4 entries of x > 3 of the result: reverse mode
    assert "(reverse mode)" in text
    assert "tangents along t_d_out = np.eye(3)" in text
    assert same(rule(text, "t_d_z"), "t_d_h*(1 - h**2)", t_d_h=1, h=1)
    assert rule(text, "t_d_h") == "2*t_d_out"


def test_jacobian_by_forward_mode_carries_the_basis_of_x():
    text = sb.jacobian(layer, wrt="x").explain(np.full((6, 4), 0.1), X)
    assert "(forward mode)" in text
    assert "tangents along t_x = np.eye(4)" in text
    assert rule(text, "t_z") == "np.dot(t_x, W.T)"  # the basis as a leading axis: rows of t_x times W.T


def test_hvp_tabulates_the_gradient_then_the_tangents_of_both_passes():
    text = sb.hvp(energy).explain(W, X)
    assert text.index("the gradient, by reverse mode") < text.index("tangents along t_W (argument)")
    assert "energy(W: float64[3,4], x: float64[4]): gradient" in text  # the model's arguments only
    ops = [r[2] for r in rows(text, "tangents along")]
    assert "d_z = d_h*(1 - h**2)" in ops  # a backward operation, named as the backprop table names it
    assert same(rule(text, "t_d_z"), "t_d_h*(1 - h**2) - 2*d_h*h*t_h", t_d_h=1, h=1, d_h=1, t_h=1)
    assert rule(text, "t_d_W") == "np.outer(t_d_z, x)"


def test_explain_source_and_memory_take_the_arguments_of_a_call():
    """The direction a call needs (v=, tangents=, cotangent=) may be passed to explain, source and memory as
    to the call itself; it does not change the specialisation."""
    v = np.ones_like(W)
    h = sb.hvp(energy)
    assert h.explain(W, X, v=v) == h.explain(W, X)
    assert h.specialise(W, X, v=v) is h.specialise(W, X)
    j = sb.jvp(energy)
    assert j.explain(W, X, tangents=v) == j.explain(W, X)
    with pytest.raises(TypeError, match="unexpected keyword argument 'u'"):
        h.explain(W, X, u=v)


def test_hessian_has_one_table_per_parameter_basis():
    text = sb.hessian(energy, wrt=("x", "W")).explain(W, X)
    assert "tangents along t_x = np.eye(4)" in text
    assert "tangents along t_W = np.eye(12).reshape((12, 3, 4))" in text
