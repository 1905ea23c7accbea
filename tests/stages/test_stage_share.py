"""CSE across kernels (passes/share.py): what two kernels compute, the first computes and the second reads.

The rules: a subexpression several kernels need is computed by the first of them whose shape is its
own (an output it has already, or a new one) and read by the later ones; a part of a body that an
earlier kernel holds as an output is read from it; the sharing policy says what is worth an array
(NumPy: everything; a loop-fusing backend: transcendentals); results keep their kernels.
"""
import numpy as np
import sympy

from symbackprop.passes import share
from symbackprop.primitives import elementwise, ops

import stagekit as kit

h_, y_, q_, c_ = kit.sym("h", "y", "q", "c")


def _k(values, body, shape):
    return elementwise.kernel(list(values), (body,), shape)[0]


def two_users():
    """h = tanh(x); q = h**2 (named); r = (1 - h**2)*y; s = (1 - h**2)*c: 1 - h**2 in two kernels."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        y = kit.param(g, "y", (4, 3))
        c = kit.param(g, "c", (4, 3))
        h = _k([x], sympy.tanh(kit.a(0)), (4, 3))
        h.name = "h"
        q = _k([h], kit.a(0) ** 2, (4, 3))
        q.name = "q"
        r = _k([h, y], (1 - kit.a(0) ** 2) * kit.a(1), (4, 3))
        s = _k([h, c], (1 - kit.a(0) ** 2) * kit.a(1), (4, 3))
        g.result = ops.sum(r) + ops.sum(s) + ops.sum(q)
    return g, (h, q, r, s)


def test_a_subexpression_two_kernels_need_is_computed_once_and_reads_what_is_there():
    g, (h, q, r, s) = two_users()
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)
    share.share_across_kernels(g, keep=[g.result])
    after = kit.evaluate(g, inputs)
    np.testing.assert_allclose(after[g.result], before[g.result], rtol=1e-14)
    r_node, s_node = r.node, s.node
    # h**2 is q's output: 1 - h**2 reads it, computed once by r's kernel (a new output), read by s's
    assert len(r_node.outputs) == 2
    one_minus = r_node.outputs[1]
    assert kit.named(r_node, elementwise.expand(r_node.attrs["program"], r_node.attrs["outs"])[1],
                     {q: "q"}) == 1 - q_
    assert one_minus in s_node.inputs and h not in s_node.inputs
    assert kit.named(s_node, names={one_minus: "m"}) == sympy.Symbol("m", real=True) * c_


def test_the_policy_of_a_fusing_backend_leaves_arithmetic_alone():
    g, (h, q, r, s) = two_users()
    bodies = [tuple(kit.bodies(n)) for n in kit.kernels(g)]
    share.share_across_kernels(g, keep=[g.result], worth=share.transcendental)
    assert [tuple(kit.bodies(n)) for n in kit.kernels(g)] == bodies


def test_a_transcendental_is_shared_under_either_policy():
    """exp(x) in two kernels: the first keeps it as an output, the second reads it."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (5,))
        u = _k([x], sympy.sin(sympy.exp(kit.a(0))), (5,))
        w = _k([x], sympy.cos(sympy.exp(kit.a(0))) * 3, (5,))
        g.result = ops.sum(u) + ops.sum(w)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    share.share_across_kernels(g, keep=[g.result], worth=share.transcendental)
    np.testing.assert_allclose(kit.evaluate(g, inputs)[g.result], before, rtol=1e-14)
    first, second = u.node, w.node
    held = first.outputs[1]
    assert kit.named(first, elementwise.expand(first.attrs["program"], first.attrs["outs"])[1],
                     {x: "x"}) == sympy.exp(sympy.Symbol("x", real=True))
    assert second.inputs == [held]


def test_a_smaller_subexpression_is_hosted_where_its_shape_is_the_kernels():
    """b**2 (shape (3,)) inside a (4, 3) kernel and then two (3,) kernels: computed by the first (3,)
    kernel, not written out at (4, 3) by the wide one, which keeps computing it itself."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        b = kit.param(g, "b", (3,))
        wide = _k([x, b], kit.a(0) * (kit.a(1) ** 2 + 1), (4, 3))
        one = _k([b], (kit.a(0) ** 2 + 1) * 2, (3,))
        two = _k([b], (kit.a(0) ** 2 + 1) * 5, (3,))
        g.result = ops.sum(wide) + ops.sum(one) + ops.sum(two)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    share.share_across_kernels(g, keep=[g.result])
    np.testing.assert_allclose(kit.evaluate(g, inputs)[g.result], before, rtol=1e-14)
    assert wide.node.inputs == [x, b]
    assert one.node.inputs == [b] and len(one.node.outputs) == 2
    assert two.node.inputs == [one.node.outputs[1]]


def test_a_kernel_repeating_an_earlier_one_reads_it_and_goes():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (5,))
        u = _k([x], kit.a(0) ** 2 + 1, (5,))
        # the same value, written again (another node: its attributes differ)
        w = elementwise.kernel([x], (kit.a(0) ** 2 + 1,), (5,), names=(("p", kit.a(0) ** 2),))[0]
        assert w is not u
        z = _k([w], kit.a(0) * 3, (5,))
        g.result = ops.sum(u) + ops.sum(z)
    share.share_across_kernels(g, keep=[g.result])
    assert w.node not in g.nodes
    assert z.node.inputs == [u]
