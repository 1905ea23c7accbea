"""Stacking: the weight and bias gradients of unrolled layers as one batched call each.

The plan (backends/numpy/stacking.py): when the parts of a scatter-add into a
stacked parameter (d_Ws[i]) are all products h_i.T @ d_t_i, or all sums of d_t_i
over the batch, each read once, then every h_i and every d_t_i is written into a
slot of one array as it is computed, and the parts become one call on those
stacks. A factor of the d_t_i that reads only forward values (1 - h**2) is
computed for all layers at once. The graph here is a backward pass written by
hand, as reverse mode would build it; no other stage runs.
"""
import re

import numpy as np

# the package, in one place
from symbackprop.frontend import signature
from symbackprop.backends.numpy import printer, stacking, writer
from symbackprop.primitives import elementwise, index, ops

import stagekit as kit

LAYERS, N, D = 3, 5, 4


def unrolled(with_bias=False, read_a_part_twice=False):
    """h_{i+1} = tanh(h_i @ Ws[i] (+ bs[i])) and its backward pass, by hand; returns (graph, forward, grads)."""
    g = kit.graph()
    with kit.building(g):
        x = kit.param(g, "x", (N, D))
        Ws = kit.param(g, "Ws", (LAYERS, D, D))
        bs = kit.param(g, "bs", (LAYERS, D)) if with_bias else None
        G = kit.param(g, "G", (N, D))
        hs, Wi = [x], []
        for i in range(LAYERS):
            Wi.append(ops.index(Ws, i))
            z = hs[-1] @ Wi[-1]
            h = ops.unary("tanh", z + ops.index(bs, i) if with_bias else z)
            h.name = "h"
            hs.append(h)
        g.result = ops.sum(hs[-1] * G)
        forward = set(g.nodes)
        d_h, w_parts, b_parts = G, [], []
        for i in reversed(range(LAYERS)):
            (d_t,) = elementwise.kernel([d_h, hs[i + 1]], (kit.a(0) * (1 - kit.a(1) ** 2),), (N, D))
            d_t.grad_of = hs[i + 1]
            w_parts.append(((i, slice(None), slice(None)), hs[i].T @ d_t))
            b_parts.append(((i, slice(None)), ops.sum_to(d_t, (D,))))
            if i:
                d_h = d_t @ Wi[i].T
        if read_a_part_twice:
            g.result = g.result + ops.sum(w_parts[0][1])
        grads = [index.scatter_add(Ws.shape, Ws.dtype, w_parts)]
        if with_bias:
            grads.append(index.scatter_add(bs.shape, bs.dtype, b_parts))
        for grad, of in zip(grads, (Ws, bs)):
            grad.grad_of = of  # named d_Ws, d_bs (as reverse mode marks them)
    return g, forward, grads


def plan(g, grads):
    with writer.writing(printer.NumpyPrinter, g.params) as w:
        stacking.plan_stacks(w, g.nodes, [g.result] + grads)
        return w.stacking


def source(g, forward, grads):
    specs = [signature.Spec(p.name, "array", p.shape, p.dtype) for p in g.params]
    by_name = {s.name: s for s in specs}
    grad_specs = [by_name["Ws"]] + ([by_name["bs"]] if len(grads) > 1 else [])
    text, _ = writer.write_function("f", g.params, specs, g.nodes, forward, g.result, grads, grad_specs, "",
                                    single=len(grads) == 1)
    return text


def run(text, inputs):
    namespace = {"np": np}
    exec(text, namespace)
    return namespace["f"](*inputs)


def test_weight_gradients_become_one_product_of_two_stacks():
    g, forward, (d_Ws,) = unrolled()
    p = plan(g, [d_Ws])
    products = [part.node for part in d_Ws.node.inputs]
    (batch,) = {id(b): b for b in p.batch.values()}.values()
    assert batch.kind == "matmul" and set(batch.members) == set(products)
    # h_i.T @ d_t_i: the left run is the h_i themselves (the transposes are read through), the right the d_t_i
    assert batch.transposed == (True, False)
    x = g.params[0]
    lefts, rights = batch.runs
    assert lefts[0] is x and [v.name for v in lefts[1:]] == ["h"] * (LAYERS - 1)
    assert all(v.node.prim is elementwise.Kernel and v.grad_of is not None for v in rights)
    # one stack holds x, h_1 ... h_3 (the inputs of the layers and, for the hoisted factor, their outputs)
    h_stack = p.slot[x]
    assert all(p.slot[v] is h_stack for v in lefts)
    assert len(h_stack.values) == LAYERS + 1 and h_stack.shape == (LAYERS + 1, N, D)
    d_stack = p.slot[rights[0]]
    # slot i of each stack is layer i's value, whatever order the backward pass computes them in
    assert d_stack is not h_stack and d_stack.values == rights


