"""Reverse mode: the backward pass appended to a forward graph, one adjoint rule per node.

What the transform decides (transforms/reverse.py): which nodes are asked for an
adjoint (those between a `wrt` parameter and the result, last first), for which
inputs (float values that depend on `wrt`), how contributions to one value are
summed (index adjoints merge into one scatter-add), and what a parameter the
result does not depend on gets (zeros). Probe, a primitive only these tests know,
records what the transform asks; the real rules are checked by their output and
by central differences.
"""
import numpy as np
import sympy

# the package, in one place
from symbackprop import ir
from symbackprop.primitives import elementwise, index, linalg, ops, registry, shape
from symbackprop.transforms import reverse

import stagekit as kit


class Probe(registry.Primitive):
    """y = x0 (shape and dtype of the first input); its adjoint passes g to each input asked for.

    Never registered: the table of primitives stays as the package has it.
    """

    name = "probe"

    def __init__(self):
        self.calls = []

    def infer(self, node):
        v = node.inputs[0]
        return [(v.shape, v.dtype)]

    def adjoint(self, node, gs, wants):
        self.calls.append((node, list(gs), list(wants)))
        return [gs[0] if want else None for want in wants]


def probe(p, *inputs):
    return ir.append(p, list(inputs), {})


def test_only_float_inputs_that_depend_on_wrt_are_asked_for():
    p = Probe()
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        c = kit.param(g, "c", (3,))              # a float parameter not differentiated
        k = kit.param(g, "k", (3,), np.int64)    # an integer parameter
        y = probe(p, x, c, k)
        g.result = ops.sum(y)
    (d_x,) = reverse.reverse(g, [x])
    ((node, gs, wants),) = p.calls
    assert node is y.node and wants == [True, False, False]
    assert gs[0].shape == (3,)
    assert d_x.shape == x.shape


def test_adjoints_run_last_node_first_and_skip_what_does_not_reach_the_result():
    p = Probe()
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        first = probe(p, x)
        second = probe(p, first)
        probe(p, second, x)                      # read by nothing: not asked
        g.result = ops.sum(second)
    reverse.reverse(g, [x])
    assert [call[0] for call in p.calls] == [second.node, first.node]
    # the gradient reaching `first` is what `second`'s rule returned for it
    assert p.calls[1][1][0] is p.calls[0][1][0]


def test_nodes_independent_of_wrt_are_not_asked():
    p = Probe()
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        c = kit.param(g, "c", (3,))
        g.result = ops.sum(probe(p, c) * x)
    reverse.reverse(g, [x])
    assert p.calls == []


def test_tanh_layer_gradients_read_like_backprop():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        W = kit.param(g, "W", (3, 2))
        y = kit.param(g, "y", (4, 2))
        z = x @ W
        h = ops.unary("tanh", z)
        h.name = "h"
        g.result = ops.sum(h * y)
    forward = list(g.nodes)
    d_W, d_x = reverse.reverse(g, [W, x])
    assert g.nodes[:len(forward)] == forward  # the backward pass is appended
    assert (d_W.shape, d_W.dtype) == (W.shape, W.dtype)
    assert (d_x.shape, d_x.dtype) == (x.shape, x.dtype)
    # d_z = d_h * tanh'(z) with d_h = y, written in terms of the forward output: y*(1 - h**2)
    # (d_h = y itself: the product's adjoint g*y with the seed g = 1 folded in is no kernel of its own)
    (d_z_node,) = [n for n in kit.kernels(g) if n not in forward]
    y_, h_ = kit.sym("y", "h")
    assert kit.named(d_z_node) == y_ * (1 - h_**2)
    d_z = d_z_node.out
    assert d_z.grad_of is z
    # d_W = x.T @ d_z and d_x = d_z @ W.T
    assert d_W.node.prim is linalg.MatMul and d_W.node.inputs[1] is d_z
    assert d_W.node.inputs[0].node.prim is shape.Transpose and d_W.node.inputs[0].node.inputs == [x]
    assert d_x.node.prim is linalg.MatMul and d_x.node.inputs[0] is d_z
    assert d_x.node.inputs[1].node.prim is shape.Transpose and d_x.node.inputs[1].node.inputs == [W]
    assert d_W.grad_of is W and d_x.grad_of is x


