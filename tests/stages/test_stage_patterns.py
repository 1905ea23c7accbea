"""Patterns: the softmax family written with exp, sum and log becomes one composite node.

    log(sum(exp(z), axis))        -> logsumexp(z)
    z - logsumexp(z, keepdims)    -> log_softmax(z)
    e / sum(e, axis, keepdims)    -> softmax(z), e = exp(z)

only when the intermediate values are read nowhere else (passes/patterns.py).
The replaced nodes stay in the list, unread, for dead-code elimination.
"""
import numpy as np

# the package, in one place
from symbackprop.passes import patterns
from symbackprop.primitives import composite, elementwise, ops, reduce

import stagekit as kit


def log_sum_exp(z, keepdims):
    return ops.unary("log", ops.sum(ops.unary("exp", z), axis=1, keepdims=keepdims))


def live_prims(g):
    return [n.prim for n in kit.live_nodes(g, [g.result])]


def test_log_of_a_sum_of_exp_is_logsumexp():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (4, 5))
        lse = log_sum_exp(z, keepdims=False)
        g.result = ops.sum(lse)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    patterns.recognise_softmax_family(g)
    assert live_prims(g) == [composite.LogSumExp, reduce.Sum]
    (node,) = [n for n in g.nodes if n.prim is composite.LogSumExp]
    assert node.inputs == [z] and node.attrs == {"axes": (1,), "keepdims": False}
    # outputs: the result (4,), e = exp(z) and s = its sum with keepdims, for the adjoint's p = e/s
    assert [v.shape for v in node.outputs] == [(4,), (4, 5), (4, 1)]
    assert [v.name for v in node.outputs[1:]] == ["e", "s"]
    assert g.result.node.inputs == [node.out]
    assert np.allclose(kit.evaluate(g, inputs)[g.result], before)


def test_z_minus_its_logsumexp_is_log_softmax():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (4, 5))
        y = kit.param(g, "y", (4, 5))
        logp = z - log_sum_exp(z, keepdims=True)
        logp.name = "logp"
        g.result = -ops.sum(y * logp)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    patterns.recognise_softmax_family(g)
    live = kit.live_nodes(g, [g.result])
    # the logsumexp found on the way is folded in too: nothing of it is live
    assert [n.prim for n in live][0] is composite.LogSoftmax
    assert composite.LogSumExp not in [n.prim for n in live]
    node = live[0]
    assert node.inputs == [z] and node.attrs == {"axes": (1,)}
    assert node.out.name == "logp" and node.out.shape == (4, 5)
    product = next(n for n in live if n.prim is elementwise.Kernel)
    assert node.out in product.inputs and logp not in product.inputs
    assert np.allclose(kit.evaluate(g, inputs)[g.result], before)


def test_exp_over_its_sum_is_softmax_and_the_result_follows():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (3, 6))
        e = ops.unary("exp", z)
        e.name = "e"
        p = e / ops.sum(e, axis=1, keepdims=True)
        g.result = ops.sum(p * p)
    inputs = kit.random_inputs(g)
    before = kit.evaluate(g, inputs)[g.result]
    patterns.recognise_softmax_family(g)
    assert live_prims(g) == [composite.Softmax, elementwise.Kernel, reduce.Sum]
    node = kit.live_nodes(g, [g.result])[0]
    assert node.inputs == [z] and node.attrs == {"axes": (1,)}
    # the composite's exponentials are named as the user named them
    assert node.outputs[1].name == "e"
    assert np.allclose(kit.evaluate(g, inputs)[g.result], before)


def test_a_softmax_returned_as_the_result_replaces_it():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (1,))  # one element: the softmax is a (1,) array, 1.0
        e = ops.unary("exp", z)
        p = e / ops.sum(e, axis=0, keepdims=True)
        g.result = ops.reshape(p, ())
    patterns.recognise_softmax_family(g)
    assert g.result.node.inputs[0].node.prim is composite.Softmax


def test_nothing_is_recognised_when_an_intermediate_is_read_elsewhere():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (4, 5))
        e = ops.unary("exp", z)
        lse = ops.unary("log", ops.sum(e, axis=1))
        s = ops.sum(e, axis=1, keepdims=True)
        p = e / s
        # e is read by both sums and by p; s by p and by this product: nothing can be folded
        g.result = ops.sum(lse) + ops.sum(p) + ops.sum(s * 2)
    nodes = list(g.nodes)
    patterns.recognise_softmax_family(g)
    assert g.nodes == nodes
    assert not any(isinstance(n.prim, composite.SoftmaxFamily) for n in g.nodes)


def test_a_sum_without_keepdims_is_no_softmax():
    g = kit.graph()
    with kit.building(g):
        z = kit.param(g, "z", (5, 5))
        e = ops.unary("exp", z)
        # (5, 5) / (5,) divides column j by the total of row j: not a normalisation of the rows
        q = e / ops.sum(e, axis=1)
        g.result = ops.sum(q * z)
    patterns.recognise_softmax_family(g)
    assert not any(isinstance(n.prim, composite.SoftmaxFamily) for n in g.nodes)