def test_the_forward_factor_of_the_layer_gradients_is_hoisted():
    g, forward, (d_Ws,) = unrolled()
    p = plan(g, [d_Ws])
    x = g.params[0]
    d_stack = p.slot[d_Ws.node.inputs[0].node.inputs[1]]  # the stack of the d_t_i
    factor, runs = d_stack.init
    # d_t = d_h*(1 - h**2): the factor 1 - h**2 reads the forward outputs h_1 ... h_3 only
    assert factor == 1 - kit.a(1) ** 2
    assert list(runs) == [1] and runs[1] == p.slot[x].values[1:]
    # each layer's kernel keeps the rest, d_h, and multiplies it into its slot
    assert set(p.hoisted.values()) == {kit.a(0)}
    assert set(p.hoisted) == {v.node for v in d_stack.values}


def test_the_written_code_makes_one_batched_product_and_computes_the_same():
    g, forward, grads = unrolled()
    text = source(g, forward, grads)
    lines = [line.strip() for line in text.splitlines()]
    (line,) = [l for l in lines if l.startswith("d_Ws =")]
    # as the module docstring writes it: d_Ws = np.matmul(hs[:3].transpose(0, 2, 1), d_ts)
    m = re.fullmatch(r"d_Ws = np\.matmul\((\w+)\[:3\]\.transpose\(0, 2, 1\), (\w+)\)", line)
    assert m, line
    hs, d_ts = m.groups()
    assert f"{hs}[0] = x" in lines                       # the parameter is copied into its slot
    assert f"{d_ts} = 1 - {hs}[1:]**2" in lines           # the hoisted factor, for every layer at once
    # products: a layer's h_i @ W_i, the d_h of layers 2 and 3, and the batched one; no h_i.T @ d_t_i each
    assert sum(l.count("np.dot(") + l.count("np.matmul(") for l in lines) == LAYERS + (LAYERS - 1) + 1
    inputs = kit.random_inputs(g)
    value, d_Ws = run(text, [inputs[p] for p in g.params])
    expected = kit.evaluate(g, inputs)
    np.testing.assert_allclose(value, expected[g.result], rtol=1e-12)
    np.testing.assert_allclose(d_Ws, expected[grads[0]], rtol=1e-12)


def test_bias_gradients_become_one_sum_over_the_batch():
    g, forward, (d_Ws, d_bs) = unrolled(with_bias=True)
    p = plan(g, [d_Ws, d_bs])
    sums = [part.node for part in d_bs.node.inputs]
    batch = p.batch[sums[0]]
    assert batch.kind == "sum" and set(batch.members) == set(sums) and batch.lead == 1
    # the bias parts sum the same d_t_i the weight parts multiply: one stack for both
    assert p.slot[batch.runs[0][0]] is p.slot[d_Ws.node.inputs[0].node.inputs[1]]
    inputs = kit.random_inputs(g)
    value, (got_W, got_b) = run(source(g, forward, [d_Ws, d_bs]), [inputs[q] for q in g.params])
    expected = kit.evaluate(g, inputs)
    np.testing.assert_allclose(got_W, expected[d_Ws], rtol=1e-12)
    np.testing.assert_allclose(got_b, expected[d_bs], rtol=1e-12)


def test_no_batch_when_a_part_is_read_elsewhere():
    g, forward, (d_Ws,) = unrolled(read_a_part_twice=True)
    p = plan(g, [d_Ws])
    assert p.batch == {} and p.slot == {}


def test_no_batch_when_the_parts_do_not_cover_every_row():
    g, forward, (d_Ws,) = unrolled()
    node = d_Ws.node
    with kit.building(g):
        # only layers 1 and 2: row 0 of the gradient is zeros, which no product of slices gives
        partial = index.scatter_add(node.attrs["shape"], node.attrs["dtype"],
                                    [(k, v) for k, v in zip(node.attrs["indexes"], node.inputs) if k[0] != 0])
    g.nodes = [n for n in g.nodes if n is not node]
    p = plan(g, [partial])
    assert p.batch == {}