def test_no_adjoint_is_built_for_a_value_no_gradient_needs():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        W = kit.param(g, "W", (3, 2))
        g.result = ops.sum(ops.unary("tanh", x @ W))
    forward = set(g.nodes)
    reverse.reverse(g, [W])
    backward = [n for n in g.nodes if n not in forward]
    # x is no parameter of the gradient: no d_z @ W.T, the one product is x.T @ d_z
    products = [n for n in backward if n.prim is linalg.MatMul]
    assert len(products) == 1 and products[0].inputs[0].node.inputs == [x]


def test_contributions_to_one_value_are_summed():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        W = kit.param(g, "W", (3, 2))
        g.result = ops.sum(x @ W) + ops.sum(ops.unary("sin", x))
    forward = list(g.nodes)
    (d_x,) = reverse.reverse(g, [x])
    # one term through the product, one through sin: one addition of the two
    assert d_x.node.prim is elementwise.Kernel and kit.body(d_x.node) == kit.a(0) + kit.a(1)
    through_product, through_sin = sorted(d_x.node.inputs, key=lambda v: v.node.prim is elementwise.Kernel)
    assert through_product.node.prim is linalg.MatMul
    assert through_sin.node.prim is elementwise.Kernel and kit.named(through_sin.node) == sympy.cos(kit.sym("x"))
    assert d_x.grad_of is x
    kit.check_gradients(g, [d_x], [x], forward, kit.random_inputs(g))


def test_index_adjoints_into_one_array_become_one_scatter_add():
    g = kit.graph()
    with kit.building(g):
        Ws = kit.param(g, "Ws", (3, 2, 2))
        x = kit.param(g, "x", (5, 2))
        h = x
        for i in range(3):
            h = ops.unary("tanh", h @ ops.index(Ws, i))
        g.result = ops.sum(h)
    forward = list(g.nodes)
    (d_Ws,) = reverse.reverse(g, [Ws])
    assert d_Ws.node.prim is index.ScatterAdd and d_Ws.shape == Ws.shape
    assert sorted(key[0] for key in d_Ws.node.attrs["indexes"]) == [0, 1, 2]
    # each Ws[i] adjoint is a scatter-add of its own; merged, those are dead (left for dead-code elimination)
    assert sum(n.prim is index.ScatterAdd for n in kit.live_nodes(g, [d_Ws])) == 1
    kit.check_gradients(g, [d_Ws], [Ws], forward, kit.random_inputs(g))


def test_a_parameter_the_result_ignores_gets_zeros():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (3,))
        unused = kit.param(g, "unused", (2, 2), np.float32)
        g.result = ops.sum(x * x)
    d_x, d_unused = reverse.reverse(g, [x, unused])
    assert elementwise.fill_value(d_unused) == 0.0
    assert (d_unused.shape, d_unused.dtype) == ((2, 2), np.float32)
    assert kit.named(d_x.node) == 2 * kit.sym("x")  # d sum(x*x) = 2x: the seed 1 folded in


def test_float32_stays_float32():
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3), np.float32)
        b = kit.param(g, "b", (3,), np.float32)
        g.result = ops.sum(ops.unary("exp", x * b) * 0.5)
    forward = set(g.nodes)
    grads = reverse.reverse(g, [x, b])
    assert [(v.shape, v.dtype) for v in grads] == [((4, 3), np.float32), ((3,), np.float32)]
    # and so is every value of the backward pass: nothing computes in float64 on the way
    assert {v.dtype for n in g.nodes if n not in forward for v in n.outputs} == {np.dtype(np.float32)}


def test_a_small_network_matches_central_differences():
    """Broadcast bias, log-softmax by hand, a max: every gradient against differences of the loss."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (4, 3))
        W = kit.param(g, "W", (3, 5))
        b = kit.param(g, "b", (5,))
        y = kit.param(g, "y", (4, 5))
        h = ops.unary("tanh", x @ W + b)
        logp = h - ops.unary("log", ops.sum(ops.unary("exp", h), axis=1, keepdims=True))
        g.result = -ops.mean(y * logp) + ops.sum(ops.amax(h, axis=0)) * 0.1
    forward = list(g.nodes)
    grads = reverse.reverse(g, [x, W, b])
    kit.check_gradients(g, grads, [x, W, b], forward, kit.random_inputs(g, seed=3))
