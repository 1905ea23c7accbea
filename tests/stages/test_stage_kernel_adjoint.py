"""Kernel adjoints: the derivative of an elementwise body by SymPy, in terms of the forward outputs.

For outputs y_k = B_k(a) and incoming gradients g_k, input i gets
sum_k g_k * dB_k/da_i (primitives/kernel_adjoint.py). The derivative is written
with y_k where B_k appears (tanh' = 1 - y**2), what forward and backward share is
computed once on the forward pass (a residual), sigmoid is recognised so that its
derivative is y*(1 - y), and the kink conventions hold (max splits a tie).
"""
import numpy as np
import sympy

# the package, in one place
from symbackprop.primitives import elementwise, kernel_adjoint, scalar, shape

import stagekit as kit

a0, a1 = kit.a(0), kit.a(1)
y0, g0, g1 = kernel_adjoint.out_symbol(0), kernel_adjoint.grad_symbol(0), kernel_adjoint.grad_symbol(1)


def derive(*outs, wants=None, has_g=None):
    inputs = set().union(*(o.free_symbols for o in outs))
    wants = wants or (True,) * len(inputs)
    return kernel_adjoint.derive(tuple(outs), (), tuple(wants), has_g or (True,) * len(outs))


def gradient(d, i):
    """The backward expression for input i, with the backward program's temps substituted."""
    return elementwise.expand(d.backward_program, (d.backward_outs[d.which[i]],))[0]


def test_tanh_derivative_reads_the_forward_output():
    d = derive(sympy.tanh(a0))
    # d tanh(a) = g*(1 - y**2): the textbook form, reusing y = tanh(a) instead of computing it again
    assert gradient(d, 0) == g0 * (1 - y0**2)
    assert d.forward_outs == (sympy.tanh(a0),) and d.residuals == ()


def test_exp_and_log_derivatives():
    assert gradient(derive(sympy.exp(a0)), 0) == g0 * y0      # exp' = exp: the output itself
    assert gradient(derive(sympy.log(a0)), 0) == g0 / a0      # log' = 1/a: reads the input


def test_sigmoid_written_out_is_recognised():
    d = derive(1 / (1 + sympy.exp(-a0)))
    # the forward body becomes sigmoid(a), and its derivative the y*(1 - y) of backprop texts
    assert d.forward_outs == (scalar.sigmoid(a0),)
    assert gradient(d, 0) == g0 * y0 * (1 - y0)


def test_a_product_gives_each_input_the_other():
    d = derive(a0 * a1)
    assert gradient(d, 0) == g0 * a1 and gradient(d, 1) == g0 * a0
    assert d.which == (0, 1)


def test_equal_derivatives_are_one_backward_output():
    d = derive(a0 + a1)
    # d(a + b) is g for both inputs: computed once, handed to both
    assert d.backward_outs == (g0,) and d.which == (0, 0)


def test_a_subexpression_both_passes_need_becomes_a_residual():
    d = derive(a1 * sympy.tanh(a0))
    # tanh(a0) is a temp of the forward program, kept as an extra forward output
    ((t, value),) = d.forward_program
    assert value == sympy.tanh(a0) and d.residuals == (t,)
    assert d.forward_outs == (a1 * t, t)
    # the backward reads it: no tanh is computed again
    for i, expected in ((0, g0 * a1 * (1 - t**2)), (1, g0 * t)):
        assert gradient(d, i) == expected
        assert not gradient(d, i).has(sympy.tanh)


def test_an_input_not_wanted_gets_no_derivative():
    d = derive(a0 * sympy.exp(a1), wants=(True, False))
    assert d.which[1] is None and len(d.backward_outs) == 1


def test_only_outputs_with_a_gradient_contribute():
    # outputs a**2 and a**3, a gradient reaching only the second: 3*g1*a**2 (which is 3*g1*y0)
    d = derive(a0**2, a0**3, has_g=(False, True))
    (expr,) = d.backward_outs
    assert g0 not in expr.free_symbols
    assert sympy.simplify(expr.subs(y0, a0**2) - 3 * g1 * a0**2) == 0


def test_maximum_splits_the_gradient_at_a_tie():
    d = derive(scalar.maximum(a0, 0))
    f = kit.numeric(gradient(d, 0), [a0, g0])
    # the kink convention: 0 below, 1 above, the mean 1/2 at the tie (what a central difference measures)
    assert np.allclose(f(np.array([-1.0, 0.0, 2.0]), 1.0), [0.0, 0.5, 1.0])


def test_where_selects_its_derivative_instead_of_masking_it():
    d = derive(scalar.where(scalar.gt(a0, 0), sympy.sqrt(a0), 0))
    expr = gradient(d, 0).xreplace(dict(d.forward_program))
    assert expr.has(scalar.where)
    # at a = 0 the untaken branch's derivative is 1/(2 sqrt(0)) = inf; a 0/1 mask would give 0*inf = nan
    f = kit.numeric(expr, [a0, g0])
    with np.errstate(divide="ignore", invalid="ignore"):
        values = f(np.array([0.0, 4.0]), 1.0)
    assert np.array_equal(values, [0.0, 0.25])


def test_kernel_adjoint_extends_the_forward_node_and_sums_broadcast_inputs():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3), np.float32)
        b = kit.param(g, "b", (3,), np.float32)
        grad = kit.param(g, "g", (4, 3), np.float32)
        (out,) = elementwise.kernel([x, b], (a0 * sympy.tanh(a0 + a1),), (4, 3))
        node = out.node
        d_x, d_b = kernel_adjoint.kernel_adjoint(node, [grad], [True, True])
    # the forward node now also outputs t = tanh(x + b), which the backward reads
    assert len(node.outputs) == 2 and node.outputs[0] is out
    t = node.outputs[1]
    assert (t.shape, t.dtype) == ((4, 3), np.float32)
    assert kit.bodies(node) == (a0 * sympy.tanh(a0 + a1), sympy.tanh(a0 + a1))
    # d/dx = g*(t + x*(1 - t**2)) and d/db = g*x*(1 - t**2), b's summed down to (3,)
    assert (d_x.shape, d_x.dtype) == ((4, 3), np.float32)
    assert d_b.node.prim is shape.SumTo and (d_b.shape, d_b.dtype) == ((3,), np.float32)
    backward = d_x.node
    assert d_b.node.inputs[0].node is backward  # one backward kernel computes both
    g_, x_, t_ = kit.sym("g", "x", "t")
    names = {grad: "g", x: "x", t: "t"}
    by_input = dict(zip(backward.outputs, kit.bodies(backward)))
    assert sympy.expand(kit.named(backward, by_input[d_x], names) - g_ * (t_ + x_ * (1 - t_**2))) == 0
    assert sympy.expand(kit.named(backward, by_input[d_b.node.inputs[0]], names) - g_ * x_ * (1 - t_**2)) == 0


def test_kernel_adjoint_leaves_unwanted_inputs_alone():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        c = kit.param(g, "c", (3,))
        grad = kit.param(g, "g", (3,))
        (out,) = elementwise.kernel([x, c], (sympy.exp(a0) * a1,), (3,))
        d_x, d_c = kernel_adjoint.kernel_adjoint(out.node, [grad], [True, False])
    assert d_c is None
    # d/dx exp(x)*c = g*y: the output, not exp(x) again
    assert kit.named(d_x.node, names={grad: "g", out: "y"}) == kit.sym("g") * kit.sym("y")
